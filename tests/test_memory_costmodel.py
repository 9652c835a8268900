"""Peak memory of a call and roofline predictions from the registry's cost model."""

from __future__ import annotations

import pytest
import torch

from hebbbench import rules
from hebbbench.costmodel import Ceilings, roofline_seconds
from hebbbench.memory import available_bytes, measure_peak


def test_cpu_peak_sees_a_large_temporary():
    out, peak = measure_peak(lambda: torch.ones(2**24).sum(), "cpu")  # 64 MiB, freed before returning
    assert out.item() == 2**24
    if peak.method == "unavailable":
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert peak.method == "rss_hwm" and peak.bytes >= 60 * 2**20
    assert available_bytes("cpu") > 0


def test_roofline_is_the_slower_of_compute_and_traffic_plus_overhead():
    ceilings = Ceilings(flops_per_s=1e9, bytes_per_s=1e9, method="test")
    fh = rules.get("hpca", "fh")
    n, m, d = 100, 10, 20
    expected = max(fh.flops(n, m, d), fh.bytes_moved(n, m, d, 4)) / 1e9
    assert roofline_seconds(fh, n, m, d, 4, ceilings) == pytest.approx(expected)
    naive = rules.get("hpca", "naive", group_size=8)
    assert roofline_seconds(naive, n, m, d, 4, ceilings) == pytest.approx(
        max(naive.flops(n, m, d), naive.bytes_moved(n, m, d, 4)) / 1e9 + naive.overhead_seconds(n, m, d))
