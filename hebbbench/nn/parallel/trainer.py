"""The data-parallel Hebbian step: each rank's partial sums, one all-reduce, the same update everywhere.

Every rule here updates a layer by a mean over the N rows of per-row terms, all at the
same W (docs/design.md §1–2): ΔW = (1/N) Σ_n u(x_n, y_n, W). Split the batch's B images over
P ranks, rank r holding B_r of them and so N_r = B_r·P_l rows of layer l (P_l positions
per image: Ho·Wo for a conv layer, 1 for a linear one; the same on every rank). Rank r
runs the layer's own update on its rows, ΔW_r = (1/N_r) Σ_{its rows} u, and contributes

    B_r · ΔW_r = (1/P_l) Σ_{its rows} u        (M×D, plus the count B_r)

The all-reduced sum is (1/P_l) Σ_{all rows} u = B·ΔW; dividing by the reduced count B
gives ΔW exactly (up to float rounding): no approximation, for uneven shards too, and for
every registered implementation, since each computes the same per-row mean. So ``naive``
runs data-parallel just like ``fh``, and the comparison stays fair.

For HPCA-fh the contribution is B_r/N_r · (Y_rᵀX_r − tril(Y_rᵀY_r) W): the reduced
YᵀX and YᵀY combined linearly — Σ_r tril(Y_rᵀY_r) W = tril(YᵀY) W because tril(·) and
(·)W are linear — so reducing the finished ΔW_r equals reducing the two partial products
and combining them after, while moving less:

    reduce B_r·ΔW_r:        M·D + 1 numbers per layer per step (any rule)
    reduce YᵀX and YᵀY:     M·D + M² numbers per layer per step (HPCA)

e.g. the 6-layer net's fc5 (M = 4096, D = 2304): 9.4 M numbers instead of 26.2 M. Both
ways every rank does the O(M²·D) product tril(·)W once per step (on its own Y_rᵀY_r, or
on the reduced YᵀY), so reducing ΔW_r costs no extra compute.

A step is :func:`hebbbench.nn.step.network_step` with this module's reduce hook (each layer
trained on its pre-update input; the next layer sees the pre-update output):

    for each layer l:  S_l = layer_l(h_l)                        this rank's shard
                       buffer_l ← [B_r·ΔW_r(h_l, S_l, W_l), B_r]    partial sum (the layer's sink)
                       h_{l+1} = pool(relu(syncbn(S_l)))          statistics of the whole batch
    all-reduce the buffer (``reduce="bucket"``: all layers in one call; ``"layer"``: one per layer)
    W_l ← W_l + η · buffer_l[ΔW] / buffer_l[count]

The first three lines run in the implementation's own form of the layer step where it has
one (fh-compiled compiles them, fh-graph replays them from a CUDA graph), the write into
the buffer included; the all-reduces and the applies run after the last layer.
With one rank there is nothing to reduce: the step is the plain single-process step.

Batch norm uses the whole batch's statistics (:mod:`hebbbench.nn.parallel.batchnorm`:
2C + 1 float64 numbers per layer, one all-reduce each) so that every layer's input is the
single-process one. The updates wait for the end of the step: no layer's weights are read
after its update within a step, so applying them last changes nothing.

Every rank applies the same reduced buffer with the same operations, so the ranks' weights
stay identical bit for bit (``Comm.identical`` checks it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from hebbbench.nn.parallel.batchnorm import synchronised
from hebbbench.nn.parallel.comm import Comm
from hebbbench.nn.networks import HebbianNetwork
from hebbbench.nn.step import network_step

#: how the partial sums are reduced: all layers in one call per step, or one call per layer.
REDUCE_MODES = ("bucket", "layer")
#: the kind under which the partial sums' all-reduces are counted.
KIND = "update"


def shard(images: Tensor, rank: int, size: int) -> Tensor:
    """Rank ``rank``'s part of a global batch split into ``size`` parts (sizes differ by at most one)."""
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    if images.shape[0] < size:
        raise ValueError(f"a batch of {images.shape[0]} images cannot be split over {size} ranks "
                         "(every rank needs at least one)")
    return torch.tensor_split(images, size)[rank]


