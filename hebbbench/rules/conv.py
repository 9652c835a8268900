"""Conv layers as matrix problems: the patch rows X (N,D) and response rows Y (N,M).

For a conv layer with kernel k×k over C channels, N = B·Ho·Wo and D = C·k·k (docs/design.md §1):
``X = unfold(inputs)`` and the responses ``S = conv2d(inputs, W)`` reshaped to rows,
both in the same (batch, output position) order, so that S = X Wᵀ.
"""

from __future__ import annotations

import torch
from torch import Tensor


def responses_to_rows(responses: Tensor) -> Tensor:
    """(B,M,Ho,Wo) conv output -> (B*Ho*Wo, M) rows, in unfold's row order."""
    b, m = responses.shape[:2]
    return responses.reshape(b, m, -1).transpose(1, 2).reshape(-1, m)  # (B,L,M) -> (B*L,M)


def rows_to_responses(rows: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """(B*Ho*Wo, M) rows -> (B,M,Ho,Wo) maps of the given shape: the inverse of :func:`responses_to_rows`."""
    b, m, ho, wo = shape
    return rows.reshape(b, ho * wo, m).transpose(1, 2).reshape(b, m, ho, wo)  # (B,L,M) -> (B,M,Ho,Wo)


class ConvGeometry:
    """Kernel size, stride, padding and dilation of a conv layer; turns images into rows."""

    def __init__(self, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> None:
        for name, value, low in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("padding", padding, 0), ("dilation", dilation, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def output_size(self, size: int) -> int:
        span = self.dilation * (self.kernel_size - 1) + 1
        return (size + 2 * self.padding - span) // self.stride + 1

    def rows(self, inputs: Tensor) -> Tensor:
        """(B,C,H,W) -> (B*Ho*Wo, C*k*k) patch rows."""
        cols = torch.nn.functional.unfold(
            inputs, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride
        )  # (B, C*k*k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B*L, C*k*k)

    def as_kwargs(self) -> dict[str, int]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
