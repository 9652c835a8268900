"""fh-graph as the harness checks and times it (hebbbench/rules/graphed.py, hebbbench/suites/workload.py).

A CUDA graph cannot run on the CPU, so most tests swap ``graphed.capture`` for a stand-in
that keeps the protocol of a captured graph: static input buffers, a static output whose
contents are undefined until a replay (NaN here), a replay that recomputes from the static
inputs only, and a private pool of a known size. The last test runs the real capture on CUDA.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hebbbench import rules
from hebbbench.measure import variants
from hebbbench.rules import graphed
from hebbbench.store import Status
from hebbbench.suites.grid import Case, SweepLayer, Variant
from hebbbench.suites.workload import CaseWorkload

POOL = 10_000_000  # bytes the stand-in's private pool reserves: far above any tensor of these cases
FH_GRAPH = Variant("fh-graph")
LAYER = SweepLayer(name="conv", kind="conv", in_channels=2, out_channels=4, kernel_size=3, input_size=(6, 6))


class ReplayOnCPU:
    """A captured graph's stand-in: a replay reruns the captured function into the static output."""

    replaying = False

    def __init__(self, fn, output, inputs, corrupt_input: bool = False):
        self.fn, self.output, self.inputs, self.corrupt_input = fn, output, inputs, corrupt_input

    def replay(self):
        ReplayOnCPU.replaying = True  # the graph's own work: one launch on a GPU, no copy of the caller's
        try:
            if self.corrupt_input:  # a graph that does not read what was staged
                self.inputs[0].zero_()
            self.output.copy_(self.fn())
        finally:
            ReplayOnCPU.replaying = False


def capture_on_cpu(fn, inputs, corrupt_step_input: bool = False):
    for _ in range(graphed.WARMUP_RUNS):
        fn()
    out = fn()
    out.fill_(math.nan)  # a captured graph's output holds nothing until it is replayed
    corrupt = corrupt_step_input and len(inputs) == 1  # a step's capture has one input, the batch
    return graphed.Captured(ReplayOnCPU(fn, out, inputs, corrupt), inputs, out, POOL)


class CopiesSeen(TorchFunctionMode):
    """Every copy_ and clone a call makes outside a (stand-in) graph replay."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not ReplayOnCPU.replaying and func in (torch.Tensor.copy_, torch.Tensor.clone, torch.clone):
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def workload(what: str, rule: str = "swta", device: str = "cpu") -> CaseWorkload:
    case = Case("t", rule, (), LAYER, 2, "float32", device, what, (Variant("fh"), FH_GRAPH), "fh")
    return CaseWorkload(case, seed=0)


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(graphed, "capture", capture_on_cpu)


def check(work: CaseWorkload):
    return variants.check(lambda: work.prepare(FH_GRAPH), work.case.device, work.reference(), 1e-4)


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_the_timed_update_is_a_bare_replay_on_inputs_staged_before_it(on_cpu, rule):
    """Defect 5a: no copy of x, y, w in and none of ΔW out inside the timed call; the case's own inputs."""
    work = workload("update", rule)
    prepared = work.prepare(FH_GRAPH)
    prepared.compile()
    prepared.reset()
    with CopiesSeen() as copies:
        first = prepared.call()
        second = prepared.call()
    assert copies.seen == []
    assert first is second  # the static output, not a copy
    fh = rules.get(rule, "fh").update(work.x, work.y, work.w0)  # what fh is timed on
    torch.testing.assert_close(first, fh)
    checked = prepared.delta()  # the check's copy, taken outside the timing
    assert checked.data_ptr() != first.data_ptr()
    torch.testing.assert_close(checked, fh)


def test_the_step_check_runs_the_whole_step_graph_not_the_update_graph(on_cpu, monkeypatch):
    """Defect 5b: a whole-step graph that does not read its staged batch is found wrong."""
    outcome, prepared = check(workload("step"))
    assert outcome.status == Status.OK and outcome.error <= 1e-4 and prepared is not None
    monkeypatch.setattr(graphed, "capture", lambda fn, inputs: capture_on_cpu(fn, inputs, corrupt_step_input=True))
    outcome, prepared = check(workload("step"))  # its update graph is sound: only the step's is broken
    assert outcome.status == Status.WRONG and prepared is None and outcome.error > 1e-2


@pytest.mark.parametrize("what", ["update", "step"])
def test_the_peak_includes_the_graph_pool_and_static_inputs_held_since_capture(on_cpu, what):
    """Defect 5c: the private pool is allocated at capture, before the peak counter starts."""
    work = workload(what)
    outcome, _ = check(work)
    assert outcome.status == Status.OK
    staged = work.x.nbytes + work.y.nbytes + work.w0.nbytes if what == "update" else work.images.nbytes
    assert POOL + staged <= outcome.peak_bytes < 2 * POOL  # the timed graph's pool only, not the check's


def test_capture_needs_cuda():
    with pytest.raises(rules.Unavailable, match="needs tensors on a CUDA device"):
        graphed.capture(lambda: torch.ones(2), (torch.ones(2),))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA graphs)")
@pytest.mark.parametrize("what", ["update", "step"])
def test_on_cuda_the_graphs_are_checked_and_their_pool_is_counted(what):
    work = workload(what, device="cuda")
    outcome, prepared = check(work)
    assert outcome.status == Status.OK and outcome.error <= 1e-4
    rule = prepared.held.__self__
    pools = [c.pool_bytes for c in rule._captures()]
    assert pools and all(p >= c.output.nbytes for p, c in zip(pools, rule._captures()))
    assert outcome.peak_bytes >= rule.held_bytes()
    if what == "update":
        prepared.reset()
        with CopiesSeen() as copies:
            prepared.call()
        assert copies.seen == []
