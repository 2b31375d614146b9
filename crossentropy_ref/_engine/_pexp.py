"""``exp`` as an unevaluated pair ``hi + lo``, to within 2**-58 of its value.

The first tier of the engine needs every ``exp(z_j - m)`` a few bits better
than a float64 holds, so that the sums, ratios and logarithms built on them
stay within an ulp *provably*, without trusting the platform's ``exp`` (numpy
tests its own to 1 ulp, which is too loose for a rigorous 4 ulp bound on a
softmax entry). This is Tang's table-driven method with the last step left
unrounded:

    x = n L + r,   L = ln 2 / 128,   n = rint(x / L),   |r| <= L / 2 (+ tiny)
    exp(x) = 2**M * T_j * (1 + p(r)),  n = 128 M + j,  T_j = 2**(j / 128)
    hi = T_hi * 2**M,  lo = (T_lo + T_hi p(r)) * 2**M

with ``T_j = T_hi + T_lo`` from the ``decimal`` module (error below 2**-106)
and ``p(r) = expm1(r)`` to degree 5.

Error bound, relative to exp(x), for ``x = xh + xl`` with ``|xl| <= 2**-40``
(each item is at most the figure given):

- truncation of the series: ``r**6 / 720 < 2**-60.7`` (|r| <= 2.71e-3);
- the reduction: ``xh - n L1`` is exact (Sterbenz), ``n L1`` and ``n L2`` are
  exact products (|n| < 2**20 and L1, L2 have 33 bits), ``n L3 < 2**-57``;
  the three roundings of r cost ``3 u |r| < 2**-60``;
- evaluating ``p``: the ``r**2`` part (< 3.7e-6) is off by about 4u of itself,
  and ``r + (...)`` rounds once: ``u |p| < 2**-61.4``;
- ``T_hi p`` and ``T_lo + T_hi p`` round once each: ``2 u |p| < 2**-60.4``;
- ``T_lo`` itself: 2**-106.

Total below 2**-58.5; `EPS` = 2**-58 is what the engine's bounds use, and
``tests/test_engine.py`` measures the worst case against mpmath (about
2**-61). Results that fall in the subnormal range keep an absolute error
below 2**-1074 per part: `ABS` = 2**-1074 covers both.

The same sequence of float64 operations, with no fused multiply-add, runs in
the compiled kernels, so both give identical bits.

Reference: P. T. P. Tang, "Table-driven implementation of the exponential
function in IEEE floating-point arithmetic", ACM TOMS 15 (1989).
"""

from __future__ import annotations

import decimal
import functools
import math
from fractions import Fraction

import numpy as np

TABLE_BITS = 7
_N_TABLE = 1 << TABLE_BITS
# Relative error bound of exp_pair (see the module docstring), and absolute error of a
# result in the subnormal range.
EPS = 2.0**-58
ABS = 2.0**-1074
# Arguments at or below FLOOR give exactly (0, 0): exp(-1100) is far below 2**-1074.
FLOOR = -1100.0


def _ln2_fraction() -> Fraction:
    return Fraction(decimal.Context(prec=60).ln(2))


def _split_constant(value: Fraction, bits: int, parts: int) -> tuple[float, ...]:
    """`value` as ``parts`` floats, all but the last holding `bits` significant bits."""
    out = []
    rest = value
    for _ in range(parts - 1):
        e = math.frexp(float(rest))[1]
        unit = Fraction(2) ** (e - bits)
        head = math.floor(rest / unit) * unit  # the leading `bits` bits, truncated
        out.append(float(head))
        rest -= head
    out.append(float(rest))
    return tuple(out)


_LN2 = _ln2_fraction()
# L = ln 2 / 128 in three parts: n * L1 and n * L2 are exact for |n| < 2**20 (|x| < 4000).
L1, L2, L3 = _split_constant(_LN2 / _N_TABLE, 33, 3)
INV_L = float(_N_TABLE / _LN2)
# 1/6, 1/24, 1/120 rounded to float64: their errors are far below the bound (they multiply r**3).
C3, C4, C5 = 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0


@functools.cache
def table() -> tuple[np.ndarray, np.ndarray]:
    """``2**(j / 128)`` for j = 0 .. 127 as (hi, lo): hi rounded to nearest, lo the rest rounded.

    Computed with the ``decimal`` module at 40 digits (error below 1e-39).
    """
    ctx = decimal.Context(prec=40)
    ln2 = ctx.ln(2)
    vals = [ctx.exp(ctx.divide(ctx.multiply(ln2, j), _N_TABLE)) for j in range(_N_TABLE)]
    hi = np.array([float(v) for v in vals])
    lo = np.array([float(ctx.subtract(v, decimal.Decimal(float(v)))) for v in vals])
    return hi, lo


