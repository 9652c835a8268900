"""Hebbian layers: the step applies W ← W + η ΔW, and switching impl changes only speed."""

from __future__ import annotations

import pytest
import torch

from hebbbench import HebbianConv2d, HebbianLinear, rules
from hebbbench.measure.numerics import relative_error


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_linear_step_applies_lr_times_update(rule):
    layer = HebbianLinear(6, 4, rule=rule, impl="fh", lr=0.1, generator=torch.Generator().manual_seed(0))
    x = torch.randn(10, 6)
    w0 = layer.weight.clone()
    y = layer.hebbian_step(x)
    torch.testing.assert_close(y, x @ w0.T)
    torch.testing.assert_close(layer.weight, w0 + 0.1 * rules.get(rule).update(x, x @ w0.T, w0))


@pytest.mark.parametrize("rule", ["swta", "hpca"])
@pytest.mark.parametrize("impl", ["naive", "loop"])
def test_conv_layer_impls_agree(rule, impl):
    def trained(impl_name):
        layer = HebbianConv2d(3, 5, 3, stride=2, padding=1, rule=rule, impl=impl_name, lr=0.05,
                              generator=torch.Generator().manual_seed(1))
        images = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(2))
        for _ in range(3):
            layer.hebbian_step(images)
        return layer.weight

    assert relative_error(trained(impl), trained("fh")) < 1e-5


def test_conv_layer_output_shape_and_rows():
    layer = HebbianConv2d(3, 8, 5, padding=2, dilation=1)
    images = torch.randn(2, 3, 12, 12)
    assert layer(images).shape == (2, 8, 12, 12)
    assert layer.rows(images).shape == (2 * 144, 75)
    assert layer.weight_rows.shape == (8, 75)


def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown impl 'nope'"):
        HebbianLinear(4, 2, impl="nope")
    with pytest.raises(ValueError, match="lr must be > 0"):
        HebbianLinear(4, 2, lr=0)
    with pytest.raises(ValueError, match="out_features must be an integer >= 1"):
        HebbianLinear(4, 0)


@pytest.mark.slow
def test_compiled_step_equals_eager_step():
    """fh-compiled compiles the whole layer step (forward, rows, update, apply) as one graph."""
    def trained(impl):
        layer = HebbianConv2d(3, 4, 3, rule="hpca", impl=impl, lr=0.1, generator=torch.Generator().manual_seed(3))
        images = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(4))
        for _ in range(2):
            layer.hebbian_step(images)
        return layer.weight

    assert relative_error(trained("fh-compiled"), trained("fh")) < 1e-5
