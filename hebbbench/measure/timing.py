"""Honest timing of several implementations of one case (docs/design.md §4).

- a clock that reads the *device*: CUDA events recorded on the current stream around
  the call, queued behind a spinning kernel so that the host's dispatch is not in the
  interval (synchronised before reading), or ``time.perf_counter`` on the CPU; on CUDA the
  call's latency (launch on an idle device to its end, dispatch included) is measured
  apart, a few calls each after the rounds (:class:`Clock`);
- warm-up by time (at least ``warmup_s``, covering clock ramp-up and lazy initialisation);
- implementations interleaved round by round, each round's order taken from a Williams
  design (Williams, "Experimental designs balanced for the estimation of residual effects
  of treatments", Aust. J. Sci. Res. 1949): over a cycle of k rounds (2k for an odd number k
  of implementations) every one runs in every position, and right after every other one,
  equally often, so neither a position nor a neighbour's after-effects (allocator state,
  clock, a caller that thrashes memory) biases one implementation. A plain rotation would
  keep the same predecessor in k − 1 rounds out of k;
- before every sample, outside the timed region: the last-level cache is flushed and
  the implementation's state is reset (e.g. the layer's weights);
- rounds are added, a whole Williams cycle at a time (so every position and predecessor is
  balanced in the samples kept), until every implementation's IQR/median is below
  ``target_rel_iqr`` or the case's time cap is reached; all raw samples are kept, each with
  the minor page faults its call took (counted outside the clock: conditions.py);
- one process measures; the harness runs each case in ``processes`` fresh worker processes
  and pools them (pooling.py): a speedup is a ratio of pooled medians with a hierarchical
  bootstrap 95 % interval, paired by round.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hebbbench.measure import pooling
from hebbbench.measure.conditions import minor_faults


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how often to measure."""

    warmup_s: float = 0.2  # warm-up time per case, all implementations together
    min_rounds: int = 10  # samples per implementation before the stopping rule applies (whole cycles)
    max_rounds: int = 200
    min_rounds_capped: int = 3  # samples kept even when the time cap is hit earlier (at least one cycle)
    target_rel_iqr: float = 0.05
    case_seconds: float = 10.0  # cap on warm-up + timing of one case, in one process
    #: fresh worker processes that each measure every case (``--processes``); pooled by pooling.py
    processes: int = 3
    flush_cache: bool = True
    #: CPU threads while the grid's CPU cases run (None: torch's default); ``--threads`` overrides.
    #: One thread is far steadier on a shared machine: a second thread stalls the call whenever
    #: another process holds its core.
    threads: int | None = None

    def __post_init__(self) -> None:
        if not (self.min_rounds_capped >= 1 and self.min_rounds >= self.min_rounds_capped
                and self.max_rounds >= self.min_rounds):
            raise ValueError("need 1 <= min_rounds_capped <= min_rounds <= max_rounds")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ValueError(f"processes must be an integer >= 1, got {self.processes!r}")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0 and math.isfinite(self.case_seconds)
                and self.case_seconds > 0 and math.isfinite(self.target_rel_iqr) and self.target_rel_iqr > 0):
            raise ValueError("warmup_s >= 0, case_seconds > 0 and target_rel_iqr > 0 are required")


class CudaQueue:
    """What the clock needs of a CUDA device: synchronise, events, and a kernel that keeps it busy."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def event(self):
        return torch.cuda.Event(enable_timing=True)

    def sleep(self, cycles: int) -> None:
        torch.cuda._sleep(int(cycles))  # a kernel that spins for ``cycles`` GPU clock cycles

    def cycles_per_second(self) -> float:
        """The rate of ``sleep``'s cycles, measured once: a 10-million-cycle sleep between two events."""
        start, end = self.event(), self.event()
        self.synchronize()
        start.record()
        self.sleep(10_000_000)
        end.record()
        end.synchronize()
        return 10_000_000 / (start.elapsed_time(end) / 1e3)


#: the device is kept busy this many times the host dispatch time last seen (and at least MIN_AHEAD_S)
AHEAD_FACTOR, MIN_AHEAD_S, MAX_AHEAD_S = 2.0, 20e-6, 0.05


def ahead_seconds(dispatch_s: float) -> float:
    """How long the device is kept busy before a timed call: long enough for the host to queue the
    whole call behind it (twice the dispatch seen last), clamped to [20 µs, 50 ms]."""
    return min(MAX_AHEAD_S, max(MIN_AHEAD_S, AHEAD_FACTOR * dispatch_s))


