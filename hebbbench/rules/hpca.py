"""Hebbian PCA (HPCA): Sanger's generalized Hebbian algorithm.

With responses Y (N,M) and rows X (N,D) (docs/design.md §2):

    per sample:  ΔW_i = (1/N) Σ_n y_ni (x_n − Σ_{k≤i} y_nk w_k)
    FastHebb:    ΔW   = (Yᵀ X − tril(Yᵀ Y) W) / N,   tril keeping k ≤ i

With Y = X Wᵀ its stable fixed points are the top M principal directions of X, in order.
Sources: Sanger, "Optimal unsupervised learning in a single-layer linear feedforward
neural network", Neural Networks 1989; Lagani et al., Neurocomputing 2024 (HPCA-FH).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hebbbench.rules.chunks import row_chunks
from hebbbench.rules.local import Matmul
from hebbbench.rules.registry import Update, define_rule, register


def hpca_fh(x: Tensor, y: Tensor, w: Tensor, matmul: Matmul = torch.mm) -> Tensor:
    """(Yᵀ X − tril(Yᵀ Y) W) / N from x (N,D), y (N,M), w (M,D) -> (M,D)."""
    dw = matmul(y.T, x)  # (M,N)@(N,D) -> (M,D)
    dw -= matmul(torch.tril(matmul(y.T, y)), w)  # (M,M)@(M,D) -> (M,D)
    return dw.div_(x.shape[0])


@define_rule("hpca")
class HPCA(Update):
    """The HPCA rule (no options): float64 per-sample reference."""

    summary = "Sanger's rule: dW_i = mean_n y_ni (x_n - sum_{k<=i} y_nk w_k)"

    def reference(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        x, y, w = x.double(), y.double(), w.double()
        dw = torch.zeros_like(w)
        for rows in row_chunks(x.shape[0], 2 * w.numel()):
            recon = torch.cumsum(y[rows, :, None] * w[None, :, :], dim=1)  # (n,M,D): Σ_{k≤i} y_nk w_k
            dw += (y[rows, :, None] * (x[rows, None, :] - recon)).sum(0)  # (n,M,D) -> (M,D)
        return dw / x.shape[0]

    def magnitude(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """(|Y|ᵀ |X| + tril(|Y|ᵀ |Y|) |W|) / N in float64: the terms of ΔW, element-wise (≥ |ΔW|)."""
        x, y, w = x.double().abs(), y.double().abs(), w.double().abs()
        return (y.T @ x + torch.tril(y.T @ y) @ w) / x.shape[0]  # (M,D)


@register("hpca", "fh")
class HPCAFastHebb(HPCA):
    """HPCA-FH: Yᵀ X and tril(Yᵀ Y) W as matrix products."""

    summary = "FastHebb matrix form (Y^T X - tril(Y^T Y) W) / N"
    #: the matrix product (reduced-precision variants replace it).
    matmul: Matmul = staticmethod(torch.mm)

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return hpca_fh(x, y, w, self.matmul)

    def flops(self, n: int, m: int, d: int) -> float:
        return 2.0 * n * m * d + 2.0 * n * m * m + 2.0 * m * m * d + m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (n * d + 2 * n * m + 2 * m * m + 3 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (2 * m * m + 2 * m * d)
