"""The loss over a whole input: blocks, escalation, and the exact reductions.

Every position's loss comes out of the first tier as ``(hi + lo) 2**e``
within ``bound 2**e`` (`_loss`). Then:

- ``'none'``: each value is rounded once; positions whose bound does not
  prove 4 ulp are recomputed by the deep tier.
- ``'sum'`` and ``'mean'``: the pairs are added *exactly* (`_exactsum`: a
  long accumulator, so the order of blocks, threads or chunks cannot change
  a bit), and so are the bounds. The total is rounded once, divided by the
  exact denominator for ``'mean'`` with one rounding. When the summed bound
  does not prove 4 ulp of the total (the positions' losses cancel: negative
  class weights), every position is recomputed by the deep tier, whose
  bounds are 2**-150 of each value, and summed again.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _exactsum as xs
from ._blocks import iter_blocks, run_blocks, workspace
from ._jit import block_elements
from ._driver import count
from ._loss import Problem, first_tier_done, index_block, prob_block
from ._rows import U


def _block_values(pb: Problem, rows: slice, cols: slice):
    zb = pb.z[rows, :, cols]
    ws = workspace(zb.shape)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if pb.probabilities:
            return prob_block(pb, zb, pb.p[rows, :, cols], ws)
        return index_block(pb, zb, pb.y[rows, cols][:, None, :], ws)


def scaled_round(hi: np.ndarray, lo: np.ndarray, ex) -> np.ndarray:
    """``(hi + lo) 2**ex`` rounded to float64 (ex an int array or 0)."""
    v = hi + lo
    if np.ndim(ex) == 0 and ex == 0:
        return v
    with np.errstate(over="ignore"):
        return np.ldexp(v, ex) if np.ndim(ex) else np.ldexp(v, int(ex))


def loss(pb: Problem, denominator: xs.ExactTotal | None, deep) -> np.ndarray | np.float64:
    """cross_entropy for the checked problem `pb` (see cross_entropy for the semantics).

    `denominator` is the exact 'mean' denominator (None for other reductions);
    ``deep(pb, idx)`` returns ``(parts, exponent, bound)`` for the positions
    ``idx`` ((k, 2) array of (n, s)), computed by the deep tier: the value is
    the sum of the parts times 2**exponent.
    """
    n, _, s = pb.z.shape
    lock = threading.Lock()
    pending: list[np.ndarray] = []
    if pb.reduction == "none":
        out = np.empty((n, s))

        def fill(rows, cols):
            hi, lo, ex, bound, _ = _block_values(pb, rows, cols)
            out[rows, cols] = scaled_round(hi, lo, ex)[:, 0, :]
            ok = first_tier_done(hi, lo, bound)
            count("first", int(np.count_nonzero(ok)))
            if not ok.all():
                idx = np.argwhere(~ok[:, 0, :])
                idx[:, 0] += rows.start or 0
                idx[:, 1] += cols.start or 0
                with lock:
                    pending.append(idx)

        if n * s:
            run_blocks(fill, iter_blocks(n, pb.c, s, block_elements(pb.c)))
        if pending:
            idx = np.concatenate(pending)
            count("deep", len(idx))
            parts, ex, _ = deep(pb, idx)
            out[idx[:, 0], idx[:, 1]] = scaled_round(parts[0], parts[1] + parts[2], ex)
        return out

    totals: list[xs.ExactTotal] = []
    bounds: list[xs.ExactTotal] = []

    def accumulate(rows, cols):
        hi, lo, ex, bound, _ = _block_values(pb, rows, cols)
        # One long accumulation for the pairs (hi and lo side by side), one for the bounds.
        both = np.concatenate([hi, lo], axis=1)
        t = xs.exact_total(both, None if np.ndim(ex) == 0 and ex == 0 else np.broadcast_to(ex, hi.shape).repeat(2, 1)
                           if np.ndim(ex) else np.full(both.shape, ex))
        b = xs.exact_total(bound, None if np.ndim(ex) == 0 and ex == 0 else ex)
        count("first", hi.size)
        with lock:
            totals.append(t)
            bounds.append(b)

    if n * s:
        run_blocks(accumulate, iter_blocks(n, pb.c, s, block_elements(pb.c)))
    total = xs.merge_all(totals)
    if not _proven(total, xs.merge_all(bounds)):
        # The positions' losses cancel: recompute every position in the deep tier.
        idx = np.argwhere(np.ones((n, s), dtype=bool))
        count("deep", len(idx))
        parts, ex, _ = deep(pb, idx)
        total = xs.merge_all(xs.exact_total(part, ex) for part in parts)
    if pb.reduction == "sum":
        return np.float64(xs.to_float(total))
    return np.float64(xs.ratio(total, denominator))


# The exact sum's error bound must be at most this share of it; the final rounding
# (of the sum, or of the quotient by the exact denominator) adds at most u.
_SUM_SHARE = 2.9 * U


def _proven(total: xs.ExactTotal, bound: xs.ExactTotal) -> bool:
    """Whether ``bound <= _SUM_SHARE |total|`` (exact totals; a non-finite total counts as proven)."""
    if total.nan or total.pos_inf or total.neg_inf:
        return True
    if bound.mant == 0:
        return True
    if total.mant == 0:
        return False
    rel = abs(xs.ratio(bound, total))
    return rel <= _SUM_SHARE * (1 - 2.0**-40)
