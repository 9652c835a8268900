"""Plain Hebb with weight decay: the correlation term y·x, kept bounded by a decay of W.

With responses Y (N,M), rows X (N,D) and decay λ (``decay``, default 0.1):

    per sample:  ΔW_i = (1/N) Σ_n (y_ni x_n − λ w_i)  =  (1/N) Σ_n y_ni x_n − λ w_i
    FastHebb:    ΔW   = Yᵀ X / N − λ W

Sources: D. O. Hebb, "The Organization of Behavior" (1949) for the product term; the
multiplicative decay −λ w is the usual way to keep pure Hebbian growth bounded
(discussed e.g. in W. Gerstner, W. M. Kistler, "Spiking Neuron Models", 2002).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor

from hebbbench.rules.chunks import sum_over_rows
from hebbbench.rules.local import LocalFastHebb, LocalRule
from hebbbench.rules.registry import define_rule, register


@define_rule("hebb")
class Hebb(LocalRule):
    """Hebb with weight decay: option ``decay`` (λ); a local rule with A = Y, B = λ."""

    summary = "plain Hebb with decay: dW_i = mean_n y_ni x_n - decay * w_i"
    options: ClassVar[dict[str, Any]] = {"decay": 0.1}

    def check_options(self) -> None:
        lam = self.decay
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam < math.inf:
            raise ValueError(f"decay must be a finite number >= 0, got {lam!r}")

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, y.new_full((1, y.shape[1]), float(self.decay)).expand_as(y)  # (N,M), (N,M) view

    def factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, y.new_full((y.shape[1],), float(self.decay) * y.shape[0])  # c = λN exactly

    def factor_flops(self, n: int, m: int) -> float:
        return float(m)

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        return sum_over_rows(x.shape[0], w.numel(), lambda rows: (
            y[rows, :, None] * x[rows, None, :] - self.decay * w[None, :, :]  # (n,M,D)
        )) / x.shape[0]


@register("hebb", "fh")
class HebbFastHebb(LocalFastHebb, Hebb):
    """Hebb-FH: Yᵀ X / N as one matrix product minus λ W."""

    summary = "FastHebb matrix form Y^T X / N - decay * W"
