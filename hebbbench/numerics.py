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


#: fewest entries (M·D) of ΔW for which a reduced-precision implementation's ``rtol`` is stated:
#: with fewer, one entry that cancels to near zero (M = D = 1 SWTA: ΔW = mean(x) − w) can
#: dominate the norm, and no relative bound holds for rounded products.
MIN_ENTRIES_FOR_RTOL = 16

#: floor of the scale in :func:`relative_error`: float32's smallest normal number, so an
#: update that underflows in float32 (e.g. softmax weights of e^-100) compares as zero.
SCALE_FLOOR = torch.finfo(torch.float32).tiny


def relative_error(a: Tensor, ref: Tensor) -> float:
    """‖a − ref‖_F / max(‖ref‖_F, SCALE_FLOOR), computed in float64."""
    a64, ref64 = a.detach().double().cpu(), ref.detach().double().cpu()
    diff = torch.linalg.vector_norm(a64 - ref64).item()
    scale = torch.linalg.vector_norm(ref64).item()
    return diff / max(scale, SCALE_FLOOR)


def tolerance(dtype: torch.dtype, rtol: float | None = None) -> float:
    """The tolerance for results in ``dtype``: an implementation's own ``rtol`` if it states one."""
    if rtol is not None:
        return rtol
    return TOLERANCE.get(dtype, 1e-2)


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]
