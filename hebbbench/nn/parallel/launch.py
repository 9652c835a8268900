"""Starting ranks: local processes spawned by hebbbench, or one rank started by torchrun.

- :func:`launch_local` runs ``fn(rank_info, *args)`` in ``world_size`` new processes on
  this machine (``spawn``), joined through a fresh ``file://`` store (no port to pick, no
  race for one): gloo on the CPU, NCCL with one GPU per process. It never hangs on a
  failure: the parent watches the ranks, and when one raises or dies, or the deadline
  passes, it ends the others and raises :class:`RankFailed` naming the rank and its error.
- :func:`init_from_env` joins the process group a launcher such as ``torchrun`` set up
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``: ``env://``),
  on one node or across nodes (``--nnodes``, ``--node-rank`` or ``--rdzv-endpoint``).

A rank's GPU (:func:`cuda_index`) is ``LOCAL_RANK mod`` the number of GPUs it sees: ``LOCAL_RANK``
where every rank sees all of the node's GPUs, and where a launcher gives each rank its own GPU
through ``CUDA_VISIBLE_DEVICES`` (SLURM's ``--gpus-per-task``) the one it sees, index 0. A node
with more ranks than GPUs and no ``CUDA_VISIBLE_DEVICES`` is refused in one line.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hebbbench.errors import UserError

#: environment variables torchrun sets for every rank.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class RankFailed(RuntimeError):
    """A rank of a local launch raised, died or ran past the deadline; the others were ended."""


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands: its rank, the world size, its rank on this node and its device."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: str
    backend: str


def backend_for(device_type: str) -> str:
    """NCCL for GPUs, gloo for the CPU."""
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device type {device_type!r}; allowed: cpu, cuda")
    return "nccl" if device_type == "cuda" else "gloo"


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting its variables)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def cuda_index(local_rank: int, local_world: int, device_count: int, visible: str | None) -> int:
    """The CUDA device index of rank ``local_rank`` of ``local_world`` on a node, when it sees ``device_count`` GPUs.

    ``local_rank mod device_count``: ``local_rank`` when every rank sees all of the node's GPUs;
    when a launcher gives each rank its own GPUs (``CUDA_VISIBLE_DEVICES``, given as ``visible``,
    set per rank) rank r takes the (r mod count)-th of those it sees, the only one when it sees one.
    UserError when the process sees no GPU, or when ``CUDA_VISIBLE_DEVICES`` is not set and the
    node has more ranks than GPUs: ranks would share a GPU, which NCCL refuses.
    """
    if device_count < 1:
        shown = "not set" if visible is None else repr(visible)
        raise UserError(f"rank {local_rank} on this node sees no CUDA device (CUDA_VISIBLE_DEVICES {shown})")
    if visible is None and local_world > device_count:
        raise UserError(f"{local_world} processes on this node need {local_world} GPUs (one per process); "
                        f"torch sees {device_count}")
    return local_rank % device_count


def _join(device_type: str, rank: int, world_size: int, local_rank: int, local_world_size: int,
          init_method: str, timeout_s: float) -> RankInfo:
    backend = backend_for(device_type)
    device = torch.device("cpu")
    if device_type == "cuda":
        device = torch.device("cuda", cuda_index(local_rank, local_world_size, torch.cuda.device_count(),
                                                 os.environ.get("CUDA_VISIBLE_DEVICES")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s),
                            device_id=device if device_type == "cuda" else None)
    return RankInfo(rank, world_size, local_rank, local_world_size, str(device), backend)


def init_from_env(device_type: str, timeout_s: float = 1800.0) -> RankInfo:
    """Join the process group set up by torchrun (``env://``): gloo on the CPU, NCCL on GPU :func:`cuda_index`."""
    if not under_torchrun():
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        raise RuntimeError(f"not started by torchrun: {', '.join(missing)} not set")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return _join(device_type, rank, world, local_rank, local_world, "env://", timeout_s)


def _rank_main(fn: Callable[..., Any], rank: int, world_size: int, init_method: str, device_type: str,
               timeout_s: float, threads: int | None, folder: str, args: tuple) -> None:
    """One spawned rank: join, run ``fn``, leave its result (or its error) in ``folder``."""
    out = Path(folder)
    try:
        if threads:
            torch.set_num_threads(threads)
        info = _join(device_type, rank, world_size, rank, world_size, init_method, timeout_s)
        result = fn(info, *args)
        torch.save(result, out / f"rank{rank}.tmp")
        os.replace(out / f"rank{rank}.tmp", out / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException as exc:  # reported to the parent, which ends the other ranks
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        (out / f"rank{rank}.err").write_text(f"{text}\n\n{traceback.format_exc()}")
        os._exit(1)  # no clean-up: the other ranks may be stuck in a collective


def launch_local(fn: Callable[..., Any], world_size: int, args: tuple = (), *, device_type: str = "cpu",
                 timeout_s: float = 600.0, threads: int | None = None, poll_s: float = 0.05) -> list[Any]:
    """Run ``fn(RankInfo, *args)`` in ``world_size`` local processes; their return values, in rank order.

    ``fn`` must be importable (a module-level function); its return value is saved with
    ``torch.save``. ``threads`` sets each rank's ``torch.set_num_threads``. Raises
    :class:`RankFailed` when a rank raises or dies (with its error) or when ``timeout_s``
    passes; every rank has ended when this returns or raises.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    backend_for(device_type)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hebbbench-ranks-") as folder:
        init_method = f"file://{Path(folder) / 'store'}"
        saved = _local_environment()
        try:
            procs = [ctx.Process(target=_rank_main, daemon=True, name=f"hebbbench-rank{rank}",
                                 args=(fn, rank, world_size, init_method, device_type, timeout_s, threads, folder,
                                       args))
                     for rank in range(world_size)]
            for p in procs:
                p.start()
        finally:
            _restore_environment(saved)
        try:
            _watch(procs, Path(folder), time.monotonic() + timeout_s, timeout_s, poll_s)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join()
        return [torch.load(Path(folder) / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


def _watch(procs: list, folder: Path, deadline: float, timeout_s: float, poll_s: float) -> None:
    while True:
        codes = [p.exitcode for p in procs]
        failed = [rank for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            # the first to fail is the cause; the others usually failed because a peer vanished
            errors = {rank: folder / f"rank{rank}.err" for rank in failed}
            failed.sort(key=lambda r: errors[r].stat().st_mtime_ns if errors[r].exists() else math.inf)
            first = failed[0]
            why = (errors[first].read_text().split("\n\n")[0] if errors[first].exists()
                   else f"exited with status {codes[first]}")
            then = f" (then rank {', '.join(map(str, failed[1:]))} failed too)" if failed[1:] else ""
            raise RankFailed(f"rank {first} of {len(procs)} failed: {why}{then}")
        if all(code == 0 for code in codes):
            return
        if time.monotonic() > deadline:
            late = [rank for rank, code in enumerate(codes) if code is None]
            raise RankFailed(f"ranks {', '.join(map(str, late))} of {len(procs)} still running after "
                             f"{timeout_s:g} s; ended")
        time.sleep(poll_s)


def _local_environment() -> dict[str, str | None]:
    """Set what the spawned ranks inherit: gloo on the loopback device (where the user has not chosen)."""
    saved = {"GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME")}
    if saved["GLOO_SOCKET_IFNAME"] is None and Path("/sys/class/net/lo").exists():
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # the ranks are local: never depend on the host name resolving
    return saved


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
