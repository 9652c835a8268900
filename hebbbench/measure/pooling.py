"""Samples of several worker processes pooled: summaries and hierarchical bootstrap intervals.

A case is timed in R fresh processes (docs/design.md §4); within a process the implementations
are interleaved round by round, so the i-th sample of every implementation of one process comes
from the same round. Two levels of variation follow: between processes (allocator state, thread
placement, memory layout: measured up to 1.7x on a 2-core VM) and between rounds of one process
(2-4 %). An interval from the rounds of one process describes only the second.

**Hierarchical bootstrap** (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
§3.8: resampling at the top level and then within it; as pyperf and asv pool the values of
several processes). One resample draws R processes with replacement, then, within each drawn
process, as many of its rounds as it has, with replacement; the statistic is computed on the
pooled draws. For a ratio of two implementations of one run the draws are **paired**: both take
the same processes and the same rounds, so drift that hits a round hits both. Two different runs
(the CI gate: a baseline against a new run) are resampled independently. The interval is the
percentile interval of B resamples.

**Few processes.** Resampling R = 3 processes understates how far a fourth could land: the
bootstrap's variance between groups is (R−1)/R of the sample variance, and with R − 1 degrees
of freedom a normal quantile is too small (Student's t). Before resampling, each process's
samples are therefore moved away from the processes' centre (the geometric mean of their
medians) by the factor c_R = t_{R−1}(q) / z(q) · √(R/(R−1)) in log scale (q = 1 − (1 − confidence)/2;
c = 2.7 for R = 3, 1.6 for R = 5 at 95 %): processes that agree are hardly moved, processes that
disagree widen the interval as they should. On synthetic data with a known ratio and 15 %
between-process spread (tests/test_pooling.py) the 95 % interval covered it in 74 % of draws
with R = 3 without the factor, and 97 % with it.

**Summaries** of pooled samples: the median and quartiles of all samples; *noisy* when the
median within-process IQR/median exceeds 10 %; the *process spread* max/min of the per-process
medians; *unstable* when that spread exceeds 1.2 and the fastest and slowest processes'
interquartile ranges do not overlap (the processes disagree beyond their own noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

#: a case whose within-process IQR/median exceeds this is flagged noisy.
NOISY_REL_IQR = 0.10
#: a case whose per-process medians spread more than this (max/min), beyond their IQRs, is unstable.
UNSTABLE_SPREAD = 1.2
RESAMPLES = 2000
CONFIDENCE = 0.95

Groups = Sequence[np.ndarray]  # one array of samples per process, in round order


def groups(samples: Sequence[float], process: Sequence[int] | None = None) -> list[np.ndarray]:
    """Samples split by process (in order of first appearance); one group when ``process`` is None/empty."""
    values = np.asarray(samples, dtype=float)
    if not process:
        return [values] if len(values) else []
    labels = np.asarray(process)
    if len(labels) != len(values):
        raise ValueError(f"{len(values)} samples but {len(labels)} process labels")
    return [values[labels == p] for p in dict.fromkeys(labels.tolist())]


def process_medians(gs: Groups) -> np.ndarray:
    return np.array([np.median(g) for g in gs if len(g)])


def within_rel_iqr(gs: Groups) -> float:
    """The median over processes of each process's IQR/median."""
    rel = [float((np.percentile(g, 75) - np.percentile(g, 25)) / np.median(g)) for g in gs
           if len(g) and np.median(g) > 0]
    return float(np.median(rel)) if rel else math.nan


def spread(gs: Groups) -> float:
    """max/min of the per-process medians (1 for one process)."""
    medians = process_medians(gs)
    return float(medians.max() / medians.min()) if len(medians) and medians.min() > 0 else math.nan


def unstable(gs: Groups) -> bool:
    """Processes disagree beyond their own noise: spread > UNSTABLE_SPREAD and the IQRs of the
    fastest and the slowest process do not overlap."""
    gs = [g for g in gs if len(g)]
    if len(gs) < 2 or not spread(gs) > UNSTABLE_SPREAD:
        return False
    medians = process_medians(gs)
    fast, slow = gs[int(medians.argmin())], gs[int(medians.argmax())]
    return bool(np.percentile(fast, 75) < np.percentile(slow, 25))


