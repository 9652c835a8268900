"""The pre-FastHebb ("naive") formulation: materialise per-sample deltas, group by group.

As in the authors' original code, the M neurons are processed in groups of G
(``group_size``; 8 originally, later 128). For each group the per-sample,
per-neuron deltas form an N×G×D tensor that is reduced over the N rows:

    SWTA:  Δ_nid = r_ni (x_nd − w_id)
    HPCA:  Δ_nid = y_ni (x_nd − Σ_{k≤i} y_nk w_kd), the reconstruction a cumulative
           sum within the group plus the sum carried over the earlier groups.
    local rules (kwta, oja, krotov, hebb; see ``hebbbench.rules.local``):
           Δ_nid = a_ni x_nd − b_ni w_id with the rule's per-sample factors A, B.

Vectorised within a group: an honest baseline whose cost is the memory traffic of
the N×G×D tensors (O(N·M·D) element-wise work), not an artificial slowdown.
"""

from __future__ import annotations

from typing import Any, ClassVar

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


class Grouped(Update):
    """Option ``group_size`` and the cost model of an N×G×D per-sample tensor per group."""

    options: ClassVar[dict[str, Any]] = {"group_size": 8}
    #: N×G×D tensors alive at once at the peak of one group.
    live_tensors: ClassVar[int] = 1
    #: element-wise passes over N×M×D in total.
    passes: ClassVar[int] = 3

    def check_options(self) -> None:
        super().check_options()
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {self.group_size!r}")

    def groups(self, m: int):
        for start in range(0, m, self.group_size):
            yield slice(start, min(m, start + self.group_size))

    def flops(self, n: int, m: int, d: int) -> float:
        return float(self.passes) * n * m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        # each pass writes and reads an N×G×D tensor per group
        return float(itemsize) * (2 * self.passes * n * m * d + n * d * -(-m // self.group_size))

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        g = min(self.group_size, m)
        return float(itemsize) * (self.live_tensors * n * g * d + n * m + m * d + n * d)

    def overhead_seconds(self, n: int, m: int, d: int) -> float:
        return 2e-5 * -(-m // self.group_size)


@register("swta", "naive")
class SWTANaive(Grouped, SWTA):
    """SWTA with the per-sample deltas materialised per group of G neurons."""

    summary = "per-sample deltas as N x G x D tensors per group of G neurons"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r = self.soft_winners(y)  # (N,M)
        dw = torch.empty_like(w)
        for g in self.groups(w.shape[0]):
            deltas = (x[:, None, :] - w[None, g, :]).mul_(r[:, g, None])  # (N,G,D)
            dw[g] = deltas.sum(0)  # (G,D)
        return dw.div_(x.shape[0])


@register("hpca", "naive")
class HPCANaive(Grouped, HPCA):
    """HPCA with the per-sample deltas materialised per group, reconstruction carried across groups."""

    summary = "per-sample deltas as N x G x D tensors, cumulative reconstruction across groups"
    live_tensors = 2
    passes = 6

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        dw = torch.empty_like(w)
        carried = torch.zeros_like(x)  # (N,D): Σ_{k<first of group} y_nk w_k
        for g in self.groups(w.shape[0]):
            recon = torch.cumsum(y[:, g, None] * w[None, g, :], dim=1)  # (N,G,D)
            recon += carried[:, None, :]
            carried = recon[:, -1, :].clone()  # (N,D), for the next group
            deltas = recon.neg_().add_(x[:, None, :]).mul_(y[:, g, None])  # (N,G,D), in place
            dw[g] = deltas.sum(0)  # (G,D)
        return dw.div_(x.shape[0])


class LocalNaive(Grouped, LocalRule):
    """A local rule with its per-sample deltas a_ni x_n − b_ni w_i materialised per group."""

    summary = "per-sample deltas a_ni x_n - b_ni w_i as N x G x D tensors per group of G neurons"

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        a, b = self.sample_factors(y)  # (N,M), (N,M)
        dw = torch.empty_like(w)
        for g in self.groups(w.shape[0]):
            deltas = a[:, g, None] * x[:, None, :]  # (N,G,D): a_ni x_n
            deltas.addcmul_(b[:, g, None], w[None, g, :], value=-1)  # (N,G,D): − b_ni w_i
            dw[g] = deltas.sum(0)  # (G,D)
        return dw.div_(x.shape[0])


@register("kwta", "naive")
class KWTANaive(LocalNaive, KWTA):
    """k-WTA: per-sample deltas r_ni (x_n − w_i), per group."""


@register("oja", "naive")
class OjaNaive(LocalNaive, Oja):
    """Oja: per-sample deltas y_ni x_n − y_ni² w_i, per group."""


@register("krotov", "naive")
class KrotovNaive(LocalNaive, Krotov):
    """Krotov–Hopfield: per-sample deltas g_ni x_n − g_ni y_ni w_i, per group."""


@register("hebb", "naive")
class HebbNaive(LocalNaive, Hebb):
    """Hebb with decay: per-sample deltas y_ni x_n − λ w_i, per group."""
