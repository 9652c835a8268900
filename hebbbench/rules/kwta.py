"""Hard k-winners-take-all (k-WTA): competitive learning where the k strongest neurons learn.

With responses Y (N,M) and rows X (N,D):

    r_ni = 1 if neuron i is among the k largest responses of row n, else 0
    per sample:  ΔW_i = (1/N) Σ_n r_ni (x_n − w_i)
    FastHebb:    ΔW   = (Rᵀ X − diag(1ᵀ R) W) / N

Ties are broken towards the lower neuron index (one stable sort shared by every
implementation, see ``local.top_indices``); k larger than M makes every neuron a winner.
It is SWTA (``swta``) with the softmax replaced by a hard top-k mask; with k = 1 it is
classic winner-take-all competitive learning (Rumelhart & Zipser, "Feature discovery by
competitive learning", Cognitive Science 9 (1985) 75–112).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from hebbbench.rules.chunks import sum_over_rows
from hebbbench.rules.local import LocalFastHebb, LocalRule, top_indices
from hebbbench.rules.registry import define_rule, register


@define_rule("kwta")
class KWTA(LocalRule):
    """The k-WTA rule: option ``k`` (winners per row) and float64 per-sample reference."""

    summary = "hard k-winners-take-all: dW_i = mean_n [i in top-k(y_n)] (x_n - w_i)"
    options: ClassVar[dict[str, Any]] = {"k": 1}

    def check_options(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")

    def winners(self, y: Tensor) -> Tensor:
        """The 0/1 winner mask R (N,M): the k largest responses of each row."""
        top = top_indices(y, min(self.k, y.shape[1]))  # (N,k)
        return torch.zeros_like(y).scatter_(1, top, 1.0)  # (N,M)

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r = self.winners(y)  # (N,M)
        return r, r

    def factor_flops(self, n: int, m: int) -> float:
        return n * m * (math.log2(max(m, 2)) + 2.0)  # the sort, the mask and 1ᵀR

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        r = self.winners(y)  # (N,M)
        return sum_over_rows(x.shape[0], w.numel(), lambda rows: (
            r[rows, :, None] * (x[rows, None, :] - w[None, :, :])  # (n,M,D)
        )) / x.shape[0]


@register("kwta", "fh")
class KWTAFastHebb(LocalFastHebb, KWTA):
    """k-WTA-FH: the SWTA-FH matrix form with the hard winner mask."""

    summary = "FastHebb matrix form (R^T X - diag(1^T R) W) / N, R the top-k mask"
