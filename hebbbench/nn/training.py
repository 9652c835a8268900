"""Closures that time the paper's Hebbian training step over a whole network, and its layers' updates.

The step is :func:`hebbbench.nn.step.network_step` (every Hebbian layer once, bottom to top,
each on the previous layer's pre-update output, through the implementation's own whole-step
form where it has one): the inputs of all layers in a step are those of a plain forward pass
at the step's starting weights (:func:`layer_inputs`). The classifier is not part of the
Hebbian step.

For timing (docs/design.md §4) each implementation gets one closure for the whole step
(:func:`step_call`, with the applies W ← W + ηΔW) and one per layer for the layer's update
(:func:`update_call`: ΔW alone, on the layer's actual input captured from a forward pass, as
``hebbbench run --what update`` times it); ``reset`` closures restore the starting weights
before every step sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from hebbbench.nn.networks import HebbianNetwork
from hebbbench.nn.step import network_step

#: name given to the whole step in timing results (layer names are "conv1", "fc5", ...).
STEP = "step"


@torch.no_grad()
def layer_inputs(net: HebbianNetwork, images: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Each Hebbian layer's (input, responses) in a step on ``images``, without updating."""
    captured: dict[str, tuple[Tensor, Tensor]] = {}
    h = images
    for name, layer in net.hebbian_layers.items():
        s = layer(h)
        captured[name] = (h, s)
        h = net.post[name](s)
    return captured


def weights(net: HebbianNetwork) -> dict[str, Tensor]:
    """A copy of every Hebbian layer's weights."""
    return {name: layer.weight.detach().clone() for name, layer in net.hebbian_layers.items()}


@torch.no_grad()
def load_weights(net: HebbianNetwork, state: Mapping[str, Tensor]) -> None:
    """Copy ``state`` (from :func:`weights`) into the Hebbian layers."""
    for name in state:
        net.hebbian_layers[name].weight.copy_(state[name])


def step_call(net: HebbianNetwork, batches: Sequence[Tensor]) -> Callable[[], Tensor]:
    """A closure running one step per call on the next of ``batches`` (cycling)."""
    position = [0]

    def call() -> Tensor:
        images = batches[position[0] % len(batches)]
        position[0] += 1
        return network_step(net, images)

    return call


def update_call(net: HebbianNetwork, name: str, inputs: Tensor, responses: Tensor) -> Callable[[], Tensor]:
    """A closure computing layer ``name``'s ΔW on the captured input (the update alone: nothing applied)."""
    layer = net.hebbian_layers[name]

    @torch.no_grad()
    def call() -> Tensor:
        return layer.delta(inputs, responses)  # (M,D)

    return call


def reset_call(net: HebbianNetwork, state: Mapping[str, Tensor]) -> Callable[[], None]:
    """A closure restoring the starting weights."""
    return lambda: load_weights(net, state)
