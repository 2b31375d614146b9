"""Error-free transformations: the rounding error of one operation, as a float.

``two_sum(a, b)`` returns ``s = fl(a + b)`` and ``e`` with ``a + b = s + e``
exactly (Knuth's TwoSum, six operations, any a and b without overflow);
``fast_two_sum`` does the same in three when ``|a| >= |b|`` (Dekker).
``two_prod(a, b)`` returns ``p = fl(a b)`` and ``e = a b - p`` exactly, with
Dekker's splitting, since numpy has no fused multiply-add: valid while no
product underflows and ``|a|, |b| < 2**995``. Every function works
elementwise on numpy arrays and on Python floats.

References: T. J. Dekker, "A floating-point technique for extending the
available precision", Numer. Math. 18 (1971); D. E. Knuth, TAOCP vol. 2,
4.2.2; J.-M. Muller et al., "Handbook of floating-point arithmetic", 2nd ed.
(2018), ch. 4.
"""

from __future__ import annotations

import numpy as np

# Dekker's splitter 2**27 + 1: a * SPLITTER - (a * SPLITTER - a) keeps the high 26 bits of a.
_SPLITTER = 134217729.0


def two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth's TwoSum)."""
    s = a + b
    bp = s - a
    ap = s - bp
    return s, (a - ap) + (b - bp)


def fast_two_sum(a, b):
    """As `two_sum`, valid when ``|a| >= |b|`` (or a = 0): three operations (Dekker)."""
    s = a + b
    return s, b - (s - a)


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


def split(a):
    """``(hi, lo)`` with ``a = hi + lo`` exactly and each half at most 26 bits (|a| < 2**995)."""
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b):
    """``(p, e)`` with ``p = fl(a b)`` and ``a b = p + e`` exactly (no underflow, |a|, |b| < 2**995)."""
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
