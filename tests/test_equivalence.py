"""Every registered (rule, impl) equals the float64 per-sample reference (DESIGN.md §2).

Generated from the registry: a newly registered implementation is covered automatically.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import rule_inputs
from hebbbench import rules
from hebbbench.numerics import MIN_ENTRIES_FOR_RTOL, relative_error

FLOAT32_RTOL = 1e-5

PAIRS = rules.available()


def cpu_pairs(compiles: bool | None = None):
    """The registered pairs (those that compile per shape, or not), skipped if not for the CPU."""
    for rule, impl in PAIRS:
        cls = rules.lookup(rule, impl)
        if compiles is not None and cls.compiles != compiles:
            continue
        marks = [] if cls.supports("cpu") else [pytest.mark.skip(reason=f"{rule}/{impl} does not run on the CPU")]
        yield pytest.param(rule, impl, id=f"{rule}-{impl}", marks=marks)


SHAPES = dict(
    n=st.integers(1, 40), m=st.integers(1, 20), d=st.integers(1, 24),
    group=st.integers(1, 24), seed=st.integers(0, 2**31 - 1),
    responses=st.sampled_from(["linear", "independent"]),
)


def check_float32(rule, impl, n, m, d, group, seed, responses):
    cls = rules.lookup(rule, impl)
    # the drawn group size goes to whichever grouping option the impl has (neurons per group/block)
    options = {name: group for name in ("group_size", "block_size") if name in cls.default_options()}
    r = rules.get(rule, impl=impl, **options)
    if cls.compute_dtype is not None and m * d < MIN_ENTRIES_FOR_RTOL:
        return  # a reduced-precision rtol holds for ΔW with enough entries only (numerics.py)
    x, y, w = rule_inputs(n, m, d, seed, responses=responses)
    try:
        dw = r.update(x, y, w)
    except rules.Unavailable as why:
        pytest.skip(str(why))
    ref = r.reference(x.double(), y.double(), w.double())
    assert dw.shape == (m, d) and dw.dtype == torch.float32
    assert relative_error(dw, ref) <= (cls.rtol or FLOAT32_RTOL)


@pytest.mark.parametrize("rule, impl", list(cpu_pairs(compiles=False)))
@settings(max_examples=30, deadline=None)
@given(**SHAPES)
@example(n=3, m=17, d=5, group=8, seed=0, responses="linear")  # N < M, M not a multiple of G
@example(n=1, m=4, d=6, group=8, seed=1, responses="linear")  # N = 1
@example(n=9, m=6, d=1, group=4, seed=2, responses="independent")  # D = 1
@example(n=5, m=1, d=3, group=8, seed=3, responses="linear")  # M = 1
def test_float32_matches_float64_reference(rule, impl, n, m, d, group, seed, responses):
    check_float32(rule, impl, n, m, d, group, seed, responses)


@pytest.mark.slow
@pytest.mark.parametrize("rule, impl", list(cpu_pairs(compiles=True)))
@settings(max_examples=2, deadline=None)
@given(**SHAPES)
@example(n=5, m=1, d=3, group=8, seed=3, responses="linear")  # M = 1
def test_compiled_float32_matches_float64_reference(rule, impl, n, m, d, group, seed, responses):
    """Implementations that compile per shape: fewer shapes, as each one costs a compilation."""
    check_float32(rule, impl, n, m, d, group, seed, responses)


@pytest.mark.parametrize("rule, impl", list(cpu_pairs()))
def test_float64_agrees_to_rounding(rule, impl):
    """In float64 an implementation is exact to rounding, unless it computes in a fixed lower precision."""
    cls = rules.lookup(rule, impl)
    r = rules.get(rule, impl=impl)
    x, y, w = rule_inputs(23, 11, 7, seed=5, dtype=torch.float64)
    tol = 1e-12 if cls.compute_dtype is None else cls.rtol
    try:
        dw = r.update(x, y, w)
    except rules.Unavailable as why:
        pytest.skip(str(why))
    assert relative_error(dw, r.reference(x, y, w)) < tol


def ranked(row: torch.Tensor) -> list[int]:
    """Neuron indices of one response row, largest first, ties to the lower index."""
    return sorted(range(len(row)), key=lambda j: (-row[j].item(), j))


@pytest.mark.parametrize("rule", rules.rules())
def test_reference_is_the_per_sample_formula(rule):
    """The reference against a direct evaluation of DESIGN.md's sums for one neuron."""
    x, y, w = rule_inputs(6, 4, 3, seed=7, dtype=torch.float64)
    r = rules.rule_class(rule)()
    ref = r.reference(x, y, w)
    i = 2
    if rule == "swta":
        p = torch.softmax(y / r.temperature, dim=1)
        expected = sum(p[n, i] * (x[n] - w[i]) for n in range(6)) / 6
    elif rule == "hpca":
        expected = sum(y[n, i] * (x[n] - sum(y[n, k] * w[k] for k in range(i + 1))) for n in range(6)) / 6
    elif rule == "oja":
        expected = sum(y[n, i] * (x[n] - y[n, i] * w[i]) for n in range(6)) / 6
    elif rule == "kwta":
        won = [i in ranked(y[n])[: r.k] for n in range(6)]
        expected = sum(float(won[n]) * (x[n] - w[i]) for n in range(6)) / 6
    elif rule == "krotov":
        g = [1.0 if ranked(y[n])[0] == i else -r.anti_hebbian if ranked(y[n])[r.rank - 1] == i else 0.0
             for n in range(6)]
        expected = sum(g[n] * (x[n] - y[n, i] * w[i]) for n in range(6)) / 6
    elif rule == "hebb":
        expected = sum(y[n, i] * x[n] - r.decay * w[i] for n in range(6)) / 6
    else:
        pytest.skip(f"no hand-written sum for {rule}")
    torch.testing.assert_close(ref[i], expected)
