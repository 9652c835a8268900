"""The Hebbian step, of one layer and of a network: the one definition every command runs and times.

Two words, the same in every command (README, "Update and step"): the **update** is ΔW alone,
the rule implementation's computation; a **step** is the whole step below, the apply included.

Layer step on a mini-batch h, for a layer with weights W (M×D) and learning rate η:

    S  = layer(h)                responses at the weights before the step (conv: conv2d(h, W))
    ΔW = rule's delta(h, S, W)   the update (conv: ``conv_update`` on the images and maps)
    W ← W + η ΔW                 the apply; in data-parallel training ΔW goes to a sink instead

run in the implementation's own whole-step form when it has one (``Update.wrap_step``:
fh-compiled compiles it, fh-graph replays it from a CUDA graph), else eagerly.

Network step on images, every Hebbian layer once, bottom to top:

    h_1 = images
    S_l = layer step of layer l on h_l
    h_{l+1} = post_l(S_l) = pool(relu(bn(S_l)))       layer l's pre-update output

so every layer's input is that of a plain forward pass at the step's starting weights.

Reduce hook (data-parallel training, :mod:`hebbbench.nn.parallel.trainer`): rank r's layer l
hands its ΔW_r to ``reduce.sink(l)`` inside the layer's step form (B_r·ΔW_r into the all-reduce
buffer, beside the count B_r) in place of the apply; after the last layer ``reduce.reduced()``
all-reduces the buffer (all layers in one call, or one call per layer) and gives each layer's

    ΔW_l = Σ_r B_r ΔW_{l,r} / Σ_r B_r,      then   W_l ← W_l + η ΔW_l

Applying every layer's update at the end changes nothing: no layer's weights are read after
its update within a step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from hebbbench.rules.registry import Update

#: where a layer's ΔW goes instead of the apply (data-parallel training's partial sums).
Sink = Callable[[Tensor], object]


class HebbianLayer(Protocol):
    """What a layer step needs of a layer (:class:`hebbbench.nn.layers.HebbianLayer` has it)."""

    rule: Update  # the rule implementation: its delta, and its whole-step form if any (wrap_step)

    def __call__(self, inputs: Tensor) -> Tensor:
        """The responses S at the current weights."""

    def delta(self, inputs: Tensor, responses: Tensor, rule: Update) -> Tensor:
        """ΔW (M,D) of ``rule`` on the layer's inputs and responses."""

    def apply_update(self, dw: Tensor) -> None:
        """W ← W + η ΔW."""


class HebbianNetwork(Protocol):
    """What a network step needs of a network (:class:`hebbbench.nn.networks.HebbianNetwork` has it)."""

    hebbian_layers: Mapping[str, HebbianLayer]  # bottom to top
    post: Mapping[str, nn.Module]  # each layer's pool(relu(bn(·))): its output as the next layer's input


class Reduce(Protocol):
    """What data-parallel training puts between the layers' ΔW and their applies."""

    def sink(self, name: str) -> Sink:
        """Layer ``name``'s sink: the same callable on every call (the layer's step form is built around it)."""

    def reduced(self) -> Iterable[tuple[str, Tensor]]:
        """After the last layer: every layer's name and the ΔW (M,D) to apply, all ranks' rows together."""


def eager_step(layer: HebbianLayer, rule: Update, sink: Sink | None, inputs: Tensor) -> Tensor:
    """The layer step, eagerly, with ``rule``; returns the responses (computed before the update)."""
    responses = layer(inputs)  # (B,M,Ho,Wo) or (B,M)
    dw = layer.delta(inputs, responses, rule)  # (M,D)
    if sink is None:
        layer.apply_update(dw)  # W ← W + η ΔW
    else:
        sink(dw)
    return responses


def step_form(layer: HebbianLayer, sink: Sink | None = None) -> Callable[[Tensor], Tensor]:
    """The layer step as one callable, inputs -> responses: the implementation's whole-step form, or eager.

    Built once per (rule, sink) and kept on the layer, one for the plain step and one for the
    latest data-parallel sink: a compiled or captured form compiles or captures on its first
    call for each input shape, not on every step.
    """
    forms = layer.__dict__.setdefault("_step_forms", {})  # plain step (True) or data-parallel: (sink, rule, form)
    entry = forms.get(sink is None)
    if entry is None or entry[0] is not sink or entry[1] is not layer.rule:
        def step_with(rule: Update) -> Callable[[Tensor], Tensor]:
            return functools.partial(eager_step, layer, rule, sink)

        form = layer.rule.wrap_step(layer, step_with) or step_with(layer.rule)
        entry = forms[sink is None] = (sink, layer.rule, form)
    return entry[2]


@torch.no_grad()
def layer_step(layer: HebbianLayer, inputs: Tensor, sink: Sink | None = None) -> Tensor:
    """One Hebbian step of ``layer`` on ``inputs``; returns the responses (computed before the update)."""
    return step_form(layer, sink)(inputs)


@torch.no_grad()
def network_step(net: HebbianNetwork, images: Tensor, *, post: Mapping[str, nn.Module] | None = None,
                 reduce: Reduce | None = None) -> Tensor:
    """One Hebbian step of every layer of ``net`` on ``images`` (B,C,H,W); returns the last hidden output.

    ``post`` replaces the network's own (data-parallel training: batch norm over every
    rank's shard); ``reduce`` takes each layer's ΔW and gives back the ΔW to apply.
    """
    post = net.post if post is None else post
    h = images
    for name, layer in net.hebbian_layers.items():
        s = layer_step(layer, h, None if reduce is None else reduce.sink(name))  # (B,M,Ho,Wo) or (B,M)
        h = post[name](s)  # the next layer's input: the pre-update output
    if reduce is not None:
        for name, dw in reduce.reduced():
            net.hebbian_layers[name].apply_update(dw)  # W ← W + η ΔW
    return h
