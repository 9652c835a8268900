"""FastHebb replayed from CUDA graphs (impl ``fh-graph``; GPU only).

Small layers are partly launch-bound: the fh update is a handful of kernels (softmax,
two products, a scaling) and a layer's step adds the forward convolution and unfold.
A CUDA graph records those launches once and replays them with one launch
(``torch.cuda.graphs``; NVIDIA's CUDA Graphs). A graph reads and writes fixed buffers, so
each capture is a :class:`Captured`: its static inputs, its static output, and the memory
it holds. Using one is three steps: :meth:`Captured.stage` copies new inputs into the static
buffers, :meth:`Captured.replay` launches the graph and returns the static output (no copy;
the next replay overwrites it), and the caller copies that output if it keeps it.

What is captured:

- the update (``delta``): per (shapes, dtype, device), with static copies of x, y and w.
  ``delta`` itself stages, replays and returns a copy; the benchmark's ``update`` case
  (:func:`hebbbench.suites.workload.replayed`) times the replay alone, the inputs staged
  before each sample outside the timed region and the output checked on a copy taken once;
- the layer's whole step (:meth:`wrap_step`): forward, rows, update and W ← W + ηΔW (in
  data-parallel training: ΔW written into the all-reduce buffer instead), per input shape,
  with a static copy of the input batch; the weights are the layer's own buffer, updated in
  place by every replay. A step call stages its batch (one copy of the images: a new batch
  must reach the graph's buffer, as in training) and replays; the responses returned are the
  graph's static output, overwritten by the next replay. The ``step`` case's check runs the
  step form with a sink (ΔW written to a buffer instead of applied: a capture of its own).

Capture follows torch's recipe: a few eager warm-up runs on a side stream (the layer's
weights are restored after them), then ``torch.cuda.graph`` with a private memory pool.
Capture is one-time work outside timing (:meth:`prepare`, reported as compile time). The
memory a capture holds from then on — its private pool (reserved at capture, before any
call is measured: every segment of the allocator owned by the graph's pool, from
``torch.cuda.memory_snapshot``) and its static inputs — is :meth:`held_bytes`, which the
harness adds to the peak of a call. On a CPU the implementation is not available and the
harness records it as skipped.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hebbbench.rules.hpca import HPCAFastHebb
from hebbbench.rules.registry import Unavailable, register
from hebbbench.rules.swta import SWTAFastHebb

#: eager runs before capture (cuBLAS workspaces, lazy initialisation).
WARMUP_RUNS = 3


@dataclass(eq=False)
class Captured:
    """One captured computation: the graph, the buffers it reads and writes, the pool it holds."""

    graph: Any  # torch.cuda.CUDAGraph (anything with replay())
    inputs: tuple[Tensor, ...]  # static input buffers the graph reads
    output: Tensor  # static output the graph writes, in its pool
    pool_bytes: int  # bytes reserved in the graph's private memory pool

    def stage(self, *values: Tensor) -> None:
        """Copy new inputs into the static buffers."""
        for buffer, value in zip(self.inputs, values, strict=True):
            buffer.copy_(value)

    def replay(self) -> Tensor:
        """Run the graph on what the static buffers hold; the static output, overwritten by the next replay."""
        self.graph.replay()
        return self.output

    @property
    def held_bytes(self) -> int:
        """Memory held between calls: the private pool (the output included) and the static inputs."""
        return self.pool_bytes + sum(t.nbytes for t in self.inputs)


def pool_bytes(graph: torch.cuda.CUDAGraph, device: torch.device) -> int:
    """Bytes of the allocator's segments owned by ``graph``'s private memory pool on ``device``."""
    torch.cuda.synchronize(device)
    pool = tuple(graph.pool())
    return sum(segment["total_size"] for segment in torch.cuda.memory_snapshot()
               if segment["device"] == device.index and tuple(segment["segment_pool_id"]) == pool)


def capture(fn: Callable[[], Tensor], inputs: tuple[Tensor, ...]) -> Captured:
    """Warm ``fn`` (which reads ``inputs``) up on a side stream, then capture it in a private pool."""
    device = inputs[0].device
    if device.type != "cuda":
        raise Unavailable(f"fh-graph replays CUDA graphs: it needs tensors on a CUDA device, got {device}")
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_RUNS):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    held = pool_bytes(graph, device)
    if held < out.nbytes:  # the output lives in the pool: a smaller pool means the pool was not found
        raise RuntimeError(f"fh-graph: the capture's memory pool {graph.pool()} shows {held} bytes, "
                           f"less than its output's {out.nbytes}")
    return Captured(graph, inputs, out, held)


class Graphed:
    """Mixin: the fh update and the layer step replayed from CUDA graphs."""

    device_types = ("cuda",)
    compiles = True  # capture is one-time work before timing

    def _captures(self) -> weakref.WeakSet:
        """Every live capture of this rule object (its updates' and its layer step forms')."""
        return self.__dict__.setdefault("_live", weakref.WeakSet())

    def captured_update(self, x: Tensor, y: Tensor, w: Tensor) -> Captured:
        """The update captured for the shapes of x (N,D), y (N,M), w (M,D); captured on first use."""
        updates = self.__dict__.setdefault("_updates", {})
        key = (x.shape, y.shape, w.shape, w.dtype, w.device)
        if key not in updates:
            static = (x.clone(), y.clone(), w.clone())  # (N,D), (N,M), (M,D)
            updates[key] = capture(lambda: super(Graphed, self).delta(*static), static)
            self._captures().add(updates[key])
        return updates[key]

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        captured = self.captured_update(x, y, w)
        captured.stage(x, y, w)
        return captured.replay().clone()  # (M,D), the caller's to keep

    def held_bytes(self) -> int:
        """Memory every capture of this rule object holds between calls (pools and static inputs)."""
        return sum(c.held_bytes for c in self._captures())

    def prepare(self, x: Tensor, y: Tensor, w: Tensor) -> float:
        """Capture the update for these shapes outside timing; the seconds it took."""
        start = time.perf_counter()
        self.captured_update(x, y, w)
        if w.device.type == "cuda":
            torch.cuda.synchronize(w.device)
        return time.perf_counter() - start

    def eager_form(self):
        """The same update without graphs (the registered fh class), for capturing a layer step."""
        parent = next(c for c in type(self).__mro__[1:] if getattr(c, "impl", "") and not issubclass(c, Graphed))
        return parent(**self.option_values())

    def wrap_step(self, layer, step_with):
        """The layer's whole step captured once per input shape, then replayed."""
        eager = step_with(self.eager_form())
        graphs: dict[tuple, Captured] = {}  # this form's captures, freed with it

        def step(inputs: Tensor) -> Tensor:
            key = (inputs.shape, inputs.dtype, inputs.device)
            if key not in graphs:
                static = inputs.clone()  # (B,D) or (B,C,H,W)
                weights = layer.weight.clone()  # the warm-up runs update W: restore it after
                graphs[key] = capture(lambda: eager(static), (static,))
                layer.weight.copy_(weights)
                self._captures().add(graphs[key])
            captured = graphs[key]
            captured.stage(inputs)
            return captured.replay()  # (B,M) or (B,M,Ho,Wo), overwritten by the next step

        return step


@register("swta", "fh-graph")
class SWTAGraphed(Graphed, SWTAFastHebb):
    """SWTA-FH replayed from a CUDA graph."""

    summary = "FastHebb replayed from CUDA graphs (update and layer step), GPU only"


@register("hpca", "fh-graph")
class HPCAGraphed(Graphed, HPCAFastHebb):
    """HPCA-FH replayed from a CUDA graph."""

    summary = "FastHebb replayed from CUDA graphs (update and layer step), GPU only"
