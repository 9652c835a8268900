"""Conv rows: unfold's patch rows match a hand-written loop over output positions."""

from __future__ import annotations

import pytest
import torch

from hebbbench.rules.conv import ConvGeometry, responses_to_rows


def rows_by_loop(images: torch.Tensor, g: ConvGeometry) -> torch.Tensor:
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (g.padding,) * 4)
    ho, wo = g.output_size(h), g.output_size(w)
    rows = []
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                top, left = i * g.stride, j * g.stride
                patch = padded[n, :, top: top + g.dilation * (g.kernel_size - 1) + 1: g.dilation,
                               left: left + g.dilation * (g.kernel_size - 1) + 1: g.dilation]
                rows.append(patch.reshape(-1))  # (C*k*k,), channel-major like conv weights
    return torch.stack(rows)


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (1, 1, 0, 1), (3, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 3, 2, 1), (2, 2, 0, 3),
])
def test_unfold_rows_match_loop(kernel, stride, padding, dilation):
    g = ConvGeometry(kernel, stride, padding, dilation)
    images = torch.randn(2, 3, 11, 9, dtype=torch.float64)
    assert torch.equal(g.rows(images), rows_by_loop(images, g))


@pytest.mark.parametrize("kernel, stride, padding, dilation", [(3, 1, 0, 1), (3, 2, 1, 2)])
def test_conv_responses_are_rows_times_weights(kernel, stride, padding, dilation):
    g = ConvGeometry(kernel, stride, padding, dilation)
    images = torch.randn(2, 4, 10, 10, dtype=torch.float64)
    weight = torch.randn(5, 4, kernel, kernel, dtype=torch.float64)
    maps = torch.nn.functional.conv2d(images, weight, **g.as_kwargs())
    assert maps.shape[2:] == (g.output_size(10), g.output_size(10))
    torch.testing.assert_close(responses_to_rows(maps), g.rows(images) @ weight.view(5, -1).T)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=0), dict(kernel_size=3, stride=0),
                                    dict(kernel_size=3, padding=-1), dict(kernel_size=3, dilation=1.5)])
def test_bad_geometry_raises(kwargs):
    with pytest.raises(ValueError, match="must be an integer"):
        ConvGeometry(**kwargs)