def _partial_sum(segment: Tensor, rows: torch.Size, dw: Tensor) -> Tensor:
    """[ΔW_r, B_r] -> [B_r·ΔW_r, B_r] in ``segment``: (M,D)·() -> (M,D), written in place."""
    return torch.mul(dw, segment[-1], out=segment[:-1].view(rows))


class DataParallel:
    """Data-parallel Hebbian training of a :class:`HebbianNetwork` on this rank's shard of each batch.

    Every rank holds a whole copy of the network; ``comm`` spans the ranks (one rank:
    the plain single-process step, :meth:`HebbianNetwork.hebbian_step`, bit for bit). ``broadcast`` copies rank 0's
    weights to every rank first (the networks are built from a seed, so they agree
    anyway; the broadcast makes sure).
    """

    def __init__(self, net: HebbianNetwork, comm: Comm | None = None, *, reduce: str = "bucket",
                 broadcast: bool = True) -> None:
        if reduce not in REDUCE_MODES:
            raise ValueError(f"unknown reduce {reduce!r}; allowed: {', '.join(REDUCE_MODES)}")
        first = next(iter(net.hebbian_layers.values())).weight
        self.net, self.reduce = net, reduce
        self.comm = comm or Comm(device=first.device)
        self.post = nn.ModuleDict({name: synchronised(post, self.comm) for name, post in net.post.items()})
        # one flat buffer: per layer [ΔW flattened (M·D), count], contiguous, so a layer's
        # segment or the whole buffer can be all-reduced in one call
        sizes = [layer.weight_rows.numel() + 1 for layer in net.hebbian_layers.values()]
        self.buffer = torch.zeros(sum(sizes), dtype=first.dtype, device=first.device)
        self.segments: dict[str, Tensor] = dict(zip(net.hebbian_layers, torch.split(self.buffer, sizes)))
        self.sinks = {name: functools.partial(_partial_sum, self.segments[name], layer.weight_rows.shape)
                      for name, layer in net.hebbian_layers.items()}
        if broadcast:
            for layer in net.hebbian_layers.values():
                self.comm.broadcast(layer.weight)

    @property
    def numbers_per_step(self) -> int:
        """Numbers all-reduced for the updates in one step (Σ_l M_l·D_l + 1)."""
        return self.buffer.numel()

    def step(self, images: Tensor) -> Tensor:
        """One training step on this rank's ``images`` (B_r,C,H,W); returns its part of the last hidden output."""
        if self.comm.size == 1:
            return network_step(self.net, images)
        for segment in self.segments.values():
            segment[-1] = images.shape[0]  # B_r, read by the sinks
        return network_step(self.net, images, post=self.post, reduce=self)

    def sink(self, name: str) -> Callable[[Tensor], Tensor]:
        """Layer ``name``'s sink: B_r·ΔW_r into its segment of the buffer (the count B_r is already there)."""
        return self.sinks[name]

    def reduced(self) -> Iterator[tuple[str, Tensor]]:
        """All-reduce the partial sums; each layer's ΔW = Σ_r B_r·ΔW_r / Σ_r B_r, (M,D)."""
        if self.reduce == "bucket":
            self.comm.all_reduce(self.buffer, KIND)
        for name, layer in self.net.hebbian_layers.items():
            segment = self.segments[name]
            if self.reduce == "layer":
                self.comm.all_reduce(segment, KIND)
            yield name, segment[:-1].view(layer.weight_rows.shape) / segment[-1]

    def weights_identical(self) -> bool:
        """Whether every rank holds the same weights, bit for bit (control traffic, not counted)."""
        flat = torch.cat([layer.weight.reshape(-1) for layer in self.net.hebbian_layers.values()])
        return self.comm.identical(flat)