class Clock:
    """Times one call on a device: its **device time** (what samples hold) and its **latency**.

    - CPU: ``time.perf_counter`` around the call; device time and latency are the same thing.
    - CUDA, device time: CUDA events on the current stream. Recording the start event on an idle
      device and then launching from Python would count the host's dispatch (the Python and
      launch overhead, microseconds per kernel) as device time: small cases would measure
      dispatch. So a spinning kernel (``torch.cuda._sleep``) is queued first, long enough for the
      host to queue the whole call behind it (:func:`ahead_seconds` of the dispatch time last
      seen); the start event then runs when the device reaches the call, and the interval is
      the device's own work (as triton's ``do_bench`` queues calls behind its cache flush). A
      dispatch that outlasts its spin leaves host gaps in that sample; the next spin is longer.
    - CUDA, latency (:meth:`latency`): wall time from launching the call on an idle device to
      its end (``perf_counter`` around the call and a synchronize): what a caller waits,
      dispatch included.
    """

    def __init__(self, device: torch.device | str, queue: CudaQueue | None = None) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.queue = queue or (CudaQueue(self.device) if self.cuda else None)
        self._cycles_per_s: float | None = None
        self.dispatch_s = 0.0  # the host's dispatch time of the last call

    def sync(self) -> None:
        if self.queue is not None:
            self.queue.synchronize()

    def measure(self, fn: Callable[[], object]) -> float:
        """Seconds of device time taken by ``fn()`` (all work queued before it is finished first)."""
        if self.queue is None:
            t0 = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - t0
            del out
            return elapsed
        with torch.cuda.device(self.device) if self.cuda else nullcontext():
            q = self.queue
            if self._cycles_per_s is None:
                self._cycles_per_s = q.cycles_per_second()
            ahead = ahead_seconds(self.dispatch_s)
            start, end = q.event(), q.event()
            q.synchronize()
            q.sleep(ahead * self._cycles_per_s)  # the device busy while the host queues the call
            t0 = time.perf_counter()
            start.record()
            out = fn()  # kept until the clock is read: freeing it is not the call's time
            end.record()
            self.dispatch_s = time.perf_counter() - t0
            end.synchronize()
            del out
            return start.elapsed_time(end) / 1e3

    def latency(self, fn: Callable[[], object]) -> float:
        """Wall seconds from calling ``fn()`` on an idle device to the device finishing it."""
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        elapsed = time.perf_counter() - t0
        del out
        return elapsed


#: CPU flush buffers are capped: virtual machines report the host's whole L3 (480 MiB seen),
#: of which one process's share is far smaller, and the flush runs before every sample.
CPU_FLUSH_CAP = 64 * 2**20


class CacheFlusher:
    """Evicts the last-level cache by writing a buffer twice its size (as triton's do_bench does)."""

    def __init__(self, device: torch.device | str, enabled: bool = True) -> None:
        self.device = torch.device(device)
        self.enabled = enabled
        self.nbytes = flush_bytes(self.device) if enabled else 0
        self._buffer = torch.empty(self.nbytes // 4, dtype=torch.int32, device=self.device) if enabled else None

    def __call__(self) -> None:
        if self._buffer is not None:
            self._buffer.zero_()


def flush_bytes(device: torch.device) -> int:
    """Size of the buffer written before each sample: twice the last-level cache (CPU: capped)."""
    size = 2 * last_level_cache_bytes(device)
    return size if device.type == "cuda" else min(size, CPU_FLUSH_CAP)


def last_level_cache_bytes(device: torch.device) -> int:
    """L2 size of a GPU, L3 (or the largest) cache of the CPU; 32 MiB when unknown."""
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 32 * 2**20)
    sizes = []
    try:
        import glob

        for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
            text = open(path).read().strip()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return max(sizes) if sizes else 32 * 2**20


@dataclass
class Timing:
    """Raw samples of one implementation in one case, and their summary.

    ``process`` names the worker process of each sample (empty: all from one process) and
    ``faults`` the minor page faults of each sample's call (empty: not counted). Within one
    process the samples are in round order.
    """

    samples: list[float] = field(default_factory=list)
    process: list[int] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    #: wall seconds of calls from an idle device to their end (CUDA; empty on the CPU, where a
    #: sample is already the call's latency)
    latency: list[float] = field(default_factory=list)

    @classmethod
    def pooled(cls, timings: list["Timing"]) -> "Timing":
        """The samples of one implementation measured in several processes, the i-th labelled process i."""
        out = cls()
        for index, t in enumerate(timings):
            out.samples += list(t.samples)
            out.process += [index] * len(t.samples)
            out.faults += list(t.faults) if len(t.faults) == len(t.samples) else []
            out.latency += list(t.latency)
        if len(out.faults) != len(out.samples):
            out.faults = []
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Timing":
        return cls([float(v) for v in record["samples"]], [int(v) for v in record.get("process") or []],
                   [int(v) for v in record.get("faults") or []], [float(v) for v in record.get("latency") or []])

    def record(self) -> dict[str, Any]:
        """As samples.jsonl stores it (``process`` and ``faults`` only when known)."""
        out: dict[str, Any] = {"samples": self.samples}
        if self.process:
            out["process"] = self.process
        if self.faults:
            out["faults"] = self.faults
        if self.latency:
            out["latency"] = self.latency
        return out

    def groups(self) -> list[np.ndarray]:
        """The samples split by process, each in round order."""
        return pooling.groups(self.samples, self.process)

    @property
    def median(self) -> float:
        return float(np.median(self.samples)) if self.samples else math.nan

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25)) if self.samples else math.nan

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75)) if self.samples else math.nan

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def rel_iqr(self) -> float:
        return self.iqr / self.median if self.samples and self.median > 0 else math.nan

    @property
    def noisy(self) -> bool:
        """Noisy within its processes: the median within-process IQR/median above 10 %."""
        return bool(pooling.within_rel_iqr(self.groups()) > pooling.NOISY_REL_IQR)

    def columns(self) -> dict[str, Any]:
        """The row columns of these samples, the same in every kind of result set (``median_s``,
        ``q1_s``, ``q3_s``, ``n_samples`` of the key columns, and the spread beside them)."""
        gs = self.groups()
        return {"median_s": self.median, "q1_s": self.q1, "q3_s": self.q3, "n_samples": len(self.samples),
                "iqr_s": self.iqr, "rel_iqr": self.rel_iqr, "noisy": self.noisy,
                "latency_s": float(np.median(self.latency)) if self.latency else self.median,
                "processes": len(gs), "process_spread": pooling.spread(gs) if gs else math.nan,
                "unstable": pooling.unstable(gs),
                "faults_per_call": float(np.median(self.faults)) if self.faults else math.nan}


