"""The order of the interleaved rounds: a Williams design, balanced for position and for neighbour."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise, permutations

import pytest

from hebbbench.measure.timing import TimingPolicy, round_orders, time_interleaved


@pytest.mark.parametrize("k", range(1, 10))
def test_every_implementation_runs_in_every_position_and_after_every_other_equally_often(k):
    orders = round_orders(k)
    assert len(orders) == (2 * k if k % 2 and k > 1 else k)  # k = 1: its mirror is itself
    assert all(sorted(order) == list(range(k)) for order in orders)
    positions = Counter((i, position) for order in orders for position, i in enumerate(order))
    assert set(positions.values()) == {len(orders) // k}
    if k > 1:
        neighbours = Counter(pair for order in orders for pair in pairwise(order))
        assert set(neighbours) == set(permutations(range(k), 2))  # every ordered pair of neighbours ...
        assert len(set(neighbours.values())) == 1  # ... equally often


def test_the_rounds_follow_the_design(monkeypatch):
    calls = []
    names = ["a", "b", "c", "d"]
    policy = TimingPolicy(warmup_s=0.0, min_rounds=8, max_rounds=8, min_rounds_capped=8, target_rel_iqr=1e-9,
                          flush_cache=False)
    results = time_interleaved({name: (lambda name=name: calls.append(name)) for name in names}, "cpu", policy)
    timed = calls[len(names):]  # after one warm-up round
    assert [timed[i:i + 4] for i in range(0, 32, 4)] == [[names[i] for i in order] for order in round_orders(4) * 2]
    assert all(len(r.samples) == 8 for r in results.values())


@pytest.mark.parametrize("stop", ["target", "time cap", "max_rounds"])
def test_timing_stops_only_after_a_whole_cycle(stop):
    """Three calls: a Williams cycle of 6 rounds. Whatever stops the timing (the IQR target after
    min_rounds, the time cap, max_rounds), the samples kept are a whole number of cycles."""
    policy = {"target": TimingPolicy(warmup_s=0.0, min_rounds=4, max_rounds=50, target_rel_iqr=10.0,
                                     flush_cache=False),
              "time cap": TimingPolicy(warmup_s=0.0, min_rounds=50, max_rounds=50, min_rounds_capped=1,
                                       target_rel_iqr=1e-9, case_seconds=1e-6, flush_cache=False),
              "max_rounds": TimingPolicy(warmup_s=0.0, min_rounds=7, max_rounds=7, min_rounds_capped=7,
                                         target_rel_iqr=1e-9, flush_cache=False)}[stop]
    results = time_interleaved({name: (lambda: None) for name in "abc"}, "cpu", policy)
    assert {len(r.samples) for r in results.values()} == {{"target": 6, "time cap": 6, "max_rounds": 12}[stop]}


def test_every_sample_counts_the_page_faults_of_its_call():
    """A call that touches fresh pages takes page faults; one that does not, none (counted outside the clock)."""
    import mmap

    import numpy as np

    def touch_fresh_pages():
        with mmap.mmap(-1, 64 * mmap.PAGESIZE) as region:
            np.frombuffer(region, dtype=np.uint8)[::mmap.PAGESIZE] = 1

    policy = TimingPolicy(warmup_s=0.0, min_rounds=4, max_rounds=4, target_rel_iqr=1e-9, flush_cache=False)
    results = time_interleaved({"fresh": touch_fresh_pages, "none": lambda: None}, "cpu", policy)
    assert len(results["fresh"].faults) == len(results["fresh"].samples) == 4
    assert min(results["fresh"].faults) >= 64 and max(results["none"].faults) == 0
