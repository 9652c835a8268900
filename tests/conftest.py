"""Shared test helpers: seeded inputs for the rules."""

from __future__ import annotations

import torch


def unit_rows(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def rule_inputs(n: int, m: int, d: int, seed: int, dtype=torch.float32, responses: str = "linear"):
    """x (N,D) and w (M,D) with unit rows; y (N,M) = x wᵀ (|y| ≤ 1) or independent uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = unit_rows(torch.randn(n, d, generator=g, dtype=torch.float64))
    w = unit_rows(torch.randn(m, d, generator=g, dtype=torch.float64))
    if responses == "linear":
        y = x @ w.T
    else:
        y = torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1
    return x.to(dtype), y.to(dtype), w.to(dtype)
