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


# Positions gathered before one exact sum. An `_exactsum.exact_total` call costs about
# 0.1 ms whatever its length (its buckets span every float64 exponent), and a block holds as
# few as 32 positions (32,000 classes: 2**20 logits), so one call per block costs about
# 2.5 ms per thousand positions there; gathered 4096 at a time, about 0.13 ms
# (benchmarks/dask_costs.py). Longer calls gain little: their arrays leave the L2 cache.
GATHER = 1 << 12


def chunk_totals(pb: Problem) -> tuple[xs.ExactTotal, xs.ExactTotal]:
    """The exact totals of the chunk's first-tier values ``(hi + lo) 2**e`` and of their bounds.

    The blocks' values are gathered and summed exactly `GATHER` positions at a
    time; exact totals do not depend on how the terms are grouped, so these
    are the totals `_reduce.loss` forms block by block.
    """
    totals: list[xs.ExactTotal] = []
    bounds: list[xs.ExactTotal] = []
    held: list[tuple] = []  # (hi, lo, bound, exponent): flat arrays, the exponent an int or an array

    def flush() -> None:
        hi, lo, bound = (np.concatenate(a) for a in list(zip(*held))[:3])
        exps = [h[3] for h in held]
        # One exponent for the whole problem (0, or the weights' scaling), or one per position.
        ex = exps[0] if np.ndim(exps[0]) == 0 else np.concatenate(exps)
        totals.append(xs.exact_total(np.concatenate([hi, lo]), ex if np.ndim(ex) == 0 else np.concatenate([ex, ex])))
        bounds.append(xs.exact_total(bound, ex))
        held.clear()

    def accumulate(rows: slice, cols: slice) -> None:
        hi, lo, ex, bound, _ = _block_values(pb, rows, cols)
        held.append((hi.ravel(), lo.ravel(), bound.ravel(), ex if np.ndim(ex) == 0 else np.ravel(ex)))
        count("first", hi.size)
        if sum(len(h[0]) for h in held) >= GATHER:
            flush()

    run_blocks(accumulate, _blocks_of(pb), parallel=False)
    if held:
        flush()
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
