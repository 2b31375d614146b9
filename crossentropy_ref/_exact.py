"""Error-free transformations: the last bits that float64 arithmetic drops.

Every result of the package is meant to be within a few units in the last
place (ulp) of the exact value of the function at the given float64 inputs.
Plain float64 formulas lose more than that in three places, and this module
holds the repairs:

1. The shift ``d = m - z`` is rounded, and ``exp(-d)`` turns its absolute
   error (up to ``|d| 2**-53``) into a relative error of the same size:
   about 250 ulp for a gap of 500. The rounding error of a subtraction is a
   float and can be computed exactly (an error-free transformation). Here it
   costs two operations instead of the six of TwoSum, because the shift
   ``c`` is ``m`` rounded to a multiple of ``2**-20`` (see `shift`); then
   ``exp(z - m) = exp(sigma) * exp(err) * exp(c - m)`` with ``sigma`` the
   rounded ``z - c``, and ``exp(err) = 1 + err`` to far below one ulp.
2. Sums: a row's terms are summed pairwise (numpy's ``np.sum`` along a
   contiguous axis; `class_sum` builds the same tree along a strided axis,
   where ``np.sum`` would add the terms one after the other), and the
   corrections ``exp(sigma) err`` are summed beside them, so the row sum
   ``s`` is known as an unevaluated pair ``s_hi + s_lo``. Sums over
   positions (the ``'sum'`` and ``'mean'`` reductions) use `accurate_sum`,
   exact before its final rounding.
3. Per-position combinations (``d_y + log1p(s)``, the label-smoothing and
   class-weight products) carry a low part, so each result is rounded
   about once.

References: T. J. Dekker, "A floating-point technique for extending the
available precision", Numer. Math. 18 (1971); D. E. Knuth, TAOCP vol. 2,
4.2.2 (TwoSum); S. M. Rump, T. Ogita and S. Oishi, "Accurate floating-point
summation part I", SIAM J. Sci. Comput. 31 (2008) (the extraction in
`accurate_sum`).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

# The shift c is m rounded to a multiple of GRID. Then for every z with |z| < 2**33,
# sigma = fl(z - c) and t = fl(sigma + c) satisfy t = sigma + c exactly, so
# err = z - t is the exact rounding error of sigma (Fast2Sum's argument: c is a
# multiple of ulp(sigma) whenever |sigma| < 2**33, and t lies in sigma's binade or
# below). Entries with |sigma| >= 2**33 have exp(sigma) = 0, so their err is unused.
# |c - m| <= 2**-21, small enough that exp(c - m) = 1 + expm1(c - m) costs one
# expm1 per row. Rows with |m| >= 2**32 fall back to the six-operation TwoSum.
GRID = 2.0**-20
GRID_LIMIT = 2.0**32

# Below this many elements math.fsum (exact, correctly rounded) is cheaper than
# the vectorized extraction of accurate_sum.
_FSUM_BELOW = 256


def two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum)."""
    s = a + b
    bp = s - a
    ap = s - bp
    return s, (a - ap) + (b - bp)


def two_diff(a, b, out, err_out, tmp):
    """TwoSum of `a` and ``-b`` written into the buffers `out` and `err_out`.

    The same six operations as `two_sum`, with ``-b`` never formed and no
    temporary the size of the operands (`tmp` is a third buffer of their
    shape). Returns ``(out, err_out)``: ``a - b = out + err_out`` exactly.
    """
    s = np.subtract(a, b, out=out)
    bp = np.subtract(s, a, out=err_out)  # b' = s - a, an approximation of -b
    ap = np.subtract(s, bp, out=tmp)  # a' = s - b'
    np.subtract(a, ap, out=ap)  # a - a'
    np.add(b, bp, out=bp)  # -((-b) - b')
    return s, np.subtract(ap, bp, out=bp)  # (a - a') + ((-b) - b')


def fast_two_sum(a, b):
    """As `two_sum`, valid when ``|a| >= |b|`` (or a = 0): three operations (Dekker)."""
    s = a + b
    return s, b - (s - a)


