"""Local Hebbian rules: each neuron's update involves its own weights only.

SWTA, k-WTA, Oja, Krotov–Hopfield and Hebb with decay all have the per-sample form

    ΔW_i = (1/N) Σ_n (a_ni x_n − b_ni w_i)

with rule-specific factors A, B (N,M) computed from the responses Y alone:

    rule     a_ni                          b_ni
    swta     softmax(y_n / T)_i            a_ni
    kwta     1 if i is in the top k of y_n a_ni
    oja      y_ni                          y_ni²
    krotov   g_ni (1, −Δ or 0 by rank)      g_ni y_ni
    hebb     y_ni                          λ

and so one FastHebb matrix form (Lagani et al., Neurocomputing 2024, generalised):

    ΔW = (Aᵀ X − diag(c) W) / N,   c = 1ᵀ B   (c_i = Σ_n b_ni)

HPCA is not local (neuron i's update involves w_k for k < i) and has its own form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hebbbench.rules.registry import Update

Matmul = Callable[[Tensor, Tensor], Tensor]


def local_update(a: Tensor, c: Tensor, x: Tensor, w: Tensor, matmul: Matmul = torch.mm) -> Tensor:
    """(Aᵀ X − diag(c) W) / N from a (N,M), c (M,), x (N,D), w (M,D) -> (M,D)."""
    dw = matmul(a.T, x)  # (M,N)@(N,D) -> (M,D)
    dw -= c.unsqueeze(1) * w  # diag(c) W, (M,1)*(M,D)
    return dw.div_(x.shape[0])


def top_indices(y: Tensor, k: int) -> Tensor:
    """Indices (N,k) of the k largest responses of each row, best first; ties go to the lower index.

    A stable descending sort makes the choice the same on every device and dtype, so all
    implementations of a ranking rule (and its float64 reference) pick the same winners.
    """
    return torch.sort(y, dim=1, descending=True, stable=True).indices[:, :k]  # (N,k)


class LocalRule(Update):
    """A rule whose update is ΔW_i = (1/N) Σ_n (a_ni x_n − b_ni w_i); subclasses give A and B."""

    def sample_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """A (N,M) and B (N,M, possibly an expanded view) of the per-sample form, from y (N,M)."""
        raise NotImplementedError

    def factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """A (N,M) and c = 1ᵀB (M,) of the FastHebb form (Aᵀ X − diag(c) W) / N."""
        a, b = self.sample_factors(y)
        return a, b.sum(0)  # (N,M), (M,)

    def factor_flops(self, n: int, m: int) -> float:
        """Operations to compute A and c from Y (element-wise work on the N×M responses)."""
        return 2.0 * n * m

    def magnitude(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """(|A|ᵀ |X| + diag(1ᵀ|B|) |W|) / N in float64: the terms of ΔW, element-wise (≥ |ΔW|)."""
        x, y, w = x.double(), y.double(), w.double()
        a, b = self.sample_factors(y)  # (N,M), (N,M)
        return (a.abs().T @ x.abs() + b.abs().sum(0).unsqueeze(1) * w.abs()) / x.shape[0]  # (M,D)


class LocalFastHebb(LocalRule):
    """The FastHebb form of a local rule: one matrix product Aᵀ X and a diagonal scaling of W."""

    #: the matrix product (reduced-precision variants replace it).
    matmul: Matmul = staticmethod(torch.mm)

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        a, c = self.factors(y)  # (N,M), (M,)
        return local_update(a, c, x, w, self.matmul)

    def flops(self, n: int, m: int, d: int) -> float:
        return 2.0 * n * m * d + self.factor_flops(n, m) + 3.0 * m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (n * d + 3 * n * m + 3 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (2 * n * m + 2 * m * d)
