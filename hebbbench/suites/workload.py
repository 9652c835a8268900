"""What is timed for a case, set up outside the timed region (TorchBench's closure pattern).

- ``update``: ΔW from precomputed x (N,D), y (N,M), w (M,D): ``rule.update(x, y, w)``;
  for conv layers an implementation that overrides ``conv_update`` (it avoids the N×D
  patch matrix) is given the images and output maps instead of the rows. fh-graph's timed
  call is the replay of its captured update alone: x, y, w are copied into the graph's
  static buffers before every sample, outside the timed region (:func:`replayed`).
- ``step``: one Hebbian training step of the layer on a mini-batch: forward, rows,
  update and W ← W + ηΔW (``layer.hebbian_step``: :func:`hebbbench.nn.step.layer_step`, in the
  implementation's own whole-step form where it has one); the weights are restored before
  every sample, outside the timed region.

Every case also times a *calibration*: a matrix product (M,K)@(K,D) with K = max(N, M) — Yᵀ X
on the case's rows, or, when the layer has more neurons than rows, a fixed (M,M) matrix times
W (the shape of HPCA-FH's tril(YᵀY) W) — repeated up to about 1e8 FLOP on a CPU, 1e10 on a GPU
(about a millisecond of a CPU core; 0.2–2 ms of a GPU, where 1e8 FLOP take 2–15 µs, below any
timer's steady range) and interleaved with
the variants: the compute-bound reference that ``hebbbench compare`` divides each variant's
samples by, round by round, so that runs on different machines, or on one machine under
different load, can be compared.

Every variant's ΔW is first checked against the FastHebb form computed in float64 on the
same inputs; a step's ΔW is the one its own step form computes (a compiled or captured whole
step included), read through the step's sink hook (:func:`hebbbench.nn.step.layer_step`,
the hook data-parallel training writes its partial sums through) instead of applied. The
analytic cost (FLOPs, bytes, memory) of every variant comes from its implementation's cost
model plus the layer's own work.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hebbbench import rules
from hebbbench.rules.conv import responses_to_rows
from hebbbench.rules.graphed import Captured, Graphed
from hebbbench.suites.grid import Case, Variant
from hebbbench.nn.layers import HebbianConv2d, HebbianLayer, HebbianLinear
from hebbbench.nn.step import layer_step
from hebbbench.rules.registry import Update
from hebbbench.rules.fp32_precision import mode_of
from hebbbench.measure.variants import Prepared

STEP_LR = 1e-3


def make_rule(case: Case, variant: Variant) -> Update:
    return rules.get(case.rule, variant.impl, **dict(case.rule_options), **dict(variant.options))


def uses_conv_update(rule: Update, case: Case) -> bool:
    """Whether the implementation computes conv updates from images rather than rows."""
    return case.layer.kind == "conv" and type(rule).conv_update is not Update.conv_update


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one timed call."""

    flops: float
    bytes: float
    memory: float  # predicted peak bytes, inputs included
    overhead_s: float

    def predicted_seconds(self, ceilings) -> float:
        return ceilings.predicted_seconds(self.flops, self.bytes) + self.overhead_s


def predict(case: Case, variant: Variant) -> Cost:
    rule = make_rule(case, variant)
    n, m, d = case.n, case.layer.m, case.layer.d
    item = torch.empty((), dtype=case.torch_dtype).element_size()
    inputs = item * (n * d + n * m + m * d)  # x, y, w (and dW)
    flops = rule.flops(n, m, d)
    nbytes = rule.bytes_moved(n, m, d, item)
    memory = inputs + rule.memory(n, m, d, item)
    if case.what == "step":
        images = item * math.prod(case.layer.input_shape(case.batch))
        flops += 2.0 * n * m * d + m * d  # responses S = X Wᵀ, and W + ηΔW
        nbytes += item * (n * d + n * m + 3 * m * d)
        memory += images
    reference = 8 * (n * d + n * m + 2 * m * d) + rules.get(case.rule, "fh", **dict(case.rule_options)).memory(n, m, d, 8)
    memory += calibration_memory(n, m, d, item)
    return Cost(flops, nbytes, memory + reference, rule.overhead_seconds(n, m, d))


