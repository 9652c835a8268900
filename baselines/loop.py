"""The literal per-sample, per-neuron loop of docs/design.md §2: the readable reference.

    SWTA:  ΔW_i = (1/N) Σ_n r_ni (x_n − w_i)
    HPCA:  ΔW_i = (1/N) Σ_n y_ni (x_n − Σ_{k≤i} y_nk w_k)
    local rules (kwta, oja, krotov, hebb):  ΔW_i = (1/N) Σ_n (a_ni x_n − b_ni w_i)

One Python iteration per (sample, neuron): O(N·M) interpreter steps, for small shapes only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hebbbench.rules.hebb import Hebb
from hebbbench.rules.hpca import HPCA
from hebbbench.rules.krotov import Krotov
from hebbbench.rules.kwta import KWTA
from hebbbench.rules.local import LocalRule
from hebbbench.rules.oja import Oja
from hebbbench.rules.registry import Update, register
from hebbbench.rules.swta import SWTA


class Looped(Update):
    """Cost model of a Python loop over samples and neurons."""

    def flops(self, n: int, m: int, d: int) -> float:
        return 3.0 * n * m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * 4 * n * m * d

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return float(itemsize) * (n * m + 3 * m * d)

    def overhead_seconds(self, n: int, m: int, d: int) -> float:
        return 1e-5 * n * m


@register("swta", "loop")
class SWTALoop(Looped, SWTA):
    summary = "literal loop over samples and neurons"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r = self.soft_winners(y)  # (N,M)
        dw = torch.zeros_like(w)
        for n in range(x.shape[0]):
            for i in range(w.shape[0]):
                dw[i] += r[n, i] * (x[n] - w[i])  # (D,)
        return dw / x.shape[0]


@register("hpca", "loop")
class HPCALoop(Looped, HPCA):
    summary = "literal loop over samples and neurons"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        dw = torch.zeros_like(w)
        for n in range(x.shape[0]):
            recon = torch.zeros_like(x[n])  # (D,): Σ_{k≤i} y_nk w_k
            for i in range(w.shape[0]):
                recon += y[n, i] * w[i]
                dw[i] += y[n, i] * (x[n] - recon)  # (D,)
        return dw / x.shape[0]


class LocalLoop(Looped, LocalRule):
    """A local rule as the literal loop over samples and neurons of its per-sample form."""

    summary = "literal loop over samples and neurons"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        a, b = self.sample_factors(y)  # (N,M), (N,M)
        dw = torch.zeros_like(w)
        for n in range(x.shape[0]):
            for i in range(w.shape[0]):
                dw[i] += a[n, i] * x[n] - b[n, i] * w[i]  # (D,)
        return dw / x.shape[0]


@register("kwta", "loop")
class KWTALoop(LocalLoop, KWTA):
    """k-WTA: dw_i += r_ni (x_n − w_i)."""


@register("oja", "loop")
class OjaLoop(LocalLoop, Oja):
    """Oja: dw_i += y_ni x_n − y_ni² w_i."""


@register("krotov", "loop")
class KrotovLoop(LocalLoop, Krotov):
    """Krotov–Hopfield: dw_i += g_ni x_n − g_ni y_ni w_i."""


@register("hebb", "loop")
class HebbLoop(LocalLoop, Hebb):
    """Hebb with decay: dw_i += y_ni x_n − λ w_i."""
