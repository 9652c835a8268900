"""Peak memory of one call, beyond what was allocated before it.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
  bytes allocated before the call (method ``"cuda_max_allocated"``).
- CPU (Linux): the process's resident-set high-water mark. Writing "5" to
  ``/proc/self/clear_refs`` resets ``VmHWM`` to the current ``VmRSS``; after the call,
  ``VmHWM − VmRSS(before)`` is the peak growth (method ``"rss_hwm"``). Freed heap memory
  is first handed back to the system (glibc ``malloc_trim(0)``) so that reusing it shows
  as growth. It counts pages actually touched, including the allocator's and other
  threads'; memory reused without new pages is still not seen, so it can undercount.
  Where ``clear_refs`` is not writable the result is NaN (``"unavailable"``).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass
class Peak:
    """Peak bytes above the starting level during a call, and how they were measured."""

    bytes: float = math.nan
    method: str = "unavailable"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _trim_heap() -> None:
    """Return freed heap pages to the system (glibc only; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak(fn: Callable[[], T], device: torch.device | str) -> tuple[T, Peak]:
    """Run ``fn()`` once; return its result and the peak memory it added."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, Peak(float(torch.cuda.max_memory_allocated(device) - before), "cuda_max_allocated")
    _trim_heap()
    try:
        before = _status_kib("VmRSS")
    except OSError:
        return fn(), Peak()
    if not _reset_hwm():
        return fn(), Peak()
    out = fn()
    peak = _status_kib("VmHWM")
    return out, Peak(float(max(0, peak - before) * 1024), "rss_hwm")


def available_bytes(device: torch.device | str) -> float:
    """Memory free for new work now: CUDA ``mem_get_info`` free bytes, or Linux ``MemAvailable``."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return math.inf
