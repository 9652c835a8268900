"""Every implementation's analytic cost model answers for the paper's shapes and degenerate ones."""

from __future__ import annotations

import math

import pytest

from hebbbench import rules

SHAPES = [(1, 1, 1), (3, 17, 5), (9216, 128, 864), (32, 4096, 4096)]


@pytest.mark.parametrize("rule, impl", rules.available())
def test_cost_model_is_finite_and_positive(rule, impl):
    r = rules.get(rule, impl=impl)
    for n, m, d in SHAPES:
        values = [r.flops(n, m, d), r.bytes_moved(n, m, d, 4), r.memory(n, m, d, 4), r.overhead_seconds(n, m, d)]
        assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in values), (n, m, d, values)
        assert values[0] >= 2.0 * n * m * d  # every form does at least the Hebbian product's work


def test_reduced_precision_impls_state_their_precision():
    for impl in ("fh-bf16", "fh-tf32"):
        for rule in ("swta", "hpca"):
            cls = rules.lookup(rule, impl)
            assert cls.rtol is not None and 1e-5 < cls.rtol < 0.1
    assert rules.lookup("swta", "fh-bf16").compute_dtype is not None
    assert rules.lookup("swta", "fh-tf32").compute_dtype is None  # float64 inputs stay float64
