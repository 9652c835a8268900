"""The runner every suite's cases go through (hebbbench.measure.variants): check, then time."""

from __future__ import annotations

import math
import time

import pytest
import torch

from hebbbench import rules
from hebbbench.measure import variants
from hebbbench.measure.timing import TimingPolicy
from hebbbench.measure.variants import Prepared, run_variants
from hebbbench.store import Status

QUICK = TimingPolicy(warmup_s=0.0, min_rounds=3, max_rounds=3, min_rounds_capped=3, case_seconds=5.0,
                     flush_cache=False)
REFERENCE = torch.ones(4, 3, dtype=torch.float64)


def prepared(dw: torch.Tensor, *, log: list | None = None, sleep: float = 0.0, fail: BaseException | None = None,
             compile_: bool = False) -> Prepared:
    def call():
        if fail is not None:
            raise fail
        time.sleep(sleep)
        if log is not None:
            log.append("call")
        return dw

    return Prepared(call=call, reset=(lambda: log.append("reset")) if log is not None else None,
                    delta=lambda: dw, compile=(lambda: 1.5) if compile_ else None)


def test_each_outcome_of_the_check_and_only_the_good_are_timed():
    log = []
    outcomes, extra = run_variants({
        "good": lambda: prepared(REFERENCE.float(), log=log, compile_=True),
        "wrong": lambda: prepared(2 * REFERENCE.float()),
        "absent": lambda: (_ for _ in ()).throw(rules.Unavailable("needs a compiler that is not here")),
        "oom": lambda: prepared(REFERENCE, fail=torch.OutOfMemoryError("out of memory")),
        "broken": lambda: prepared(REFERENCE, fail=ValueError("bad shape")),
    }, "cpu", QUICK, reference=REFERENCE, tolerances=dict.fromkeys(["good", "wrong", "absent", "oom", "broken"], 1e-4),
        extra={"@calibration": lambda: None})
    assert {k: o.status for k, o in outcomes.items()} == {
        "good": Status.OK, "wrong": Status.WRONG, "absent": Status.SKIPPED, "oom": Status.OOM, "broken": Status.ERROR}
    # "good" and the calibration: a Williams cycle of 2 rounds, so min_rounds 3 means 4 (whole cycles)
    assert outcomes["good"].timing is not None and len(outcomes["good"].timing.samples) == 4
    assert all(o.timing is None for k, o in outcomes.items() if k != "good")
    assert outcomes["good"].compile_s == 1.5 and outcomes["good"].error == 0.0
    assert outcomes["wrong"].error == pytest.approx(1.0) and "against the reference" in outcomes["wrong"].reason
    assert outcomes["absent"].reason == "Unavailable: needs a compiler that is not here"
    assert "ValueError: bad shape" in outcomes["broken"].reason
    assert list(extra) == ["@calibration"] and len(extra["@calibration"].samples) == 4
    # the check's first call and every timed sample start from the reset state
    assert log[:2] == ["reset", "reset"] and log.count("call") == log.count("reset") - 2


def test_a_slow_first_call_is_not_repeated_but_the_kept_reference_is():
    outcomes, _ = run_variants({"fh": lambda: prepared(REFERENCE, sleep=0.03),
                                "naive": lambda: prepared(REFERENCE, sleep=0.03)},
                               "cpu", QUICK, max_first_call_s=0.01, keep="fh")
    assert outcomes["naive"].status == Status.OVER_BUDGET and outcomes["naive"].timing is None
    assert outcomes["naive"].first_call_s >= 0.03 and "budget 0.01 s" in outcomes["naive"].reason
    assert outcomes["fh"].status == Status.OK and len(outcomes["fh"].timing.samples) == 3


def test_a_failure_while_timing_fails_every_variant_but_the_kept_one_is_timed_alone(monkeypatch):
    real = variants.time_interleaved

    def fails_together(calls, *args, **kwargs):
        if len(calls) > 1:
            raise torch.OutOfMemoryError("out of memory while timing")
        return real(calls, *args, **kwargs)

    monkeypatch.setattr(variants, "time_interleaved", fails_together)
    make = {"fh": lambda: prepared(REFERENCE), "naive": lambda: prepared(REFERENCE)}
    outcomes, _ = run_variants(make, "cpu", QUICK, keep="fh")
    assert outcomes["naive"].status == Status.OOM and outcomes["naive"].reason.startswith("during timing:")
    assert outcomes["fh"].status == Status.OK and outcomes["fh"].timing is not None
    outcomes, extra = run_variants(make, "cpu", QUICK)  # nothing kept: every variant failed, no timings
    assert {o.status for o in outcomes.values()} == {Status.OOM} and extra == {}
    assert all(math.isnan(o.error) for o in outcomes.values())


def test_a_step_run_together_is_timed_from_the_reset_state_after_a_barrier():
    """time_together (hebbbench scale's ranks): the order of events around every sample."""
    events = []

    class Group:
        def barrier(self):
            events.append("barrier")

        def all_agree(self, flag):
            events.append("agree")
            return flag

        def sync(self):
            events.append("sync")

    step = Prepared(call=lambda: events.append("call"), reset=lambda: events.append("reset"), delta=None)
    samples, warmup = variants.time_together(step, Group(), 2, 0.0, start=lambda: events.append("start"),
                                             after=lambda: [7.0])
    assert warmup == 1 and len(samples) == 2 and all(s[1] == 7.0 and s[0] >= 0 for s in samples)
    assert events == ["reset", "call", "agree"] + ["reset", "barrier", "start", "call", "sync"] * 2
