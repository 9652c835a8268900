"""Check and time the variants of one case: the one runner every suite's cases go through.

A suite (``hebbbench run``'s grid, ``hebbbench reproduce``'s networks) turns its configuration
into cases and each variant of a case (an implementation with its options) into a
:class:`Prepared` closure set up outside the timed region (TorchBench's pattern). Then, the
same for every suite (:func:`run_variants`):

1. **check**, each variant once, untimed: its compilation for these shapes (``compile``,
   reported apart, never timed), a first call with its peak memory
   (:func:`hebbbench.measure.devices.measure_peak`, plus what the variant holds from before
   the call: ``Prepared.held``) and its seconds, and its ΔW against the
   case's reference, relative Frobenius error within the tolerance
   (:mod:`hebbbench.measure.numerics`), else ``wrong`` and never timed. A first call slower
   than ``max_first_call_s`` is not repeated (``over_budget``, its time that one run).
   ``rules.Unavailable`` (no compiler, package, ...) is ``skipped`` with the reason, an
   out-of-memory error ``oom``, any other exception ``error``; the case goes on.
   A suite that decides on a variant from the ones checked before it calls :func:`check` per
   variant itself, then :func:`time_checked`; :func:`run_variants` does both.
2. **time**, the variants that passed, together: :func:`hebbbench.measure.timing.time_interleaved`
   (warm-up, interleaved rounds in a Williams design, state reset before every sample
   outside the timing; the check's first call is also made from the reset state), with the
   case's extra calls (the calibration product) as more calls of every round. An exception
   while timing fails them all (``oom`` or ``error``), except that ``keep`` (a label: the
   reference a suite must time) is then timed alone.

A step that several processes run together (data-parallel training, ``hebbbench scale``) is
timed by :func:`time_together` instead of the interleaved timer, on the same Prepared closures:
warm-up by time until every rank agrees it is over, then each sample from the reset state, all
ranks starting together (a barrier outside the timing), the device synchronised before the
clock is read.

Rows come from the outcomes through :meth:`Timing.columns` and
:func:`hebbbench.measure.timing.speedup_columns`, the same in every kind of result set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from hebbbench import rules
from hebbbench.measure import devices
from hebbbench.rules import fp32_precision
from hebbbench.measure.numerics import relative_error
from hebbbench.measure.timing import Timing, TimingPolicy, time_interleaved
from hebbbench.store import Status


@dataclass
class Prepared:
    """The timed call of one variant, the state reset before each sample, and its ΔW for the check.

    ``compile`` (implementations that compile code) does the compilation for this case's
    shapes outside timing and returns its seconds. ``held`` gives the bytes the variant holds
    between calls, allocated before the first one (fh-graph: its graphs' private pools and
    static inputs, :meth:`hebbbench.rules.graphed.Graphed.held_bytes`); read after the check's
    first call, it is added to that call's peak.
    """

    call: Callable[[], object]
    reset: Callable[[], object] | None
    delta: Callable[[], Tensor] | None  # None: nothing to check (e.g. a whole network step)
    compile: Callable[[], float] | None = None
    held: Callable[[], int] | None = None
    #: the float32 precision its products and convolutions run in (fp32_precision.py): set before
    #: its check and before each of its samples (outside the timing), restored after the case
    fp32: str = "ieee"


@dataclass
class Outcome:
    """What the runner found for one variant of a case."""

    status: Status = Status.OK
    reason: str = ""
    timing: Timing | None = None  # the samples, when timed
    compile_s: float = math.nan
    first_call_s: float = math.nan
    peak_bytes: float = math.nan
    error: float = math.nan  # relative error of ΔW against the reference
    tolerance: float = math.nan


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _failed(exc: BaseException) -> Status:
    return Status.OOM if devices.is_out_of_memory(exc) else Status.ERROR


def check(prepare: Callable[[], Prepared], device: str, reference: Tensor | None,
          tolerance: float, max_first_call_s: float = math.inf,
          against: str = "the reference") -> tuple[Outcome, Prepared | None]:
    """Step 1 for one variant: its outcome, and its closures when it may be timed."""
    out = Outcome(tolerance=tolerance)
    with fp32_precision.restored():
        try:
            prepared = prepare()
            fp32_precision.apply(prepared.fp32)
            reset = prepared.reset or (lambda: None)
            if prepared.compile is not None:  # compilation outside timing, reported on its own
                reset()
                out.compile_s = prepared.compile()
            reset()
            _, peak, out.first_call_s = devices.measure_peak(prepared.call, device)
            held = prepared.held() if prepared.held is not None else 0
            reset()
            out.peak_bytes = math.nan if peak is None else float(peak + held)
            if reference is not None and prepared.delta is not None:
                dw = prepared.delta()
                out.error = relative_error(dw, reference)
                del dw
                if not out.error <= out.tolerance:
                    out.status, out.reason = Status.WRONG, (f"relative error {out.error:.2e} against {against} "
                                                            f"exceeds the tolerance {out.tolerance:.0e}")
                    return out, None
            if out.first_call_s > max_first_call_s:
                out.status, out.reason = Status.OVER_BUDGET, (f"its first call took {out.first_call_s:.3g} s > "
                                                              f"budget {max_first_call_s:.3g} s")
                return out, None
            return out, prepared
        except rules.Unavailable as exc:  # cannot run here: said, never faked
            out.status, out.reason = Status.SKIPPED, one_line(exc)
        except Exception as exc:  # noqa: BLE001 - a variant's failure is a row, not a crash
            out.status, out.reason = _failed(exc), one_line(exc)
            devices.release(device, collect=True)
        return out, None


def time_checked(timed: Mapping[str, Prepared], outcomes: dict[str, Outcome], device: str, policy: TimingPolicy,
                 extra: Mapping[str, Callable[[], object]] | None = None,
                 keep: str | None = None) -> dict[str, Timing]:
    """Step 2: time the checked variants together, their samples into ``outcomes``; returns the
    timings of the ``extra`` calls (none when the timing failed)."""
    if not timed:
        return {}
    calls = {label: p.call for label, p in timed.items()}
    calls.update(extra or {})
    resets = {label: precise_reset(p) for label, p in timed.items()}
    resets.update({label: precise_reset(Prepared(call, None, None)) for label, call in (extra or {}).items()})
    with fp32_precision.restored():
        try:
            timings = time_interleaved(calls, device, policy, reset=resets)
        except Exception as exc:  # noqa: BLE001
            devices.release(device, collect=True)
            for label in timed:
                outcomes[label].status, outcomes[label].reason = _failed(exc), f"during timing: {one_line(exc)}"
            if keep is None or keep not in timed:
                return {}
            timings = time_interleaved({keep: timed[keep].call}, device, policy, reset={keep: resets[keep]})
            outcomes[keep].status, outcomes[keep].reason = Status.OK, ""
    for label in timed:
        if label in timings:
            outcomes[label].timing = timings[label]
    return {label: t for label, t in timings.items() if label not in timed}


def precise_reset(prepared: Prepared) -> Callable[[], None]:
    """What runs before each sample of ``prepared``, outside the timing: its float32 precision set,
    then its own reset (interleaved implementations may each ask for another precision)."""
    reset = prepared.reset

    def before() -> None:
        fp32_precision.apply(prepared.fp32)
        if reset is not None:
            reset()
    return before


def run_variants(prepare: Mapping[str, Callable[[], Prepared]], device: str, policy: TimingPolicy, *,
                 reference: Tensor | None = None, tolerances: Mapping[str, float] | None = None,
                 extra: Mapping[str, Callable[[], object]] | None = None, max_first_call_s: float = math.inf,
                 keep: str | None = None, against: str = "the reference") -> tuple[dict[str, Outcome], dict[str, Timing]]:
    """Check every variant, then time those that passed, interleaved; returns every variant's
    outcome and the timings of the ``extra`` calls. ``keep`` is exempt from the first-call budget."""
    outcomes: dict[str, Outcome] = {}
    timed: dict[str, Prepared] = {}
    for label, make in prepare.items():
        outcomes[label], prepared = check(make, device, reference, (tolerances or {}).get(label, math.inf),
                                          math.inf if label == keep else max_first_call_s, against)
        if prepared is not None:
            timed[label] = prepared
    return outcomes, time_checked(timed, outcomes, device, policy, extra, keep)


class Group(Protocol):
    """What timing a step that several ranks run together needs of their process group
    (:class:`hebbbench.nn.parallel.Comm` has it)."""

    def barrier(self) -> None:
        """Return when every rank has arrived."""

    def all_agree(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""

    def sync(self) -> None:
        """Wait for this rank's device."""


