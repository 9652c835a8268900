"""Predicted time of an update from its cost model and the device's measured ceilings.

A roofline (Williams, Waterman, Patterson, CACM 2009) with each implementation's
analytic counts from the registry (``flops``, ``bytes_moved``, ``overhead_seconds``):

    t_roof = max(flops / F, bytes / B) + overhead

with F the FLOP/s of a large matrix product and B the bytes/s of a large copy, both
measured here (:mod:`hebbbench.measure.ceilings`, as for ``hebbbench run``). Real kernels reach a fraction of these ceilings, so predictions are
calibrated on the layers that were measured in the same run:

    t_pred = c · t_roof,   c = median over measured layers of (measured median / t_roof)

per implementation variant (falling back to the other variants of the same
implementation, then to c = 1, "uncalibrated").
"""

from __future__ import annotations

import numpy as np

from hebbbench.measure.ceilings import Ceilings
from hebbbench.rules import Update


def roofline_seconds(rule: Update, n: int, m: int, d: int, itemsize: int, ceilings: Ceilings) -> float:
    """Uncalibrated prediction: max(compute time, memory time) + the implementation's overhead."""
    return ceilings.predicted_seconds(rule.flops(n, m, d), rule.bytes_moved(n, m, d, itemsize)) \
        + rule.overhead_seconds(n, m, d)


class RooflineFit:
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
