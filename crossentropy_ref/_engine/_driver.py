"""Running a block function over a whole array, and sending what it cannot prove deeper.

Arrays are viewed as (N, C, S): the axis the function reduces over is axis 1.
`iter_blocks` tiles the (N, S) positions into blocks of whole class slices;
each block is computed by a first-tier function that writes its result and
returns the mask of positions whose bound failed. Those positions are then
recomputed, all together, by the deep tier (`_deep`), which replaces their
results. Tier counts are kept for the tests (`tier_counts`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np

from ._blocks import as_ncs, iter_blocks, run_blocks, workspace
from ._jit import block_elements

_counts_lock = threading.Lock()
_counts: Counter | None = None


@contextlib.contextmanager
def tier_counts() -> Iterator[Counter]:
    """Count, while the block runs, the positions each tier computed (for the tests).

    Keys are ``"first"`` (positions the first tier finished) and ``"deep"``,
    ``"deepest"`` (positions recomputed by the escalation tiers).
    """
    global _counts
    previous, _counts = _counts, Counter()
    try:
        yield _counts
    finally:
        _counts = previous


def count(tier: str, n: int) -> None:
    if _counts is not None and n:
        with _counts_lock:
            _counts[tier] += int(n)


def view3(a: np.ndarray, axis: int) -> np.ndarray:
    """`a` as (prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])), a view where possible."""
    n = int(np.prod(a.shape[:axis], dtype=np.int64))
    s = int(np.prod(a.shape[axis + 1 :], dtype=np.int64))
    return a.reshape(n, a.shape[axis], s)


def run(
    z3: np.ndarray,
    out3: np.ndarray,
    block: Callable[[np.ndarray, np.ndarray, Callable], np.ndarray],
    deep: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None,
    *,
    elements: int | None = None,
    parallel: bool = True,
) -> None:
    """Fill `out3` (N, C or 1, S) from `z3` (N, C, S) block by block, then escalate.

    ``block(zb, outb, ws)`` computes one block and returns its (bn, 1, bs) mask
    of positions to escalate. ``deep(z3, out3, idx)`` recomputes the positions
    ``idx`` (an (k, 2) array of (n, s) indices) in place.
    """
    n, c, s = z3.shape
    if n * s == 0:
        return
    pending: list[np.ndarray] = []
    lock = threading.Lock()

    def fill(rows: slice, cols: slice) -> None:
        zb = z3[rows, :, cols]
        # Positions without a finite maximum are computed with a stand-in shift and then
        # overwritten: their intermediate inf - inf must not warn. errstate is per thread.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            bad = block(zb, out3[rows, :, cols], workspace(zb.shape))
        done = bad.size - int(np.count_nonzero(bad))
        count("first", done)
        if done < bad.size:
            idx = np.argwhere(bad[:, 0, :])
            idx[:, 0] += rows.start or 0
            idx[:, 1] += cols.start or 0
            with lock:
                pending.append(idx)

    run_blocks(fill, iter_blocks(n, c, s, elements if elements is not None else block_elements(c)), parallel=parallel)
    if pending:
        idx = np.concatenate(pending)
        if deep is None:
            raise AssertionError(f"{len(idx)} positions need the deep tier, which this function lacks")
        count("deep", len(idx))
        deep(z3, out3, idx)


__all__ = ["as_ncs", "count", "run", "tier_counts", "view3"]
