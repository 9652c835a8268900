"""Row chunking for the float64 references: bound the (n, M, D) per-sample tensor's size."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor

#: elements of one per-sample chunk (n·M·D); 2**25 float64 values are 256 MiB.
CHUNK_ELEMENTS = 2**25


def row_chunks(n_rows: int, elements_per_row: int, budget: int = CHUNK_ELEMENTS) -> Iterator[slice]:
    """Slices of [0, n_rows) holding at most ``budget`` elements each (at least one row)."""
    step = max(1, budget // max(1, elements_per_row))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def sum_over_rows(n_rows: int, elements_per_row: int, per_sample: Callable[[slice], Tensor]) -> Tensor:
    """Σ over the rows of ``per_sample(rows)`` (n,M,D), chunked by :func:`row_chunks` -> (M,D)."""
    total = None
    for rows in row_chunks(n_rows, elements_per_row):
        part = per_sample(rows).sum(0)  # (n,M,D) -> (M,D)
        total = part if total is None else total.add_(part)
    return total
