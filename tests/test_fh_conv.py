"""fh-conv: conv layers get fh's ΔW from the conv weight gradient, never unfolding the patch rows."""

from __future__ import annotations

import pytest
import torch

from hebbbench import HebbianConv2d, rules
from hebbbench.rules.conv import ConvGeometry, responses_to_rows, rows_to_responses
from hebbbench.measure.numerics import relative_error

CONV_RULES = [rule for rule, _ in rules.available(impl="fh-conv")]
GEOMETRIES = [(1, 1, 0, 1), (3, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 3, 2, 1), (2, 2, 0, 3)]


def test_fh_conv_covers_hpca_and_the_local_rules():
    assert set(CONV_RULES) == {"swta", "hpca", "kwta", "oja", "krotov", "hebb"}


def test_rows_to_responses_inverts_responses_to_rows():
    maps = torch.randn(2, 5, 3, 4)
    assert torch.equal(rows_to_responses(responses_to_rows(maps), maps.shape), maps)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
@pytest.mark.parametrize("rule", CONV_RULES)
def test_conv_layer_gets_the_fh_update(rule, kernel, stride, padding, dilation, dtype, tol, monkeypatch):
    layer = HebbianConv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation, rule=rule,
                          impl="fh-conv", generator=torch.Generator().manual_seed(0), dtype=dtype)
    images = torch.randn(2, 3, 11, 9, generator=torch.Generator().manual_seed(1), dtype=dtype)
    responses = layer(images)
    expected = rules.get(rule, impl="fh").update(layer.rows(images), responses_to_rows(responses),
                                                 layer.weight_rows)

    def no_unfold(*args, **kwargs):
        raise AssertionError("fh-conv unfolded the N x D patch matrix")

    monkeypatch.setattr(ConvGeometry, "rows", no_unfold)
    dw = layer.delta(images, responses)
    assert dw.dtype == dtype and dw.shape == layer.weight_rows.shape
    assert relative_error(dw, expected) <= tol


def test_conv_step_trains_like_fh():
    def trained(impl):
        layer = HebbianConv2d(3, 4, 3, stride=2, padding=1, rule="hpca", impl=impl, lr=0.05,
                              generator=torch.Generator().manual_seed(1))
        images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
        for _ in range(3):
            layer.hebbian_step(images)
        return layer.weight

    assert relative_error(trained("fh-conv"), trained("fh")) < 1e-5


@pytest.mark.parametrize("inputs, responses, message", [
    ((2, 3, 8, 8), (2, 4, 6), "expected inputs"),
    ((2, 3, 8, 8), (2, 4, 5, 6), "Ho, Wo the conv output size"),
    ((2, 2, 8, 8), (2, 4, 6, 6), "w \\(M, C\\*k\\*k\\)"),
    ((1, 3, 8, 8), (2, 4, 6, 6), "expected inputs"),
])
def test_conv_update_checks_shapes(inputs, responses, message):
    r = rules.get("swta", impl="fh-conv")
    with pytest.raises(ValueError, match=message):
        r.conv_update(torch.zeros(inputs), torch.zeros(responses), torch.zeros(4, 27), ConvGeometry(3))
