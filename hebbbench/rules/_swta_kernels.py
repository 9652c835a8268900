"""Triton kernels of SWTA-FH (imported lazily by ``swta_triton``: this module needs triton).

Two launches, R never written to global memory:

1. ``row_logsumexp``: ℓ_n = log Σ_i exp(y_ni / T) per row (online max and sum over blocks of
   neurons): N floats.
2. ``swta_fused``: one program per (block of neurons, block of features, split of the rows)
   walks its rows in chunks of BLOCK_N, forms r_ni = exp(y_ni / T − ℓ_n) in registers,
   accumulates Rᵀ X with ``tl.dot`` (IEEE float32, float32 accumulation) and 1ᵀR alongside,
   and writes (Rᵀ X − diag(1ᵀR) W) / N for its tile. With several splits (when the tiles
   alone would leave the GPU's SMs idle) each split writes a partial and the partials are
   summed afterwards (S×M×D floats).

Offsets are int64: every index (rows, neurons, features, split) is cast to ``tl.int64`` before it
is multiplied by a stride. Triton passes a stride below 2³¹ as int32, and an int32 ``row·stride``
wraps once N·D or N·M reaches 2³¹ elements (the VGG nets' conv2 at batch ≥ 298), reading and
writing outside the tensors.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Triton's CPU interpreter is on (set before triton is imported): kernels run on CPU tensors.
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"

BLOCK_N = 32
BLOCK_M = 64
BLOCK_D = 64


@triton.jit
def row_logsumexp(y_ptr, lse_ptr, n_rows, m_cols, stride_yn, stride_ym, temperature,
                  BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)  # (BLOCK_N,)
    row_ok = rows < n_rows
    run_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_N,), tl.float32)
    for start in range(0, m_cols, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
        mask = row_ok[:, None] & (cols[None, :] < m_cols)
        s = tl.load(y_ptr + rows[:, None] * stride_yn + cols[None, :] * stride_ym, mask=mask,
                    other=float("-inf")).to(tl.float32) / temperature  # (BLOCK_N, BLOCK_M)
        new_max = tl.maximum(run_max, tl.max(s, axis=1))
        new_max = tl.where(row_ok, new_max, 0.0)  # rows past the end: keep the arithmetic finite
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(s - new_max[:, None]), axis=1)
        run_max = new_max
    tl.store(lse_ptr + rows, run_max + tl.log(tl.where(row_ok, run_sum, 1.0)), mask=row_ok)


@triton.jit
def swta_fused(x_ptr, y_ptr, w_ptr, lse_ptr, out_ptr, n_rows, m_cols, d_cols, rows_per_split, temperature,
               stride_xn, stride_xd, stride_yn, stride_ym, stride_wm, stride_wd,
               stride_os, stride_om, stride_od,
               BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    neurons = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # (BLOCK_M,)
    feats = (tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)).to(tl.int64)  # (BLOCK_D,)
    split = tl.program_id(2).to(tl.int64)
    m_ok = neurons < m_cols
    d_ok = feats < d_cols
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)  # Σ_n r_ni x_nd for the tile
    colsum = tl.zeros((BLOCK_M,), tl.float32)  # Σ_n r_ni
    first = split * rows_per_split
    for offset in range(0, rows_per_split, BLOCK_N):
        rows = first + offset + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
        row_ok = rows < n_rows
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)  # (BLOCK_N,)
        s = tl.load(y_ptr + rows[:, None] * stride_yn + neurons[None, :] * stride_ym,
                    mask=row_ok[:, None] & m_ok[None, :], other=float("-inf")).to(tl.float32) / temperature
        r = tl.exp(s - lse[:, None])  # (BLOCK_N, BLOCK_M) softmax weights, 0 where masked
        x = tl.load(x_ptr + rows[:, None] * stride_xn + feats[None, :] * stride_xd,
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # (BLOCK_N, BLOCK_D)
        acc += tl.dot(tl.trans(r), x, input_precision="ieee")  # (BLOCK_M,BLOCK_N)@(BLOCK_N,BLOCK_D)
        colsum += tl.sum(r, axis=0)
    tile = m_ok[:, None] & d_ok[None, :]
    w = tl.load(w_ptr + neurons[:, None] * stride_wm + feats[None, :] * stride_wd, mask=tile,
                other=0.0).to(tl.float32)  # (BLOCK_M, BLOCK_D)
    dw = (acc - colsum[:, None] * w) / n_rows  # this split's share of (Rᵀ X − diag(1ᵀR) W) / N
    tl.store(out_ptr + split * stride_os + neurons[:, None] * stride_om + feats[None, :] * stride_od, dw, mask=tile)


def _block(size: int, cap: int) -> int:
    """A power-of-two block of at least 16 (tl.dot's minimum) and at most ``cap``."""
    return min(cap, max(16, triton.next_power_of_2(size)))


def default_splits(device: torch.device, tiles: int, chunks: int) -> int:
    """Row splits so that about two programs per SM run (1 on the interpreter); at most one per chunk."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(chunks, triton.cdiv(2 * sms, tiles)))


def swta_update(x: Tensor, y: Tensor, w: Tensor, temperature: float, splits: int | None = None) -> Tensor:
    """(Rᵀ X − diag(1ᵀR) W) / N, R = softmax(Y/T), with the fused kernels; float32 math, result in w's dtype."""
    n, d = x.shape
    m = w.shape[0]
    block_m, block_d = _block(m, BLOCK_M), _block(d, BLOCK_D)
    lse = torch.empty(n, device=w.device, dtype=torch.float32)  # (N,)
    row_logsumexp[(triton.cdiv(n, BLOCK_N),)](y, lse, n, m, y.stride(0), y.stride(1), float(temperature),
                                              BLOCK_N=BLOCK_N, BLOCK_M=block_m)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(d, block_d)
    chunks = triton.cdiv(n, BLOCK_N)
    splits = default_splits(w.device, tiles, chunks) if splits is None else max(1, min(splits, chunks))
    rows_per_split = triton.cdiv(chunks, splits) * BLOCK_N
    splits = triton.cdiv(n, rows_per_split)  # no empty splits
    out = torch.empty((splits, m, d), device=w.device, dtype=torch.float32)  # (S,M,D) partials
    grid = (triton.cdiv(m, block_m), triton.cdiv(d, block_d), splits)
    swta_fused[grid](x, y, w, lse, out, n, m, d, rows_per_split, float(temperature),
                     x.stride(0), x.stride(1), y.stride(0), y.stride(1), w.stride(0), w.stride(1),
                     out.stride(0), out.stride(1), out.stride(2),
                     BLOCK_N=BLOCK_N, BLOCK_M=block_m, BLOCK_D=block_d)
    dw = out[0] if splits == 1 else out.sum(0)  # (M,D)
    return dw.to(w.dtype)
