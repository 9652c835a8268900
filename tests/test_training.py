"""The network training step: layer inputs, the update order, and equal training across impls."""

from __future__ import annotations

import pytest
import torch

from hebbbench.nn.networks import build_network, scale_spec
from hebbbench.measure.numerics import relative_error
from hebbbench.measure.timing import TimingPolicy
from hebbbench.nn.training import STEP, hebbian_step, layer_inputs, load_weights, time_breakdown, weights

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
    hebbian_step(net, images)
    for name, layer in net.hebbian_layers.items():
        inputs, responses = captured[name]
        start = untouched.hebbian_layers[name]
        torch.testing.assert_close(responses, start(inputs))  # responses at the starting weights
        expected = start.weight + 1e-2 * start.delta(inputs, responses).view_as(start.weight)
        assert relative_error(layer.weight, expected) < 1e-6, name


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
            hebbian_step(net, images)
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
    hebbian_step(net, batches(1)[0])
    assert relative_error(net.hebbian_layers["conv2"].weight, state["conv2"]) > 0
    load_weights(net, state)
    assert all(torch.equal(net.hebbian_layers[n].weight, state[n]) for n in state)


def test_time_breakdown_times_every_layer_and_the_step():
    nets = {"fh": build_network(SMALL, "swta", "fh"), "naive": build_network(SMALL, "swta", "naive", group_size=8)}
    before = weights(nets["naive"])
    policy = TimingPolicy(warmup_s=0, min_rounds=2, max_rounds=2, min_rounds_capped=2, case_seconds=0.1,
                          flush_cache=False)
    result = time_breakdown(nets, batches(2), "cpu", policy)
    assert list(result) == ["conv1", "conv2", "conv3", "conv4", "fc5", STEP]
    assert all(len(t.samples) == 2 for timings in result.values() for t in timings.values())
    # every sample starts from the starting weights: the last one leaves one step's change
    assert relative_error(nets["naive"].hebbian_layers["conv1"].weight, before["conv1"]) < 0.1
