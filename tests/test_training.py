"""The network training step: layer inputs, the update order, and equal training across impls."""

from __future__ import annotations

import pytest
import torch

from torch.nn import functional as F

from hebbbench import rules
from hebbbench.nn.networks import build_network, scale_spec
from hebbbench.measure.numerics import relative_error
from hebbbench.nn.step import network_step
from hebbbench.nn.training import layer_inputs, load_weights, weights

SMALL = scale_spec("6layer", width=1 / 8, batch_size=4)  # M = 12, 16, 24, 32, 512


def batches(count: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 32, 32, generator=g) for _ in range(count)]


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_step_updates_every_layer_on_its_pre_update_input(rule):
    net = build_network(SMALL, rule, "fh", lr=1e-2)
    untouched = build_network(SMALL, rule, "fh", lr=1e-2)  # the same starting weights
    images = batches(1)[0]
    captured = layer_inputs(net, images)
    network_step(net, images)
    for name, layer in net.hebbian_layers.items():
        inputs, responses = captured[name]
        start = untouched.hebbian_layers[name]
        torch.testing.assert_close(responses, start(inputs))  # responses at the starting weights
        expected = start.weight + 1e-2 * start.delta(inputs, responses).view_as(start.weight)
        assert relative_error(layer.weight, expected) < 1e-6, name


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_network_step_in_float64_is_the_layer_by_layer_maths(rule):
    """fh in float64: every layer's W + η ΔW, ΔW the rule's per-sample formula on the layer's pre-update
    input, and the next layer's input pool(relu(bn(S))) of its responses at the starting weights."""
    spec = scale_spec("6layer", width=1 / 8, batch_size=2, input_size=24)  # convs: stride 1, no padding
    net = build_network(spec, rule, "fh", dtype=torch.float64, lr=1e-2)
    start = weights(net)
    images = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = net.hebbian_step(images)
    maths = rules.get(rule, "fh")  # .reference: the per-sample sum, in float64
    h = images
    for name, layer in net.hebbian_layers.items():
        w = start[name]
        m = w.shape[0]
        if w.dim() == 4:
            s = F.conv2d(h, w)  # (B,M,Ho,Wo)
            x = F.unfold(h, w.shape[-1]).transpose(1, 2).reshape(-1, w[0].numel())  # (B*Ho*Wo, C*k*k)
            y = s.flatten(2).transpose(1, 2).reshape(-1, m)  # (B*Ho*Wo, M)
        else:
            x = h.flatten(1)  # (B,D)
            s = y = x @ w.T  # (B,D)@(D,M) -> (B,M)
        expected = w + 1e-2 * maths.reference(x, y, w.view(m, -1)).view_as(w)
        assert relative_error(layer.weight, expected) < 1e-12, name
        assert relative_error(layer.weight, w) > 1e-4, name  # the step moved it
        h = net.post[name](s)
    torch.testing.assert_close(out, h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", ["swta", "hpca"])
def test_training_is_the_same_with_every_impl(rule):
    """k = 3 steps from one seed: naive with G = 8 and G = 5 (dividing no layer's M) vs fh.

    Observed on CPU float32: weights within ~2e-7, weight changes W_k - W_0 within ~3e-6.
    """
    data = batches(3)
    trained, start = {}, None
    for impl, options in [("fh", {}), ("naive", {"group_size": 8}), ("naive", {"group_size": 5})]:
        net = build_network(SMALL, rule, impl, lr=1e-2, seed=7, **options)
        start = weights(net)
        for images in data:
            network_step(net, images)
        trained[(impl, options.get("group_size"))] = weights(net)
    ref = trained[("fh", None)]
    for key, w in trained.items():
        for name in ref:
            assert relative_error(w[name], ref[name]) < 1e-4, (key, name)
            moved = relative_error(w[name] - start[name], ref[name] - start[name])
            assert moved < 1e-4, (key, name, moved)
            assert relative_error(ref[name], start[name]) > 1e-3  # the weights did move


def test_load_weights_restores_a_step():
    net = build_network(SMALL, "hpca", "fh")
    state = weights(net)
    network_step(net, batches(1)[0])
    assert relative_error(net.hebbian_layers["conv2"].weight, state["conv2"]) > 0
    load_weights(net, state)
    assert all(torch.equal(net.hebbian_layers[n].weight, state[n]) for n in state)

