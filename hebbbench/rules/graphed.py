"""FastHebb replayed from CUDA graphs (impl ``fh-graph``; GPU only).

Small layers are partly launch-bound: the fh update is a handful of kernels (softmax,
two products, a scaling) and a layer's step adds the forward convolution and unfold.
A CUDA graph records those launches once and replays them with one launch
(``torch.cuda.graphs``; NVIDIA's CUDA Graphs). What is captured:

- the update (``delta``): per (shapes, dtype, device), with static copies of x, y and w;
  a call copies its inputs into them, replays, and returns a copy of the static output;
- the layer's whole step (:meth:`wrap_step`): forward, rows, update and W ← W + ηΔW (in
  data-parallel training: ΔW written into the all-reduce buffer instead), per input shape,
  with a static copy of the input batch; the weights are the layer's own buffer, updated in
  place by every replay; the returned responses are the graph's static output, overwritten
  by the next replay.

Capture follows torch's recipe: a few eager warm-up runs on a side stream (the layer's
weights are restored after them), then ``torch.cuda.graph``. Capture is one-time work
outside timing (:meth:`prepare`, reported as compile time). On a CPU the implementation
is not available and the harness records it as skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from hebbbench.rules.hpca import HPCAFastHebb
from hebbbench.rules.registry import Unavailable, register
from hebbbench.rules.swta import SWTAFastHebb

#: eager runs before capture (cuBLAS workspaces, lazy initialisation).
WARMUP_RUNS = 3


def capture(fn: Callable[[], Tensor], device: torch.device) -> tuple[torch.cuda.CUDAGraph, Tensor]:
    """Warm ``fn`` up on a side stream, then capture it; returns the graph and its static output."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_RUNS):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def _require_cuda(t: Tensor) -> None:
    if t.device.type != "cuda":
        raise Unavailable(f"fh-graph replays CUDA graphs: it needs tensors on a CUDA device, got {t.device}")


class Graphed:
    """Mixin: the fh update and the layer step replayed from CUDA graphs."""

    device_types = ("cuda",)
    compiles = True  # capture is one-time work before timing

    def _graphs(self) -> dict:
        if not hasattr(self, "_captured"):
            self._captured: dict = {}
        return self._captured

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        _require_cuda(w)
        key = ("update", x.shape, y.shape, w.shape, w.dtype, w.device)
        entry = self._graphs().get(key)
        if entry is None:
            static = [x.clone(), y.clone(), w.clone()]
            graph, out = capture(lambda: super(Graphed, self).delta(*static), w.device)
            entry = self._graphs()[key] = (graph, static, out)
        graph, static, out = entry
        for buffer, value in zip(static, (x, y, w)):
            buffer.copy_(value)
        graph.replay()
        return out.clone()

    def prepare(self, x: Tensor, y: Tensor, w: Tensor) -> float:
        """Capture the update for these shapes outside timing; the seconds it took."""
        start = time.perf_counter()
        self.update(x, y, w)
        torch.cuda.synchronize(w.device)
        return time.perf_counter() - start

    def eager_form(self):
        """The same update without graphs (the registered fh class), for capturing a layer step."""
        parent = next(c for c in type(self).__mro__[1:] if getattr(c, "impl", "") and not issubclass(c, Graphed))
        return parent(**self.option_values())

    def wrap_step(self, layer, step_with):
        """The layer's whole step captured once per input shape, then replayed."""
        eager = step_with(self.eager_form())
        graphs: dict = {}

        def step(inputs: Tensor) -> Tensor:
            _require_cuda(inputs)
            key = (inputs.shape, inputs.dtype, inputs.device)
            if key not in graphs:
                static = inputs.clone()
                weights = layer.weight.clone()  # the warm-up runs update W: restore it after
                graph, out = capture(lambda: eager(static), inputs.device)
                layer.weight.copy_(weights)
                graphs[key] = (graph, static, out)
            graph, static, out = graphs[key]
            static.copy_(inputs)
            graph.replay()
            return out

        return step


@register("swta", "fh-graph")
class SWTAGraphed(Graphed, SWTAFastHebb):
    """SWTA-FH replayed from a CUDA graph."""

    summary = "FastHebb replayed from CUDA graphs (update and layer step), GPU only"


@register("hpca", "fh-graph")
class HPCAGraphed(Graphed, HPCAFastHebb):
    """HPCA-FH replayed from a CUDA graph."""

    summary = "FastHebb replayed from CUDA graphs (update and layer step), GPU only"
