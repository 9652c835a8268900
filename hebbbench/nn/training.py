"""The paper's Hebbian training step over a whole network, and closures that time it.

One step on a mini-batch trains every Hebbian layer once, bottom to top:

    h_1 = images
    for each layer l:   S_l = layer_l(h_l)                 responses at the weights before the step
                        W_l ← W_l + η ΔW(h_l, S_l, W_l)    the layer's rule (docs/design.md §2)
                        h_{l+1} = pool(relu(bn(S_l)))

So the next layer sees layer l's *pre-update* output, in every implementation: the
inputs of all layers in a step are those of a plain forward pass at the step's
starting weights (:func:`layer_inputs`), and a step is "forward pass + one update
per layer". The classifier is not part of the Hebbian step.

For timing (docs/design.md §4) each implementation gets one closure for the whole step
and one per layer for the layer's update alone (ΔW and W ← W + ηΔW, on the layer's
actual input captured from a forward pass); ``reset`` closures restore the starting
weights before every sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hebbbench.measure.timing import Timing, TimingPolicy, time_interleaved

if TYPE_CHECKING:  # networks.py imports this module's step
    from hebbbench.nn.networks import HebbianNetwork

#: name given to the whole step in timing results (layer names are "conv1", "fc5", ...).
STEP = "step"


@torch.no_grad()
def hebbian_step(net: HebbianNetwork, images: Tensor) -> Tensor:
    """Train every Hebbian layer once on ``images`` (B,C,H,W); returns the last hidden output."""
    h = images
    for name, layer in net.hebbian_layers.items():
        s = layer(h)  # (B,M,Ho,Wo) or (B,M), at the weights before the step
        layer.apply_update(layer.delta(h, s))  # W ← W + η ΔW
        h = net.post[name](s)  # the next layer's input: pre-update output
    return h


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
def load_weights(net: HebbianNetwork, state: Mapping[str, Tensor], names: Sequence[str] | None = None) -> None:
    """Copy ``state`` (from :func:`weights`) into the Hebbian layers (all, or those in ``names``)."""
    for name in names if names is not None else state:
        net.hebbian_layers[name].weight.copy_(state[name])


def step_call(net: HebbianNetwork, batches: Sequence[Tensor]) -> Callable[[], Tensor]:
    """A closure running one step per call on the next of ``batches`` (cycling)."""
    position = [0]

    def call() -> Tensor:
        images = batches[position[0] % len(batches)]
        position[0] += 1
        return hebbian_step(net, images)

    return call


def update_call(net: HebbianNetwork, name: str, inputs: Tensor, responses: Tensor) -> Callable[[], Tensor]:
    """A closure computing layer ``name``'s ΔW on the captured input and applying it."""
    layer = net.hebbian_layers[name]

    @torch.no_grad()
    def call() -> Tensor:
        dw = layer.delta(inputs, responses)  # (M,D)
        layer.apply_update(dw)
        return dw

    return call


def reset_call(net: HebbianNetwork, state: Mapping[str, Tensor],
               names: Sequence[str] | None = None) -> Callable[[], None]:
    """A closure restoring the starting weights (of all layers, or of ``names``)."""
    return lambda: load_weights(net, state, names)


def time_breakdown(nets: Mapping[str, HebbianNetwork], batches: Sequence[Tensor], device: torch.device | str,
                   policy: TimingPolicy = TimingPolicy()) -> dict[str, dict[str, Timing]]:
    """Time each layer's update and the whole step for every implementation, interleaved.

    ``nets`` maps a label to a network (same spec, rule and starting weights; one per
    implementation). Returns ``{layer or STEP: {label: Timing}}``. Every sample starts
    from the starting weights. No budget, no memory check: see :mod:`hebbbench.suites.reproduce`
    for the guarded version.
    """
    labels = list(nets)
    first = nets[labels[0]]
    state = weights(first)
    for label in labels[1:]:
        load_weights(nets[label], state)
    captured = layer_inputs(first, batches[0])
    results: dict[str, dict[str, Timing]] = {}
    for name, (inputs, responses) in captured.items():
        results[name] = time_interleaved(
            {label: update_call(nets[label], name, inputs, responses) for label in labels}, device, policy,
            reset={label: reset_call(nets[label], state, [name]) for label in labels})
    results[STEP] = time_interleaved(
        {label: step_call(nets[label], batches) for label in labels}, device, policy,
        reset={label: reset_call(nets[label], state) for label in labels})
    return results
