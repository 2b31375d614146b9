"""Double-double arithmetic on numpy arrays, and ``exp`` to about 100 bits.

A double-double is an unevaluated sum ``hi + lo`` of two float64 with
``|lo| <= ulp(hi)``: about 106 significant bits. The gradient of soft
targets needs it. Its entries ``a q_c - b_c`` are differences of two
positive terms that can agree in many leading bits (a target close to the
prediction), and each bit they share is a bit of the terms' rounding that
survives in the difference. With the terms accurate to about ``2**-100``,
a difference is still within a few ulp when the terms agree in up to about
44 leading bits; `crossentropy_ref._grad_exact` takes the rarer entries
beyond that to the ``decimal`` module.

numpy has no fused multiply-add, so the exact product of two floats uses
Dekker's splitting (`two_prod`). Every operation here is exact or
rounds at about ``2**-104`` of its result; the bounds are in the
docstrings.

References: T. J. Dekker, "A floating-point technique for extending the
available precision", Numer. Math. 18 (1971); J.-M. Muller et al.,
"Handbook of floating-point arithmetic", 2nd ed. (2018), ch. 4 and 14.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from ._eft import fast_two_sum, two_prod, two_sum

def from_fraction(x: Fraction) -> tuple[float, float]:
    """A rational as ``hi + lo``: hi the nearest float64, lo the nearest float64 to the rest."""
    hi = float(x)
    return hi, float(x - Fraction(hi))


@functools.lru_cache(maxsize=64)
def smoothing_pairs(eps: float, c: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``1 - eps`` and ``eps / C`` as (hi, lo) pairs (`from_fraction`), so that neither is rounded.

    Cached: every block of a call asks for the same two pairs.
    """
    return from_fraction(1 - Fraction(eps)), from_fraction(Fraction(eps) / c)


def mul(ah, al, bh, bl):
    """(ah + al)(bh + bl) as a double-double, relative error below 2**-104."""
    p, e = two_prod(ah, bh)
    e = e + (ah * bl + al * bh)  # al * bl is below 2**-106 of the product
    return fast_two_sum(p, e)


def mul_float(ah, al, b):
    """(ah + al) b for a float b, relative error below 2**-104."""
    p, e = two_prod(ah, b)
    return fast_two_sum(p, e + al * b)


def add(ah, al, bh, bl, *, nonfinite: bool = False):
    """(ah + al) + (bh + bl), error below 2**-104 of |a| + |b| (Muller et al., Alg. 14.3).

    With `nonfinite`, an infinite or NaN sum keeps its high part and gets a
    low part of 0 (without it, inf - inf would make the high part NaN).
    """
    s, e = two_sum(ah, bh)
    e = e + (al + bl)
    hi, lo = fast_two_sum(s, e)
    if not nonfinite:
        return hi, lo
    fin = np.isfinite(hi)
    return np.where(fin, hi, s), np.where(fin, lo, 0.0)


def sub(ah, al, bh, bl):
    return add(ah, al, -bh, -bl)


def div_float(ah, al, b):
    """(ah + al) / b for a float b, relative error below 2**-104: the remainder is exact (two_prod)."""
    q = ah / b
    p, pe = two_prod(q, b)
    return fast_two_sum(q, (((ah - p) - pe) + al) / b)


def round_div(ah, al, b: float):
    """(ah + al) / b rounded once to float64 (no division when b = 1)."""
    return ah + al if b == 1.0 else np.add(*div_float(ah, al, b))


def recip_one_plus(sh, sl):
    """1 / (1 + s) for ``s = sh + sl >= 0``, relative error below 2**-102.

    One Newton step from ``r = fl(1 / o)``, ``o = 1 + s``: the residual
    ``1 - o r`` is computed exactly (two_prod; 1 - p is exact by Sterbenz's
    lemma since p lies in [1/2, 2]), and 1/o = r (1 + d + d**2 + ...) with
    d = 1 - o r about 2**-53.
    """
    oh, ol = two_sum(1.0, sh)
    ol = ol + sl
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = 1.0 / oh
        p, pe = two_prod(oh, r)
        d = ((1.0 - p) - pe) - ol * r
        rl = r * d
    return fast_two_sum(r, rl)


def tree_sum(hi: np.ndarray, lo: np.ndarray, axis: int):
    """Sum of double-doubles along `axis` (keepdims), error below log2(n) 2**-104 of sum |x|.

    The same pairwise tree as `_exact.class_sum`: the upper half is added
    onto the lower half, each high-part addition exact through TwoSum (its
    error moves to the low parts, which are below 2**-52 of the terms and
    pass through log2(n) float64 additions). Works on copies.
    """
    h = np.moveaxis(hi, axis, 0).copy()
    l = np.moveaxis(lo, axis, 0).copy()
    n = h.shape[0]
    while n > 1:
        half = n // 2
        s, e = two_sum(h[:half], h[n - half : n])
        l[:half] += l[n - half : n]
        l[:half] += e
        h[:half] = s
        n -= half
    sh, sl = fast_two_sum(h[:1], l[:1])
    return np.moveaxis(sh, 0, axis), np.moveaxis(sl, 0, axis)


# --- exp ------------------------------------------------------------------------

# exp(x) = 2**M * 2**(j / 2**TABLE_BITS) * exp(r), with n = M 2**TABLE_BITS + j the
# nearest integer to x / L, L = ln 2 / 2**TABLE_BITS, and r = x - n L, |r| <= L / 2.
# A 2**14-entry table (256 KiB of double-doubles) keeps |r| <= 2.2e-5, so that the
# series for expm1(r) needs r and r**2 in double-double and r**3 / 6 (< 2e-15) onward
# only in float64 (each of their roundings is below 2**-101 of 1).
TABLE_BITS = 14
_N_TABLE = 1 << TABLE_BITS


