"""Hebbian layers: own their weights, compute responses, and train with a registered rule.

A layer with weights W (M×D) trains on a mini-batch by (:mod:`hebbbench.nn.step`)

    S  = responses (fully connected: X Wᵀ; conv: conv2d(inputs, W), as rows N×M)
    ΔW = rule.update(X, S, W)    (conv: rule.conv_update, by default via the unfolded rows X)
    W ← W + η ΔW

Switching ``impl`` changes nothing but speed and memory: every implementation
computes the same ΔW (docs/design.md §2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hebbbench import rules
from hebbbench.nn.step import layer_step
from hebbbench.rules.conv import ConvGeometry


class HebbianLayer(nn.Module):
    """Common part of the Hebbian layers: the rule, the learning rate, the weight update.

    The weights are a buffer, not a parameter: no gradient optimiser should touch them.
    """

    def __init__(self, rule: str, impl: str, lr: float, options: dict[str, Any]) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.lr = lr
        self.set_impl(rule, impl, **options)

    def set_impl(self, rule: str, impl: str, **options: Any) -> None:
        """Switch the rule implementation (the weights stay as they are)."""
        self.rule = rules.get(rule, impl=impl, **options)

    @property
    def weight_rows(self) -> Tensor:
        """The weights as an (M, D) view."""
        return self.weight.view(self.weight.shape[0], -1)

    def apply_update(self, dw: Tensor) -> None:
        self.weight_rows.add_(dw, alpha=self.lr)

    def hebbian_step(self, inputs: Tensor) -> Tensor:
        """One Hebbian step on a mini-batch; returns the responses (computed before the update).

        The step of :mod:`hebbbench.nn.step`: an implementation may run it in a form of its
        own (``Update.wrap_step``): fh-compiled compiles it, fh-graph replays it from a CUDA graph.
        """
        return layer_step(self, inputs)


class HebbianLinear(HebbianLayer):
    """Fully connected Hebbian layer: x (B, D) -> responses (B, M); N = B rows."""

    def __init__(self, in_features: int, out_features: int, *, rule: str = "hpca", impl: str = "fh",
                 lr: float = 1e-3, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 **options: Any) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        super().__init__(rule, impl, lr, options)
        self.in_features, self.out_features = in_features, out_features
        w = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
        w /= math.sqrt(in_features)
        self.register_buffer("weight", w.to(device=device, dtype=dtype or torch.get_default_dtype()))

    def forward(self, inputs: Tensor) -> Tensor:
        return inputs.flatten(1) @ self.weight.T  # (B,D)@(D,M) -> (B,M)

    def delta(self, inputs: Tensor, responses: Tensor, rule: rules.Update | None = None) -> Tensor:
        return (rule or self.rule).update(inputs.flatten(1), responses, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rule={self.rule!r}, lr={self.lr}"


class HebbianConv2d(HebbianLayer):
    """Conv Hebbian layer: images (B, C, H, W) -> maps (B, M, Ho, Wo); rows N = B·Ho·Wo, D = C·k·k."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, rule: str = "hpca", impl: str = "fh",
                 lr: float = 1e-3, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 **options: Any) -> None:
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.geometry = ConvGeometry(kernel_size, stride, padding, dilation)
        super().__init__(rule, impl, lr, options)
        self.in_channels, self.out_channels = in_channels, out_channels
        d = in_channels * kernel_size * kernel_size
        w = torch.randn(out_channels, in_channels, kernel_size, kernel_size, generator=generator,
                        dtype=torch.float64) / math.sqrt(d)
        self.register_buffer("weight", w.to(device=device, dtype=dtype or torch.get_default_dtype()))

    def forward(self, inputs: Tensor) -> Tensor:
        return nn.functional.conv2d(inputs, self.weight, **self.geometry.as_kwargs())  # (B,M,Ho,Wo)

    def rows(self, inputs: Tensor) -> Tensor:
        """The update's input rows: (B,C,H,W) -> (B*Ho*Wo, C*k*k)."""
        return self.geometry.rows(inputs)

    def delta(self, inputs: Tensor, responses: Tensor, rule: rules.Update | None = None) -> Tensor:
        return (rule or self.rule).conv_update(inputs, responses, self.weight_rows, self.geometry)

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={g.kernel_size}, stride={g.stride}, "
                f"padding={g.padding}, dilation={g.dilation}, rule={self.rule!r}, lr={self.lr}")
