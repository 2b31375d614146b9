"""The deep tier: the positions whose first-tier bound failed, recomputed together.

(Being assembled: this version sends every position to the decimal tier,
`_deepest`; the triple-double tier goes in front of it.)
"""

from __future__ import annotations

import numpy as np

from . import _deepest as dec
from ._loss import Problem


def softmax_deep(z3: np.ndarray, out3: np.ndarray, idx: np.ndarray) -> None:
    for n, s in idx:
        out3[n, :, s] = _nan_row(z3[n, :, s]) if _no_shift(z3[n, :, s]) else dec.softmax(z3[n, :, s])


def log_softmax_deep(z3: np.ndarray, out3: np.ndarray, idx: np.ndarray) -> None:
    for n, s in idx:
        out3[n, :, s] = _nan_row(z3[n, :, s]) if _no_shift(z3[n, :, s]) else dec.log_softmax(z3[n, :, s])


def logsumexp_deep(z3: np.ndarray, out3: np.ndarray, idx: np.ndarray) -> None:
    for n, s in idx:
        out3[n, 0, s] = dec.logsumexp(z3[n, :, s])


def _no_shift(z: np.ndarray) -> bool:
    m = np.max(z)
    return not np.isfinite(m)


def _nan_row(z: np.ndarray) -> np.ndarray:
    return np.full(z.shape, np.nan)


def _position_target(pb: Problem, n: int, s: int):
    """(p, y, ignored) of one position."""
    if pb.probabilities:
        return pb.p[n, :, s], None, False
    y = int(pb.y[n, s])
    return None, y, y == pb.ignore_index


def loss_deep(pb: Problem, idx: np.ndarray):
    """The loss of the positions `idx` as (parts, exponent, bound): sum(parts) within bound."""
    k = len(idx)
    hi, lo = np.zeros(k), np.zeros(k)
    import decimal

    for i, (n, s) in enumerate(idx):
        p, y, ignored = _position_target(pb, n, s)
        if ignored:
            continue
        z = pb.z[n, :, s]
        if _no_shift(z):
            hi[i] = np.nan
            continue
        v = dec.loss(z, p, y, pb.w, pb.eps)
        with decimal.localcontext(decimal.Context(prec=len(v.as_tuple().digits) + 5)):
            hi[i] = float(v)
            lo[i] = float(v - decimal.Decimal(hi[i])) if np.isfinite(hi[i]) else 0.0
    return hi, lo, 0, np.zeros(k)


def grad_deep(pb: Problem, idx: np.ndarray, g3: np.ndarray, denom: float | None) -> None:
    for n, s in idx:
        p, y, ignored = _position_target(pb, n, s)
        z = pb.z[n, :, s]
        if ignored:
            g3[n, :, s] = 0.0
        elif _no_shift(z):
            g3[n, :, s] = np.nan
        else:
            g3[n, :, s] = dec.grad(z, p, y, pb.w, pb.eps, denom)
