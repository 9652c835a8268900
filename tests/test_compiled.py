"""fh-compiled: compiled once per shape, never silently eager, prepare() outside timing, clear failures."""

from __future__ import annotations

import pytest
import torch

import conftest
from conftest import rule_inputs, skip_unavailable
from hebbbench import HebbianLinear, rules
from hebbbench.measure.numerics import relative_error
from hebbbench.rules import compiled


def product(x, y, w):
    return y.T @ x - w  # a stand-in update, (M,D)


def test_every_new_shape_is_compiled_beyond_dynamos_default_limit(monkeypatch):
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(tuple(example_inputs[0].shape))
        return gm.forward

    monkeypatch.setattr(compiled, "BACKEND", counting_backend)
    for n in range(1, 13):  # 12 shapes > the default limit of 8 graphs per function
        x, y, w = rule_inputs(n + 1, 3, 4, seed=n)
        torch.testing.assert_close(compiled.call_compiled(product, x, y, w), product(x, y, w))
        compiled.call_compiled(product, x, y, w)  # the same shape again: no new graph
    assert len(graphs) == 12


def test_other_compiles_of_the_same_function_are_never_silently_eager(monkeypatch):
    """A function's graphs are shared by every torch.compile of it (the update's and the layer
    step's): after fh-compiled's first use, a second compile of it past 8 shapes still compiles."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(tuple(example_inputs[0].shape))
        return gm.forward

    def twin(x, y, w):
        return y.T @ x + w

    monkeypatch.setattr(compiled, "BACKEND", counting_backend)
    x, y, w = rule_inputs(2, 3, 4, seed=0)
    compiled.call_compiled(twin, x, y, w)
    other = torch.compile(twin, dynamic=False, backend=counting_backend)
    for n in range(3, 15):
        x, y, w = rule_inputs(n, 3, 4, seed=n)
        torch.testing.assert_close(other(x, y, w), twin(x, y, w))
    assert len(graphs) == 13


def test_compile_failure_raises_unavailable_with_the_reason(monkeypatch):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled, "BACKEND", broken_backend)
    x, y, w = rule_inputs(5, 3, 4, seed=0)
    with pytest.raises(rules.Unavailable, match="could not compile product for cpu.*no C\\+\\+ compiler"):
        compiled.call_compiled(product, x, y, w)


def test_a_compile_failure_skips_a_test_only_where_torch_compile_compiles_nothing(monkeypatch):
    why = compiled.CompileUnavailable("torch.compile could not compile product for cpu: InductorError: boom")
    monkeypatch.setattr(conftest, "compiler_missing", lambda: None)  # a trivial function compiles here
    with pytest.raises(pytest.fail.Exception, match="torch.compile works on this machine, yet: .*boom"):
        skip_unavailable(why)
    monkeypatch.setattr(conftest, "compiler_missing", lambda: "InvalidCxxCompiler: No working C++ compiler found")
    with pytest.raises(pytest.skip.Exception, match="boom .*compiles nothing here: InvalidCxxCompiler"):
        skip_unavailable(why)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_prepare_compiles_outside_timing_and_layers_use_it(rule):
    r = rules.get(rule, impl="fh-compiled")
    x, y, w = rule_inputs(12, 5, 7, seed=1)
    try:
        first = r.prepare(x, y, w)
    except rules.Unavailable as why:
        skip_unavailable(why)
    seen = len(compiled._SEEN)
    assert first > 0 and r.prepare(x, y, w) < first  # the second is one compiled call
    assert len(compiled._SEEN) == seen
    assert relative_error(r.update(x, y, w), rules.get(rule, impl="fh").update(x, y, w)) < 1e-5

    layer = HebbianLinear(7, 5, rule=rule, impl="fh-compiled", lr=0.1, generator=torch.Generator().manual_seed(0))
    reference = HebbianLinear(7, 5, rule=rule, impl="fh", lr=0.1, generator=torch.Generator().manual_seed(0))
    for trained in (layer, reference):  # hebbian_step runs under torch.no_grad()
        trained.hebbian_step(x)
    assert relative_error(layer.weight, reference.weight) < 1e-5


@pytest.mark.parametrize("what", ["update", "step"])
def test_a_case_compiles_once_across_prepare_check_and_timed_calls(monkeypatch, what):
    """The harness prepares fh-compiled in the grad mode of its timed calls (torch.no_grad()):
    dynamo guards a graph on grad mode, so preparing in another mode compiled the same graph
    again on the first timed call, counted in first_call_s and the peak memory.

    A step case compiles two functions: the layer step (timed) and the update (the check's ΔW).
    """
    from hebbbench.measure.variants import check
    from hebbbench.suites.grid import Case, SweepLayer, Variant
    from hebbbench.suites.workload import CaseWorkload

    graphs = []

    def counting_backend(gm, example_inputs):
        inputs = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
        graphs.append((*inputs, *(tuple(t.shape) for t in example_inputs)))
        return gm.forward

    monkeypatch.setattr(compiled, "BACKEND", counting_backend)
    layer = SweepLayer("fc", "linear", in_features=11, out_features=6)  # shapes no other test compiles
    case = Case("s", "swta", (), layer, 13, "float32", "cpu", what, (Variant("fh-compiled"),), None)
    workload = CaseWorkload(case, seed=0)
    outcome, prepared = check(lambda: workload.prepare(Variant("fh-compiled")), "cpu", workload.reference(), 1e-4)
    assert prepared is not None, (outcome.status, outcome.reason)
    assert outcome.compile_s > 0
    assert len(graphs) == len(set(graphs)) == (1 if what == "update" else 2), graphs  # none compiled twice
    checked = list(graphs)
    for _ in range(3):  # timed calls, as the timer makes them
        if prepared.reset:
            prepared.reset()
        prepared.call()
    assert graphs == checked  # nothing compiled while timed
