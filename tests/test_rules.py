"""The local rules beyond the paper (kwta, oja, krotov, hebb): options, ranking ties, edge cases."""

from __future__ import annotations

import pytest
import torch

from conftest import rule_inputs
from hebbbench import HebbianLinear, rules
from hebbbench.measure.numerics import relative_error


@pytest.mark.parametrize("rule, options, message", [
    ("kwta", dict(k=0), "k must be an integer >= 1"),
    ("kwta", dict(k=1.5), "k must be an integer >= 1"),
    ("kwta", dict(k=True), "k must be an integer >= 1"),
    ("krotov", dict(rank=1), "rank must be an integer >= 2"),
    ("krotov", dict(anti_hebbian=-0.1), "anti_hebbian must be a finite number >= 0"),
    ("krotov", dict(anti_hebbian=float("nan")), "anti_hebbian must be a finite number >= 0"),
    ("hebb", dict(decay=-1), "decay must be a finite number >= 0"),
    ("hebb", dict(decay="0.1"), "decay must be a finite number >= 0"),
    ("oja", dict(temperature=1.0), "unknown option.*temperature.*allowed: none"),
])
def test_bad_options_raise_value_error(rule, options, message):
    with pytest.raises(ValueError, match=message):
        rules.get(rule, impl="fh", **options)


def tied_inputs(dtype=torch.float32):
    """Responses with exact ties at the top (small integers), so tie-breaking decides the winners."""
    g = torch.Generator().manual_seed(3)
    y = torch.randint(-2, 3, (12, 6), generator=g).to(dtype)  # (N,M), many ties
    x = torch.randn(12, 5, generator=g, dtype=dtype)
    w = torch.randn(6, 5, generator=g, dtype=dtype)
    return x, y, w


@pytest.mark.parametrize("rule, options", [("kwta", dict(k=1)), ("kwta", dict(k=3)), ("krotov", {}),
                                           ("krotov", dict(rank=4))])
def test_ties_go_to_the_lower_index_in_every_impl(rule, options):
    x, y, w = tied_inputs()
    r = rules.get(rule, impl="fh", **options)
    a, _ = r.sample_factors(y)
    for n in range(y.shape[0]):
        order = sorted(range(y.shape[1]), key=lambda j: (-y[n, j].item(), j))
        assert a[n, order[0]] == 1.0
        if rule == "kwta":
            assert a[n].sum() == options["k"] and all(a[n, j] == 1.0 for j in order[: options["k"]])
        else:
            assert a[n, order[r.rank - 1]] == -r.anti_hebbian
    ref = r.reference(x, y, w)
    for impl in rules.impls(rule):
        cls = rules.lookup(rule, impl)
        if not cls.supports("cpu") or cls.compiles:
            continue
        dw = rules.get(rule, impl=impl, **options).update(x, y, w)
        assert relative_error(dw, ref) <= (cls.rtol or 1e-5), impl


def test_more_winners_than_neurons_and_rank_beyond_m():
    x, y, w = rule_inputs(7, 3, 4, seed=1)
    every = rules.get("kwta", impl="fh", k=10)
    assert torch.equal(every.winners(y), torch.ones_like(y))
    only_winner = rules.get("krotov", impl="fh", rank=5)  # M = 3 < rank: no anti-Hebbian neuron
    g = only_winner.activations(y)
    assert torch.equal(g.sum(1), torch.ones(7)) and (g >= 0).all()


def test_hebb_decay_is_exact():
    x, y, w = rule_inputs(10, 4, 6, seed=2, dtype=torch.float64)
    dw = rules.get("hebb", impl="fh", decay=0.25).update(x, y, w)
    torch.testing.assert_close(dw, y.T @ x / 10 - 0.25 * w)


def test_oja_neurons_find_the_first_principal_direction():
    g = torch.Generator().manual_seed(0)
    d = 6
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    mix = (basis * torch.tensor([3.0, 1.0, 0.7, 0.5, 0.4, 0.3], dtype=torch.float64)).float()
    layer = HebbianLinear(d, 2, rule="oja", impl="fh", lr=0.02, generator=g)
    for _ in range(1500):
        layer.hebbian_step(torch.randn(32, d, generator=g) @ mix.T)
    top = basis[:, 0].float()
    cos = torch.nn.functional.cosine_similarity(layer.weight, top[None, :], dim=1).abs()
    assert (cos > 0.99).all(), cos
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(2), atol=0.05, rtol=0)
