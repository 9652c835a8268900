"""The order of the interleaved rounds: a Williams design, balanced for position and for neighbour."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise, permutations

import pytest

from hebbbench.measure.timing import TimingPolicy, round_orders, time_interleaved


@pytest.mark.parametrize("k", range(1, 10))
def test_every_implementation_runs_in_every_position_and_after_every_other_equally_often(k):
    orders = round_orders(k)
    assert len(orders) == (2 * k if k % 2 else k)
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