#: the calibration repeats its product until it does this much work, by device type (about a
#: millisecond on one CPU core: a single small product is too short to time steadily on a shared
#: machine; 0.2 ms on an H200's IEEE float32 GEMMs, 2 ms on a T4-class GPU) ...
CALIBRATION_FLOP = {"cpu": 1e8, "cuda": 1e10}
#: ... but at most this many times (tiny cases).
CALIBRATION_MAX_REPEATS = 64


def calibration_repeats(n: int, m: int, d: int, device_type: str = "cpu") -> int:
    """How many times the calibration computes its (M,K)@(K,D) product, K = max(N, M), on a device of this type."""
    flops = 2.0 * m * max(n, m) * d
    return max(1, min(CALIBRATION_MAX_REPEATS, math.ceil(CALIBRATION_FLOP[device_type] / flops)))


def calibration_memory(n: int, m: int, d: int, itemsize: int) -> float:
    """Bytes the calibration allocates: its output, and the (M,M) matrix when M > N."""
    return float(itemsize) * (m * d + (m * m if m > n else 0))


def generator_for(case: Case, seed: int) -> torch.Generator:
    """A CPU generator seeded by the run's seed and the case's rule, layer and batch (not its impls)."""
    key = f"{case.rule}/{case.layer.name}/{case.batch}".encode()
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key))


def build_layer(case: Case, variant: Variant, weight: Tensor) -> HebbianLayer:
    layer_spec = case.layer
    opts = {**dict(case.rule_options), **dict(variant.options)}
    common = dict(rule=case.rule, impl=variant.impl, lr=STEP_LR, device=case.device, dtype=case.torch_dtype, **opts)
    if layer_spec.kind == "linear":
        layer: HebbianLayer = HebbianLinear(layer_spec.in_features, layer_spec.out_features, **common)
    else:
        layer = HebbianConv2d(layer_spec.in_channels, layer_spec.out_channels, layer_spec.kernel_size,
                              stride=layer_spec.stride, padding=layer_spec.padding,
                              dilation=layer_spec.dilation, **common)
    with torch.no_grad():
        layer.weight.copy_(weight.view_as(layer.weight))
    return layer


