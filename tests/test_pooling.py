"""The statistics of several worker processes (hebbbench/measure/pooling.py) on synthetic data
whose between-process variance is known: the intervals cover the known ratio, flags fire when
processes disagree beyond their own noise and not otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from hebbbench.measure import pooling
from hebbbench.measure.timing import Timing, speedup_columns

TRUE_RATIO = 10.0


def processes(rng, median, count, between, within=0.03, rounds=20):
    """``count`` processes of ``rounds`` samples; process levels lognormal(0, between) around ``median``."""
    levels = rng.lognormal(0.0, between, count)
    return [median * level * rng.lognormal(0.0, within, rounds) for level in levels]


def coverage(count, between, trials=200, flat=False):
    """Share of draws whose 95 % interval of naive/fh covers TRUE_RATIO: naive's processes spread by
    ``between`` (the allocator's luck), fh's by 3 %; ``flat`` pools all samples as one process."""
    rng, hits = np.random.default_rng(7), 0
    for trial in range(trials):
        naive, fh = processes(rng, TRUE_RATIO, count, between), processes(rng, 1.0, count, 0.03)
        if flat:
            naive, fh = [np.concatenate(naive)], [np.concatenate(fh)]
        _, low, high = pooling.ratio(naive, fh, paired=True, resamples=1000, seed=trial)
        hits += low <= TRUE_RATIO <= high
    return hits / trials


@pytest.mark.parametrize("count", [3, 5])
def test_hierarchical_interval_covers_a_known_ratio(count):
    assert coverage(count, between=0.15) >= 0.90


def test_an_interval_over_the_pooled_rounds_alone_does_not():
    """What one process's statistics (rounds only) give on the same data: far too narrow."""
    assert coverage(3, between=0.15, flat=True) < 0.5


def test_few_processes_factor_is_one_for_one_process_and_shrinks_with_more():
    assert pooling.few_processes_factor(1) == 1.0
    factors = [pooling.few_processes_factor(r) for r in (2, 3, 5, 10, 100)]
    assert factors == sorted(factors, reverse=True) and factors[1] == pytest.approx(2.69, abs=0.01)
    assert factors[-1] == pytest.approx(1.0, abs=0.02)


def test_widening_leaves_agreeing_processes_alone():
    same = [np.array([1.0, 1.1, 0.9]), np.array([0.9, 1.0, 1.1])]
    assert all(np.allclose(a, b) for a, b in zip(pooling.widened(same, 3.0), same))
    apart = [np.array([1.0, 1.0]), np.array([4.0, 4.0])]
    low, high = pooling.widened(apart, 2.0)
    assert high[0] / low[0] == pytest.approx(16.0)  # log distance doubled


def test_pairing_by_round_cancels_drift_that_hits_both():
    """A load that slows whole rounds 1.5x: the paired interval stays tight around the true ratio."""
    rng = np.random.default_rng(3)
    load = np.where(rng.random(40) < 0.5, 1.5, 1.0)
    naive = [TRUE_RATIO * load * rng.lognormal(0, 0.01, 40)]
    fh = [load * rng.lognormal(0, 0.01, 40)]
    _, low, high = pooling.ratio(naive, fh, paired=True)
    _, ulow, uhigh = pooling.ratio(naive, fh, paired=False)
    assert low <= TRUE_RATIO <= high and high / low < uhigh / ulow


def test_paired_ratio_needs_matching_rounds():
    with pytest.raises(ValueError, match="same processes and rounds"):
        pooling.ratio_distribution([np.ones(3)], [np.ones(4)], paired=True)


def test_spread_and_unstable_flag():
    agree = [np.array([1.0, 1.02, 0.98, 1.01]), np.array([1.05, 1.04, 1.06, 1.03])]
    assert pooling.spread(agree) == pytest.approx(1.045 / 1.005, rel=1e-6)
    assert not pooling.unstable(agree)
    apart = [np.array([1.0, 1.02, 0.98, 1.01]), np.array([1.6, 1.62, 1.58, 1.61])]
    assert pooling.unstable(apart)
    # far apart in median, but each process so noisy that their IQRs overlap: noisy, not unstable
    wide = [np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.9, 1.4, 1.9, 2.6])]
    assert pooling.spread(wide) > pooling.UNSTABLE_SPREAD and not pooling.unstable(wide)
    assert not pooling.unstable([np.array([1.0, 5.0])])  # one process: nothing to disagree with


def test_timing_columns_pool_processes():
    first, second = Timing([1.0, 1.0, 1.0], faults=[0, 2, 0]), Timing([2.0, 2.0, 2.0], faults=[5, 5, 5])
    pooled = Timing.pooled([first, second])
    assert pooled.process == [0, 0, 0, 1, 1, 1]
    columns = pooled.columns()
    assert columns["processes"] == 2 and columns["process_spread"] == 2.0 and columns["unstable"]
    assert columns["n_samples"] == 6 and columns["faults_per_call"] == 3.5
    assert not columns["noisy"]  # each process is steady; the disagreement is 'unstable'
    assert Timing.from_record(pooled.record()) == pooled
    assert Timing([1.0, 2.0]).columns()["processes"] == 1


def test_speedup_columns_pair_when_the_rounds_match():
    base = Timing.pooled([Timing([10.0, 10.5, 9.5, 10.2]), Timing([11.0, 11.5, 10.5, 11.2])])
    impl = Timing.pooled([Timing([1.0, 1.02, 0.97, 1.03]), Timing([1.12, 1.13, 1.06, 1.1])])
    columns = speedup_columns(base, impl)
    assert columns["speedup"] == pytest.approx(10.0, rel=0.05)
    assert columns["speedup_lo"] <= columns["speedup"] <= columns["speedup_hi"]
