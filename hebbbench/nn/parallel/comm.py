"""Counted, timed collectives of data-parallel Hebbian training.

Every all-reduce of the training step goes through :class:`Comm`, which counts calls and
payload bytes per *kind* ("update": the Hebbian partial sums; "batchnorm": the batch
statistics) and times each call without stopping the step: on CUDA by two events recorded on
the current stream around the call, which are ordered after the work queued before it (not
counted as communication) and before the work queued after it, read when the seconds are
asked for (the harness asks after the step, once the device is synchronised); on the CPU
gloo returns when the sum is in place and ``time.perf_counter`` brackets the call. A host
synchronisation around every all-reduce (one per layer: the updates with ``reduce="layer"``
and every batch norm) would serialise the step. Time inside an all-reduce includes waiting
for the slowest rank to arrive: load imbalance shows up as communication.

Control traffic (agreeing on when warm-up ends, barriers, gathering the measurements,
checking that the ranks hold the same weights) uses the same group but is neither counted
nor timed.

With one rank (no process group, or a group of one) every call is a no-op that costs and
counts nothing, so one code path serves every world size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor


#: integer types of a float's bit pattern, by size in bytes.
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class Traffic:
    """Communication of one kind since the last reset: calls, payload bytes per rank, seconds."""

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0  # of the calls read so far (:meth:`Comm.seconds` reads the pending ones)
    pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)  # CUDA calls not read


class Comm:
    """Sum all-reduce over a process group (``None``: the default group), counted and timed per kind."""

    def __init__(self, group: dist.ProcessGroup | None = None, device: torch.device | str = "cpu") -> None:
        self.group = group
        self.device = torch.device(device)
        initialized = dist.is_available() and dist.is_initialized()
        if group is not None and not initialized:
            raise ValueError("a process group was given but torch.distributed is not initialized")
        self.size = dist.get_world_size(group) if initialized else 1
        self.rank = dist.get_rank(group) if initialized else 0
        self.traffic: dict[str, Traffic] = {}

    def __repr__(self) -> str:
        backend = dist.get_backend(self.group) if self.size > 1 else "none"
        return f"Comm(rank={self.rank}, size={self.size}, backend={backend}, device={self.device})"

    # -- the counted all-reduce ----------------------------------------------------------
    def all_reduce(self, tensor: Tensor, kind: str) -> Tensor:
        """Sum ``tensor`` (contiguous) over the ranks in place; returns it. A no-op for one rank.

        Never waits for the device: the sum is ordered on the current stream like any operation.
        """
        if self.size == 1:
            return tensor
        t = self.traffic.setdefault(kind, Traffic())
        t.calls += 1
        t.bytes += tensor.numel() * tensor.element_size()
        if self.device.type == "cuda":
            stream = torch.cuda.current_stream(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            dist.all_reduce(tensor, group=self.group)
            end.record(stream)
            t.pending.append((start, end))
        else:
            t0 = time.perf_counter()
            dist.all_reduce(tensor, group=self.group)
            t.seconds += time.perf_counter() - t0
        return tensor

    def reset(self) -> None:
        self.traffic = {}

    def seconds(self, kind: str | None = None) -> float:
        """Seconds inside all-reduce calls (of one kind, or all) since the last reset.

        Waits for the calls not read yet to finish (no wait after the step's synchronisation).
        """
        for k, t in self.traffic.items():
            if kind is None or k == kind:
                for start, end in t.pending:
                    end.synchronize()
                    t.seconds += start.elapsed_time(end) / 1e3  # milliseconds
                t.pending.clear()
        return sum(t.seconds for k, t in self.traffic.items() if kind is None or k == kind)

    def calls(self, kind: str | None = None) -> int:
        return sum(t.calls for k, t in self.traffic.items() if kind is None or k == kind)

    def bytes(self, kind: str | None = None) -> int:
        return sum(t.bytes for k, t in self.traffic.items() if kind is None or k == kind)

    # -- control traffic, neither counted nor timed ----------------------------------------
    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _control(self, values: Tensor, op: dist.ReduceOp) -> Tensor:
        if self.size > 1:
            dist.all_reduce(values, op=op, group=self.group)
        return values

    def barrier(self) -> None:
        """Wait until every rank arrives (a one-element all-reduce: the same on gloo and NCCL)."""
        self.sync()
        self._control(torch.zeros(1, device=self.device), dist.ReduceOp.SUM)
        self.sync()

    def all_agree(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""
        return bool(self._control(torch.tensor([float(flag)], device=self.device), dist.ReduceOp.MIN).item())

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (same shape on all ranks), in group-rank order, on the CPU."""
        if self.size == 1:
            return [tensor.detach().cpu()]
        tensor = tensor.to(self.device).contiguous()  # NCCL gathers device tensors only
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor, group=self.group)
        return [p.cpu() for p in parts]

    def broadcast(self, tensor: Tensor, src: int = 0) -> Tensor:
        """Copy group rank ``src``'s ``tensor`` to every rank, in place."""
        if self.size > 1:
            dist.broadcast(tensor, src=dist.get_global_rank(self.group or dist.group.WORLD, src), group=self.group)
        return tensor

    def identical(self, tensor: Tensor) -> bool:
        """Whether every rank holds the same bits (element-wise max equals min of the bit patterns).

        Comparing bit patterns as integers makes NaN equal to itself and tells 0.0 from −0.0.
        Patterns narrower than 4 bytes (float16, bfloat16) are widened to int32 first: NCCL
        reduces no int16.
        """
        if self.size == 1:
            return True
        flat = tensor.detach().reshape(-1)
        if flat.is_floating_point():
            flat = flat.view(_BITS[flat.element_size()])
        if flat.element_size() < 4:
            flat = flat.to(torch.int32)  # the same pattern, sign-extended: equal exactly when the bits are
        high = self._control(flat.clone(), dist.ReduceOp.MAX)
        low = self._control(flat.clone(), dist.ReduceOp.MIN)
        return bool(torch.equal(high, low))
