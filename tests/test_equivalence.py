"""Every registered (rule, impl) equals the float64 per-sample reference (docs/design.md §2).

Generated from the registry: a newly registered implementation is covered automatically.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import BUILTIN_PAIRS, BUILTIN_RULES, rule_inputs, skip_unavailable
from hebbbench import rules
from hebbbench.measure.numerics import relative_error, rounding_tolerance, terms_error

FLOAT32_RTOL = 1e-5

#: the registry as built before any test module was imported (conftest.py): the same tests in any
#: order of collection, whatever other modules' test doubles (registered in a scope only) do.
PAIRS = BUILTIN_PAIRS


def cpu_pairs(compiles: bool | None = None):
    """The registered pairs (those that compile per shape, or not), skipped if not for the CPU."""
    for rule, impl in PAIRS:
        cls = rules.lookup(rule, impl)
        if compiles is not None and cls.compiles != compiles:
            continue
        marks = [] if cls.supports("cpu") else [pytest.mark.skip(reason=f"{rule}/{impl} does not run on the CPU")]
        yield pytest.param(rule, impl, id=f"{rule}-{impl}", marks=marks)


def test_generated_tests_cover_the_registry_as_built():
    """No collected test module left a double in the registry (it would be listed here); every built-in is in."""
    assert PAIRS == rules.available() and BUILTIN_RULES == rules.rules()
    assert {("swta", "fh"), ("hpca", "fh"), ("swta", "naive"), ("hpca", "loop"), ("swta", "fh-triton")} <= set(PAIRS)


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
    x, y, w = rule_inputs(n, m, d, seed, responses=responses)
    try:
        dw = r.update(x, y, w)
    except rules.Unavailable as why:
        skip_unavailable(why)
    ref = r.reference(x.double(), y.double(), w.double())
    assert dw.shape == (m, d) and dw.dtype == torch.float32
    assert within_tolerance(r, dw, ref, x, y, w)


def within_tolerance(r, dw, ref, x, y, w) -> bool:
    """Within the impl's rtol of ‖ΔW‖, or, where ΔW's terms cancel, within the rounding of those terms."""
    if relative_error(dw, ref) <= (r.rtol or FLOAT32_RTOL):
        return True
    magnitude = r.magnitude(x, y, w)
    return magnitude is not None and (
        terms_error(dw, ref, magnitude) <= rounding_tolerance(torch.float32, r.compute_dtype))


@pytest.mark.parametrize("rule, impl", list(cpu_pairs(compiles=False)))
@settings(max_examples=30, deadline=None)
@given(**SHAPES)
@example(n=3, m=17, d=5, group=8, seed=0, responses="linear")  # N < M, M not a multiple of G
@example(n=1, m=4, d=6, group=8, seed=1, responses="linear")  # N = 1
@example(n=9, m=6, d=1, group=4, seed=2, responses="independent")  # D = 1
@example(n=5, m=1, d=3, group=8, seed=3, responses="linear")  # M = 1
@example(n=1, m=17, d=1, group=1, seed=0, responses="linear")  # cancels: see test_cancelling_draws_...
@example(n=3, m=4, d=1, group=11, seed=2091905660, responses="linear")
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
        skip_unavailable(why)
    assert relative_error(dw, r.reference(x, y, w)) < tol


def ranked(row: torch.Tensor) -> list[int]:
    """Neuron indices of one response row, largest first, ties to the lower index."""
    return sorted(range(len(row)), key=lambda j: (-row[j].item(), j))


@pytest.mark.parametrize("rule", BUILTIN_RULES)
def test_reference_is_the_per_sample_formula(rule):
    """The reference against a direct evaluation of the sums of docs/design.md §2 for one neuron."""
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
    elif type(r).__module__.startswith("hebbbench."):
        pytest.fail(f"no hand-written sum for {rule}: a rule of hebbbench's must be checked here")
    else:
        pytest.skip(f"{rule} is a plugin's rule ({type(r).__module__}): no hand-written sum here")
    torch.testing.assert_close(ref[i], expected)


@pytest.mark.parametrize("rule", BUILTIN_RULES)
def test_magnitude_bounds_the_update_and_equals_it_when_no_term_is_negative(rule):
    r = rules.rule_class(rule)()
    x, y, w = rule_inputs(23, 11, 7, seed=9, dtype=torch.float64)
    magnitude = r.magnitude(x, y, w)
    assert magnitude is not None, f"{rule} states no magnitude: its cancelling draws would be unchecked"
    assert magnitude.shape == (11, 7) and magnitude.dtype == torch.float64
    assert (r.reference(x, y, w).abs() <= magnitude * (1 + 1e-12)).all()
    if rule != "krotov":  # with x, y ≥ 0 ≥ w every term is ≥ 0 (Krotov's anti-Hebbian g < 0 aside): nothing cancels
        x, y, w = x.abs(), y.abs(), -w.abs()
        torch.testing.assert_close(r.magnitude(x, y, w), r.reference(x, y, w))


@pytest.mark.parametrize("impl", ["fh", "fh-bf16"])
def test_a_cancelling_update_is_held_to_the_rounding_of_its_terms(impl):
    """M = D = 1 SWTA: ΔW = mean(x) − w = 2.5e-9 here, from terms of size 0.2.

    A float32 (or bf16) result is 0 or off by a rounding step of 0.2 (1.5e-8), so no relative
    bound on ‖ΔW‖ can hold; the error against the terms' size is that of any sound computation.
    """
    r = rules.get("swta", impl=impl)
    x, y, w = torch.tensor([[0.1], [0.2], [0.3]]), torch.ones(3, 1), torch.tensor([[0.2]])
    dw, ref = r.update(x, y, w), r.reference(x, y, w)
    assert relative_error(dw, ref) > (r.rtol or FLOAT32_RTOL)
    assert terms_error(dw, ref, r.magnitude(x, y, w)) <= rounding_tolerance(torch.float32, r.compute_dtype)
    assert within_tolerance(r, dw, ref, x, y, w)


@pytest.mark.parametrize("rule, impl", [(rule, "fh") for rule in BUILTIN_RULES] + [("hpca", "fh-bf16")])
def test_the_tolerance_rejects_an_update_off_by_more_than_rounding(rule, impl):
    r = rules.get(rule, impl=impl)
    x, y, w = rule_inputs(23, 11, 7, seed=5)
    ref = r.reference(x.double(), y.double(), w.double())
    assert within_tolerance(r, r.update(x, y, w), ref, x, y, w)
    off = 10 * (r.rtol or FLOAT32_RTOL)  # ten times the relative bound, in every entry
    assert not within_tolerance(r, (ref * (1 + off)).float(), ref, x, y, w)
