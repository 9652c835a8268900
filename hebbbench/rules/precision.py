"""FastHebb with reduced-precision matrix products (impls ``fh-tf32`` and ``fh-bf16``).

The same fh forms (SWTA: (Rᵀ X − diag(1ᵀR) W)/N; HPCA: (Yᵀ X − tril(Yᵀ Y) W)/N), with
only their matrix products in lower precision; the element-wise parts (softmax, the
diagonal scaling, the division) stay in the input dtype. Their error against the float64
reference is part of the result, reported by the harness next to their speed; each class
states the bound it is tested to (``rtol``).

- ``fh-tf32``: float32 products with TensorFloat-32 allowed (11-bit significands, float32
  accumulation): its ``fp32_precision`` is ``tf32``, which the harness sets for all its
  float32 products and convolutions (rules/fp32_precision.py); its products also set it
  themselves (and restore it after), so the implementation computes in TF32 outside the harness
  too. It changes process-wide state for the duration of the product, so do not run other
  float32 work concurrently in another thread. TF32 is a
  CUDA (Ampere and later) feature: on the CPU it is plain float32 (oneDNN honours the
  setting only on CPUs with TF32 support; this machine's has none, so the CPU tests see
  fh's error), and float64 inputs are never affected. Its ``rtol`` is derived, not
  measured here: TF32's unit roundoff 2⁻¹¹ is 8× smaller than bfloat16's 2⁻⁸, and
  ``rtol`` is a quarter of fh-bf16's measured bound.
- ``fh-bf16``: the operands of each product rounded to bfloat16 (8-bit significands),
  the products accumulated and returned in float32, the result in w's dtype. On CUDA
  that is one cuBLAS bf16 GEMM with float32 output (``torch.mm(..., out_dtype=float32)``);
  torch has no such kernel on the CPU, where it is a float32 product of the
  bf16-rounded operands: the same numbers (a product of two bf16 values is exact in
  float32), but CPU timings of it are a float32 GEMM plus the casts, not a bf16 kernel.
  Its products are bf16 whatever the input dtype (``compute_dtype``), float64 included.

Relative error is measured in the Frobenius norm of ΔW. Where the terms of ΔW nearly
cancel (few samples and entries: M = D = 1, or N = D = 1) no relative bound on ‖ΔW‖ holds
for rounded products; ``rtol`` is stated for updates that do not cancel (the paper's
layers, with N·D in the thousands), and the equivalence tests hold a cancelling draw to
the rounding bound of its terms instead (``numerics.terms_error``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hebbbench.rules.fp32_precision import fp32
from hebbbench.rules.hpca import HPCAFastHebb
from hebbbench.rules.registry import register
from hebbbench.rules.swta import SWTAFastHebb

#: fh-bf16's bound on the relative error, for updates whose terms do not cancel.
#: Measured on the equivalence tests' distribution (N ≤ 40, M ≤ 20, D ≤ 24; 20,000 draws each):
#: max 1.5e-2 (SWTA) and 1.2e-2 (HPCA) with M·D ≥ 16, median 1e-3 (SWTA), 3e-3 (HPCA); 2× margin.
#: (Cancelling draws exceed it: 0.5 with M = D = 1; 3.7e-2 with N = D = 1, M = 17.)
BF16_RTOL = 3e-2
#: a quarter of the bf16 bound (TF32 rounds 8× finer); not measured on a GPU here.
TF32_RTOL = BF16_RTOL / 4


def tf32_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b with TF32 allowed for float32 (CUDA; plain float32 elsewhere), the setting restored after."""
    with fp32("tf32"):
        return torch.mm(a, b)  # (.,K)@(K,.)


def bf16_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b from bf16-rounded operands, accumulated in float32; returned in the dtype of a and b."""
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if a.device.type == "cuda":
        product = torch.mm(a16, b16, out_dtype=torch.float32)  # cuBLAS bf16 GEMM, float32 output
    else:
        product = torch.mm(a16.float(), b16.float())  # the same numbers: bf16 products are exact in float32
    return product.to(out_dtype)


class BF16Cost:
    """Cost model of the bf16 products: casts of the operands, half-size reads in the products."""

    compute_dtype = torch.bfloat16
    rtol = BF16_RTOL

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        # each operand element is read once in the input dtype (as fh), then written and re-read as bf16
        operands = n * d + n * m + m * d
        return super().bytes_moved(n, m, d, itemsize) + 4.0 * operands

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return super().memory(n, m, d, itemsize) + 2.0 * (n * d + n * m + m * d)


@register("swta", "fh-tf32")
class SWTATF32(SWTAFastHebb):
    """SWTA-FH with TF32 products allowed."""

    summary = "FastHebb with TF32 matrix products allowed (CUDA; float32 elsewhere)"
    rtol = TF32_RTOL
    fp32_precision = "tf32"
    matmul = staticmethod(tf32_matmul)


@register("hpca", "fh-tf32")
class HPCATF32(HPCAFastHebb):
    """HPCA-FH with TF32 products allowed."""

    summary = "FastHebb with TF32 matrix products allowed (CUDA; float32 elsewhere)"
    rtol = TF32_RTOL
    fp32_precision = "tf32"
    matmul = staticmethod(tf32_matmul)


@register("swta", "fh-bf16")
class SWTABF16(BF16Cost, SWTAFastHebb):
    """SWTA-FH with Rᵀ X from bf16 operands, float32 accumulation."""

    summary = "FastHebb with bf16 matrix products, float32 accumulation"
    matmul = staticmethod(bf16_matmul)


@register("hpca", "fh-bf16")
class HPCABF16(BF16Cost, HPCAFastHebb):
    """HPCA-FH with Yᵀ X, Yᵀ Y and tril(Yᵀ Y) W from bf16 operands, float32 accumulation."""

    summary = "FastHebb with bf16 matrix products, float32 accumulation"
    matmul = staticmethod(bf16_matmul)
