"""Process conditions that move a timing and are therefore controlled and recorded (docs/design.md §4).

**The allocator.** A per-sample implementation materialises large temporaries (naive's
N×G×D tensor: 5.5 MB on the quick grid's conv layer). Whether glibc's ``malloc`` serves them
from its heap or maps fresh pages with ``mmap`` (a minor page fault per 4 KiB page touched, on
every call) depends on its *adaptive* thresholds: freeing a mapped block raises the mmap
threshold to that block's size, and the heap is trimmed back to the OS above twice that. So it
depends on everything the process did before — measured on a 2-core VM: the same call took
14-24 ms in eight fresh processes, the slow ones taking 3x the page faults. Fixing both
thresholds (``mallopt(3)``: setting either disables the adaptation) makes the condition the
same in every process:

- ``pinned`` (the default): ``MALLOC_MMAP_THRESHOLD_`` = 32 MiB (glibc's largest allowed
  value on 64-bit), ``MALLOC_TRIM_THRESHOLD_`` = 4 GiB: blocks up to 32 MiB stay on the heap
  and are reused call after call; larger ones are mapped, and fault, every call, in every process;
- ``system``: whatever the environment says (glibc's adaptive defaults when nothing is set).

The policy is applied to worker processes through their environment at start (glibc reads it
before ``main``), so the process that measures is born with it; a ``MALLOC_*`` variable the
user already set is kept and recorded. jemalloc or tcmalloc preloaded with ``LD_PRELOAD`` is
recorded by name (their own settings are not changed). On GPUs the caching allocator's
configuration (``PYTORCH_CUDA_ALLOC_CONF``) is recorded.

**Page faults** are counted around every timed call (``getrusage`` minor faults, read outside
the clock) and the cost of one fault on this machine is measured (touching fresh pages of an
anonymous mapping), so a report can say how much of a time is page faults.

**Subnormal floats.** Arithmetic on subnormals is up to ~100x slower on x86 CPUs; a softmax's
``exp`` produces them at large response magnitudes, so a timing could depend on the scale of
the inputs. While measuring, the CPU flushes subnormals to zero (``torch.set_flush_denormal``:
FTZ/DAZ), in every command that times (run, reproduce, scale, profile).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")
MIB = 2**20
#: glibc's mallopt(M_MMAP_THRESHOLD) refuses more than HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit systems.
PINNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * MIB), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)}
ALLOCATORS = {
    "pinned": "glibc thresholds fixed: blocks up to 32 MiB stay on the heap, nothing is trimmed",
    "system": "as the environment sets it (glibc's adaptive thresholds when nothing is set)",
}
DEFAULT_ALLOCATOR = "pinned"
SUBNORMALS = "flushed to zero on the CPU while timing (FTZ/DAZ)"


def check_allocator(name: str) -> str:
    if name not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATORS)}, got {name!r}")
    return name


def worker_environment(allocator: str) -> dict[str, str]:
    """The variables a worker process is started with under ``allocator`` (a user's own win)."""
    check_allocator(allocator)
    if allocator == "system":
        return {}
    return {k: v for k, v in PINNED.items() if k not in os.environ}


@contextlib.contextmanager
def started_with(allocator: str) -> Iterator[None]:
    """Within this block, processes started (spawned) inherit the allocator's variables."""
    added = worker_environment(allocator)
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def allocator_info() -> dict[str, Any]:
    """What allocates host memory in this process, and its settings (for env.json)."""
    preload = os.environ.get("LD_PRELOAD", "")
    library = next((name for name in ("jemalloc", "tcmalloc", "mimalloc") if name in preload), None)
    if library is None:
        libc, version = platform.libc_ver()
        library = f"{libc} {version}".strip() or "unknown"
    settings = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    if os.environ.get("PYTORCH_CUDA_ALLOC_CONF"):
        settings["PYTORCH_CUDA_ALLOC_CONF"] = os.environ["PYTORCH_CUDA_ALLOC_CONF"]
    return {"library": library, "preload": preload or None, "settings": settings}


def policy_of(info: dict[str, Any]) -> str:
    """Which policy a process's recorded allocator settings amount to."""
    settings = info.get("settings") or {}
    return "pinned" if all(settings.get(k) == v for k, v in PINNED.items()) else "system"


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fault_seconds(nbytes: int = 64 * MIB) -> float:
    """Seconds one minor page fault costs here: touching every page of a fresh anonymous mapping
    (the kernel zeroes each page on its first touch, as it does for a freshly mapped tensor)."""
    page = mmap.PAGESIZE
    best = float("inf")
    for _ in range(3):
        with mmap.mmap(-1, nbytes) as region:
            view = np.frombuffer(region, dtype=np.uint8)
            before, t0 = minor_faults(), time.perf_counter()
            view[::page] = 1
            elapsed, faults = time.perf_counter() - t0, minor_faults() - before
            del view
        if faults > 0:
            best = min(best, elapsed / faults)
    return best if best != float("inf") else float("nan")


@contextlib.contextmanager
def flushed_subnormals() -> Iterator[bool]:
    """Flush subnormals to zero on the CPU inside the block (restored after); yields whether the CPU can."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(False)


def measuring(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: ``fn`` runs with subnormals flushed (every command's measuring function)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with flushed_subnormals():
            return fn(*args, **kwargs)
    return wrapper


def describe(allocator: str | None = None) -> dict[str, Any]:
    """env.json's ``conditions``: the allocator policy and settings of this process, subnormals."""
    info = allocator_info()
    return {"allocator": allocator or policy_of(info), "allocator_info": info, "subnormals": SUBNORMALS}
