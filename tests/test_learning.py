"""Learning works: HPCA finds the principal subspace; SWTA puts prototypes on cluster centres."""

from __future__ import annotations

import math

import torch

from hebbbench import HebbianLinear, rules


def largest_principal_angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle between the row spaces of a (k,D) and b (k,D)."""
    qa, _ = torch.linalg.qr(a.T)
    qb, _ = torch.linalg.qr(b.T)
    cosines = torch.linalg.svdvals(qa.T @ qb).clamp(max=1.0)
    return math.degrees(math.acos(cosines.min().item()))


def test_hpca_learns_top_principal_subspace():
    g = torch.Generator().manual_seed(0)
    d, k = 10, 3
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    variances = torch.tensor([9.0, 6.0, 4.0] + [0.5] * (d - k), dtype=torch.float64)
    mix = (basis * variances.sqrt()).float()  # x = mix z has covariance basis diag(var) basisᵀ
    layer = HebbianLinear(d, k, rule="hpca", impl="fh", lr=0.01, generator=g)
    for _ in range(3000):
        layer.hebbian_step(torch.randn(32, d, generator=g) @ mix.T)
    top = basis[:, :k].T.float()  # (k,D)
    assert largest_principal_angle_degrees(layer.weight, top) < 5.0
    # Sanger orders the components: row i aligns with the i-th eigenvector
    cos = torch.nn.functional.cosine_similarity(layer.weight, top, dim=1).abs()
    assert (cos > 0.99).all(), cos


def test_swta_prototypes_reach_mixture_centres():
    g = torch.Generator().manual_seed(1)
    d, n_centres = 5, 4
    centres = torch.eye(d)[:n_centres] * 4.0  # well separated: pairwise distance 5.7
    swta = rules.get("swta", impl="fh", temperature=0.02)
    w = centres + 0.7 * torch.randn(n_centres, d, generator=g)  # one prototype per centre, 1.6 away
    for _ in range(400):
        labels = torch.randint(n_centres, (64,), generator=g)
        x = centres[labels] + 0.3 * torch.randn(64, d, generator=g)
        y = x @ w.T - 0.5 * (w * w).sum(1)  # −½‖x − w‖² up to a per-row constant: nearest wins
        w += 0.5 * swta.update(x, y, w)
    nearest = torch.cdist(centres, w).min(dim=1).values
    assert (nearest < 0.1).all(), nearest
