"""Cross-entropy per position, first tier: a value as a pair, with its error bound.

For one position with logits z (C classes), first pass ``m, x_j = z_j - m,
s, L = log1p(s)`` (see `_rows`), ``d_c = -x_c >= 0`` and a target mass
``b_c`` (index, smoothed index or probabilities, times class weights),

    loss = sum_c b_c (d_c + L) = sum_c b_c d_c + a L,   a = sum_c b_c.

Weights are scaled by powers of two so that no product overflows or
underflows (issue 16's "scaling instead of special cases"):

- index targets without smoothing use one weight per position, ``w_y =
  wm_y 2**we_y`` (`numpy.frexp`), and the position's value carries the
  exponent ``we_y`` apart;
- smoothing and probability targets mix every class's weight in one sum, so
  the weights are scaled by one power of two, ``w' = w 2**-E`` with ``2**E``
  above the largest |w|; a position whose scaled mass is below 2**-900 (only
  possible when the weights span more than 2**900 and the heavy classes have
  no mass there) is escalated, as is every position when some scaled weight
  is subnormal.

Each position returns ``(hi, lo, exponent, bound)``: the loss is
``(hi + lo) 2**exponent`` within ``bound 2**exponent``. The bound is the sum
of the terms' errors derived next to each computation; `first_tier_done`
decides from it whether the rounded value is within 4 ulp.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dd as dd
from . import _jit
from ._dd import smoothing_pairs
from ._eft import fast_two_sum, two_prod, two_sum
from ._rows import U, rows, tree_sum

# Relative error of a double-double operation (Muller et al., ch. 14): every dd step
# below rounds at most this much of its operands' magnitude.
DD = 2.0**-104


class Problem(NamedTuple):
    """Checked inputs of cross_entropy and its gradient; arrays as (N, C, S) views."""

    z: np.ndarray  # logits (N, C, S)
    shape: tuple[int, ...]  # the logits' original shape
    c: int
    w: np.ndarray | None  # class weights (C,)
    wm: np.ndarray | None  # w = wm * 2**we, |wm| in [0.5, 1) (or 0, inf, NaN)
    we: np.ndarray | None
    ws: np.ndarray | None  # w * 2**-w_exp, |ws| < 1: the weights of the mixed sums
    w_exp: int  # that power of two
    w_total: tuple[float, float]  # sum of ws as an exact-to-2**-106 pair (C, 0 without weights)
    w_abs: float  # sum of |ws|, rounded up (C without weights)
    w_wide: bool  # some scaled weight is subnormal: mixed sums go to the deep tier
    eps: float
    reduction: str
    probabilities: bool
    p: np.ndarray | None  # probability targets (N, C, S)
    y: np.ndarray | None  # class-index targets (N, S), np.intp
    ignore_index: int


def _gather(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[:, idx[n, s], :] per position: (bn, 1, bs) from (bn, C, bs) and (bn, 1, bs) indices."""
    return np.take_along_axis(a, idx, axis=1)


