"""Predicted time of an update from its cost model and the device's measured ceilings.

A roofline (Williams, Waterman, Patterson, CACM 2009) with each implementation's
analytic counts from the registry (``flops``, ``bytes_moved``, ``overhead_seconds``):

    t_roof = max(flops / F, bytes / B) + overhead

with F the FLOP/s of a large matrix product and B the bytes/s of a large copy, both
measured here. Real kernels reach a fraction of these ceilings, so predictions are
calibrated on the layers that were measured in the same run:

    t_pred = c · t_roof,   c = median over measured layers of (measured median / t_roof)

per implementation variant (falling back to the other variants of the same
implementation, then to c = 1, "uncalibrated").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from hebbbench.rules import Update
from hebbbench.timing import Clock


@dataclass(frozen=True)
class Ceilings:
    """Measured peak rates of the device: FLOP/s of a matrix product, bytes/s of a copy."""

    flops_per_s: float
    bytes_per_s: float
    method: str


def measure_ceilings(device: torch.device | str, dtype: torch.dtype = torch.float32, repeats: int = 3) -> Ceilings:
    """Best of ``repeats`` timings of an n×n matrix product and of a large copy."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = 8192 if cuda else 2048
    elements = 2**28 if cuda else 2**25
    clock = Clock(device)
    a = torch.randn(n, n, device=device).to(dtype)  # (n,n)
    b = torch.randn(n, n, device=device).to(dtype)
    matmul = min(clock.measure(lambda: a @ b) for _ in range(repeats + 1))
    del a, b
    src = torch.empty(elements, device=device, dtype=dtype).fill_(1.0)
    dst = torch.empty_like(src)
    copy = min(clock.measure(lambda: dst.copy_(src)) for _ in range(repeats + 1))
    moved = 2.0 * elements * src.element_size()  # read + write
    del src, dst
    return Ceilings(2.0 * n**3 / matmul, moved / copy,
                    f"best of {repeats + 1}: {n}x{n} matmul, copy of {elements} elements, {dtype}")


def roofline_seconds(rule: Update, n: int, m: int, d: int, itemsize: int, ceilings: Ceilings) -> float:
    """Uncalibrated prediction: max(compute time, memory time) + the implementation's overhead."""
    compute = rule.flops(n, m, d) / ceilings.flops_per_s
    traffic = rule.bytes_moved(n, m, d, itemsize) / ceilings.bytes_per_s
    return max(compute, traffic) + rule.overhead_seconds(n, m, d)


class Calibration:
    """Ratios measured/roofline of measured layers, turned into prediction factors.

    A variant's factor comes from, in order: its own measured layers under the same
    rule; other variants of the same implementation under the same rule; the variant
    under other rules; the implementation under other rules; else 1 (uncalibrated).
    """

    def __init__(self) -> None:
        self._ratios: list[tuple[str, str, str, float]] = []  # (rule, impl, variant, ratio)

    def add(self, rule: str, impl: str, variant: str, measured: float, roofline: float) -> None:
        if measured > 0 and roofline > 0 and np.isfinite(measured):
            self._ratios.append((rule, impl, variant, measured / roofline))

    def factor(self, rule: str, impl: str, variant: str) -> tuple[float, str]:
        """(c, how it was obtained) for ``variant`` of ``impl`` under ``rule``."""
        tiers = [
            ("", lambda r, i, v: r == rule and v == variant),
            (f" of other {impl} variants", lambda r, i, v: r == rule and i == impl),
            (" under other rules", lambda r, i, v: v == variant),
            (f" of {impl} under other rules", lambda r, i, v: i == impl),
        ]
        for where, match in tiers:
            ratios = [x for r, i, v, x in self._ratios if match(r, i, v)]
            if ratios:
                c = float(np.median(ratios))
                return c, f"roofline x {c:.3g} (calibrated on {len(ratios)} measured layer(s){where})"
        return 1.0, "roofline, uncalibrated (no measured layer of this implementation)"

    def predict(self, rule: str, impl: str, variant: str, roofline: float) -> tuple[float, str]:
        c, how = self.factor(rule, impl, variant)
        return c * roofline, how