def _ln2(prec: int = 60):
    """ln 2 from the ``decimal`` module, correctly rounded to `prec` digits."""
    import decimal

    return decimal.Context(prec=prec).ln(2)


_LN2 = Fraction(_ln2())  # exact value of the 60-digit decimal


def _ln2_parts() -> tuple[float, ...]:
    """L = ln 2 / 2**TABLE_BITS as L1 + L2 + L3 + L4: the first three of 28 bits each.

    |n| < 2**25 for the arguments here (|x| <= 1100), so n * L1, n * L2 and
    n * L3 are exact products (28 + 25 bits); n * L4 is below 2**-85 and its
    rounding below 2**-137. ln 2 is taken to 60 digits.
    """
    rest = _LN2 / _N_TABLE
    parts = []
    for _ in range(3):
        e = math.frexp(float(rest))[1]
        unit = Fraction(2) ** (e - 28)  # keep 28 significant bits
        head = math.floor(rest / unit) * unit
        parts.append(float(head))
        rest -= head
    parts.append(float(rest))
    return tuple(parts)


_L1, _L2, _L3, _L4 = _ln2_parts()
_INV_L = float(_N_TABLE / _LN2)


@functools.cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    """2**(j / 2**TABLE_BITS), j = 0 .. 2**TABLE_BITS - 1, as double-doubles.

    Built on first use from two tables of 128 entries, 2**(i / 128) and
    2**(i / 2**TABLE_BITS), computed with the ``decimal`` module at 40
    digits (errors below 1e-39) and multiplied in double-double (`mul`,
    below 2**-104).
    """
    import decimal

    ctx = decimal.Context(prec=40)
    ln2 = _ln2(45)
    step = 1 << (TABLE_BITS - 7)

    def dd_table(denominator: int) -> tuple[np.ndarray, np.ndarray]:
        vals = [ctx.exp(ctx.divide(ctx.multiply(ln2, i), denominator)) for i in range(128)]
        hi = np.array([float(v) for v in vals])
        lo = np.array([float(ctx.subtract(v, decimal.Decimal(float(v)))) for v in vals])
        return hi, lo

    coarse = dd_table(128)  # 2**(i / 128)
    fine = dd_table(_N_TABLE)  # 2**(i / 2**TABLE_BITS), i < 128 = step
    j = np.arange(_N_TABLE)
    i1, i2 = j // step, j % step
    return mul(coarse[0][i1], coarse[1][i1], fine[0][i2], fine[1][i2])


# Below this the result is 0 in float64 (e**-746 < 2**-1075); arguments are clamped to it.
EXP_FLOOR = -1100.0


# Callers pass at most about this many elements at a time, so that exp's dozens of
# temporaries stay small. (Measured on (256, 32000) with label smoothing: 4096 and
# 32768 run alike on one thread, about 150 ns per logit; with two threads 4096 was
# slower, the threads contending for the GIL between short numpy calls.)
CHUNK = 1 << 15


def exp(xh: np.ndarray, xl: np.ndarray):
    """``exp(xh + xl)`` as a double-double, relative error below 2**-99.

    For ``xh <= 1`` (finite or -inf) and ``|xl| <= 2**-40``; the result is
    exact (1, 0) at 0, and 0 for an argument outside that domain (NaN
    included: callers mask those positions). Results below about 2**-969
    lose low bits to underflow: their absolute error stays below 2**-1070.
    Pass at most about CHUNK elements at a time.
    """
    ok = (xh > EXP_FLOOR) & (xh <= 1.0)  # False for NaN
    if ok.all():
        x = xh
    else:  # -inf, anything whose exp is 0, and arguments outside the domain: exp(EXP_FLOOR) = 0
        x = np.where(ok, xh, EXP_FLOOR)
        xl = np.where(ok, xl, 0.0)
    n = np.rint(x * _INV_L)
    # r = x - n L + xl as rh + rl: x - n L1 is exact (Sterbenz: both have the same sign and
    # are within a factor 2, or n = 0), the next products are exact, and the TwoSums keep
    # every rounding error.
    t = x - n * _L1
    rh, e1 = two_sum(t, -(n * _L2))
    rh, e2 = two_sum(rh, -(n * _L3))
    rh, e3 = two_sum(rh, xl)
    rl = (e1 + e2) + (e3 - n * _L4)
    # expm1(r) = r + r**2/2 + (r**3/6 + ... + r**6/720); r**7/5040 < 2**-119 is dropped.
    sh, sl = two_prod(rh, rh)
    sl = sl + 2.0 * rh * rl
    tail = sh * (rh * (1.0 / 6.0) + sh * (1.0 / 24.0 + rh * (1.0 / 120.0 + rh * (1.0 / 720.0))))
    ph, e = two_sum(rh, 0.5 * sh)
    pl = e + (rl + (0.5 * sl + tail))
    ni = n.astype(np.int64)
    j = ni & (_N_TABLE - 1)
    big_m = ni >> TABLE_BITS
    t_hi, t_lo = _table()
    th, tl = t_hi[j], t_lo[j]
    # T (1 + p) = T + T p, with T = th + tl and p = ph + pl.
    q, qe = two_prod(th, ph)
    lo = qe + (th * pl + tl * ph) + tl
    hi, e = fast_two_sum(th, q)  # th >= 1 > |q|
    hi, lo = fast_two_sum(hi, lo + e)
    return np.ldexp(hi, big_m), np.ldexp(lo, big_m)  # exact unless the result is subnormal
