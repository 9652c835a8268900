"""The paper's networks, built from hebbbench's Hebbian layers (docs/design.md §3).

Each hidden layer is a Hebbian layer followed by batch norm, ReLU and, where given,
max pooling (kernel = stride):

    h_{l+1} = pool(relu(bn(S_l))),   S_l = conv2d(h_l, W_l)  or  h_l W_lᵀ

and a plain ``nn.Linear`` classifier on top (trained by SGD in the paper's second
phase, never by the Hebbian step). Batch norm has no affine parameters and no running
statistics (``track_running_stats=False``): it always normalises with the statistics
of the batch at hand, so the network is stateless apart from its weights and a
Hebbian step is deterministic and identical across implementations. ReLU follows
batch norm in every hidden layer, whatever the rule.

Networks are data (:data:`NETWORKS`: name -> :class:`NetworkSpec`); sizes follow
from the specs (:func:`layer_shapes`), e.g. the 6-layer net's conv2 at batch 64 has
N = 64·12·12 = 9216 rows, D = 96·3·3 = 864 inputs and M = 128 neurons.

Sources: the authors' code for Lagani, Falchi, Gennaro, Amato, "FastHebb: Scaling
Hebbian training of deep neural networks to ImageNet level", Neurocomputing 2024
(6- and 10-layer nets); Simonyan & Zisserman, "Very deep convolutional networks for
large-scale image recognition", ICLR 2015 (VGG configurations A and D).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hebbbench import rules
from hebbbench.rules.conv import ConvGeometry
from hebbbench.nn.data import dataset_info
from hebbbench.nn.layers import HebbianConv2d, HebbianLayer, HebbianLinear
from hebbbench.nn.step import network_step


@dataclass(frozen=True)
class LayerSpec:
    """One Hebbian layer: ``kind`` "conv" (k×k kernel) or "linear"; ``pool`` 1 means no pooling."""

    name: str
    kind: str
    c_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: int = 1


@dataclass(frozen=True)
class NetworkSpec:
    """A network as data: its Hebbian layers in order, input size, batch size and datasets."""

    name: str
    layers: tuple[LayerSpec, ...]
    input_size: int  # images are input_size × input_size
    batch_size: int
    datasets: tuple[str, ...]  # the first is the default
    in_channels: int = 3
    description: str = ""

    @property
    def dataset(self) -> str:
        return self.datasets[0]


@dataclass(frozen=True)
class LayerShape:
    """Sizes of one Hebbian layer in a network at its batch size (docs/design.md §1)."""

    name: str
    kind: str  # "conv" | "linear"
    c_in: int  # conv: input channels; linear: input features
    c_out: int
    kernel: int
    stride: int
    padding: int
    pool: int
    input_hw: tuple[int, int]  # (1, 1) for a linear layer
    output_hw: tuple[int, int]  # before pooling
    n: int  # rows of the update: B·Ho·Wo (conv) or B (linear)
    d: int  # C_in·k·k (conv) or input features (linear)
    m: int  # neurons = C_out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _conv(name: str, c_out: int, k: int = 3, pool: int = 1, padding: int = 0) -> LayerSpec:
    return LayerSpec(name, "conv", c_out, kernel=k, padding=padding, pool=pool)


def _vgg(name: str, config: list[int | str], description: str) -> NetworkSpec:
    """A VGG spec from its config ("M" = max pool 2 after the preceding conv)."""
    layers: list[LayerSpec] = []
    for item in config:
        if item == "M":
            layers[-1] = dataclasses.replace(layers[-1], pool=2)
        else:
            layers.append(_conv(f"conv{len(layers) + 1}", int(item), 3, padding=1))
    n = len(layers)
    layers += [LayerSpec(f"fc{n + 1}", "linear", 4096), LayerSpec(f"fc{n + 2}", "linear", 4096)]
    return NetworkSpec(name, tuple(layers), 224, 32, ("imagenet",), description=description)


NETWORKS: dict[str, NetworkSpec] = {
    "6layer": NetworkSpec(
        "6layer",
        (
            _conv("conv1", 96, 5, pool=2),
            _conv("conv2", 128),
            _conv("conv3", 192, pool=2),
            _conv("conv4", 256),
            LayerSpec("fc5", "linear", 4096),
        ),
        input_size=32, batch_size=64, datasets=("cifar10", "cifar100", "tinyimagenet"),
        description="the paper's 6-layer CNN (CIFAR-10/100, Tiny ImageNet at 32x32)",
    ),
    "10layer": NetworkSpec(
        "10layer",
        (
            _conv("conv1", 96, 7, pool=3),
            _conv("conv2", 128),
            _conv("conv3", 192, pool=2),
            _conv("conv4", 192),
            _conv("conv5", 256, pool=2),
            _conv("conv6", 256),
            _conv("conv7", 384, pool=2),
            _conv("conv8", 512),
            LayerSpec("fc9", "linear", 4096),
        ),
        input_size=210, batch_size=32, datasets=("imagenet",),
        description="the paper's 10-layer ImageNet net (210x210)",
    ),
    "vgg11": _vgg("vgg11", [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
                  "VGG-11 (configuration A), Hebbian convs and fcs, with batch norm"),
    "vgg16": _vgg("vgg16", [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                            512, 512, 512, "M"],
                  "VGG-16 (configuration D), Hebbian convs and fcs, with batch norm"),
}


def get_spec(name: str | NetworkSpec) -> NetworkSpec:
    """The spec called ``name`` (a spec passes through); ValueError naming the allowed values."""
    if isinstance(name, NetworkSpec):
        return name
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)}")
    return NETWORKS[name]


def scale_spec(spec: str | NetworkSpec, *, width: float = 1.0, batch_size: int | None = None,
               input_size: int | None = None) -> NetworkSpec:
    """A smaller (or larger) copy: every Hebbian layer's C_out times ``width`` (at least 1)."""
    spec = get_spec(spec)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    layers = tuple(dataclasses.replace(layer, c_out=max(1, round(layer.c_out * width))) for layer in spec.layers)
    scaled = dataclasses.replace(spec, layers=layers, batch_size=batch_size or spec.batch_size,
                                 input_size=input_size or spec.input_size)
    layer_shapes(scaled)  # raises if the images become too small for the kernels
    return scaled


