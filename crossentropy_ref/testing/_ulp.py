"""Floating-point formats and the distance in units in the last place (ulps).

The distance between two numbers of one binary format is counted on the
format's own grid: the bit patterns of IEEE formats, read as sign and
magnitude, are ordered like the numbers they encode, so two numbers are
``|ordinal(a) - ordinal(b)|`` ulps apart. This is exact (no division by a
spacing), crosses binades and zero correctly, and counts the subnormals.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray

DTYPES = ("float64", "float32", "float16", "bfloat16")
EXTRA = "crossentropy_ref[testing]"

# Signed integer type of each format's width, to read its bit patterns.
_INT = {"float64": np.int64, "float32": np.int32, "float16": np.int16, "bfloat16": np.int16}
_WIDTH = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}
# Significand bits p (with the implicit bit) and the smallest normal exponent of each format:
# the unit roundoff is u = 2**-p, the smallest positive normal number 2**emin.
_PRECISION = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}
_EMIN = {"float64": -1022, "float32": -126, "float16": -14, "bfloat16": -126}


def unit_roundoff(name: str) -> float:
    """u = 2**-p, the largest relative error of rounding to nearest in the format `name`."""
    return 2.0 ** -_PRECISION[name]


def smallest_normal(name: str) -> float:
    """The smallest positive normal number of the format `name` (below it, gradual underflow)."""
    return 2.0 ** _EMIN[name]


def _ml_dtypes():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"bfloat16 needs the ml_dtypes package: install the `testing` extra, "
            f"pip install '{EXTRA}'"
        ) from None
    return ml_dtypes


def dtype_name(dtype: object) -> str:
    """The name of a supported format: 'float64', 'float32', 'float16' or 'bfloat16'.

    Accepts the names, numpy dtypes and scalar types, ``ml_dtypes.bfloat16``
    and torch's dtypes (read by name, so torch is not imported).
    """
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, (bool, numbers.Number)) or dtype is None:
        raise TypeError(f"`dtype` must be one of {DTYPES} (a name or a dtype); got {type(dtype).__name__} {dtype!r}")
    elif type(dtype).__module__.startswith("torch"):
        name = str(dtype).removeprefix("torch.")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(
                f"`dtype` must be one of {DTYPES} (a name or a dtype); got {type(dtype).__name__} {dtype!r}"
            ) from None
    if name not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}; got {dtype!r}")
    return name


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a supported format (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":
        return np.dtype(_ml_dtypes().bfloat16)
    return np.dtype(name)


def round_to(x: ArrayLike, name: str) -> np.ndarray:
    """`x` correctly rounded (to nearest, ties to even) to the format `name`.

    numpy's float64 to float32 and float16 casts round correctly. ml_dtypes
    casts float64 to bfloat16 through float32, which rounds twice (1 + 2**-8
    + 2**-30 becomes 1, not 1 + 2**-7). Rounding first to float32 *to odd*
    (truncate, then set the last bit if anything was cut off) keeps the
    information the second rounding needs, so float32 to bfloat16 is then
    correct: rounding to odd with at least two extra bits is innocuous.
    """
    a = np.asarray(x)
    dt = numpy_dtype(name)
    if a.dtype == dt:
        return a
    a = np.asarray(a, dtype=np.float64)
    if name != "bfloat16":
        with np.errstate(over="ignore"):  # beyond the format's range is inf, as a cast is
            return a.astype(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        f = a.astype(np.float32)
        # Truncate toward zero: step back where the float32 cast rounded away from zero.
        away = np.abs(f.astype(np.float64)) > np.abs(a)
        f = np.where(away, np.nextafter(f, np.float32(0)), f)
        inexact = np.isfinite(a) & (f.astype(np.float64) != a)
        bits = f.view(np.uint32) | inexact.astype(np.uint32)  # round to odd
    return bits.view(np.float32).astype(dt)


def _ordinal(a: np.ndarray, name: str) -> np.ndarray:
    """Signed ordinals (int64) of the bit patterns of `a`, a format narrower than 64 bits:
    the magnitude for a positive number, minus it for a negative one (so -0 and +0 are 0)."""
    bits = a.view(_INT[name]).astype(np.int64)
    mag = bits & ((1 << (_WIDTH[name] - 1)) - 1)
    return np.where(bits < 0, -mag, mag)


def _ordinal_parts(a: np.ndarray, name: str):
    """(negative, magnitude) of the bit patterns of `a` (an array of format `name`)."""
    width = _WIDTH[name]
    bits = a.view(_INT[name]).astype(np.int64)
    mask = (1 << (width - 1)) - 1
    if width == 64:
        mag = (bits & mask).astype(np.uint64)
        neg = bits < 0
    else:
        mag = (bits & mask).astype(np.uint64)
        neg = (bits >> (width - 1)) & 1 == 1
    return neg, mag


def ulp_error(got: ArrayLike, reference: ArrayLike, dtype: object) -> NDArray[np.float64]:
    r"""Distance in ulps of `dtype` between `got` and the correctly rounded `reference`.

    .. math::

        \operatorname{ulp\_error}(g, r)
        &= \big|\,\#\{x \in F : \min(g, \hat r) < x \le \max(g, \hat r)\}\,\big|,
        \\
        \hat r &= \operatorname{fl}_F(r),

    the number of steps between neighbouring numbers of the format :math:`F`
    of `dtype` from `got` to the reference rounded to nearest in :math:`F`.

    Parameters
    ----------
    got : array_like
        The values to judge. Values not in `dtype` (a kernel that returns a
        wider type) are first rounded to it.
    reference : array_like, broadcastable with `got`
        The exact or more accurate values, in float64 (or narrower).
    dtype : {'float64', 'float32', 'float16', 'bfloat16'} or dtype
        The format whose ulps are counted; numpy dtypes, ``ml_dtypes.bfloat16``
        and torch dtypes are accepted.

    Returns
    -------
    ndarray of float64, the broadcast shape (a float for 0-d)
        0 where the two agree (NaN with NaN, an infinity with the same
        infinity, +0 with -0); ``inf`` where exactly one is NaN or they are
        different infinities or an infinity and a finite number; otherwise
        the ulp distance, an integer.

    Raises
    ------
    TypeError
        If `dtype` is not a name or a dtype.
    ValueError
        If `dtype` is not a supported format.
    ImportError
        For bfloat16 without ml_dtypes (the ``testing`` extra).

    Notes
    -----
    IEEE bit patterns read as sign and magnitude are ordered like the values,
    so the distance is the difference of those ordinals, computed in integer
    arithmetic: exact for every pair, across binades, zero and subnormals.
    A reference in float64 that is itself a few float64 ulps off bounds what
    a float64 verdict can mean; for the narrower formats its error vanishes
    in the rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref.testing import ulp_error
    >>> one = np.float32(1.0)
    >>> up = np.nextafter(one, np.float32(2))
    >>> print(float(ulp_error(up, 1.0, "float32")))
    1.0

    The reference is rounded first: 1 + 2**-25 is 1 in float32.

    >>> print(float(ulp_error(one, 1.0 + 2.0**-25, "float32")))
    0.0
    >>> got = [1.0, np.nan, np.inf]
    >>> print(ulp_error(got, [1.0 + 2.0**-10, np.nan, 65504.0], "float16"))
    [ 1.  0. inf]
    """
    name = dtype_name(dtype)
    g, r = np.broadcast_arrays(round_to(got, name), round_to(reference, name))
    out = distance(g, r, name)
    return float(out) if out.ndim == 0 else out


def distance(g: np.ndarray, r: np.ndarray, name: str, g64=None, r64=None) -> np.ndarray:
    """The ulp distance of two arrays of the same shape, both already in the format `name`
    (their float64 values `g64`, `r64` may be passed if already computed)."""
    g64 = g.astype(np.float64) if g64 is None else g64
    r64 = r.astype(np.float64) if r64 is None else r64
    if _WIDTH[name] < 64:
        # Signed ordinals (-magnitude for negative numbers) fit in int64 with room to spare.
        dist = np.abs(_ordinal(g, name) - _ordinal(r, name))
        dist = dist.astype(np.float64)
    else:
        neg_g, mag_g = _ordinal_parts(np.array(g, copy=True), name)
        neg_r, mag_r = _ordinal_parts(np.array(r, copy=True), name)
        same_side = neg_g == neg_r
        # Same sign: the magnitudes' difference; opposite signs: their sum (both in uint64, exact).
        hi, lo = np.maximum(mag_g, mag_r), np.minimum(mag_g, mag_r)
        dist = np.where(same_side, hi - lo, mag_g + mag_r).astype(np.float64)
    finite = np.isfinite(g64) & np.isfinite(r64)
    agree = (g64 == r64) | (np.isnan(g64) & np.isnan(r64))
    return np.where(finite, dist, np.where(agree, 0.0, np.inf))
