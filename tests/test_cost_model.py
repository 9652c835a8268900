"""Cost models: every implementation's analytic counts, roofline predictions, measured peak memory."""

from __future__ import annotations

import math

import pytest
import torch

from hebbbench import rules
from hebbbench.measure import devices
from hebbbench.measure.ceilings import Ceilings
from hebbbench.measure.costmodel import roofline_seconds

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


def test_cpu_peak_sees_a_large_temporary():
    out, peak, seconds = devices.measure_peak(lambda: torch.ones(2**24).sum(), "cpu")  # 64 MiB, freed at once
    assert out.item() == 2**24 and seconds > 0
    assert devices.memory_method("cpu") == "tensor-allocations" and peak >= 64 * 2**20
    _, small, _ = devices.measure_peak(lambda: torch.ones(2**10).sum(), "cpu")
    assert small < 2**20
    assert devices.available_memory("cpu") > 0


def test_roofline_is_the_slower_of_compute_and_traffic_plus_overhead():
    ceilings = Ceilings("cpu", "float32", matmul_flop_per_s=1e9, matmul_size=1, copy_byte_per_s=1e9, copy_bytes=1)
    fh = rules.get("hpca", "fh")
    n, m, d = 100, 10, 20
    expected = max(fh.flops(n, m, d), fh.bytes_moved(n, m, d, 4)) / 1e9
    assert roofline_seconds(fh, n, m, d, 4, ceilings) == pytest.approx(expected)
    naive = rules.get("hpca", "naive", group_size=8)
    assert roofline_seconds(naive, n, m, d, 4, ceilings) == pytest.approx(
        max(naive.flops(n, m, d), naive.bytes_moved(n, m, d, 4)) / 1e9 + naive.overhead_seconds(n, m, d))


def test_total_memory_is_the_machines_and_available_memory_what_is_free_now():
    from hebbbench.measure import devices

    total, free = devices.total_memory("cpu"), devices.available_memory("cpu")
    assert 0 < free <= total
    assert devices.budget_memory("cpu") == pytest.approx(0.8 * devices.available_memory("cpu"), rel=0.05)
