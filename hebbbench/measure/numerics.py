"""How close two updates are: the relative error ‖a − b‖_F / ‖b‖_F and its tolerance per dtype."""

from __future__ import annotations

import torch
from torch import Tensor

#: relative error allowed between two implementations of one update, by dtype.
#: float32 leaves room for the O(√N·ε) growth of long reductions on the paper's layers.
TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-4,
    torch.bfloat16: 5e-2,
    torch.float16: 1e-2,
}

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


#: floor of the scale in :func:`relative_error`: float32's smallest normal number, so an
#: update that underflows in float32 (e.g. softmax weights of e^-100) compares as zero.
SCALE_FLOOR = torch.finfo(torch.float32).tiny


def relative_error(a: Tensor, ref: Tensor) -> float:
    """‖a − ref‖_F / max(‖ref‖_F, SCALE_FLOOR), computed in float64."""
    a64, ref64 = a.detach().double().cpu(), ref.detach().double().cpu()
    diff = torch.linalg.vector_norm(a64 - ref64).item()
    scale = torch.linalg.vector_norm(ref64).item()
    return diff / max(scale, SCALE_FLOOR)


def terms_error(a: Tensor, ref: Tensor, magnitude: Tensor) -> float:
    """‖a − ref‖_F / max(‖magnitude‖_F, SCALE_FLOOR): the error against the size of the terms ΔW sums."""
    diff = torch.linalg.vector_norm(a.detach().double().cpu() - ref.detach().double().cpu()).item()
    return diff / max(torch.linalg.vector_norm(magnitude.detach().double().cpu()).item(), SCALE_FLOOR)


#: multiples of the unit roundoff allowed in :func:`terms_error`: the operands of the products
#: rounded to their precision (twice each, with a 2× margin), and the element-wise parts and
#: sums in the input dtype, where SWTA's softmax amplifies the rounding of y/T by up to
#: |y|/T = 50. Measured on the equivalence tests' shapes (N ≤ 40, M ≤ 20, D ≤ 24; 48,000
#: draws): float32 at most 15.6 u (SWTA; other rules 3.5 u), bfloat16 products 1.14 u_bf16.
PRODUCT_ROUNDINGS = 4
ELEMENTWISE_ROUNDINGS = 64


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = ε/2: float32 2⁻²⁴, bfloat16 2⁻⁸, float64 2⁻⁵³."""
    return torch.finfo(dtype).eps / 2


def rounding_tolerance(dtype: torch.dtype, compute_dtype: torch.dtype | None = None) -> float:
    """The bound on :func:`terms_error` for inputs in ``dtype`` and products in ``compute_dtype``."""
    return (PRODUCT_ROUNDINGS * unit_roundoff(compute_dtype or dtype)
            + ELEMENTWISE_ROUNDINGS * unit_roundoff(dtype))


def tolerance(dtype: torch.dtype, rtol: float | None = None) -> float:
    """The tolerance for results in ``dtype``: an implementation's own ``rtol`` if it states one."""
    if rtol is not None:
        return rtol
    return TOLERANCE.get(dtype, 1e-2)


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]
