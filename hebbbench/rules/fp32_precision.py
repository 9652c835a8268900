"""The precision of float32 matrix products and convolutions: set explicitly, restored, recorded.

A float32 matrix product or convolution need not be computed in float32. On NVIDIA GPUs
since Ampere, cuBLAS and cuDNN may use TensorFloat-32 tensor cores (operands rounded to
10-bit significands, float32 accumulation); torch's defaults differ by library: cuBLAS
products are IEEE float32 unless asked, but **cuDNN convolutions are TF32 by default**
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``). Left alone, fh's products would be
float32 while every convolution (fh-conv's weight gradient, the forward pass of every
``step`` case) used tensor cores: fh-conv would be compared with fh at different precisions
and could be marked wrong at the float32 tolerance.

So the harness sets the precision of every library, per implementation, before each of its
calls and restores what it found after the case (docs/design.md §4):

- ``ieee``: IEEE float32 everywhere: every implementation whose name does not say otherwise;
- ``tf32``: TF32 allowed in cuBLAS, cuDNN and oneDNN (``fh-tf32``: its name says so).

The flags are torch's per-backend ``fp32_precision`` settings (torch ≥ 2.9; the legacy
``allow_tf32`` flags may not be mixed with them): cuBLAS matmul, cuDNN convolution, oneDNN
(CPU) matmul and convolution. On a CPU without TF32 units oneDNN computes IEEE float32 in
both modes. A product that names its own precision (fh-bf16's bf16 GEMMs) is not affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: the modes an implementation may ask for
MODES = ("ieee", "tf32")
#: the libraries whose float32 precision is set: name -> the torch.backends object holding the flag
LIBRARIES = {
    "cublas_matmul": ("cuda", "matmul"),
    "cudnn_conv": ("cudnn", "conv"),
    "onednn_matmul": ("mkldnn", "matmul"),
    "onednn_conv": ("mkldnn", "conv"),
}


def _flag_holder(path: tuple[str, str]):
    backend = getattr(torch.backends, path[0], None)
    holder = getattr(backend, path[1], None) if backend is not None else None
    return holder if holder is not None and hasattr(holder, "fp32_precision") else None


def current() -> dict[str, str]:
    """Each library's float32 precision flag as set now (``none``: inherits torch's default)."""
    out = {}
    for name, path in LIBRARIES.items():
        holder = _flag_holder(path)
        if holder is not None:
            out[name] = str(holder.fp32_precision)
    return out


def apply(flags: dict[str, str] | str) -> None:
    """Set every library to ``mode`` (a str in MODES), or each to its value in ``flags``."""
    if isinstance(flags, str):
        if flags not in MODES:
            raise ValueError(f"unknown float32 precision {flags!r}; allowed: {', '.join(MODES)}")
        flags = dict.fromkeys(LIBRARIES, flags)
    for name, value in flags.items():
        holder = _flag_holder(LIBRARIES[name])
        if holder is not None and holder.fp32_precision != value:
            holder.fp32_precision = value


@contextmanager
def restored() -> Iterator[dict[str, str]]:
    """Restore every library's flag on exit to what it was on entry (yields that)."""
    found = current()
    try:
        yield found
    finally:
        apply(found)


@contextmanager
def fp32(mode: str) -> Iterator[None]:
    """Run the block with float32 products and convolutions in ``mode``, the flags restored after."""
    with restored():
        apply(mode)
        yield


def mode_of(impl_class: type) -> str:
    """The float32 precision an implementation runs in: its ``fp32_precision`` (``ieee`` unless its name says)."""
    return getattr(impl_class, "fp32_precision", "ieee")


def product_precision(impl_class: type, dtype: torch.dtype) -> str:
    """The precision of an implementation's main products in a case of ``dtype``: ``bf16`` for
    products it rounds to bfloat16 (``compute_dtype``), ``tf32`` for float32 with TF32 allowed, else
    ``ieee`` (the input dtype's own products). Its ceiling is measured in this precision."""
    if getattr(impl_class, "compute_dtype", None) == torch.bfloat16:
        return "bf16"
    if dtype == torch.float32 and mode_of(impl_class) == "tf32":
        return "tf32"
    return "ieee"