def dd_scalar(x: Fraction) -> tuple[float, float]:
    """A rational as ``hi + lo``: hi the nearest float64, lo the nearest float64 to the rest."""
    hi = float(x)
    return hi, float(x - Fraction(hi))


@functools.lru_cache(maxsize=64)
def smoothing_pairs(eps: float, c: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``1 - eps`` and ``eps / C`` as (hi, lo) pairs (`dd_scalar`), so that neither is rounded.

    Cached: every block of a call asks for the same two pairs.
    """
    return dd_scalar(1 - Fraction(eps)), dd_scalar(Fraction(eps) / c)


def dd_mul_scalar(xh, xl, ch: float, cl: float):
    """(xh + xl) * (ch + cl) as one float64: one rounding of ch*xh, the rest below an ulp."""
    p = ch * xh
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(p), p + (cl * xh + ch * xl), p)  # inf * lo must not make NaN


def accurate_sum(x) -> float:
    """The sum of the float64 array `x`, rounded about once (exact for small arrays).

    Rump, Ogita and Oishi's extraction: with ``sigma`` a power of two above
    ``2 n max|x|``, ``hi = (sigma + x) - sigma`` keeps the bits of each term
    above ``ulp(sigma)/2``; every ``hi`` and every partial sum of them is a
    multiple of that unit below ``sigma`` in size, so ``sum(hi)`` is exact in
    any order. ``lo = x - hi`` is exact and tiny, and its pairwise sum errs
    by far less than an ulp of the result unless the terms cancel almost
    completely. Non-finite input falls back to ``np.sum``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n = x.size
    if n < _FSUM_BELOW:
        try:
            return math.fsum(x.tolist())
        except (OverflowError, ValueError):  # inf - inf, or partial sums overflowing: as numpy does
            with np.errstate(invalid="ignore", over="ignore"):
                return float(np.sum(x))
    with np.errstate(invalid="ignore", over="ignore"):
        big = float(np.max(np.abs(x)))
        if not math.isfinite(big) or big == 0.0 or big > 2.0**900:
            return float(np.sum(x))
        sigma = 2.0 ** (math.frexp(big)[1] + math.ceil(math.log2(n)) + 1)
        hi = (x + sigma) - sigma
        lo = x - hi
        return float(np.sum(hi) + np.sum(lo))


def class_sum(x: np.ndarray, axis: int, *, overwrite: bool = False) -> np.ndarray:
    """Pairwise sum of `x` along `axis`, keepdims.

    ``np.sum`` is pairwise only along the innermost contiguous axis; along a
    strided axis it adds the terms one after another, whose error grows with
    the length of the axis. There the same tree is built by hand: the upper
    half of the axis is added onto the lower half until one entry is left
    (in place when `overwrite`, else on a copy).
    """
    n = x.shape[axis]
    inner = all(x.shape[i] == 1 for i in range(axis + 1, x.ndim)) and x.strides[axis] == x.itemsize
    if n <= 2 or inner:
        return np.sum(x, axis=axis, keepdims=True)
    y = x if overwrite else x.copy()
    v = np.moveaxis(y, axis, 0)
    while n > 1:
        h = n // 2
        v[:h] += v[n - h : n]  # the middle entry of an odd length stays for the next level
        n -= h
    return np.moveaxis(v[:1], 0, axis).copy()


def class_dot(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """sum(a * b) along `axis`, keepdims; einsum reads both once, with no temporary."""
    am, bm = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    return np.expand_dims(np.einsum("...c,...c->...", am, bm), axis)


def shift(z: np.ndarray, axis: int, *, finite_shift: bool = False, locate: bool = True, out=None, err_out=None):
    """Shift the slices of `z` along `axis` by (nearly) their maximum, keeping the rounding errors.

    Returns ``(m, k, x0, sigma, err)``: the maximum ``m`` (keepdims; with
    `finite_shift` a non-finite maximum is replaced by 0 in the shift), its
    index ``k`` (None unless `locate`), ``x0 = m - c`` (exact, ``|x0| <=
    2**-21``), ``sigma = fl(z - c)`` (in `out`) and ``err`` (in `err_out`)
    with ``z - c = sigma + err`` exactly, so that

        z - m = sigma + err - x0    (exactly).

    ``err`` may hold NaN where ``z`` is infinite; `clean_errors` zeroes them.
    """
    if locate:
        k = np.argmax(z, axis=axis, keepdims=True)
        # The maximum is gathered at its index rather than found by a second pass over z;
        # argmax stops at the first NaN, so a NaN slice still gets m = NaN.
        m = np.take_along_axis(z, k, axis=axis)
    else:
        k = None
        m = np.max(z, axis=axis, keepdims=True)
    sm = np.where(np.isfinite(m), m, 0.0) if finite_shift else m
    with np.errstate(invalid="ignore", over="ignore"):
        huge = ~(np.abs(sm) < GRID_LIMIT)  # also NaN and inf
        # c: the shift on the grid (exact: scaling by a power of two and rounding to an integer).
        c = np.round(sm * (1.0 / GRID)) * GRID
        if huge.any():
            c = np.where(huge, sm, c)
        x0 = sm - c  # exact: |c - sm| <= GRID / 2 and both are multiples of ulp(sm)
        sigma = np.subtract(z, c, out=out)
        # err = z - (sigma + c): two operations give the exact error of sigma (see GRID).
        err = np.add(sigma, c, out=err_out)
        np.subtract(z, err, out=err)
        if huge.any() and np.isfinite(sm[huge]).any():
            # Off the grid the cheap form is not exact: use TwoSum's six operations.
            _, e = two_sum(z, -c)
            np.copyto(err, e)
    return m, k, x0, sigma, err


def clean_errors(err: np.ndarray) -> None:
    """Zero the NaN errors of infinite logits (their exp is 0 or the slice is NaN anyway)."""
    np.copyto(err, 0.0, where=~np.isfinite(err))


def exp_and_sum(sigma, err, axis: int, x0, *, k=None, ties=None, overwrite_sum: bool = False):
    """Exponentiate `sigma` in place and return ``(s_hi, s_lo, g)`` (each keepdims).

    ``s_hi + s_lo`` is ``s = sum over j != k of exp(z_j - m)``, to about an
    ulp; ``g = expm1(-x0)``, so each entry's exact term is
    ``exp(sigma_j) (1 + err_j) (1 + g)``. The maximum's entry (at `k`, or
    every entry in `ties` minus one) is 0 in `sigma` afterwards, its term 1
    being kept out of ``s``.
    """
    np.exp(sigma, out=sigma)
    if k is not None:
        np.put_along_axis(sigma, k, 0.0, axis=axis)  # the maximum's exact 1 stays out of s
    else:
        np.copyto(sigma, 0.0, where=ties)
    # exp(sigma_j + err_j) = exp(sigma_j) (1 + err_j) to O(err^2) ~ 2**-87: the correction
    # for the rounding of z - c, summed on its own (it is about 2**-43 of the sum or less).
    b = class_dot(sigma, err, axis)
    if not np.isfinite(b).all():
        clean_errors(err)
        b = class_dot(sigma, err, axis)
    a = class_sum(sigma, axis, overwrite=overwrite_sum)
    g = np.expm1(-x0)  # exp(c - m) - 1, |g| <= 2**-21
    with np.errstate(invalid="ignore"):
        corr = b + (a + b) * g  # about 2**-21 of a: its own rounding is negligible
        s_hi, s_lo = fast_two_sum(a, corr)
        if ties is not None:
            # The tied maxima but one are whole ones (exp(m - m) = 1): added exactly, error kept.
            s_hi, lo = two_sum(np.count_nonzero(ties, axis=axis, keepdims=True) - 1.0, s_hi)
            s_lo = s_lo + lo
        fin = np.isfinite(s_hi)
        if not fin.all():  # an infinite sum (inf logits with a finite shift): keep it as is
            s_hi = np.where(fin, s_hi, a)
            s_lo = np.where(fin, s_lo, 0.0)
    return s_hi, s_lo, g


def log1p_dd(s_hi, s_lo):
    """``log1p(s_hi + s_lo)`` as a pair: log1p of the high part, plus the first-order low part."""
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = np.log1p(s_hi)
        lo = np.where(np.isfinite(hi), s_lo / (1.0 + s_hi), 0.0)
    return hi, lo
