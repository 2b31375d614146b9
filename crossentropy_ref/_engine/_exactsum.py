"""Exact summation of float64 arrays: partial sums that merge exactly, rounded once.

`exact_total` returns the exact value of a sum of float64 numbers, each
optionally scaled by a power of two, as an `ExactTotal`: a Python integer
times a power of two, plus three flags for NaN, +inf and -inf. Totals of
separate chunks `merge` exactly, and `to_float` (or `ratio`, for a mean)
rounds once, to nearest with ties to even. The result is therefore the same
float for every way of cutting an array into chunks and every order of
merging them: it depends only on the multiset of terms.

Method (a long accumulator in the sense of Kulisch, built with numpy):

1. Every finite float64 is ``x = m 2**e`` with ``0.5 <= |m| < 1`` and
   ``m`` a multiple of ``2**-53`` (`numpy.frexp`, exact for subnormals too;
   ``frexp(0) = (0, 0)``). Split ``m 2**27 = hi + lo``: ``hi`` its integer
   part (``|hi| < 2**27``) and ``lo`` the rest, a multiple of ``2**-26``
   with ``|lo| < 1``. Both steps are exact.
2. Terms are grouped by their exponent ``e + exp`` and each group's
   halves are added by `numpy.bincount` with float64 weights. Every
   partial sum of up to ``2**26`` of them is an integer (for ``hi``), or
   a multiple of ``2**-26`` (for ``lo``), below ``2**53`` of its unit, so
   it is exact in whatever order bincount adds.
3. The bucket sums become integer digits ``d_j`` (int64) of
   ``N = sum_j d_j 2**j``; they are folded into 24-bit limbs in int64 and
   read into one Python int with `int.from_bytes`. The Python work per
   call is a few operations whatever the number of distinct exponents.
4. The total is stored in a canonical form (odd mantissa, or 0 with scale
   0), so equal values have equal representations and `merge` is
   associative and commutative bit for bit.
5. `to_float` and `ratio` round the exact rational ``n / d * 2**k`` with
   integer division and an explicit round-half-to-even step, including
   gradual underflow into the subnormals and overflow to infinity.

References: U. W. Kulisch and W. L. Miranker, "The arithmetic of the digital
computer: a new approach", SIAM Review 28 (1986) (the long accumulator);
J. Demmel and Y. Hida, "Accurate and efficient floating point summation",
SIAM J. Sci. Comput. 25 (2003) (accumulating by exponent); R. M. Neal, "Fast
exact summation using small and large superaccumulators", arXiv:1505.05571
(2015); IEEE Std 754-2019, 4.3.1 and 7.4 (rounding to nearest, ties to even;
overflow).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

# Supported scaling exponents: |exp| <= EXP_LIMIT. Each call's bucket arrays and a
# total's mantissa grow with the spread of the exponents present (max - min of
# e + exp, at most 2 * EXP_LIMIT + 2098 bits), so the limit bounds both.
EXP_LIMIT = 1 << 16

# Elements per bincount call. Exactness of step 2 needs at most 2**26. 2**16 keeps the
# temporaries (512 KiB each) in the L2 cache: on 10**6 terms one call took 4.9 ms with
# 2**16 and 12.5 ms with 2**20. It keeps the digits of _piece_digits below 2**44.
_SLICE = 1 << 16
# frexp exponents of finite nonzero float64 lie in [-1073, 1024] (subnormal 2**-1074
# to just below 2**1024); shifted by _E_OFFSET they index [1, 2098] (zero -> 1074).
_E_OFFSET = 1074
_E_SPAN = 2099
# Bits per limb when the digits are read into a Python int: a whole number of bytes.
_LIMB = 24
_LIMB_MASK = (1 << _LIMB) - 1
_LIMB_WEIGHTS = np.left_shift(1, np.arange(_LIMB, dtype=np.int64))  # 2**r, r < 24


class ExactTotal(NamedTuple):
    """The exact value of a sum: ``mant * 2**scale``, unless a flag says otherwise.

    ``mant`` is odd, or 0 with ``scale`` 0 (canonical form: one
    representation per value). ``nan`` records a NaN term, ``pos_inf`` and
    ``neg_inf`` a term of +inf and -inf. The finite terms' sum is kept
    even when a flag is set, so merging stays exact. Build totals with
    `exact_total` and `merge`, not by hand.
    """

    mant: int
    scale: int
    nan: bool = False
    pos_inf: bool = False
    neg_inf: bool = False


#: The total of no terms.
ZERO = ExactTotal(0, 0)


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def _as_float64(x: ArrayLike) -> np.ndarray:
    """`x` as a float64 array, refusing any value that float64 cannot hold exactly."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"`x` must be an array of real numbers; got {type(x).__name__} ({exc})") from None
    if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
        return np.asarray(a, dtype=np.float64)  # float16/32 -> float64 is exact
    if a.dtype.kind in "iu":
        # Integers convert exactly only up to 2**53 in magnitude.
        if a.size and max(abs(int(a.min())), abs(int(a.max()))) > 2**53:
            raise ValueError(
                "`x` must hold values that float64 represents exactly; got integers beyond 2**53 "
                f"in an {_describe(a)}: convert them to float64 first if rounding them is intended"
            )
        return np.asarray(a, dtype=np.float64)
    raise TypeError(f"`x` must hold real numbers (float64, or a type float64 holds exactly); got {_describe(a)}")


