"""Devices: which exist, their names, peak memory of a call, out-of-memory and its recovery.

Peak memory of one call:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what
  was allocated before the call (the caching allocator's own view, workspaces included);
- CPU: the peak of the bytes held by tensors the call allocates, tracked allocation by
  allocation (torch's ``MemTracker``); kernels' internal scratch buffers are not seen.
  (The resident-set high-water mark was tried and rejected: glibc keeps freed blocks, so
  it missed whole allocations.)

Either way only what the call allocates is seen. Memory a variant allocated earlier and holds
for its calls is added by the harness (``Prepared.held`` in :mod:`hebbbench.measure.variants`):
a CUDA graph's private memory pool, reserved at capture (before the counter is reset) and
measured as the bytes of the allocator's segments owned by the pool
(``torch.cuda.memory_snapshot``), and its static input buffers (:mod:`hebbbench.rules.graphed`).
"""

from __future__ import annotations

import gc
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from hebbbench.errors import UserError

def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_devices(names: list[str] | tuple[str, ...]) -> list[str]:
    """Expand ``auto`` (every GPU, else the CPU), ``all`` (the CPU and every GPU), ``cuda`` (cuda:0).

    Raises UserError for a device that does not exist here.
    """
    gpus = [f"cuda:{i}" for i in range(cuda_count())]
    out: list[str] = []
    for name in names:
        if name == "auto":
            expanded = gpus or ["cpu"]
        elif name == "all":
            expanded = ["cpu", *gpus]
        elif name in ("cpu", "cuda") or name.startswith("cuda:"):
            device = torch.device("cuda:0" if name == "cuda" else name)
            if device.type == "cuda" and (device.index or 0) >= len(gpus):
                seen = ", ".join(["cpu", *gpus])
                raise UserError(f"device {name!r} is not available: torch sees {len(gpus)} CUDA device(s); "
                                f"available: {seen}")
            expanded = [str(device) if device.type == "cuda" else "cpu"]
        else:
            raise UserError(f"unknown device {name!r}; allowed: auto, all, cpu, cuda, cuda:N")
        out.extend(d for d in expanded if d not in out)
    return out


def device_name(device: str) -> str:
    d = torch.device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_name(d)
    return cpu_model()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def available_memory(device: str) -> float:
    """Bytes free for new work now: CUDA ``mem_get_info``'s free bytes, or Linux's MemAvailable."""
    d = torch.device(device)
    if d.type == "cuda":
        return float(torch.cuda.mem_get_info(d)[0])
    return float(_meminfo("MemAvailable") or total_memory(device))


def total_memory(device: str) -> int:
    """Bytes of memory on the device: the GPU's, or the machine's RAM (MemTotal)."""
    d = torch.device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_properties(d).total_memory
    return _meminfo("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def budget_memory(device: str) -> float:
    """What one case may be predicted to use by default: 80 % of a GPU's memory, or of the RAM
    available now on the CPU (shared with everything else the machine runs)."""
    return 0.8 * (total_memory(device) if torch.device(device).type == "cuda" else available_memory(device))


def _meminfo(field: str) -> int | None:
    """A /proc/meminfo field in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_method(device: str) -> str:
    return "cuda-max-allocated" if torch.device(device).type == "cuda" else "tensor-allocations"


def measure_peak(fn: Callable[[], object], device: str) -> tuple[object, int | None, float]:
    """Run ``fn`` once; return its result, the peak bytes it allocated (None if unmeasurable), its seconds."""
    d = torch.device(device)
    if d.type == "cuda":
        torch.cuda.synchronize(d)
        torch.cuda.reset_peak_memory_stats(d)
        before = torch.cuda.memory_allocated(d)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(d)
        return out, torch.cuda.max_memory_allocated(d) - before, time.perf_counter() - t0
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError:  # pragma: no cover - torch without the tracker
        t0 = time.perf_counter()
        return fn(), None, time.perf_counter() - t0
    tracker = MemTracker()
    t0 = time.perf_counter()
    with tracker, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    seconds = time.perf_counter() - t0
    peak = tracker.get_tracker_snapshot("peak").get(d, {}).get("Total")
    return out, peak, seconds


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def release(device: str, collect: bool = False) -> None:
    """Give cached memory back after a case; ``collect`` also breaks reference cycles (after a failure)."""
    if collect:
        gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
