"""The harness's timer against torch.utils.benchmark on a plain matrix product (run with -m bench).

Both time the same float32 product on the CPU with the same thread count (torch.utils.benchmark
defaults to one thread) and no cache flush (it does none); the medians must agree within 5 %.
The numbers are printed (pytest -s). Run it on a quiet machine: other processes competing for
the cores delay single calls (what hebbbench times) more than torch.utils.benchmark's blocks.
"""

from __future__ import annotations

import pytest
import torch
import torch.utils.benchmark as tb

from hebbbench.measure.timing import TimingPolicy, time_interleaved

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("side", [256, 512])
def test_timer_agrees_with_torch_utils_benchmark(side):
    a, b = torch.randn(side, side), torch.randn(side, side)
    policy = TimingPolicy(warmup_s=0.5, min_rounds=50, max_rounds=400, case_seconds=3.0, flush_cache=False)
    ours, theirs = [], []
    for _ in range(3):  # alternate the two tools so drift hits both
        ours.append(time_interleaved({"mm": lambda: a @ b}, "cpu", policy)["mm"].median)
        timer = tb.Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
        theirs.append(timer.blocked_autorange(min_run_time=1.0).median)
    ours_s, theirs_s = sorted(ours)[1], sorted(theirs)[1]
    print(f"\n{side}x{side} matmul: hebbbench {ours_s * 1e6:.1f} µs, torch.utils.benchmark {theirs_s * 1e6:.1f} µs, "
          f"ratio {ours_s / theirs_s:.3f}")
    assert abs(ours_s / theirs_s - 1) < 0.05