def _as_exp(exp: ArrayLike | None, shape: tuple[int, ...]):
    """Check `exp` and return ``(e, lo, hi)``: the int64 exponents broadcast to `shape`
    (None when they are all equal), and their minimum and maximum."""
    if exp is None:
        return None, 0, 0
    try:
        a = np.asarray(exp)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`exp` must be an array of integers; got {type(exp).__name__} ({exc})") from None
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):  # [] is float64
        raise TypeError(f"`exp` must hold integers (powers of two to scale `x` by); got {_describe(a)}")
    try:
        e = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"`exp` must be broadcastable to the shape of `x`, {shape}; got shape {a.shape}") from None
    if e.size == 0:
        return None, 0, 0
    lo, hi = int(a.min()), int(a.max())
    if lo < -EXP_LIMIT or hi > EXP_LIMIT:
        bad = lo if lo < -EXP_LIMIT else hi
        raise ValueError(f"`exp` must hold values in [{-EXP_LIMIT}, {EXP_LIMIT}]; got {bad}")
    if lo == hi:  # one exponent for all: it only shifts the total's scale
        return None, lo, hi
    return np.broadcast_to(a.astype(np.int64, copy=False), shape), lo, hi


def _pieces(x: np.ndarray, e: np.ndarray | None):
    """Yield ``(x, e)`` as flat arrays of at most `_SLICE` elements, cut along the leading axes.

    `e` is `x`'s shape (a broadcast view), so the exponents are copied one
    piece at a time, never whole.
    """
    if x.size <= _SLICE:
        yield x.reshape(-1), None if e is None else e.reshape(-1)
    elif x.shape[0] == 1:
        yield from _pieces(x[0], None if e is None else e[0])
    else:
        rows = max(1, _SLICE // (x.size // x.shape[0]))
        for i in range(0, x.shape[0], rows):
            yield from _pieces(x[i : i + rows], None if e is None else e[i : i + rows])


def _piece_digits(x: np.ndarray, e: np.ndarray | None, off: int, span: int) -> np.ndarray:
    """Integer digits ``d`` (int64) with ``sum(x * 2**e) = sum_j d[j] 2**(j + off - 53)`` exactly.

    `x` is flat, finite and holds at most `_SLICE` elements; `e` is flat
    int64, or None for a common exponent ``off + _E_OFFSET``. Bucket j
    gathers the terms whose exponent ``frexp(x)[1] + e`` is ``j + off``;
    the caller makes `span` cover them all.
    """
    m, ex = np.frexp(x)  # x = m 2**ex, 0.5 <= |m| < 1, exact (subnormals included)
    if e is None:
        idx = np.add(ex, _E_OFFSET, dtype=np.intp)
    else:
        idx = np.subtract(e, off, dtype=np.intp)
        idx += ex
    np.multiply(m, 2.0**27, out=m)  # exact: a power-of-two scaling
    hi = np.trunc(m)  # integer part, |hi| < 2**27
    lo = np.subtract(m, hi, out=m)  # exact: the fraction, a multiple of 2**-26 in (-1, 1)
    # Exact bucket sums (module docstring, step 2): at most _SLICE = 2**16 terms here.
    h = np.bincount(idx, hi, minlength=span)
    f = np.bincount(idx, lo, minlength=span)
    # Bucket j holds terms (hi + lo) 2**(j + off - 27): as digits of 2**(j + off - 53),
    # lo contributes f[j] 2**26 at digit j and hi contributes h[j] at digit j + 26.
    d = np.zeros(-(-(span + 26) // _LIMB) * _LIMB, dtype=np.int64)  # whole limbs for _digits_to_int
    d[:span] = f * 2.0**26  # |f| 2**26 < 2**42: an exact integer
    d[26 : span + 26] += h.astype(np.int64)  # |h| < 2**43
    return d


def _digits_to_int(d: np.ndarray) -> int:
    """``sum_j d[j] 2**j`` as a Python int, for int64 digits with ``|d[j]| < 2**48``.

    ``d.size`` is a multiple of `_LIMB`. The digits are folded into limbs
    of `_LIMB` bits in int64, biased to be non-negative and read with
    `int.from_bytes`: a fixed number of numpy and Python operations,
    however long `d` is (a Python loop over the digits would cost about
    0.1 us each).
    """
    q = d.size // _LIMB
    rows = d.reshape(q, _LIMB)
    limbs = np.empty(q + 1, dtype=np.int64)
    # d = low + high 2**24 with 0 <= low < 2**24 (the arithmetic shift floors negatives);
    # each row's sum of low 2**r (r < 24) is below 2**52, and so is that of high.
    np.dot(rows & _LIMB_MASK, _LIMB_WEIGHTS, out=limbs[:q])
    limbs[q] = 0
    limbs[1:] += np.dot(rows >> _LIMB, _LIMB_WEIGHTS)  # limb k weighs 2**(24 k): |limbs| < 2**53
    limbs += 1 << 53  # biased into [0, 2**54)
    n = 0
    for c in range(3):
        # Limbs c, c + 3, ... sit 72 bits apart: each fits a 9-byte slot, its 8 little-endian
        # bytes and a zero, so the slots concatenate into one integer without overlap.
        group = limbs[c::3]
        slots = np.zeros((group.size, 9), dtype=np.uint8)
        slots[:, :8] = group.astype("<u8").view(np.uint8).reshape(-1, 8)
        n += int.from_bytes(slots.tobytes(), "little") << (_LIMB * c)
    # Remove the bias: 2**53 times sum_k 2**(24 k) = (2**(24 (q+1)) - 1) / (2**24 - 1).
    return n - ((1 << 53) * ((1 << (_LIMB * (q + 1))) - 1)) // _LIMB_MASK


def _check_total(t, name: str) -> None:
    if not isinstance(t, ExactTotal):
        raise TypeError(f"`{name}` must be an ExactTotal (from exact_total or merge); got {type(t).__name__}")


def _canonical(mant: int, scale: int) -> tuple[int, int]:
    """``(mant, scale)`` with the trailing zero bits of `mant` moved into `scale`; 0 as (0, 0)."""
    if mant == 0:
        return 0, 0
    tz = (mant & -mant).bit_length() - 1  # mant & -mant isolates the lowest set bit
    return mant >> tz, scale + tz


def exact_total(x: ArrayLike, exp: ArrayLike | None = None) -> ExactTotal:
    r"""The exact sum of the float64 array `x`, each element scaled by ``2**exp``.

    .. math::

        \mathrm{total} = \sum_i x_i \, 2^{\mathrm{exp}_i}

    computed without rounding; the sum of the finite terms is kept apart
    from the non-finite ones. Round it with `to_float` or `ratio`.

    Parameters
    ----------
    x : array_like of any shape
        The terms: float64, or a type that float64 holds exactly (float16,
        float32, integers up to ``2**53`` in magnitude).
    exp : array_like of int, broadcastable to the shape of `x`, default=None
        Powers of two to scale the terms by, in
        ``[-EXP_LIMIT, EXP_LIMIT]`` (``EXP_LIMIT = 2**16``). ``x * 2**exp``
        may lie far outside the float64 range; it is never formed.

    Returns
    -------
    ExactTotal
        ``mant * 2**scale`` (canonical: ``mant`` odd, or 0 with scale 0)
        and the flags ``nan``, ``pos_inf``, ``neg_inf``. Pickled, it takes
        76 bytes plus one per 8 bits of ``mant``, whose length is the
        spread of the terms' exponents plus about 53 bits. Measured on
        2**16 terms: 89 bytes for normal(0, 1) draws, 340 for magnitudes
        spanning 1e-300..1e300, 1082 with `exp` in [-3000, 3000], and
        about 16.7 KB at most (exponents across the whole supported range).

    Raises
    ------
    TypeError
        If `x` is not real, or `exp` does not hold integers.
    ValueError
        If `exp` does not broadcast to the shape of `x`, or lies outside
        ``[-EXP_LIMIT, EXP_LIMIT]``; if `x` holds integers beyond ``2**53``.

    See Also
    --------
    merge, merge_all : combine totals exactly.
    to_float, exact_sum, ratio : round a total (or a quotient) once.

    Notes
    -----
    ``0 * 2**exp`` is 0, ``inf * 2**exp`` is inf and ``nan * 2**exp`` is
    NaN, whatever `exp`. The cost is about 5 ns per element (frexp, a split
    into two halves and two bincounts, on one thread) plus about 30 us per
    call; the module docstring gives the method.

    Examples
    --------
    >>> sum([1e16, 1.0, -1e16])  # 1e16 + 1 rounds to 1e16: the 1 is lost
    0.0
    >>> exact_total([1e16, 1.0, -1e16])
    ExactTotal(mant=1, scale=0, nan=False, pos_inf=False, neg_inf=False)
    >>> exact_total([1.0, 3.0], exp=[-1080, -1080]).scale
    -1078
    """
    a = _as_float64(x)
    e, lo, hi = _as_exp(exp, a.shape)
    # Bucket j of every piece gathers the terms of exponent j + off (see _piece_digits).
    off, span = lo - _E_OFFSET, _E_SPAN + (hi - lo)
    nan = pos_inf = neg_inf = False
    mant = 0
    for xp, ep in _pieces(a, e):
        if not np.isfinite(xp).all():  # checked piece by piece: no mask the size of x
            nan |= bool(np.isnan(xp).any())
            pos_inf |= bool((xp == np.inf).any())
            neg_inf |= bool((xp == -np.inf).any())
            # inf 2**exp = inf and NaN 2**exp = NaN: the flags say all; the copy leaves x as it was.
            xp = np.where(np.isfinite(xp), xp, 0.0)
        if xp.size:
            mant += _digits_to_int(_piece_digits(xp, ep, off, span))
    mant, scale = _canonical(mant, off - 53)
    return ExactTotal(mant, scale, nan, pos_inf, neg_inf)


def merge_all(totals: Iterable[ExactTotal]) -> ExactTotal:
    """The exact sum of several `ExactTotal` (`ZERO` for none).

    Associative and commutative bit for bit: the result is the canonical
    form of the exact sum, whatever the grouping and order.

    Examples
    --------
    >>> parts = [exact_total([1e16, 1.0]), exact_total([-1e16]), exact_total([])]
    >>> to_float(merge_all(parts))
    1.0
    """
    ts = list(totals)
    for t in ts:
        _check_total(t, "totals")
    nonzero = [t for t in ts if t.mant]
    nan = any(t.nan for t in ts)
    pos_inf = any(t.pos_inf for t in ts)
    neg_inf = any(t.neg_inf for t in ts)
    if not nonzero:
        return ExactTotal(0, 0, nan, pos_inf, neg_inf)
    s = min(t.scale for t in nonzero)
    mant = sum(t.mant << (t.scale - s) for t in nonzero)  # every term aligned to the finest scale
    mant, scale = _canonical(mant, s)
    return ExactTotal(mant, scale, nan, pos_inf, neg_inf)


def merge(a: ExactTotal, b: ExactTotal) -> ExactTotal:
    """The exact sum of two `ExactTotal`; ``merge(a, b) == merge(b, a)``, and associative."""
    _check_total(a, "a")
    _check_total(b, "b")
    return merge_all((a, b))


def _round(n: int, d: int, k: int) -> float:
    """``n / d * 2**k`` rounded to the nearest float64, ties to even (d > 0).

    Gradual underflow: below ``2**-1022`` the rounding unit stays
    ``2**-1074``. A value of ``2**1024`` or more after rounding (at least
    the largest float plus half its ulp) becomes infinite, as IEEE 754
    prescribes for rounding to nearest.
    """
    if n == 0:
        return 0.0
    sign = -1.0 if n < 0 else 1.0
    n = abs(n)
    # e = floor(log2(n / d)): the bit lengths give it to within one.
    e = n.bit_length() - d.bit_length()
    if (n << -e if e < 0 else n) < (d << e if e > 0 else d):
        e -= 1
    e += k  # 2**e <= |value| < 2**(e + 1)
    if e > 1023:
        return sign * math.inf
    if e < -1076:  # |value| < 2**-1075, half the least subnormal: rounds to a signed zero
        return sign * 0.0
    u = max(e, -1022) - 52  # exponent of the rounding unit (ulp) in the result's binade
    s = k - u
    q, r = divmod(n << s, d) if s >= 0 else divmod(n, d << -s)  # q = floor(|value| / 2**u)
    den = d if s >= 0 else d << -s
    if 2 * r > den or (2 * r == den and q & 1):  # round half to even
        q += 1
    if q.bit_length() + u > 1024:  # rounded up to 2**1024: overflow
        return sign * math.inf
    return sign * math.ldexp(float(q), u)  # exact: q <= 2**53 and q 2**u is representable


def _inf_sign(t: ExactTotal) -> int:
    return 1 if t.pos_inf else -1 if t.neg_inf else 0


def to_float(total: ExactTotal) -> float:
    """The total rounded once to float64: to nearest, ties to even.

    NaN if a term was NaN or both infinities were present; otherwise
    +-inf if one infinity was present; otherwise the exact finite sum
    rounded, overflowing to +-inf and rounding gradually into the
    subnormals. An exact zero is +0.0 (as ``x + (-x)`` is in IEEE
    arithmetic; a sum of only negative zeros, -0.0 in IEEE, is +0.0 here).

    Examples
    --------
    >>> x = [1e308, 1e308, -1e308]
    >>> sum(x)  # the naive sum overflows on the way
    inf
    >>> to_float(exact_total(x))
    1e+308
    """
    _check_total(total, "total")
    if total.nan or (total.pos_inf and total.neg_inf):
        return math.nan
    if total.pos_inf or total.neg_inf:
        return _inf_sign(total) * math.inf
    return _round(total.mant, 1, total.scale)


def exact_sum(x: ArrayLike, exp: ArrayLike | None = None) -> float:
    """``to_float(exact_total(x, exp))``: the sum of ``x * 2**exp`` rounded once.

    Examples
    --------
    >>> exact_sum([0.1] * 10)
    1.0
    >>> exact_sum([3.0], exp=[-1076])  # 3 2**-1076 is nearest to the least subnormal
    5e-324
    """
    return to_float(exact_total(x, exp))


def ratio(num: ExactTotal, den: ExactTotal) -> float:
    """``num / den`` for two exact totals, rounded once (to nearest, ties to even).

    The 'mean' reduction: the sum of the losses over the sum of the
    weights. IEEE division rules for the special cases: NaN if either is
    NaN (or holds both infinities), ``inf / inf`` and ``0 / 0`` are NaN,
    ``x / 0`` is +-inf with the sign of x (the exact zero counts as
    +0.0), ``inf / x`` is +-inf and ``x / inf`` a signed zero.

    Examples
    --------
    >>> ratio(exact_total([1.0, 2.0]), exact_total([3.0, 3.0]))
    0.5
    >>> ratio(exact_total([1.0]), exact_total([1e300, -1e300]))
    inf
    """
    _check_total(num, "num")
    _check_total(den, "den")
    if num.nan or den.nan or (num.pos_inf and num.neg_inf) or (den.pos_inf and den.neg_inf):
        return math.nan
    ni, di = _inf_sign(num), _inf_sign(den)
    dsign = -1 if den.mant < 0 else 1  # an exact zero is +0
    if ni and di:
        return math.nan
    if ni:
        return ni * dsign * math.inf
    if di:
        return math.copysign(0.0, (-1 if num.mant < 0 else 1) * di)
    if den.mant == 0:
        return math.nan if num.mant == 0 else math.copysign(math.inf, num.mant)
    if num.mant == 0:
        return math.copysign(0.0, dsign)  # +0 / -x = -0.0
    return _round(num.mant * dsign, abs(den.mant), num.scale - den.scale)
