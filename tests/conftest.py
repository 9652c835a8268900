"""Shared test helpers: seeded inputs for the rules, the ``--repeats`` option, a planted slowdown,
the command line run in-process, test doubles registered for one test or module only."""

from __future__ import annotations

import os

import functools
import sys
import warnings
from contextlib import contextmanager
from typing import NoReturn

import pytest
import torch

from hebbbench import cli, rules
from hebbbench.rules.hpca import HPCAFastHebb

#: repeats of each real-timing comparison test when --repeats is not given (one: CI's selfcheck then
#: gates a real ci run against the committed baseline as well; tests/test_gate_bench.py repeats 20)
DEFAULT_REPEATS = 1


def pytest_addoption(parser):
    parser.addoption("--repeats", type=int, default=DEFAULT_REPEATS,
                     help=f"repeats of each real-timing comparison test (default {DEFAULT_REPEATS}; "
                          "e.g. pytest -m bench --repeats 20)")
    parser.addoption("--runs", type=int, default=5,
                     help="independent runs of the grid in tests/bench/test_reproducibility.py (default 5)")


def pytest_generate_tests(metafunc):
    if "repeat" in metafunc.fixturenames:
        metafunc.parametrize("repeat", range(metafunc.config.getoption("repeats")))


def rule_inputs(n: int, m: int, d: int, seed: int, dtype=torch.float32, responses: str = "linear"):
    """x (N,D), w (M,D) standard normal; y (N,M) = x wᵀ scaled to |y| ≤ 1, or uniform in [-1, 1].

    |y| ≤ 1 keeps y/T within SWTA's realistic range (cosine similarities at T = 0.02).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(m, d, generator=g, dtype=torch.float64)
    if responses == "linear":
        y = x @ w.T
        y /= y.abs().max().clamp_min(1e-12)
    else:
        y = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    return x.to(dtype), y.to(dtype), w.to(dtype)


class HPCATwice(HPCAFastHebb):
    """HPCA-fh that computes its update twice, on two copies of its inputs: a planted 2x slowdown.

    Real work rather than a sleep: it runs on the same units, caches and data as fh, so it
    is slowed by the machine's load exactly as fh is, as a real regression would be (a sleep
    uses no CPU, keeps its length whatever the load, and would need a clock inside the
    timed call to be proportional).
    """

    def delta(self, x, y, w):
        # the first pass runs on copies of the inputs, made once (the harness's untimed first call):
        # recomputing on the same inputs would find them in cache and cost less than a second cold pass
        copies = getattr(self, "_copies", {})
        self._copies = copies
        key = (x.data_ptr(), y.data_ptr(), w.data_ptr(), x.shape, y.shape)
        if key not in copies:
            copies[key] = (x.clone(), y.clone(), w.clone())
        super().delta(*copies[key])
        return super().delta(x, y, w)


@contextmanager
def planted_slowdown():
    """While the block runs, ("hpca", "fh") is HPCATwice: same label, same results, twice the work."""
    with rules.scoped():  # the built-in fh again on exit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overwriting hpca/fh": on purpose
            rules.register("hpca", "fh", overwrite=True)(HPCATwice)
        yield


# -- the registry: built-in as imported; test doubles only in a scope ------------------------
def registry_state() -> tuple[dict, dict]:
    """Everything the registry holds: rule -> class, and (rule, impl) -> (class, its impl attribute)."""
    return ({rule: rules.rule_class(rule) for rule in rules.rules()},
            {key: (rules.lookup(*key), rules.lookup(*key).impl) for key in rules.available()})


#: the registry as hebbbench builds it (plugins included), before any test module is imported:
#: generated tests (test_equivalence.py) parametrize over these, whatever the collection order.
BUILTIN = registry_state()
BUILTIN_RULES = sorted(BUILTIN[0])
BUILTIN_PAIRS = sorted(BUILTIN[1])


@pytest.fixture(autouse=True)
def _registry_left_as_found():
    """Every test leaves the registry as it found it: a registration that leaks fails the test."""
    before = registry_state()
    yield
    after = registry_state()
    added, removed = sorted(after[1].keys() - before[1].keys()), sorted(before[1].keys() - after[1].keys())
    assert after == before, (f"the registry changed during this test (added {added}, removed {removed}, or a "
                             "class replaced): register test doubles with the `register` fixture or rules.scoped()")


@pytest.fixture
def register():
    """``register(rule, impl, overwrite=False)``: rules.register for this test only (as decorator or call).

    Everything registered through it (or otherwise changed in the registry) is undone after the test.
    """
    with rules.scoped():
        yield rules.register


FAILING = "HEBBBENCH_TEST_FAILING"


class Flaky(rules.HPCA):
    """HPCA-fh that raises while the variable FAILING is set: a case that did not run (hpca/test-flaky,
    see `flaky`). The switch is an environment variable because the worker processes that measure
    inherit the environment (and import this class by reference)."""

    def delta(self, x, y, w):
        if os.environ.get(FAILING):
            raise RuntimeError("injected failure")
        return rules.get("hpca").delta(x, y, w)


class FlakySwitch:
    """``flaky.failing = True`` makes Flaky raise, in this process and in the workers it starts."""

    @property
    def failing(self) -> bool:
        return bool(os.environ.get(FAILING))

    @failing.setter
    def failing(self, value: bool) -> None:
        if value:
            os.environ[FAILING] = "1"
        else:
            os.environ.pop(FAILING, None)


CRASH = "HEBBBENCH_TEST_CRASH"


class Crash(rules.HPCA):
    """HPCA-fh whose process exits at once (no exception, no cleanup) on inputs of CRASH rows (an
    integer; any N when it is "any"): a worker process that dies, as one hit by a segfault or the
    OOM killer would."""

    def delta(self, x, y, w):
        if os.environ.get(CRASH) in ("any", str(x.shape[0])):
            os._exit(3)
        return rules.get("hpca").delta(x, y, w)


POISON = "HEBBBENCH_TEST_POISON"


class Poison(rules.HPCA):
    """HPCA-fh that, on inputs of POISON rows, leaves its device failed the way a sticky CUDA error
    does: its own call returns, and the next synchronisation of the device (the release after the
    case) raises, in this process and forever after."""

    def delta(self, x, y, w):
        if os.environ.get(POISON) == str(x.shape[0]):
            from hebbbench.measure import devices

            def release(device, collect=False):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            devices.release = release
        return rules.get("hpca").delta(x, y, w)


@pytest.fixture(scope="module")
def flaky():
    """Flaky registered as ("hpca", "test-flaky") for the tests of one module (module-scoped fixtures use it)."""
    with rules.registered("hpca", "test-flaky", Flaky):
        switch = FlakySwitch()
        yield switch
        switch.failing = False


@functools.cache
def compiler_missing() -> str | None:
    """Why torch.compile (inductor) compiles nothing at all on this machine, or None where it works."""
    try:
        torch.compile(lambda t: t * 2 + 1, backend="inductor", dynamic=False)(torch.ones(3))
    except Exception as error:  # whatever stops a trivial compile is the machine's reason
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:300]
    return None


def skip_unavailable(why: rules.Unavailable) -> NoReturn:
    """Skip a test whose implementation raised Unavailable, only where the machine lacks what it needs.

    A compile failure (CompileUnavailable) skips only where torch.compile compiles nothing (no C++
    compiler, ...); where a trivial function compiles, the implementation's own code is at fault: fail.
    """
    from hebbbench.rules.compiled import CompileUnavailable

    if isinstance(why, CompileUnavailable):
        missing = compiler_missing()
        if missing is None:
            pytest.fail(f"torch.compile works on this machine, yet: {why}")
        pytest.skip(f"{why} (torch.compile compiles nothing here: {missing})")
    pytest.skip(str(why))


def spy_step_forms(monkeypatch, impl: str) -> list:
    """Record each call of the whole-step forms that ``impl``'s ``wrap_step`` returns (one entry, the layer, per call).

    ``fh-compiled``: its own wrap_step, traced by dynamo into a graph run by the cheap "eager"
    backend (its updates too). ``fh-graph`` needs CUDA: on the CPU a stand-in that runs here,
    with fh's update and, as its step form, the eager step: enough to see where the forms are used.
    """
    from hebbbench.rules import compiled, graphed

    calls: list = []
    if impl == "fh-compiled":
        mixin, real = compiled.CompiledStep, compiled.CompiledStep.wrap_step
        monkeypatch.setattr(compiled, "BACKEND", "eager")
    else:
        mixin = graphed.Graphed
        monkeypatch.setattr(mixin, "device_types", ("cpu", "cuda"))
        monkeypatch.setattr(mixin, "delta", lambda self, x, y, w: self.eager_form().delta(x, y, w))

        def real(self, layer, step_with):
            return step_with(self.eager_form())

    def wrap_step(self, layer, step_with):
        form = real(self, layer, step_with)

        def step(inputs):
            calls.append(layer)
            return form(inputs)
        return step

    monkeypatch.setattr(mixin, "wrap_step", wrap_step)
    return calls


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``hebbbench ARGS...`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["hebbbench", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err