# Adding and subtracting 1.5 * 2**52 rounds a float of magnitude below 2**51 to the
# nearest integer (np.rint is several times slower); the integer also sits in the low
# bits of the sum, so the int64 view minus _SHIFT_BITS is n without a conversion.
_SHIFT = 1.5 * 2.0**52
_SHIFT_BITS = np.array(_SHIFT).view(np.int64)[()]
# Powers of two are built from their bits, (e + 1023) << 52, for e >= -1022 (np.ldexp
# is several times slower); a scale below that is applied as two such factors.
_EXP_BIAS = 1023
_MIN_NORMAL_EXP = -1022


def pow2(e: np.ndarray, out1: np.ndarray, out2: np.ndarray) -> bool:
    """Write ``2**e`` (int64 array e >= -2044) into `out1` (float64), or as the product
    of `out1` and `out2` when some e < -1022.

    Returns whether `out2` is needed: then ``x * out1 * out2`` (in that order) is
    ``x * 2**e`` rounded once, for every x whose product with out1 stays normal;
    otherwise `out1` alone is exact. `e` is overwritten.
    """
    i1 = out1.view(np.int64)
    np.maximum(e, _MIN_NORMAL_EXP, out=i1)
    two = bool((e < _MIN_NORMAL_EXP).any())
    if two:
        i2 = out2.view(np.int64)
        np.subtract(e, i1, out=i2)
        np.maximum(i2, _MIN_NORMAL_EXP, out=i2)
        i2 += _EXP_BIAS
        i2 <<= 52
    i1 += _EXP_BIAS
    i1 <<= 52
    return two


def exp_pair(xh: np.ndarray, xl, out_hi: np.ndarray, out_lo: np.ndarray, ws, scale_out=None, floor=FLOOR) -> None:
    """Write ``exp(xh + xl)`` as ``out_hi + out_lo``, within ``EPS exp(x) + ABS`` of its value.

    For ``xh <= 1`` (any float64 but +inf and NaN; -inf and everything at or
    below `FLOOR` give exactly (0, 0)) and ``|xl| <= 2**-40`` (`xl` may be
    None for 0, and may be NaN where xh is -inf). ``exp(0)`` is exactly
    (1, 0). The relative bound `EPS` holds while ``lo`` is a normal float
    (results above about 2**-969); below, the absolute `ABS` takes over. NaN
    in `xh` gives NaN. `ws(slot, dtype)` returns scratch arrays of xh's shape
    (slots 0 to 3 are used); the outputs must not overlap `xh`, `xl` or them.

    With `scale_out` (an int64 array like xh), the power of two is not applied:
    ``exp(x) = (out_hi + out_lo) 2**scale_out`` with out_hi in [1, 2), for any
    x > `floor` (at most -4000), within EPS relatively (no underflow, no absolute
    error); below the floor the result is meaningless and the caller masks it.
    """
    t_hi, t_lo = table()
    x = np.maximum(xh, floor, out=ws(0))  # -inf and anything whose exp is 0: to the floor (NaN stays NaN)
    t = np.multiply(x, INV_L, out=out_lo)
    t += _SHIFT
    ni = ws(1, np.int64)
    with np.errstate(invalid="ignore"):
        np.subtract(t.view(np.int64), _SHIFT_BITS, out=ni)  # n = rint(x / L); NaN: garbage, masked below
    t -= _SHIFT  # n as a float
    # r = x - n L + xl: x - n L1 is exact (Sterbenz), n L1 and n L2 are exact products.
    r = np.multiply(t, L1, out=ws(2))
    np.subtract(x, r, out=r)
    np.multiply(t, L2, out=x)
    r -= x
    np.multiply(t, L3, out=x)
    r -= x
    if xl is not None:
        np.copyto(x, xl)
        with np.errstate(invalid="ignore"):
            np.copyto(x, 0.0, where=~(xh > floor))  # xl may be NaN where xh is -inf
        r += x
    # p = expm1(r) = r + r**2 (1/2 + r (1/6 + r (1/24 + r / 120))), in t.
    np.multiply(r, C5, out=t)
    t += C4
    t *= r
    t += C3
    t *= r
    t += 0.5
    t *= r
    t *= r
    t += r
    j = np.bitwise_and(ni, _N_TABLE - 1, out=ws(3, np.intp))  # take() wants np.intp (int32 on wasm32)
    th = np.take(t_hi, j, out=out_hi)
    t *= th  # T_hi p
    t += np.take(t_lo, j, out=r)
    ni >>= TABLE_BITS
    if scale_out is not None:  # keep the power of two apart: out = (th + t) 2**scale_out
        np.copyto(scale_out, ni)
        if np.isnan(xh).any():
            th[np.isnan(xh)] = np.nan
        return
    f1, f2 = ws(0), ws(2)
    if pow2(ni, f1, f2):
        th *= f1
        th *= f2
        t *= f1
        t *= f2
    else:
        th *= f1
        t *= f1
    nan = np.isnan(xh)
    if nan.any():
        th[nan] = np.nan
