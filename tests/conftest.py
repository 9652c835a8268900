"""Shared test helpers: seeded inputs for the rules."""

from __future__ import annotations

import torch


def rule_inputs(n: int, m: int, d: int, seed: int, dtype=torch.float32, responses: str = "linear"):
    """x (N,D), w (M,D) standard normal; y (N,M) = x wᵀ scaled to |y| ≤ 1, or uniform in [-1, 1].

    |y| ≤ 1 keeps y/T within SWTA's realistic range (cosine similarities at T = 0.02).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(m, d, generator=g, dtype=torch.float64)
    if responses == "linear":
        y = x @ w.T
        y /= y.abs().max().clamp_min(1e-12)
    else:
        y = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    return x.to(dtype), y.to(dtype), w.to(dtype)