class CaseWorkload:
    """Inputs of one case, generated once (seeded) and shared by all its variants."""

    def __init__(self, case: Case, seed: int) -> None:
        self.case = case
        g = generator_for(case, seed)
        spec, device, dtype = case.layer, case.device, case.torch_dtype
        images = torch.randn(spec.input_shape(case.batch), generator=g)  # (B,D) or (B,C,H,W)
        reference_layer = build_layer(case, Variant("fh"), torch.randn(spec.m, spec.d, generator=g) / spec.d**0.5)
        self.images = images.to(device=device, dtype=dtype)
        self.w0 = reference_layer.weight_rows.detach().clone()  # (M,D)
        with torch.no_grad():
            self.maps = reference_layer(self.images)  # (B,M) or (B,M,Ho,Wo)
            if spec.kind == "conv":
                self.x = reference_layer.rows(self.images)  # (N,D)
                self.y = responses_to_rows(self.maps)  # (N,M)
            else:
                self.x, self.y = self.images, self.maps
        self._reference_layer = reference_layer

    def calibration(self) -> Callable[[], Tensor]:
        """The calibration call: (M,K)@(K,D), K = max(N, M), repeated ``calibration_repeats`` times."""
        n, m, d = self.case.n, self.case.layer.m, self.case.layer.d
        if n >= m:
            a, b = self.y.T, self.x  # (M,N), (N,D)
        else:
            g = torch.Generator().manual_seed(0)
            a = (torch.randn(m, m, generator=g) / m**0.5).to(device=self.w0.device, dtype=self.w0.dtype)
            b = self.w0  # (M,M), (M,D)
        out = torch.empty(m, d, dtype=self.w0.dtype, device=self.w0.device)
        repeats = calibration_repeats(n, m, d, self.w0.device.type)

        @torch.no_grad()
        def call() -> Tensor:
            for _ in range(repeats):
                torch.mm(a, b, out=out)  # (M,K)@(K,D) -> (M,D)
            return out
        return call

    @torch.no_grad()
    def reference(self) -> Tensor:
        """ΔW of the FastHebb form in float64 on the same inputs (the check's ground truth)."""
        case = self.case
        fh64 = rules.get(case.rule, "fh", **dict(case.rule_options))
        return fh64.update(self.x.double(), self.y.double(), self.w0.double())

    def prepare(self, variant: Variant) -> Prepared:
        case = self.case
        if case.what == "update":
            rule = make_rule(case, variant)
            x, y, w = self.x, self.y, self.w0
            if isinstance(rule, Graphed):  # the replay alone is timed, its inputs staged before
                return replayed(rule, x, y, w)
            if uses_conv_update(rule, case):
                images, maps, geometry = self.images, self.maps, case.layer.geometry

                def call() -> Tensor:
                    return rule.conv_update(images, maps, w, geometry)
            else:
                def call() -> Tensor:
                    return rule.update(x, y, w)
            # compiled in the grad mode of the timed calls: dynamo guards on it, another mode would compile again
            compile_ = torch.no_grad()(lambda: rule.prepare(x, y, w)) if rule.compiles else None
            return Prepared(call=torch.no_grad()(call), reset=None, delta=torch.no_grad()(call), compile=compile_,
                            fp32=mode_of(type(rule)))

        layer = build_layer(case, variant, self.w0)
        images, w0 = self.images, self.w0
        sunk = torch.empty_like(w0)  # (M,D): the ΔW a step computes, for the check

        def sink(dw: Tensor) -> None:  # one object: the step form with this sink is built once
            sunk.copy_(dw)  # (M,D)

        @torch.no_grad()
        def reset() -> None:
            layer.weight_rows.copy_(w0)

        @torch.no_grad()
        def delta() -> Tensor:  # the step's own form, its ΔW written to the sink instead of applied
            reset()
            layer_step(layer, images, sink)
            return sunk.clone()

        def compile_step() -> float:
            reset()
            start = time.perf_counter()
            layer.hebbian_step(images)
            if images.device.type == "cuda":
                torch.cuda.synchronize(images.device)
            return time.perf_counter() - start

        return Prepared(call=lambda: layer.hebbian_step(images), reset=reset, delta=delta,
                        compile=compile_step if layer.rule.compiles else None,
                        held=getattr(layer.rule, "held_bytes", None), fp32=mode_of(type(layer.rule)))


def replayed(rule: Graphed, x: Tensor, y: Tensor, w: Tensor) -> Prepared:
    """fh-graph's update as timed: the replay alone, on x, y, w staged outside the timed region.

    ``reset`` (before every sample, outside the clock) copies x (N,D), y (N,M), w (M,D) —
    the case's own, those fh is timed on — into the graph's static buffers; the timed call
    replays the graph and returns its static ΔW, no copy in or out; the check reads a copy of
    that output taken once. The graph's pool and static inputs are added to the peak (``held``).
    """
    staged: list[Captured] = []

    def reset() -> None:
        staged[:] = [rule.captured_update(x, y, w)]  # captured by ``compile`` before
        staged[0].stage(x, y, w)

    def delta() -> Tensor:
        reset()
        return staged[0].replay().clone()  # (M,D)

    return Prepared(call=lambda: staged[0].replay(), reset=reset, delta=delta,
                    compile=torch.no_grad()(lambda: rule.prepare(x, y, w)), held=rule.held_bytes, fp32=mode_of(type(rule)))
