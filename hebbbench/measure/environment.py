"""Everything needed to reproduce a number (docs/design.md §4): versions, hardware, threads, command."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from hebbbench.rules import fp32_precision

from hebbbench._version import __version__
from hebbbench.measure.devices import cpu_model, cuda_count

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "TORCH_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG",
                    "NVIDIA_TF32_OVERRIDE", "PYTORCH_CUDA_ALLOC_CONF")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the hebbbench source tree, when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent.parent
    commit = _run(["git", "rev-parse", "HEAD"], cwd=root)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return {"commit": commit, "dirty": bool(status)}


def gpu_info() -> list[dict[str, Any]]:
    gpus = []
    smi = {}
    fields = "index,name,uuid,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"
    text = _run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    for line in (text or "").splitlines():
        values = [v.strip() for v in line.split(",")]
        smi[values[0]] = dict(zip(fields.split(",")[1:], values[1:]))
    for i in range(cuda_count()):
        p = torch.cuda.get_device_properties(i)
        info = {"index": i, "name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                "total_memory": p.total_memory, "multiprocessors": p.multi_processor_count,
                "uuid": str(getattr(p, "uuid", "")), "l2_cache_bytes": getattr(p, "L2_cache_size", None)}
        info.update({f"smi_{k}": v for k, v in smi.get(str(i), {}).items()})
        gpus.append(info)
    return gpus


def collect(seed: int, argv: list[str] | None = None) -> dict[str, Any]:
    """A JSON-able description of this machine and process."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "hebbbench_version": __version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": cudnn,
        "gpus": gpu_info(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        # each library's float32 precision flag as found; the harness sets them per implementation
        # (fp32_precision.py; a row's ``precision`` says which its products used)
        "fp32_precision_found": fp32_precision.current(),
        "seed": seed,
        "command": argv if argv is not None else sys.argv,
    }
