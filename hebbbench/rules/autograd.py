"""Hebbian updates as minus the gradient of a surrogate loss, by torch.autograd (impl ``autograd``).

Writing a local rule as minus the gradient of a per-layer loss, with the post-synaptic
factors held constant, is common in the Hebbian deep-learning literature: SoftHebb's
soft winner-take-all plasticity is derived as minimising a divergence between the input
distribution and the layer's mixture model (Moraitis et al., "SoftHebb: Bayesian
inference in unsupervised Hebbian soft winner-take-all networks", Neuromorphic Computing
and Engineering 2022), and its deep version hands −ΔW to standard optimisers as the
weight gradient (Journé et al., "Hebbian deep learning without feedback", ICLR 2023).
This impl makes the formulation literal: the loss is written in torch and autograd
computes its gradient. Here, with Y (and so R) constants:

    SWTA:  L(W) = (1/N) Σ_n Σ_i r_ni · ½ ‖x_n − w_i‖²       (soft k-means / weighted quantisation)
           −∂L/∂w_i = (1/N) Σ_n r_ni (x_n − w_i)
    HPCA:  L(W) = (1/2N) Σ_n Σ_i ‖x_n − sg(Σ_{k<i} y_nk w_k) − y_ni w_i‖²   (deflated reconstruction;
           sg = stop-gradient: neuron i fits what the earlier neurons left)
           −∂L/∂w_i = (1/N) Σ_n y_ni (x_n − Σ_{k≤i} y_nk w_k)

Both losses are evaluated without N×M×D tensors, by expanding the squares:

    ‖x_n − w_i‖² = ‖x_n‖² − 2 (X Wᵀ)_ni + ‖w_i‖²
    HPCA: L = (1/N) [ ½ Σ_i (YᵀY)_ii ‖w_i‖² + Σ_{k<i} (YᵀY)_ik ⟨w_i, sg(w_k)⟩ − Σ (Y ∘ X Wᵀ) ] + const

so the backward pass forms Rᵀ X (resp. Yᵀ X) as the gradient of X Wᵀ: the cost is fh's
plus the forward product X Wᵀ (2·N·M·D) and autograd's bookkeeping.
Works inside ``torch.no_grad()`` and ``torch.inference_mode()`` callers (the layers'
hebbian_step): gradients are enabled locally.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hebbbench.rules.hpca import HPCA
from hebbbench.rules.registry import register
from hebbbench.rules.swta import SWTA

Surrogate = Callable[[Tensor, Tensor, Tensor], Tensor]


def minus_gradient(loss: Surrogate, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """−∂loss(x, y, W)/∂W at W = w (M,D), by autograd, with x and y constants."""
    with torch.inference_mode(False), torch.enable_grad():
        # inference tensors cannot be saved for backward: use normal copies of them
        x, y, w = (t.clone() if t.is_inference() else t for t in (x, y, w))
        weights = w.detach().requires_grad_(True)  # (M,D), the only leaf
        (grad,) = torch.autograd.grad(loss(x.detach(), y.detach(), weights), weights)
    return grad.neg_()


def swta_surrogate(x: Tensor, r: Tensor, w: Tensor) -> Tensor:
    """(1/N) Σ_n Σ_i r_ni ½‖x_n − w_i‖², from x (N,D), r (N,M), w (M,D) -> scalar."""
    sq = (x * x).sum(1, keepdim=True) - 2 * (x @ w.T) + (w * w).sum(1)  # (N,M): ‖x_n − w_i‖²
    return 0.5 * (r * sq).sum() / x.shape[0]


def hpca_surrogate(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """(1/2N) Σ_n Σ_i ‖x_n − sg(Σ_{k<i} y_nk w_k) − y_ni w_i‖² up to a constant -> scalar."""
    c = y.T @ y  # (M,M), constant
    fit = (y * (x @ w.T)).sum()  # Σ_n Σ_i y_ni ⟨x_n, w_i⟩
    cross = (torch.tril(c, -1) * (w @ w.detach().T)).sum()  # Σ_{k<i} (YᵀY)_ik ⟨w_i, sg(w_k)⟩
    norms = 0.5 * (c.diagonal() * (w * w).sum(1)).sum()  # ½ Σ_i (YᵀY)_ii ‖w_i‖²
    return (norms + cross - fit) / x.shape[0]


@register("swta", "autograd")
class SWTAAutograd(SWTA):
    """SWTA as −∇ of the soft-assignment quantisation error, R held constant."""

    summary = "minus the autograd gradient of (1/N) sum_n sum_i r_ni |x_n - w_i|^2 / 2, R constant"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r = self.soft_winners(y)  # (N,M), constant
        return minus_gradient(swta_surrogate, x, r, w)

    def flops(self, n: int, m: int, d: int) -> float:
        return 4.0 * n * m * d + 12.0 * n * m + 2.0 * n * d + 5.0 * m * d  # X Wᵀ forward, Rᵀ X backward

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (2 * n * d + 8 * n * m + 5 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (5 * n * m + 3 * m * d)  # R, X Wᵀ, the squared distances, their grads


@register("hpca", "autograd")
class HPCAAutograd(HPCA):
    """HPCA as −∇ of the deflated reconstruction error, Y held constant."""

    summary = "minus the autograd gradient of the deflated reconstruction error, Y constant"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return minus_gradient(hpca_surrogate, x, y, w)

    def flops(self, n: int, m: int, d: int) -> float:
        # X Wᵀ and its backward Yᵀ X; Yᵀ Y; W Wᵀ and its backward tril(YᵀY) W
        return 4.0 * n * m * d + 2.0 * n * m * m + 4.0 * m * m * d + 4.0 * n * m + 6.0 * m * m + 5.0 * m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (2 * n * d + 6 * n * m + 6 * m * m + 5 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (3 * n * m + 5 * m * m + 3 * m * d)
