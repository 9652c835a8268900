"""HPCA with neurons in blocks (``fh-blocked``), and the cheaper of it and fh per shape (``fh-auto``).

HPCA-FH's tril(Yᵀ Y) W costs O(M²·D): with many neurons and few rows (a 4096-unit
fully connected layer at batch 32) it dominates the O(N·M·D) Hebbian term. Split the
M neurons into blocks of b (``block_size``) and carry the reconstruction of the earlier
blocks as an N×D residual instead (docs/design.md §2, Sanger's rule):

    E_1 = X,   E_{j+1} = E_j − Y_j W_j                    (N,D): X − Σ_{k<j} Y_k W_k
    ΔW_j = (Y_jᵀ E_j − tril(Y_jᵀ Y_j) W_j) / N             (b,D) for the neurons of block j

which is Y_jᵀ X − Y_jᵀ (Σ_{k<j} Y_k W_k) − tril(Y_jᵀ Y_j) W_j, the rows of block j of
(Yᵀ X − tril(Yᵀ Y) W), since tril(Yᵀ Y) restricted to block j's rows is [Y_jᵀ Y_k]_{k<j}
followed by tril(Y_jᵀ Y_j). Cost: about 4·N·M·D + 2·N·M·b + 2·M·b·D flops, against
fh's 2·N·M·D + 2·N·M² + 2·M²·D: blocked wins when M is large next to N·D / (N + D).

``fh-auto`` evaluates both flop counts for the shape and runs the smaller (ties: fh),
so it is never the worse of the two formulations by the model; ``choose(n, m, d)``
says which it picks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from hebbbench.rules.hpca import HPCA, HPCAFastHebb, hpca_fh
from hebbbench.rules.registry import register


def block_sizes(m: int, b: int) -> list[int]:
    """Sizes of the consecutive neuron blocks: full blocks of b, then the remainder."""
    return [min(b, m - start) for start in range(0, m, b)]


def hpca_blocked(x: Tensor, y: Tensor, w: Tensor, block_size: int) -> Tensor:
    """(Yᵀ X − tril(Yᵀ Y) W) / N block by block, with the N×D residual E carried across blocks."""
    m = w.shape[0]
    dw = torch.empty_like(w)  # (M,D)
    residual = x  # (N,D): X − Σ_{k<j} Y_k W_k; a new tensor from the first update on
    for start in range(0, m, block_size):
        blk = slice(start, min(m, start + block_size))
        yb, wb = y[:, blk], w[blk]  # (N,b), (b,D)
        dw[blk] = (yb.T @ residual).addmm_(torch.tril(yb.T @ yb), wb, alpha=-1)  # (b,N)@(N,D) − (b,b)@(b,D)
        if blk.stop < m:
            if residual is x:
                residual = torch.addmm(x, yb, wb, alpha=-1)  # (N,D) − (N,b)@(b,D)
            else:
                residual.addmm_(yb, wb, alpha=-1)  # in place
    return dw.div_(x.shape[0])


@register("hpca", "fh-blocked")
class HPCABlocked(HPCA):
    """HPCA in blocks of ``block_size`` neurons: no M×M product, an N×D residual instead."""

    summary = "blocks of b neurons: (Y_j^T E_j - tril(Y_j^T Y_j) W_j) / N, residual E carried"
    options: ClassVar[dict[str, Any]] = {"block_size": 64}

    def check_options(self) -> None:
        b = self.block_size
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {b!r}")

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return hpca_blocked(x, y, w, self.block_size)

    def flops(self, n: int, m: int, d: int) -> float:
        sizes = block_sizes(m, self.block_size)
        per_block = sum(2.0 * n * b * d + 2.0 * n * b * b + 2.0 * b * b * d + b * d for b in sizes)
        carried = sum(2.0 * n * b * d for b in sizes[:-1])  # E −= Y_j W_j, not after the last block
        return per_block + carried + m * d

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        blocks = len(block_sizes(m, self.block_size))
        b = min(self.block_size, m)
        # each block reads E (and its Y_j, W_j); each carried update reads and writes E
        residual = n * d * (blocks + 2 * (blocks - 1))
        return float(itemsize) * (residual + 2 * n * m + blocks * b * b + 3 * m * d)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        b = min(self.block_size, m)
        carried = n * d if m > b else 0
        return float(itemsize) * (carried + 2 * b * b + b * d + m * d)


@register("hpca", "fh-auto")
class HPCAAuto(HPCABlocked):
    """fh or fh-blocked, whichever needs fewer flops for the shape (by the analytic cost model)."""

    summary = "fh or fh-blocked per shape, whichever the flop model says is cheaper"

    def choose(self, n: int, m: int, d: int) -> str:
        """The implementation this shape runs: "fh-blocked" if it needs fewer flops, else "fh"."""
        if HPCABlocked.flops(self, n, m, d) < HPCAFastHebb.flops(self, n, m, d):
            return "fh-blocked"
        return "fh"

    def _chosen(self, n: int, m: int, d: int) -> type:
        return HPCABlocked if self.choose(n, m, d) == "fh-blocked" else HPCAFastHebb

    def delta(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        if self.choose(x.shape[0], w.shape[0], x.shape[1]) == "fh-blocked":
            return hpca_blocked(x, y, w, self.block_size)
        return hpca_fh(x, y, w)

    def flops(self, n: int, m: int, d: int) -> float:
        return self._chosen(n, m, d).flops(self, n, m, d)

    def bytes_moved(self, n: int, m: int, d: int, itemsize: int) -> float:
        return self._chosen(n, m, d).bytes_moved(self, n, m, d, itemsize)

    def memory(self, n: int, m: int, d: int, itemsize: int) -> float:
        return self._chosen(n, m, d).memory(self, n, m, d, itemsize)
