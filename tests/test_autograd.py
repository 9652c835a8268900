"""autograd: the surrogate-loss gradients equal fh, also under no_grad / inference_mode callers."""

from __future__ import annotations

import pytest
import torch

from conftest import rule_inputs
from hebbbench import HebbianLinear, rules
from hebbbench.measure.numerics import relative_error


@pytest.mark.parametrize("rule", ["swta", "hpca"])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode, torch.enable_grad])
def test_autograd_works_in_any_grad_mode(rule, mode):
    x, y, w = rule_inputs(12, 5, 7, seed=3, dtype=torch.float64)
    w.requires_grad_(mode is torch.enable_grad)  # a caller's own autograd state is left alone
    with mode():
        inside = [t.clone() for t in (x, y, w)]  # under inference_mode: inference tensors
        dw = rules.get(rule, impl="autograd").update(*inside)
    assert not dw.requires_grad and w.grad is None
    assert relative_error(dw, rules.get(rule, impl="fh").update(x, y, w.detach())) < 1e-12


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_autograd_layer_step_matches_fh(rule):
    def trained(impl):
        layer = HebbianLinear(6, 4, rule=rule, impl=impl, lr=0.1, generator=torch.Generator().manual_seed(0))
        for seed in range(3):
            layer.hebbian_step(torch.randn(10, 6, generator=torch.Generator().manual_seed(seed)))
        return layer.weight

    assert relative_error(trained("autograd"), trained("fh")) < 1e-5