def few_processes_factor(processes: int, confidence: float = CONFIDENCE) -> float:
    """c_R: how far each process is moved from the processes' centre before resampling (1 for one process)."""
    if processes < 2:
        return 1.0
    q = 1 - (1 - confidence) / 2
    return float(stats.t.ppf(q, processes - 1) / stats.norm.ppf(q) * math.sqrt(processes / (processes - 1)))


def widened(gs: Groups, factor: float) -> list[np.ndarray]:
    """Each process's samples scaled so its median's distance from the centre (log scale) is ``factor`` times larger."""
    gs = [np.asarray(g, float) for g in gs if len(g)]
    if len(gs) < 2 or factor == 1.0:
        return gs
    medians = process_medians(gs)
    if not (medians > 0).all():
        return gs
    centre = np.exp(np.mean(np.log(medians)))
    return [g * (m / centre) ** (factor - 1) for g, m in zip(gs, medians)]


def _draws(lengths: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of one hierarchical resample per row: the process of each slot (B,R), the round drawn at
    each position (B,R,n_max), and which positions are used (a drawn process has fewer rounds)."""
    r, n_max = len(lengths), int(lengths.max())
    picks = rng.integers(r, size=(resamples, r))  # (B,R) processes drawn
    counts = lengths[picks]  # (B,R) rounds of each drawn process
    rounds = np.floor(rng.random((resamples, r, n_max)) * counts[..., None]).astype(np.int64)  # (B,R,n_max)
    used = np.arange(n_max) < counts[..., None]  # (B,R,n_max)
    return picks, rounds, used


def _pooled_medians(gs: Groups, picks: np.ndarray, rounds: np.ndarray, used: np.ndarray) -> np.ndarray:
    n_max = rounds.shape[-1]
    padded = np.full((len(gs), n_max), np.nan)  # (R,n_max)
    for p, g in enumerate(gs):
        padded[p, :len(g)] = g
    values = np.where(used, padded[picks[..., None], rounds], np.nan)  # (B,R,n_max)
    return np.nanmedian(values.reshape(len(values), -1), axis=1)  # (B,)


def ratio_distribution(num: Groups, den: Groups, paired: bool, resamples: int = RESAMPLES,
                       seed: int = 0, confidence: float = CONFIDENCE) -> np.ndarray:
    """Bootstrap distribution of median(pooled num) / median(pooled den), resampled hierarchically
    after the few-processes widening for ``confidence``.

    ``paired``: num and den are two implementations of one run (same processes, same rounds:
    group p of each has the same length); otherwise two independent runs.
    """
    rng = np.random.default_rng(seed)
    num = widened(num, few_processes_factor(sum(1 for g in num if len(g)), confidence))
    den = widened(den, few_processes_factor(sum(1 for g in den if len(g)), confidence))
    if paired:
        lengths = np.array([len(g) for g in num])
        if len(num) != len(den) or not np.array_equal(lengths, [len(g) for g in den]):
            raise ValueError("paired samples need the same processes and rounds")
        draw = _draws(lengths, rng, resamples)
        return _pooled_medians(num, *draw) / _pooled_medians(den, *draw)
    top = _pooled_medians(num, *_draws(np.array([len(g) for g in num]), rng, resamples))
    bottom = _pooled_medians(den, *_draws(np.array([len(g) for g in den]), rng, resamples))
    return top / bottom


def ratio(num: Groups, den: Groups, paired: bool, confidence: float = CONFIDENCE,
          resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """median(pooled num) / median(pooled den) and its hierarchical bootstrap percentile interval."""
    num, den = [g for g in num if len(g)], [g for g in den if len(g)]
    if not num or not den:
        return math.nan, math.nan, math.nan
    point = float(np.median(np.concatenate(num)) / np.median(np.concatenate(den)))
    if sum(len(g) for g in num) < 2 or sum(len(g) for g in den) < 2:
        return point, math.nan, math.nan
    dist = ratio_distribution(num, den, paired, resamples, seed, confidence)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(dist, [tail, 100 - tail])
    return point, float(low), float(high)
