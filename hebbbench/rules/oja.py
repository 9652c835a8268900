"""Oja's rule: a Hebbian neuron that normalises its own weights.

With responses Y (N,M) and rows X (N,D), each neuron on its own:

    per sample:  ΔW_i = (1/N) Σ_n y_ni (x_n − y_ni w_i)
    FastHebb:    ΔW   = (Yᵀ X − diag(Σ_n y_ni²) W) / N

With Y = X Wᵀ each neuron converges to a unit-norm first principal direction of X
(there is no decorrelation between neurons: that is Sanger's rule, ``hpca``).
Source: E. Oja, "A simplified neuron model as a principal component analyzer",
Journal of Mathematical Biology 15 (1982) 267–273.
"""

from __future__ import annotations

from torch import Tensor

from hebbbench.rules.chunks import sum_over_rows
from hebbbench.rules.local import LocalFastHebb, LocalRule
from hebbbench.rules.registry import define_rule, register


@define_rule("oja")
class Oja(LocalRule):
    """Oja's rule (no options): float64 per-sample reference; a local rule with A = Y, B = Y²."""

    summary = "Oja's rule: dW_i = mean_n y_ni (x_n - y_ni w_i)"

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, y * y  # (N,M), (N,M)

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        return sum_over_rows(x.shape[0], 2 * w.numel(), lambda rows: (
            y[rows, :, None] * (x[rows, None, :] - y[rows, :, None] * w[None, :, :])  # (n,M,D)
        )) / x.shape[0]


@register("oja", "fh")
class OjaFastHebb(LocalFastHebb, Oja):
    """Oja-FH: Yᵀ X as one matrix product, the decay diag(Σ_n y_ni²) W element-wise."""

    summary = "FastHebb matrix form (Y^T X - diag(sum_n y_ni^2) W) / N"
