"""One chunk of a loss computed across many processes: its values, or its exact partial totals.

`crossentropy_ref.dask` cuts the positions into chunks and calls these on
each, in whatever process and order its scheduler picks. They run in the
calling thread only (the scheduler's threads fill the cores) and compute
every position exactly as `_reduce.loss` does, with the same block
functions: a position's value depends on its logits and the engine, not on
the block or chunk it falls in. So:

- ``'none'``: `chunk_losses` returns the chunk's part of `_reduce.loss`'s
  output, bit for bit.
- ``'sum'`` and ``'mean'``: `chunk_totals` returns the exact totals
  (`_exactsum`) of the chunk's first-tier values and of their error bounds.
  Exact totals are canonical, so the merge of every chunk's totals is the
  very total `_reduce.loss` forms over the whole input, and `proven` takes
  the same decision on it. When that fails (the losses cancel), every
  position is recomputed deep: `chunk_deep_total` is a chunk's exact share
  of that second sum. Rounded once, the merged total is the in-memory result.
"""

from __future__ import annotations

import numpy as np

from . import _exactsum as xs
from ._blocks import iter_blocks, run_blocks
from ._deep import loss_deep
from ._driver import count
from ._jit import block_elements
from ._loss import Problem, first_tier_done
from ._reduce import _block_values, _proven, scaled_round


def _blocks_of(pb: Problem):
    n, _, s = pb.z.shape
    return iter_blocks(n, pb.c, s, block_elements(pb.c)) if n * s else ()


def chunk_losses(pb: Problem) -> np.ndarray:
    """The (N, S) losses of ``reduction='none'``: each first-tier value rounded once, and the
    positions its bound does not prove recomputed by the deep tier (as `_reduce.loss`)."""
    n, _, s = pb.z.shape
    out = np.empty((n, s))
    pending: list[np.ndarray] = []

    def fill(rows: slice, cols: slice) -> None:
        hi, lo, ex, bound, _ = _block_values(pb, rows, cols)
        out[rows, cols] = scaled_round(hi, lo, ex)[:, 0, :]
        ok = first_tier_done(hi, lo, bound)[:, 0, :]
        count("first", int(np.count_nonzero(ok)))
        idx = np.argwhere(~ok)
        idx[:, 0] += rows.start or 0
        idx[:, 1] += cols.start or 0
        pending.append(idx)

    run_blocks(fill, _blocks_of(pb), parallel=False)
    idx = np.concatenate(pending) if pending else np.empty((0, 2), dtype=np.intp)
    if len(idx):
        count("deep", len(idx))
        parts, ex, _ = loss_deep(pb, idx)
        out[idx[:, 0], idx[:, 1]] = scaled_round(parts[0], parts[1] + parts[2], ex)
    return out


def chunk_totals(pb: Problem) -> tuple[xs.ExactTotal, xs.ExactTotal]:
    """The exact totals of the chunk's first-tier values ``(hi + lo) 2**e`` and of their bounds."""
    totals: list[xs.ExactTotal] = []
    bounds: list[xs.ExactTotal] = []

    def accumulate(rows: slice, cols: slice) -> None:
        hi, lo, ex, bound, _ = _block_values(pb, rows, cols)
        # hi and lo side by side in one long accumulation (the exponent repeated), as _reduce does.
        totals.append(xs.exact_total(np.concatenate([hi, lo], axis=1), np.concatenate([ex, ex], axis=1)
                                     if np.ndim(ex) else ex))
        bounds.append(xs.exact_total(bound, ex))
        count("first", hi.size)

    run_blocks(accumulate, _blocks_of(pb), parallel=False)
    return xs.merge_all(totals), xs.merge_all(bounds)


def chunk_deep_total(pb: Problem) -> xs.ExactTotal:
    """The exact total of every position of the chunk recomputed by the deep tier."""
    n, _, s = pb.z.shape
    if not n * s:
        return xs.ZERO
    idx = np.argwhere(np.ones((n, s), dtype=bool))
    count("deep", len(idx))
    parts, ex, _ = loss_deep(pb, idx)
    return xs.merge_all(xs.exact_total(part, ex) for part in parts)


def proven(total: xs.ExactTotal, bound: xs.ExactTotal) -> bool:
    """Whether the summed bound proves the rounded total (or the mean) within 4 ulp (`_reduce`)."""
    return _proven(total, bound)
