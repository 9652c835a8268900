"""The paper's networks: sizes from the specs, forward shapes, switching implementations."""

from __future__ import annotations

import pytest
import torch

from hebbbench.nn.networks import NETWORKS, build_network, feature_size, get_spec, layer_shapes, scale_spec


def test_6layer_shapes_match_design():
    shapes = {s.name: s for s in layer_shapes("6layer")}
    assert list(shapes) == ["conv1", "conv2", "conv3", "conv4", "fc5"]
    conv2 = shapes["conv2"]
    assert (conv2.kind, conv2.c_in, conv2.c_out, conv2.kernel, conv2.input_hw) == ("conv", 96, 128, 3, (14, 14))
    assert (conv2.n, conv2.d, conv2.m) == (9216, 864, 128)  # docs/design.md §3
    assert (shapes["conv1"].n, shapes["conv1"].d) == (64 * 28 * 28, 75)
    assert (shapes["fc5"].kind, shapes["fc5"].n, shapes["fc5"].d, shapes["fc5"].m) == ("linear", 64, 2304, 4096)


def test_10layer_fc_input_follows_from_the_shapes():
    shapes = layer_shapes("10layer")
    assert [s.name for s in shapes][-1] == "fc9" and len(shapes) == 9
    assert shapes[0].input_hw == (210, 210) and shapes[0].kernel == 7 and shapes[1].input_hw == (68, 68)
    assert shapes[-1].d == 512 * 3 * 3
    assert all(s.padding == 0 for s in shapes)


@pytest.mark.parametrize("name, convs", [("vgg11", 8), ("vgg16", 13)])
def test_vgg_configs(name, convs):
    shapes = layer_shapes(name)
    assert sum(s.kind == "conv" for s in shapes) == convs
    fc = [s for s in shapes if s.kind == "linear"]
    assert [(s.d, s.m) for s in fc] == [(25088, 4096), (4096, 4096)]
    assert all(s.padding == 1 and s.kernel == 3 for s in shapes if s.kind == "conv")
    assert NETWORKS[name].batch_size == 32 and shapes[0].n == 32 * 224 * 224


def test_layer_shapes_at_another_batch_size():
    assert layer_shapes("6layer", batch_size=8)[1].n == 8 * 144


def test_build_small_network_forward_and_features():
    spec = scale_spec("6layer", width=1 / 8, batch_size=4)
    net = build_network(spec, "swta", "fh", seed=3)
    assert list(net.hebbian_layers) == ["conv1", "conv2", "conv3", "conv4", "fc5"]
    images = torch.randn(4, 3, 32, 32)
    assert net(images).shape == (4, 10)
    assert net.features(images).shape == (4, feature_size(spec))
    assert build_network(spec, "swta", dataset="cifar100").classifier.out_features == 100


def test_same_seed_same_weights_whatever_the_impl():
    spec = scale_spec("6layer", width=1 / 8)
    a = build_network(spec, "hpca", "fh", seed=1)
    b = build_network(spec, "hpca", "naive", seed=1, group_size=8)
    for name in a.hebbian_layers:
        torch.testing.assert_close(a.hebbian_layers[name].weight, b.hebbian_layers[name].weight, rtol=0, atol=0)


def test_set_impl_keeps_rule_options_and_weights():
    net = build_network(scale_spec("6layer", width=1 / 8), "swta", "fh", temperature=0.5)
    before = net.hebbian_layers["conv2"].weight.clone()
    net.set_impl("naive", group_size=4)
    rule = net.hebbian_layers["conv2"].rule
    assert (rule.impl, rule.group_size, rule.temperature) == ("naive", 4, 0.5)
    assert torch.equal(net.hebbian_layers["conv2"].weight, before)
    net.set_impl("fh")
    assert net.impl_options == {} and net.hebbian_layers["fc5"].rule.impl == "fh"


@pytest.mark.parametrize("call, message", [
    (lambda: layer_shapes("resnet"), "unknown network 'resnet'; allowed: 6layer, 10layer, vgg11, vgg16"),
    (lambda: build_network("6layer", dataset="imagenet"), "not defined for dataset 'imagenet'"),
    (lambda: scale_spec("6layer", input_size=8), "too small for a 3x3 kernel"),
    (lambda: build_network("6layer", "swta", "fh", group_size=8), "unknown option.*group_size"),
])
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("network", ["6layer", "10layer", "vgg11"])
def test_paper_preset_lists_the_networks_hebbian_layers(network):
    """The paper preset (TOML data) and the network definitions describe the same layers."""
    from hebbbench.suites.grid import load_grid

    sweep = next(s for s in load_grid("paper").sweeps if s.name == network)
    shapes = layer_shapes(network)
    assert [layer.name for layer in sweep.layers] == [s.name for s in shapes]
    assert list(sweep.batch_sizes) == [get_spec(network).batch_size]
    for layer, shape in zip(sweep.layers, shapes):
        assert layer.kind == shape.kind
        if layer.kind == "linear":
            assert (layer.in_features, layer.out_features) == (shape.c_in, shape.c_out)
        else:
            assert (layer.in_channels, layer.out_channels, layer.kernel_size, layer.input_size, layer.stride,
                    layer.padding) == (shape.c_in, shape.c_out, shape.kernel, tuple(shape.input_hw), shape.stride,
                                       shape.padding)
        assert (layer.rows(sweep.batch_sizes[0]), layer.d, layer.m) == (shape.n, shape.d, shape.m)