def round_orders(k: int) -> list[list[int]]:
    """The Williams design for k implementations: k orders of range(k), 2k when k is odd (and > 1).

    In the first order 0, 1, k−1, 2, k−2, ... every difference between neighbours occurs
    once; adding i (mod k) gives order i. With k odd the mirrored orders are added.
    """
    first, low, high = [0], 1, k - 1
    while len(first) < k:
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    orders = [[(j + i) % k for j in first] for i in range(k)]
    return orders + [order[::-1] for order in orders] if k % 2 and k > 1 else orders


#: calls per implementation whose latency is measured after the rounds (CUDA)
LATENCY_CALLS = 10


def time_interleaved(
    calls: dict[str, Callable[[], object]],
    device: torch.device | str,
    policy: TimingPolicy = TimingPolicy(),
    reset: dict[str, Callable[[], object]] | None = None,
) -> dict[str, Timing]:
    """Time every call of one case, interleaved round by round; returns their raw samples.

    ``reset[name]`` (optional) runs before each call of ``name``, outside the timed region,
    after the cache flush: e.g. restoring weights that a training step changed.
    """
    clock = Clock(device)
    flush = CacheFlusher(device, policy.flush_cache)
    names = list(calls)
    reset = reset or {}
    results = {name: Timing() for name in names}
    noop = lambda: None  # noqa: E731

    def one(name: str) -> tuple[float, int]:
        reset.get(name, noop)()
        flush()
        clock.sync()
        before = minor_faults()
        seconds = clock.measure(calls[name])
        return seconds, minor_faults() - before

    started = time.perf_counter()
    # warm-up by time: every call at least once, round robin until warmup_s has passed
    while True:
        for name in names:
            one(name)
        if time.perf_counter() - started >= policy.warmup_s:
            break
    orders = round_orders(len(names))
    cycle = len(orders)
    whole = lambda rounds: cycle * max(1, math.ceil(rounds / cycle))  # noqa: E731 - rounds in whole cycles
    for round_index in range(whole(policy.max_rounds)):
        for i in orders[round_index % cycle]:
            seconds, faults = one(names[i])
            results[names[i]].samples.append(seconds)
            results[names[i]].faults.append(faults)
        done = round_index + 1
        if done % cycle:
            continue  # stop only after a whole cycle of the design
        if done >= whole(policy.min_rounds) and all(r.rel_iqr < policy.target_rel_iqr for r in results.values()):
            break
        if time.perf_counter() - started >= policy.case_seconds and done >= whole(policy.min_rounds_capped):
            break
    if clock.queue is not None:  # latency: a few calls each from an idle device, interleaved
        for _ in range(min(LATENCY_CALLS, done)):
            for name in names:
                reset.get(name, noop)()
                flush()
                results[name].latency.append(clock.latency(calls[name]))
    return results


def speedup_columns(baseline: Timing, impl: Timing, paired: bool | None = None) -> dict[str, float]:
    """``speedup``, ``speedup_lo``, ``speedup_hi`` of a row: median(baseline) / median(impl) pooled over
    processes, with the hierarchical bootstrap 95 % interval (pooling.py), paired by round when both
    were timed in the same rounds (``paired`` None: when both have the same processes and as many
    samples in each, as the interleaved timer gives)."""
    base, mine = baseline.groups(), impl.groups()
    if paired is None:
        paired = baseline.process == impl.process and [len(g) for g in base] == [len(g) for g in mine]
    point, low, high = pooling.ratio(base, mine, paired=paired)
    return {"speedup": point, "speedup_lo": low, "speedup_hi": high}