def time_together(prepared: Prepared, group: Group, samples: int, warmup_s: float,
                  start: Callable[[], object] = lambda: None,
                  after: Callable[[], list[float]] = lambda: []) -> tuple[list[list[float]], int]:
    """Time a step every rank of ``group`` runs together: this rank's ``[seconds, *after()]`` per
    sample, and how many warm-up calls ran. ``start`` runs after the barrier, just before the clock
    (e.g. zeroing communication counters); ``after`` reads what else a sample measured."""
    with fp32_precision.fp32(prepared.fp32):
        reset = prepared.reset or (lambda: None)
        t0, warmup = time.perf_counter(), 0
        while True:  # warm-up by time: every rank calls until all agree it is over (at least once)
            reset()
            prepared.call()
            warmup += 1
            if group.all_agree(time.perf_counter() - t0 >= warmup_s):
                break
        out = []
        for _ in range(samples):
            reset()  # every sample from the same state
            group.barrier()  # start together, the device idle; not timed
            start()
            t = time.perf_counter()
            prepared.call()
            group.sync()
            out.append([time.perf_counter() - t, *after()])
        return out, warmup


@dataclass
class Peak:
    """Peak bytes allocated during a call, and how they were measured (devices.measure_peak)."""

    bytes: float = math.nan
    method: str = "unavailable"

    @classmethod
    def of(cls, outcome: Outcome, device: str) -> "Peak":
        return cls(outcome.peak_bytes, devices.memory_method(device))

