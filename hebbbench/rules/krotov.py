"""Krotov–Hopfield rule with p = 2: Hebbian learning for the winner, anti-Hebbian for rank k.

With responses Y (N,M) and rows X (N,D): rank the neurons of each row by y_n, then

    g_ni = 1    for the top-ranked neuron of row n
         = −Δ   for the neuron ranked k-th (``rank``, default 2; Δ is ``anti_hebbian``, default 0.4)
         = 0    otherwise
    per sample:  ΔW_i = (1/N) Σ_n g_ni (x_n − y_ni w_i)
    FastHebb:    ΔW   = (Gᵀ X − diag(Σ_n g_ni y_ni) W) / N

This is the p = 2 form of the rule, with y the given responses: for p = 2 the paper's
currents ⟨w_i, x⟩ = Σ_d |w_id|^(p−2) w_id x_d are the plain dot products, i.e. y = X Wᵀ
for a linear layer (the layer passes its pre-activations). The authors' code also
divides each update by its largest absolute entry before applying it: that is a
learning-rate schedule, left to the caller, not part of ΔW here. Ties in the ranking go
to the lower neuron index (``local.top_indices``); with M < k only the winner learns.
The option is called ``anti_hebbian`` rather than the paper's Δ ("delta") because
``delta`` is the method that computes the update.

Source: D. Krotov, J. J. Hopfield, "Unsupervised learning by competing hidden units",
PNAS 116 (16) (2019) 7723–7731.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from hebbbench.rules.chunks import sum_over_rows
from hebbbench.rules.local import LocalFastHebb, LocalRule, top_indices
from hebbbench.rules.registry import define_rule, register


@define_rule("krotov")
class Krotov(LocalRule):
    """The Krotov–Hopfield rule (p = 2): options ``anti_hebbian`` (Δ) and ``rank`` (k)."""

    summary = "Krotov-Hopfield, p=2: dW_i = mean_n g_ni (x_n - y_ni w_i), g = 1 top / -delta rank k"
    options: ClassVar[dict[str, Any]] = {"anti_hebbian": 0.4, "rank": 2}

    def check_options(self) -> None:
        a = self.anti_hebbian
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a < math.inf:
            raise ValueError(f"anti_hebbian must be a finite number >= 0, got {a!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 2:
            raise ValueError(f"rank must be an integer >= 2, got {self.rank!r}")

    def activations(self, y: Tensor) -> Tensor:
        """G (N,M): 1 for each row's top neuron, −Δ for its rank-k neuron, 0 elsewhere."""
        top = top_indices(y, min(self.rank, y.shape[1]))  # (N, min(k, M)), best first
        g = torch.zeros_like(y).scatter_(1, top[:, :1], 1.0)  # (N,M)
        if top.shape[1] == self.rank:
            g.scatter_(1, top[:, -1:], -float(self.anti_hebbian))
        return g

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        g = self.activations(y)  # (N,M)
        return g, g * y

    def factor_flops(self, n: int, m: int) -> float:
        return n * m * (math.log2(max(m, 2)) + 3.0)  # the sort, G, G∘Y and its column sums

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        g = self.activations(y)  # (N,M)
        return sum_over_rows(x.shape[0], 2 * w.numel(), lambda rows: (
            g[rows, :, None] * (x[rows, None, :] - y[rows, :, None] * w[None, :, :])  # (n,M,D)
        )) / x.shape[0]


@register("krotov", "fh")
class KrotovFastHebb(LocalFastHebb, Krotov):
    """Krotov-FH: Gᵀ X as one matrix product, diag(Σ_n g_ni y_ni) W element-wise."""

    summary = "FastHebb matrix form (G^T X - diag(sum_n g_ni y_ni) W) / N"
