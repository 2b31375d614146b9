"""The first tier: one pass over a block of logits, with an error bound per position.

A block is ``z`` of shape (bn, C, bs): bn samples, C classes along axis 1,
bs spatial positions. For each position (a slice along axis 1) with maximum
``m = z_k`` (k the first maximum), the pass computes

    x_j = z_j - m              exactly, as a pair (TwoSum)
    e_j = exp(x_j)             as a pair, relative error <= EPS_EXP (_pexp)
    s   = sum_{j != k} e_j     as a pair (s_hi, s_lo), by a pairwise TwoSum tree
    L   = log1p(s)             as a pair, to about 2**-95 (`log1p_pair`)

and, beside each, a bound on its absolute error. With every term positive,
the tree's error is below ``log2(C) u**2`` of the sum, so

    |s - (s_hi + s_lo)| <= EPS_S s + T ABS          (s_err)
    |L - (l_hi + l_lo)| <= s_err / (1 + s) + EPS_LOG L   (l_err)

with EPS_S = EPS_EXP + 2**-98, EPS_LOG = 2**-95 (see `log1p_pair`) and T the
number of terms below 2**-969, where exp_pair's error is absolute (`ABS`). The
maximum's own term, exactly 1, is left out of s, so that a confident
position's tiny s keeps its relative precision; tied maxima stay in s as
exact ones. Everything the public functions return is built from these
pairs with a few more roundings, and each function states its own bound.

The pairwise tree is the same fixed tree in every engine (the upper half of
the class axis added onto the lower half, level by level), so its result
does not depend on the block layout.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dd as dd
from ._eft import fast_two_sum, two_prod, two_sum
from . import _jit
from ._pexp import ABS, EPS as EPS_EXP, exp_pair

U = 2.0**-53
# Relative error of the tree sum of positive pairs: each level's TwoSum is exact; the low
# parts (each below 2**-52 of its term) pass through at most log2(C) < 64 float additions.
EPS_S = EPS_EXP + 2.0**-98
# Relative error of log1p_pair on an exact argument (see its docstring).
EPS_LOG = 2.0**-95


class Rows(NamedTuple):
    """What the first pass knows about each position of a block (arrays (bn, 1, bs))."""

    m: np.ndarray  # the maximum (NaN or inf where the position has no finite shift)
    k: np.ndarray  # index of the first maximum along axis 1 (int)
    ok: np.ndarray  # the maximum is finite: everything below is meaningful
    sh: np.ndarray  # s = sum over j != k of exp(z_j - m) = sh + sl
    sl: np.ndarray
    s_err: np.ndarray  # bound on |s - (sh + sl)|
    lh: np.ndarray  # L = log1p(s) = lh + ll
    ll: np.ndarray
    l_err: np.ndarray  # bound on |L - (lh + ll)|
    tiny: np.ndarray | int  # terms below exp(SUBNORMAL_X), whose error is absolute (0 if none)


def shift_pair(z: np.ndarray, m: np.ndarray, out_hi: np.ndarray, out_lo: np.ndarray, tmp: np.ndarray):
    """``z - m`` exactly as ``out_hi + out_lo`` (TwoSum, written into the buffers).

    -inf entries give (-inf, NaN); callers mask them (their exp is 0).
    """
    s = np.subtract(z, m, out=out_hi)
    bp = np.subtract(s, z, out=out_lo)  # approximately -m
    ap = np.subtract(s, bp, out=tmp)  # approximately z
    np.subtract(z, ap, out=ap)
    np.add(bp, m, out=bp)  # -((-m) - bp)
    np.subtract(ap, bp, out=out_lo)
    return out_hi, out_lo


def tree_sum(h: np.ndarray, l: np.ndarray, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray):
    """Sum the pairs ``h + l`` along axis 1 in place; returns the (bn, 1, bs) views of the sum.

    The upper half of the axis is added onto the lower half (the middle entry of
    an odd length waits for the next level), each high-part addition by TwoSum
    with its error added to the low parts. `h`, `l` are overwritten; t1..t3 are
    scratch arrays of the same shape.
    """
    n = h.shape[1]
    while n > 1:
        half = n // 2
        a, b = h[:, :half], h[:, n - half : n]
        s = np.add(a, b, out=t1[:, :half])
        bp = np.subtract(s, a, out=t2[:, :half])
        ap = np.subtract(s, bp, out=t3[:, :half])
        np.subtract(a, ap, out=ap)
        np.subtract(b, bp, out=bp)
        ap += bp  # the exact error of s
        lo = l[:, :half]
        lo += l[:, n - half : n]
        lo += ap
        np.copyto(a, s)
        n -= half
    return h[:, :1], l[:, :1]


def log1p_pair(sh: np.ndarray, sl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log1p(sh + sl)`` for ``s = sh + sl >= 0`` (|sl| <= |sh|), a pair with relative error below EPS_LOG.

    - s < 2**-20: the series ``s - s**2/2 + s**3/3 - s**4/4 + s**5/5``, the
      first two terms in double-double; the rest is below 2**-60 of s, its
      rounding below 2**-110, and the truncation below ``s**5/6 < 2**-100 s``.
    - otherwise one Newton step from ``y0 = np.log1p(sh)``: with
      ``r = (1 + s) exp(-y0) - 1`` (exp in double-double, error 2**-99,
      products and the subtraction exact or rounded at 2**-104),
      ``log1p(s) = y0 + log1p(r) = y0 + r - r**2/2 + r**3/3 - ...``. ``|r|``
      is about the error of ``y0`` (2**-52 for any decent libm; the bound
      holds for |r| < 2**-30 and `rows` escalates otherwise). The absolute
      error is below 2**-98.5 (1 + ...) from exp and r**4/4, hence relative
      below 2**-78 since L >= 2**-21 here.
    Infinite s gives (inf, 0); the result is exact (0, 0) at s = 0.

    EPS_LOG = 2**-95 covers both branches with a wide margin (the second is
    relative 2**-78 only at the smallest L; it is the absolute 2**-98 that
    matters there, which the engine adds separately as LOG_ABS).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        sh, sl = fast_two_sum(sh, sl)  # normalised, so that log1p(sh) is within 2**-52 of L
        small = sh < 2.0**-20
        # Series branch (computed everywhere, cheap, selected below).
        p, pe = two_prod(sh, sh)  # s**2 = p + pe + 2 sh sl
        half_sq = 0.5 * p
        half_sq_lo = 0.5 * (pe + 2.0 * sh * sl)
        tail = sh * sh * sh * (1.0 / 3.0 - sh * (0.25 - sh * 0.2))
        a_h, a_l = two_sum(sh, -half_sq)
        a_l = a_l + (sl - half_sq_lo + tail)
        # Newton branch.
        big = ~small & np.isfinite(sh)
        y0 = np.log1p(np.where(big, sh, 1.0))
        eh, el = dd.exp(-y0, np.zeros_like(y0))  # exp(-y0), 2**-99
        oh, ol = two_sum(1.0, np.where(big, sh, 0.0))
        ol = ol + np.where(big, sl, 0.0)
        ph, pl = dd.mul(oh, ol, eh, el)  # (1 + s) exp(-y0), about 1
        rh, rl = two_sum(ph, -1.0)  # exact: ph in [1/2, 2] (Sterbenz)
        r = rh + (rl + pl)
        corr = r - r * r * (0.5 - r * (1.0 / 3.0))
        b_h, b_l = fast_two_sum(y0, corr)
        lh = np.where(small, a_h, b_h)
        ll = np.where(small, a_l, b_l)
        inf = np.isinf(sh)
        if inf.any():
            lh = np.where(inf, np.inf, lh)
            ll = np.where(inf, 0.0, ll)
    return lh, ll


# exp(x) of any x above this is at least 2**-969, where exp_pair's relative bound holds.
SUBNORMAL_X = -671.0
# Absolute error of log1p_pair's Newton branch (exp's 2**-99 relative, r**4/4, roundings).
LOG_ABS = 2.0**-98


def rows(z: np.ndarray, ws, *, keep_terms: bool = False):
    """The first pass over a block `z` (bn, C, bs); returns a `Rows`.

    With `keep_terms`, also returns the per-class arrays it computed, as
    ``(rows, (xh, xl, eh, el))``: ``z_j - m = xh + xl`` exactly and
    ``exp(z_j - m) = eh + el`` (the maximum's entry is exactly (1, 0)); they
    live in `ws`'s scratch slots 10-13 and are valid until the next call in
    the same thread.
    """
    bn, c, bs = z.shape
    if not keep_terms and _jit.enabled():
        return _rows_compiled(z)
    k = np.argmax(z, axis=1, keepdims=True)
    m = np.take_along_axis(z, k, axis=1)  # argmax stops at the first NaN: a NaN row gets m = NaN
    ok = np.isfinite(m)
    mm = m if ok.all() else np.where(ok, m, 0.0)  # positions without a finite shift: computed at 0, masked later
    xh, xl = ws(10), ws(11)
    with np.errstate(invalid="ignore"):
        shift_pair(z, mm, xh, xl, ws(4))
    eh, el = ws(12), ws(13)
    exp_pair(xh, xl, eh, el, ws)
    # The sum over j != k: copies, so that the terms survive for the caller.
    th, tl = ws(5), ws(6)
    np.copyto(th, eh)
    np.copyto(tl, el)
    np.put_along_axis(th, k, 0.0, axis=1)
    np.put_along_axis(tl, k, 0.0, axis=1)
    with np.errstate(invalid="ignore"):
        # Terms in the subnormal range carry an absolute error (at most ABS): count them
        # where the block has any, so that a position whose s is exactly 0 (C = 1, or
        # every other logit -inf) keeps a zero bound.
        tiny = None
        if np.min(xh) < SUBNORMAL_X:
            tiny = np.count_nonzero((xh < SUBNORMAL_X) & (xh > -np.inf), axis=1, keepdims=True)
        sh, sl = tree_sum(th, tl, ws(7), ws(8), ws(9))
    out = _finish(m, k, ok, sh, sl, tiny)
    return (out, (xh, xl, eh, el)) if keep_terms else out


def _finish(m, k, ok, sh, sl, tiny, lhl=None, eps_s=EPS_S) -> Rows:
    """The per-position part of the first pass: s normalised, its bound, L and its bound.

    `lhl` is L = log1p(s) as a pair when the caller computed it already; `eps_s`
    the relative bound of s (the compiled engine's exp has its own).
    """
    with np.errstate(invalid="ignore"):
        sh, sl = fast_two_sum(sh, sl)  # normalised: |sl| <= ulp(sh) / 2
        s_err = eps_s * sh
        if tiny is not None:
            s_err += tiny * ABS
        lh, ll = log1p_pair(sh, sl) if lhl is None else lhl
        l_err = s_err / (1.0 + sh) + EPS_LOG * lh + LOG_ABS * (sh >= 2.0**-20)
    return Rows(m, k, ok, sh, sl, s_err, lh, ll, l_err, 0 if tiny is None else tiny)


SMALL_C = 32  # up to this many classes, rows of a 2-D block go through rows3d transposed


def _rows_compiled(z: np.ndarray) -> Rows:
    """`rows` by the compiled kernels (`_jit`): the same quantities and bounds, one pass."""
    bn, c, bs = z.shape
    m = np.empty((bn, 1, bs))
    k = np.empty((bn, 1, bs), dtype=np.int64)
    sh, sl, lh, ll = (np.empty((bn, 1, bs)) for _ in range(4))
    tiny = np.empty((bn, 1, bs), dtype=np.int64)
    consts = _jit.constants()
    if bs == 1 and c <= SMALL_C:
        # Few classes: the rows transposed into (1, C, bn), so that rows3d's loops run across
        # rows and vectorise (rows2d's per-row work dominates below about 30 classes).
        zt = np.ascontiguousarray(z.reshape(bn, c).T).reshape(1, c, bn)
        flat = [a.reshape(1, 1, bn) for a in (m, k, sh, sl, tiny, lh, ll)]
        chunk = max(8, min(bn, 2048 // max(c, 1) * 8))
        _jit.rows3d(zt, *flat, *consts, SUBNORMAL_X, np.empty((c + 1, chunk)), np.empty((c + 1, chunk)))
    elif bs == 1 and z.strides[1] == 8 and (bn == 1 or z.strides[0] == 8 * c):
        flat = [a.reshape(bn) for a in (m, k, sh, sl, tiny, lh, ll)]
        _jit.rows2d(z.reshape(bn, c), *flat, *consts, SUBNORMAL_X, np.empty(256), np.empty(256))
    else:
        zc = np.ascontiguousarray(z)  # a C-contiguous copy: numba then knows the unit stride and vectorises
        chunk = max(8, min(bs, 2048 // max(c, 1) * 8))  # positions per chunk: (C, chunk) scratch of ~128 KiB
        _jit.rows3d(zc, m, k, sh, sl, tiny, lh, ll, *consts, SUBNORMAL_X, np.empty((c + 1, chunk)), np.empty((c + 1, chunk)))
    ok = np.isfinite(m)
    return _finish(m, k, ok, sh, sl, tiny if tiny.any() else None, (lh, ll), eps_s=_jit.EPS + 2.0**-98)


def rows_scaled(z: np.ndarray, fh: np.ndarray, fl: np.ndarray, out: np.ndarray) -> Rows:
    """The first pass of a C-contiguous block (bs = 1) by the compiled kernel, which also
    writes ``out = exp(z - m) f / (1 + s)`` rounded once (f = fh + fl per row): the
    softmax (f = 1) and the index gradient's entries, with one exp per logit."""
    bn, c, _ = z.shape
    m = np.empty((bn, 1, 1))
    k = np.empty((bn, 1, 1), dtype=np.int64)
    sh, sl, lh, ll = (np.empty((bn, 1, 1)) for _ in range(4))
    tiny = np.empty((bn, 1, 1), dtype=np.int64)
    flat = [a.reshape(bn) for a in (m, k, sh, sl, tiny, lh, ll)]
    _jit.scaled_rows2d(z.reshape(bn, c), np.ascontiguousarray(fh, dtype=np.float64).reshape(bn),
                       np.ascontiguousarray(fl, dtype=np.float64).reshape(bn), out.reshape(bn, c), *flat,
                       *_jit.constants(), SUBNORMAL_X, np.empty(c), np.empty(256), np.empty(256))
    ok = np.isfinite(m)
    return _finish(m, k, ok, sh, sl, tiny if tiny.any() else None, (lh, ll), eps_s=_jit.EPS + 2.0**-98)
