"""Soft winner-takes-all (SWTA): competitive Hebbian learning with a softmax over neurons.

With responses Y (N,M), temperature T and rows X (N,D) (docs/design.md §2):

    R = softmax(Y / T) along the M neurons of each row
    per sample:  ΔW_i = (1/N) Σ_n r_ni (x_n − w_i)
    FastHebb:    ΔW   = (Rᵀ X − diag(1ᵀ R) W) / N

Sources: Lagani, Falchi, Gennaro, Amato, "FastHebb: Scaling Hebbian training of deep
neural networks to ImageNet level", Neurocomputing 2024 (SWTA-FH); the default
T = 0.02 is the inverse temperature 50 of the authors' code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hebbbench.rules.chunks import row_chunks
from hebbbench.rules.local import LocalFastHebb, LocalRule
from hebbbench.rules.registry import define_rule, register


def soft_winners(y: Tensor, temperature: float) -> Tensor:
    """R = softmax(Y / T) along the neurons: (N,M) -> (N,M), subnormal weights set to zero.

    At T = 0.02 most losers' weights fall below the dtype's smallest normal number (e^-100
    and less). Such a weight changes ΔW by less than that number times |x − w|, but x86
    CPUs multiply subnormals 10–100x slower (a 12x slower Rᵀ X was measured here), so
    every implementation, the reference included, flushes them to zero: the same R for all.
    """
    r = torch.softmax(y / temperature, dim=1)  # (N,M)
    return r.masked_fill_(r < torch.finfo(r.dtype).tiny, 0.0)


@define_rule("swta")
class SWTA(LocalRule):
    """The SWTA rule: options and float64 per-sample reference (a local rule, A = B = R)."""

    summary = "soft winner-takes-all: dW_i = mean_n softmax(y_n/T)_i (x_n - w_i)"
    options: ClassVar[dict[str, Any]] = {"temperature": 0.02}

    def check_options(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}")

    def soft_winners(self, y: Tensor) -> Tensor:
        return soft_winners(y, self.temperature)  # (N,M)

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r = self.soft_winners(y)  # (N,M)
        return r, r

    def factor_flops(self, n: int, m: int) -> float:
        return 5.0 * n * m  # softmax (max, subtract, exp, sum, divide) and 1ᵀR

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        r = self.soft_winners(y)  # (N,M)
        dw = torch.zeros_like(w)
        for rows in row_chunks(x.shape[0], w.numel()):
            delta = r[rows, :, None] * (x[rows, None, :] - w[None, :, :])  # (n,M,D)
            dw += delta.sum(0)
        return dw / x.shape[0]


@register("swta", "fh")
class SWTAFastHebb(LocalFastHebb, SWTA):
    """SWTA-FH: the update as one matrix product Rᵀ X (shared with the other local rules)."""

    summary = "FastHebb matrix form (R^T X - diag(1^T R) W) / N"