def index_block(pb: Problem, zb: np.ndarray, yb: np.ndarray, ws):
    """The loss of index targets (any smoothing) for a block; see the module docstring.

    Returns ``(hi, lo, exponent, bound, valid)``, each (bn, 1, bs).
    """
    smooth = pb.eps != 0.0
    compiled = _jit.enabled()
    if compiled and smooth and zb.shape[2] > 1:
        # One C-contiguous copy of a K-dim block for both compiled passes (rows3d and
        # weighted_gaps3d would otherwise each copy it).
        zb = np.ascontiguousarray(zb)
    got = rows(zb, ws, keep_terms=smooth and not compiled)
    r, (xh, xl, _, _) = got if smooth and not compiled else (got, (None, None, None, None))
    valid = yb != pb.ignore_index
    yc = np.where(valid, yb, 0)
    # d_y = m - z_y exactly (TwoSum), inf at a -inf target logit.
    with np.errstate(invalid="ignore"):
        mm = np.where(r.ok, r.m, 0.0)
        dh, dl = two_sum(mm, -_gather(zb, yc))
    dl = np.where(np.isfinite(dh), dl, 0.0)
    # -log q_y = d_y + L in double-double: both terms >= 0, error DD (d + L) plus L's own.
    th, tl = dd.add(dh, dl, r.lh, r.ll, nonfinite=True)
    t_err = r.l_err + DD * th
    if pb.eps == 0.0:
        if pb.w is None:
            hi, lo, ex, bound = th, tl, 0, t_err
        else:
            wm = np.take(pb.wm, yc)
            hi, lo = dd.mul_float(th, tl, wm)
            ex = np.take(pb.we, yc)
            bound = np.abs(wm) * t_err * (1 + 2.0**-50)
            # 0 * inf = 0: a zero weight at a -inf target logit contributes nothing.
            zero = wm == 0
            if zero.any():
                hi = np.where(zero, 0.0, hi)
                lo = np.where(zero, 0.0, lo)
                bound = np.where(zero, 0.0, bound)
        return _mask(hi, lo, ex, bound, valid, r.ok)
    # Smoothing: (1 - eps) w_y (d_y + L) + eps / C (sum_c w_c d_c + W L), in scaled weights.
    (oh, ol), (eh, el) = smoothing_pairs(pb.eps, pb.c)
    wy = 1.0 if pb.ws is None else np.take(pb.ws, yc)
    ah, al = dd.mul_float(*dd.mul(th, tl, oh, ol), wy)  # (1 - eps) w_y (d_y + L)
    if compiled:  # sum_c w_c d_c, and sum |w_c| d_c
        gh, gl, g_abs = (np.empty(r.m.shape) for _ in range(3))
        w_arg = pb.ws if pb.ws is not None else np.ones(1)
        if zb.shape[2] > 1:  # positions along the last axis: the kernel that vectorises across them
            chunk = max(8, min(zb.shape[2], 2048 // max(pb.c, 1) * 8))
            _jit.weighted_gaps3d(np.ascontiguousarray(zb), np.ascontiguousarray(r.m), w_arg, pb.ws is not None,
                                 gh, gl, g_abs, np.empty((pb.c, chunk)), np.empty((pb.c, chunk)))
        else:
            _jit.weighted_gaps(zb, np.ascontiguousarray(r.m), w_arg, pb.ws is not None, gh, gl, g_abs,
                               np.empty(pb.c), np.empty(pb.c))
    else:
        gh, gl, g_abs = _weighted_gaps(pb.ws, xh, xl, ws)
    wt_h, wt_l = pb.w_total  # W = sum_c w_c (scaled), as a pair
    lh, ll = dd.mul(wt_h, wt_l, r.lh, r.ll)  # W L
    bh, bl = dd.mul(*dd.add(gh, gl, lh, ll, nonfinite=True), eh, el)
    hi, lo = dd.add(ah, al, bh, bl, nonfinite=True)
    # An infinite gap (a -inf logit with smoothing mass) makes the dd products NaN: there the
    # plain float64 formula gives the limit (inf, or NaN for inf - inf).
    hi, lo = _nonfinite(hi, lo, (1 - pb.eps) * wy * th + (pb.eps / pb.c) * (gh + wt_h * r.lh))
    bound = (np.abs(wy) * (1 - pb.eps) * t_err + eh * (8 * DD * (g_abs + pb.w_abs * r.lh) + pb.w_abs * r.l_err)
             + 8 * DD * (np.abs(ah) + np.abs(bh))) * (1 + 2.0**-50)
    return _mask(hi, lo, pb.w_exp if pb.ws is not None else 0, bound, valid, r.ok)


def _mask(hi, lo, ex, bound, valid, ok):
    """Ignored positions are exactly 0; positions without a finite maximum are NaN."""
    hi = np.where(valid, hi, 0.0)
    lo = np.where(valid, lo, 0.0)
    bound = np.where(valid, bound, 0.0)
    bad = valid & ~ok
    if bad.any():
        hi = np.where(bad, np.nan, hi)
        lo = np.where(bad, 0.0, lo)
        bound = np.where(bad, 0.0, bound)
    return hi, lo, ex, bound, valid


def _weighted_gaps(w: np.ndarray | None, xh: np.ndarray, xl: np.ndarray, ws):
    """``sum_c w_c d_c`` per position as a pair, and ``sum_c |w_c| d_c`` (for the bound).

    ``d_c = -(xh_c + xl_c) >= 0`` exactly; each product ``w_c d_c`` is formed
    exactly (TwoProd) plus ``w_c xl_c`` (error below 2**-104 of it) and the
    pairs are summed by the TwoSum tree (error below 64 u**2 of the sum of
    magnitudes). A -inf logit (d = inf) with weight 0 contributes 0.
    """
    with np.errstate(invalid="ignore"):
        if w is None:
            ph = np.negative(xh, out=ws(5))
            pl = np.negative(xl, out=ws(6))
        else:
            wb = w[None, :, None]
            p, pe = two_prod(-xh, wb)
            ph = ws(5)
            np.copyto(ph, p)
            pl = np.multiply(-xl, wb, out=ws(6))
            pl += pe
        inf = ~np.isfinite(ph)
        if inf.any():
            # d = inf: no low part; 0 * inf = 0 for a zero weight.
            np.copyto(pl, 0.0, where=inf)
            if w is not None:
                np.copyto(ph, 0.0, where=inf & (np.broadcast_to(wb, ph.shape) == 0))
        a = np.abs(ph).sum(axis=1, keepdims=True)
        gh, gl = _finish(*tree_sum(ph, pl, ws(7), ws(8), ws(9)))
    return gh, gl, a


def _nonfinite(hi, lo, plain):
    """Where the plain float64 value is not finite, take it (and a zero low part)."""
    with np.errstate(invalid="ignore"):
        fin = np.isfinite(plain)
        if fin.all():
            return hi, lo
        return np.where(fin, hi, plain), np.where(fin, lo, 0.0)


def _finish(h: np.ndarray, l: np.ndarray):
    """A tree sum's pair, normalised (Fast2Sum); an infinite or NaN sum keeps its high part."""
    with np.errstate(invalid="ignore"):
        fin = np.isfinite(h)
        sh, sl = fast_two_sum(h, np.where(fin, l, 0.0))
        return np.where(fin, sh, h), np.where(fin, sl, 0.0)


def prob_block(pb: Problem, zb: np.ndarray, pbk: np.ndarray, ws):
    """The loss of probability targets for a block.

    ``loss = sum_c b_c d_c + a L`` with ``b_c = w'_c ((1 - eps) p_c + eps / C)``
    in double-double (`_mass`), each ``b_c d_c`` exact to 2**-104, summed by
    the TwoSum tree. Returns as `index_block`.
    """
    if _jit.enabled():
        r = rows(zb, ws)
        (oh, ol), (eh, el) = smoothing_pairs(pb.eps, pb.c)
        gh, gl, ah, al, p_abs, b_abs = (np.empty(r.m.shape) for _ in range(6))
        _jit.prob_sums(zb, np.ascontiguousarray(r.m), pbk, pb.ws if pb.ws is not None else np.ones(1),
                       pb.ws is not None, oh, ol, eh, el, pb.eps != 0.0, gh, gl, ah, al, p_abs, b_abs,
                       *(np.empty(pb.c) for _ in range(4)))
    else:
        r, (xh, xl, _, _) = rows(zb, ws, keep_terms=True)
        gh, gl, ah, al, p_abs, b_abs = _prob_sums(pb, pbk, xh, xl, ws)
    with np.errstate(invalid="ignore"):
        lh, ll = dd.mul(ah, al, r.lh, r.ll)  # a L
        hi, lo = dd.add(gh, gl, lh, ll, nonfinite=True)
        hi, lo = _nonfinite(hi, lo, gh + ah * r.lh)
        bound = (8 * DD * (p_abs + b_abs * r.lh) + b_abs * r.l_err + 8 * DD * (np.abs(gh) + np.abs(lh))) * (1 + 2.0**-50)
    valid = np.ones(hi.shape, dtype=bool)
    return _mask(hi, lo, pb.w_exp if pb.ws is not None else 0, bound, valid, r.ok)


def _prob_sums(pb: Problem, pbk: np.ndarray, xh, xl, ws):
    """sum_c b_c d_c and a = sum_c b_c as pairs, with sum |b_c d_c| and sum |b_c| (numpy engine)."""
    bh, bl = mass(pb, pbk)
    with np.errstate(invalid="ignore"):
        # b_c d_c as a pair: TwoProd(bh, -xh) + bh (-xl) + bl (-xh).
        ph, pe = two_prod(bh, -xh)
        pl = pe - bh * xl - bl * xh
        inf = ~np.isfinite(ph)
        if inf.any():
            # d = inf: 0 * inf = 0 (no mass on a class with a -inf logit, as 0 log 0 = 0).
            zero = inf & (bh == 0)
            ph = np.where(zero, 0.0, ph)
            pl = np.where(inf, 0.0, pl)
        p_abs = np.abs(ph).sum(axis=1, keepdims=True)
        gh, gl = _finish(*tree_sum(ph, pl, ws(7), ws(8), ws(9)))
        b_abs = np.abs(bh).sum(axis=1, keepdims=True)
        ah, al = _finish(*tree_sum(bh.copy(), bl.copy(), ws(7), ws(8), ws(9)))
    return gh, gl, ah, al, p_abs, b_abs


def mass(pb: Problem, pbk: np.ndarray):
    """``b_c = w'_c ((1 - eps) p_c + eps / C)`` as a double-double, error below 4 DD of |b_c|."""
    if pb.eps:
        (oh, ol), (sh, sl) = smoothing_pairs(pb.eps, pb.c)
        bh, bl = dd.mul_float(oh, ol, pbk)
        bh, bl = dd.add(bh, bl, sh, sl)
    else:
        bh, bl = pbk, np.zeros(pbk.shape)
    if pb.ws is not None:
        bh, bl = dd.mul_float(bh, bl, pb.ws[None, :, None])
    return bh, bl


def first_tier_done(hi, lo, bound, extra_rounding: bool = True):
    """Positions whose rounded value ``hi + lo`` is proven within 4 ulp (the exponent is common)."""
    from ._family import accepted

    v = hi + lo
    return accepted(v, bound + (U * np.abs(v) if extra_rounding else 0.0))
