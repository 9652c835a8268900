"""HPCA in blocks: block-size edge cases, and fh-auto picking the cheaper formulation per shape."""

from __future__ import annotations

import pytest
import torch

from conftest import rule_inputs
from hebbbench import rules
from hebbbench.measure.numerics import relative_error


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 8, 64])
def test_blocked_matches_fh_for_any_block_size(block_size):
    x, y, w = rule_inputs(5, 8, 6, seed=4, dtype=torch.float64)  # N < M
    dw = rules.get("hpca", impl="fh-blocked", block_size=block_size).update(x, y, w)
    assert relative_error(dw, rules.get("hpca", impl="fh").update(x, y, w)) < 1e-12


@pytest.mark.parametrize("n, m, d, expected", [
    (32, 4096, 4096, "fh-blocked"),  # 4096-unit fully connected layer at batch 32
    (64, 4096, 2304, "fh-blocked"),  # the 6-layer net's fc1 output at batch 64
    (9216, 128, 864, "fh"),  # the 6-layer net's conv2 at batch 64
    (8, 16, 8, "fh"),  # one block: blocked would only add the residual
])
def test_auto_chooses_the_cheaper_form(n, m, d, expected):
    auto = rules.get("hpca", impl="fh-auto")
    assert auto.choose(n, m, d) == expected
    fh = rules.get("hpca", impl="fh").flops(n, m, d)
    blocked = rules.get("hpca", impl="fh-blocked").flops(n, m, d)
    assert auto.flops(n, m, d) == min(fh, blocked)
    if expected == "fh-blocked":
        assert blocked < fh / 2  # the M²·D term is what blocking removes


@pytest.mark.parametrize("n, m, d", [(3, 40, 5), (40, 6, 30)])
def test_auto_runs_its_choice(n, m, d, monkeypatch):
    from hebbbench.rules import hpca_blocked

    calls = []
    for name in ("hpca_fh", "hpca_blocked"):
        original = getattr(hpca_blocked, name)
        monkeypatch.setattr(hpca_blocked, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    auto = rules.get("hpca", impl="fh-auto", block_size=4)
    x, y, w = rule_inputs(n, m, d, seed=0)
    dw = auto.update(x, y, w)
    assert calls == [{"fh": "hpca_fh", "fh-blocked": "hpca_blocked"}[auto.choose(n, m, d)]]
    assert relative_error(dw, auto.reference(x, y, w)) < 1e-5
    assert auto.choose(3, 40, 5) == "fh-blocked" and auto.choose(40, 6, 30) == "fh"


def test_block_size_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        rules.get("hpca", impl="fh-auto", block_size=0)