def _walk(spec: NetworkSpec, batch_size: int) -> Iterator[LayerShape]:
    channels, size = spec.in_channels, (spec.input_size, spec.input_size)
    flat = False
    for layer in spec.layers:
        if layer.kind == "conv":
            if flat:
                raise ValueError(f"{spec.name}: conv layer {layer.name} after a linear layer")
            geometry = ConvGeometry(layer.kernel, layer.stride, layer.padding)
            out = (geometry.output_size(size[0]), geometry.output_size(size[1]))
            if min(out) < 1:
                raise ValueError(f"{spec.name}: {layer.name} gets {size[0]}x{size[1]} images, "
                                 f"too small for a {layer.kernel}x{layer.kernel} kernel")
            yield LayerShape(layer.name, "conv", channels, layer.c_out, layer.kernel, layer.stride,
                             layer.padding, layer.pool, size, out, batch_size * out[0] * out[1],
                             channels * layer.kernel * layer.kernel, layer.c_out)
            size = (out[0] // layer.pool, out[1] // layer.pool)
            if min(size) < 1:
                raise ValueError(f"{spec.name}: pooling after {layer.name} leaves no pixels")
            channels = layer.c_out
        elif layer.kind == "linear":
            features = channels * size[0] * size[1]
            yield LayerShape(layer.name, "linear", features, layer.c_out, 1, 1, 0, layer.pool, (1, 1), (1, 1),
                             batch_size, features, layer.c_out)
            channels, size, flat = layer.c_out, (1, 1), True
        else:
            raise ValueError(f"{spec.name}: layer {layer.name} has unknown kind {layer.kind!r}; allowed: conv, linear")


def layer_shapes(name: str | NetworkSpec, batch_size: int | None = None) -> list[LayerShape]:
    """Kind, channels, kernel, input size, stride, padding and N, D, M of every Hebbian layer.

    N is counted at ``batch_size`` (default: the network's own batch size).
    """
    spec = get_spec(name)
    return list(_walk(spec, batch_size or spec.batch_size))


def feature_size(spec: NetworkSpec) -> int:
    """Width of the last Hebbian layer's (flattened, pooled) output: the classifier's input."""
    last = layer_shapes(spec)[-1]
    if last.kind == "linear":
        return last.c_out
    return last.c_out * (last.output_hw[0] // last.pool) * (last.output_hw[1] // last.pool)


class HebbianNetwork(nn.Module):
    """Hebbian layers with batch norm, ReLU and pooling, and a linear classifier.

    ``hebbian_layers`` maps names ("conv1", ..., "fc5") to the Hebbian layers, in order;
    ``post[name]`` is what follows each one (batch norm, ReLU, pool).
    """

    def __init__(self, spec: NetworkSpec, rule: str, impl: str, *, classes: int, lr: float,
                 generator: torch.Generator, device: torch.device | str, dtype: torch.dtype,
                 rule_options: dict[str, Any], impl_options: dict[str, Any]) -> None:
        super().__init__()
        self.spec, self.rule_name, self.rule_options = spec, rule, dict(rule_options)
        self.hebbian_layers = nn.ModuleDict()
        self.post = nn.ModuleDict()
        options = {**rule_options, **impl_options}
        for shape in layer_shapes(spec):
            common = dict(rule=rule, impl=impl, lr=lr, generator=generator, device=device, dtype=dtype, **options)
            if shape.kind == "conv":
                layer: HebbianLayer = HebbianConv2d(shape.c_in, shape.c_out, shape.kernel, stride=shape.stride,
                                                    padding=shape.padding, **common)
                norm: nn.Module = nn.BatchNorm2d(shape.c_out, affine=False, track_running_stats=False)
            else:
                layer = HebbianLinear(shape.c_in, shape.c_out, **common)
                norm = nn.BatchNorm1d(shape.c_out, affine=False, track_running_stats=False)
            post = [norm, nn.ReLU()]
            if shape.pool > 1:
                post.append(nn.MaxPool2d(shape.pool, shape.pool))
            self.hebbian_layers[shape.name] = layer
            self.post[shape.name] = nn.Sequential(*post).to(device=device, dtype=dtype)
        features = feature_size(spec)
        self.classifier = nn.Linear(features, classes, device=device, dtype=dtype)
        with torch.no_grad():
            w = torch.randn(classes, features, generator=generator, dtype=torch.float64) / math.sqrt(features)
            self.classifier.weight.copy_(w)
            self.classifier.bias.zero_()
        self.impl, self.impl_options = impl, dict(impl_options)

    def set_impl(self, impl: str, **options: Any) -> None:
        """Switch every Hebbian layer to another implementation (changes only speed and memory).

        ``options`` of the implementation (e.g. ``group_size``) replace the previous
        implementation's; the rule's own options (e.g. ``temperature``) are kept unless given.
        """
        rule_options, impl_options = split_options(self.rule_name, options)
        rule_options = {**self.rule_options, **rule_options}
        for layer in self.hebbian_layers.values():
            layer.set_impl(self.rule_name, impl, **rule_options, **impl_options)
        self.rule_options, self.impl, self.impl_options = rule_options, impl, impl_options

    def features(self, images: Tensor) -> Tensor:
        """The last hidden layer's output, flattened: (B, C, H, W) -> (B, F)."""
        h = images
        for name, layer in self.hebbian_layers.items():
            h = self.post[name](layer(h))
        return h.flatten(1)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))  # (B, classes)

    def hebbian_step(self, images: Tensor) -> Tensor:
        """One Hebbian step of every layer, bottom to top (:func:`hebbbench.nn.step.network_step`)."""
        return network_step(self, images)


