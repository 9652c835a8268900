"""SWTA-FH as a fused Triton kernel (impl ``fh-triton``, CUDA only).

    ℓ_n = log Σ_i exp(y_ni / T)                         one pass over Y: N floats
    ΔW  = (Rᵀ X − diag(1ᵀR) W) / N,  r_ni = exp(y_ni / T − ℓ_n)

The second pass forms R tile by tile in registers and feeds it straight into the Rᵀ X
accumulation (``tl.dot``, IEEE float32, float32 accumulation): the softmax weights are
never written to global memory, unlike fh (softmax, then a GEMM reading R back). Kernels
and launch: ``_swta_kernels``. Fixed tiles (32 rows × 64 neurons × 64 features), no
autotuning; rows are split across programs when the tiles alone would not fill the GPU.

A layer step with fh-triton is the eager step (:func:`hebbbench.nn.step.eager_step`) around
these kernels: the forward, then this update, then the apply. It has no whole-step form
of its own (no ``wrap_step``): compiling the step would time torch.compile'd fh instead.
The first call per shape JIT-compiles the kernels, done before timing (``prepare``).

Triton is imported on first use, so hebbbench imports without it. Inputs are read in
float32, float16 or bfloat16 and all arithmetic is float32; float64 is refused rather
than silently rounded. Off CUDA the call raises :class:`~hebbbench.rules.Unavailable`,
except under Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is imported),
which runs the same kernels on CPU tensors: that is how the tests check it without a GPU.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import Tensor

from hebbbench.rules.compiled import Compiled
from hebbbench.rules.registry import Unavailable, register
from hebbbench.rules.swta import SWTA


def kernels() -> ModuleType:
    """The kernel module, importing triton on first use; Unavailable if triton is missing."""
    try:
        return importlib.import_module("hebbbench.rules._swta_kernels")
    except ImportError as error:
        raise Unavailable(f"fh-triton needs the triton package: {error}") from error


@register("swta", "fh-triton")
class SWTATriton(Compiled, SWTA):
    """SWTA-FH with the softmax fused into the Rᵀ X accumulation (Triton, float32 accumulation)."""

    summary = "fused Triton kernel: softmax over M inside the R^T X accumulation, R never stored"
    device_types = ("cuda",)

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        if w.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"fh-triton computes in float32 from float32/float16/bfloat16 inputs, got {w.dtype}")
        k = kernels()
        if w.device.type != "cuda" and not k.INTERPRETING:
            raise Unavailable(f"fh-triton needs a CUDA device (or TRITON_INTERPRET=1 for Triton's interpreter), "
                              f"got {w.device.type}")
        return k.swta_update(x, y, w, float(self.temperature))

    def flops(self, n: int, m: int, d: int) -> float:
        d_tiles = -(-d // 64)
        return 2.0 * n * m * d + 5.0 * n * m * (d_tiles + 1) + 3.0 * m * d  # softmax redone per feature tile

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        m_tiles, d_tiles = -(-m // 64), -(-d // 64)
        # Y read by the log-sum-exp pass and once per feature tile, X once per neuron tile
        return float(itemsize) * (n * m * (1 + d_tiles) + n * d * m_tiles + m * d) + 4.0 * (2 * n + m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return 4.0 * (n + m * d)  # ℓ and the float32 result (one split; more splits add S·M·D)