def build_network(name: str | NetworkSpec, rule: str = "hpca", impl: str = "fh",
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0, *,
                  dataset: str | None = None, classes: int | None = None, lr: float = 1e-3,
                  **rule_options: Any) -> HebbianNetwork:
    """The network ``name`` (or a spec) trained by (rule, impl), its weights drawn from ``seed``.

    ``rule_options`` go to every layer: the rule's own (e.g. ``temperature``) and the
    implementation's (e.g. ``group_size=8``; replaced by :meth:`HebbianNetwork.set_impl`).
    The same spec, seed and dtype give the same weights whatever the implementation.
    ``classes`` defaults to the dataset's; ``lr`` is every Hebbian layer's learning rate η.
    """
    spec = get_spec(name)
    dataset = dataset or spec.dataset
    if dataset not in spec.datasets:
        raise ValueError(f"network {spec.name} is not defined for dataset {dataset!r}; allowed: "
                         f"{', '.join(spec.datasets)}")
    generator = torch.Generator().manual_seed(seed)
    own, impl_options = split_options(rule, rule_options)
    return HebbianNetwork(spec, rule, impl, classes=classes or dataset_info(dataset).classes, lr=lr,
                          generator=generator, device=device, dtype=dtype, rule_options=own,
                          impl_options=impl_options)


def split_options(rule: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the rule's own options, the implementation's options) of ``options``."""
    own = rules.rule_class(rule).default_options()
    return ({k: v for k, v in options.items() if k in own}, {k: v for k, v in options.items() if k not in own})
