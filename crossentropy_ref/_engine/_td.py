"""Triple-double arithmetic on numpy arrays, and exp, expm1 and log1p to about 2**-150.

A triple-double (td) is an unevaluated sum ``h + m + l`` of three float64
arrays. Every td this module returns is *normalised*:

    |m| <= 2**-52 |h|    and    |l| <= 2**-53 |m|,

so ``h + m + l = h (1 + theta)`` with ``|theta| <= 2**-52 (1 + 2**-53)``
and the three parts carry about 159 bits. Functions take a td as three
arrays ``(ah, am, al)`` (they broadcast), expect it normalised, and never
write into their arguments. The exact tier of the engine needs this: a
gradient entry ``a q_c - b_c`` whose two terms agree in 100 leading bits
is still known to about 2**-50 of itself when the terms are known to
2**-150.

Error model. ``u = 2**-53``; ``fl(x)`` is x rounded to nearest, with
``|fl(x) - x| <= u |x|``. numpy has no fused multiply-add, so exact
products use Dekker's splitting (`crossentropy_ref._dd.split`, valid for
``|a| < 2**995``): a float is cut into two halves of at most 26 bits, and
``a b = p + e`` exactly with ``p = fl(a b)`` (`_tp`, 8 operations when the
halves are known). TwoSum gives ``a + b = s + e`` exactly (6 operations),
Fast2Sum the same in 3 when ``|a| >= |b|`` (or a = 0). Every bound below
counts the roundings that are left, in units of ``u**3 = 2**-159``:

- `renorm`: exact, and normalised for any three finite floats.
- `add`, `sub`: ``|error| <= 2**-155 (|a| + |b|)``; `add_dd` likewise;
  `add_float` ``2**-156 (|a| + |b|)``. This is relative to the result
  when a and b have the same sign; a cancellation loses what the operands
  had already lost (both are known to about 2**-150 of themselves).
- `mul`, `mul_dd`: relative error ``<= 2**-152``; `mul_float` ``2**-155``.
- `recip`: ``2**-152``; `div`: ``2**-151``.
- `exp`: ``2**-152``, its result scaled by a separate binary exponent;
  `expm1`: ``2**-151``; `log1p`: ``2**-150``, its argument and result
  with an optional exponent.

These bounds hold when no head overflows or underflows: the heads of the
inputs, of the results and of the products formed (ah bh in `mul`)
between 2**-860 and 2**990 in magnitude. Then whatever underflows is
below 2**-1074, 2**-214 of the result, and Dekker's splitting does not
overflow. ``exp`` and ``log1p`` return ``h`` in [1, 2) and carry the
binary exponent apart, so their results have no such limit.

Cost. numpy evaluates each operation as a pass over whole arrays, so an
operation costs its number of passes. The public functions cut their
input into chunks of `CHUNK` elements and keep every temporary of a chunk
in a small pool of reused buffers (`_Scratch`): fresh temporaries of
256 KiB each cost more in page faults than the arithmetic itself. ``exp``
makes about 300 passes over a chunk, `add` about 50 and `mul` about 75.

References: T. J. Dekker, "A floating-point technique for extending the
available precision", Numer. Math. 18 (1971) (Fast2Sum, splitting and the
exact product); D. E. Knuth, TAOCP vol. 2, 4.2.2 (TwoSum); C. Q. Lauter,
"Basic building blocks for a triple-double intermediate format", INRIA
RR-5702 (2005) (the renormalisation after a product); P. T. P. Tang,
"Table-driven implementation of the exponential function in IEEE
floating-point arithmetic", ACM TOMS 15 (1989) (the reduction with a
table of 2**(j/2**k) and ln 2 in several parts); J.-M. Muller et al.,
"Handbook of floating-point arithmetic", 2nd ed. (2018), ch. 4 and 14.
"""

from __future__ import annotations

import decimal
import functools
import math
import threading
from fractions import Fraction

import numpy as np

from ._eft import split

# Elements per chunk: a 2**15-element chunk holds 256 KiB per buffer.
CHUNK = 1 << 15

_SPLITTER = 134217729.0  # 2**27 + 1, Dekker's splitter (as in _dd.split)

# --- buffers --------------------------------------------------------------------------

_tls = threading.local()


class _Scratch:
    """The temporaries of one chunk: views of k elements into reused CHUNK-sized buffers.

    The buffers are kept per thread between calls (22 of them, 5.5 MiB,
    after exp or log1p), so a chunk's hundreds of temporaries touch the same
    few megabytes every time instead of fresh pages. `free` returns a
    temporary to the pool (only temporaries taken from this object).
    """

    __slots__ = ("k", "spare", "bases", "ids")

    def __init__(self, k: int):
        self.k, self.spare, self.bases, self.ids = k, [], [], set()

    def take(self) -> np.ndarray:
        if self.spare:
            return self.spare.pop()
        pool = _tls.__dict__.setdefault("buffers", [])
        base = pool.pop() if pool else np.empty(CHUNK)
        self.bases.append(base)
        view = base[: self.k]
        self.ids.add(id(view))
        return view

    def free(self, *arrays) -> None:
        for a in arrays:
            assert id(a) in self.ids, "not a temporary of this chunk"
            self.spare.append(a)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _tls.__dict__.setdefault("buffers", []).extend(self.bases)


def _apply(kernel, inputs, n_float: int, n_int: int = 0, int_inputs=()):
    """Run ``kernel(scratch, *inputs, *outputs)`` over chunks of the broadcast inputs.

    Inputs of one element are passed whole (numpy broadcasts them inside
    the kernel); None stays None. Returns the outputs, float64 then int64,
    in the broadcast shape.
    """
    arrs = [
        None if a is None else np.asarray(a, dtype=np.int64 if i in int_inputs else np.float64)
        for i, a in enumerate(inputs)
    ]
    shape = np.broadcast_shapes(*(a.shape for a in arrs if a is not None))
    size = math.prod(shape)
    flat = [
        None if a is None else (a.reshape(()) if a.size == 1 and size > 1 else np.broadcast_to(a, shape).reshape(-1))
        for a in arrs
    ]
    outs = [np.empty(size) for _ in range(n_float)] + [np.empty(size, dtype=np.int64) for _ in range(n_int)]
    for start in range(0, size, CHUNK):
        sl = slice(start, start + CHUNK)
        args = [None if a is None else (a if a.ndim == 0 else a[sl]) for a in flat]
        with _Scratch(min(CHUNK, size - start)) as s:
            kernel(s, *args, *(o[sl] for o in outs))
    return tuple(o.reshape(shape) for o in outs)


# --- error-free transformations into buffers -----------------------------------------
# Each returns new temporaries of the scratch pool `s` (or writes into so, eo).


def _ts(s, a, b, so=None, eo=None):
    """TwoSum: a + b = so + eo exactly, so = fl(a + b) (Knuth)."""
    so = np.add(a, b, out=s.take() if so is None else so)
    bp = np.subtract(so, a, out=s.take())
    eo = np.subtract(so, bp, out=s.take() if eo is None else eo)  # a' = so - b'
    np.subtract(a, eo, out=eo)
    np.subtract(b, bp, out=bp)
    np.add(eo, bp, out=eo)  # (a - a') + (b - b')
    s.free(bp)
    return so, eo


def _fts(s, a, b, so=None, eo=None):
    """Fast2Sum: a + b = so + eo exactly when |a| >= |b| or a = 0 (Dekker)."""
    so = np.add(a, b, out=s.take() if so is None else so)
    eo = np.subtract(so, a, out=s.take() if eo is None else eo)
    np.subtract(b, eo, out=eo)
    return so, eo


def _split(s, a):
    """Dekker's halves: a = hi + lo, each of at most 26 bits (|a| < 2**995)."""
    hi = np.multiply(a, _SPLITTER, out=s.take())
    lo = np.subtract(hi, a, out=s.take())
    np.subtract(hi, lo, out=hi)
    np.subtract(a, hi, out=lo)
    return hi, lo


def _tp(s, a, ah, al, b, bh, bl):
    """a b = p + e exactly, from the halves of a and b (Dekker's product)."""
    p = np.multiply(a, b, out=s.take())
    e = np.multiply(ah, bh, out=s.take())
    np.subtract(e, p, out=e)
    t = np.multiply(ah, bl, out=s.take())
    np.add(e, t, out=e)
    np.multiply(al, bh, out=t)
    np.add(e, t, out=e)
    np.multiply(al, bl, out=t)
    np.add(e, t, out=e)
    s.free(t)
    return p, e


def _renorm_into(s, a, b, c, oh, om, ol):
    """Exact renormalisation of a + b + c, any finite floats, into (oh, om, ol).

    ``(h, e1, e2)``: TwoSum of b + c, then of a + that, is exact. Either
    a + fl(b + c) was exact (e1 = 0: Sterbenz's case of a cancellation)
    and ``h + e2`` needs one more TwoSum; or ``|h| >= |fl(b + c)| / 2``,
    so ``|e2| <= 2u |h|`` and ``m = fl(e1 + e2)`` is below ``3u |h|``.
    TwoSum(h, m) then makes ``|m'| <= u |h'|``, and TwoSum(m', l) leaves
    ``|m''| <= u |h'| (1 + 4u) <= 2**-52 |h'|``, ``|l'| <= u |m''|``. Every
    step is exact, so ``oh + om + ol = a + b + c``. 30 passes.
    """
    x, e2 = _ts(s, b, c)
    h, e1 = _ts(s, a, x)
    s.free(x)
    m, l = _ts(s, e1, e2)
    s.free(e1, e2)
    x = s.take()
    _ts(s, h, m, oh, x)
    s.free(h, m)
    _ts(s, x, l, om, ol)
    s.free(x, l)


def _renorm_fast_into(s, a, b, c, oh, om, ol):
    """Exact renormalisation of a + b + c when ``|b| + |c| <= |a| / 4`` (or all are 0).

    Lauter's Renormalize3 with a TwoSum first: ``x + y = b + c`` exactly,
    ``h + z = a + x`` (Fast2Sum, |a| >= |x|). z is a multiple of ulp(x)
    (a, x and h all are) and ``|y| <= ulp(x) / 2``, so Fast2Sum(z, y) is
    exact; ``|h| >= 0.74 |a|`` gives ``|m| <= 1.34 u (1 + u) |h| <= 2**-52 |h|``.
    12 passes.
    """
    x, y = _ts(s, b, c)
    h = np.add(a, x, out=oh)
    z = np.subtract(h, a, out=s.take())
    np.subtract(x, z, out=z)  # z = a + x - h
    _fts(s, z, y, om, ol)
    s.free(x, y, z)


# --- arithmetic -----------------------------------------------------------------------


def _k_renorm(s, a, b, c, oh, om, ol):
    _renorm_into(s, a, b, c, oh, om, ol)


def renorm(a, b, c):
    """The normalised triple-double of ``a + b + c``, exactly, for any finite floats.

    Returns ``(h, m, l)`` with ``h + m + l = a + b + c`` exactly,
    ``|m| <= 2**-52 |h|`` and ``|l| <= 2**-53 |m|`` (proof in
    `_renorm_into`). The sum must not overflow.
    """
    return _apply(_k_renorm, (a, b, c), 3)


def _k_add(s, ah, am, al, bh, bm, bl, oh, om, ol):
    s0, e0 = _ts(s, ah, bh)
    s1, e1 = _ts(s, am, bm)
    t1, e3 = _ts(s, e0, s1)
    s.free(e0, s1)
    t2 = np.add(al, bl, out=s.take())  # these three additions are the only roundings
    np.add(e1, t2, out=t2)
    np.add(t2, e3, out=t2)
    s.free(e1, e3)
    _renorm_into(s, s0, t1, t2, oh, om, ol)
    s.free(s0, t1, t2)


def add(ah, am, al, bh, bm, bl):
    """(ah + am + al) + (bh + bm + bl), with ``|error| <= 2**-155 (|a| + |b|)``.

    The heads, the middles and their errors are added exactly (TwoSum);
    only the low-order sum ``t2 = (e1 + fl(al + bl)) + e3`` rounds. With
    ``S = |ah| + |bh|``: ``|al + bl| <= 2**-105 S``, ``|e1| <= 2**-105 S``
    and ``|e3| <= 3 u**2 S``, so the three roundings are at most
    ``(1 + 2 + 7) u**3 S``, below ``2**-155.6 (|a| + |b|)``; `renorm` is
    exact. Relative to the result when a and b have the same sign.
    """
    return _apply(_k_add, (ah, am, al, bh, bm, bl), 3)


def sub(ah, am, al, bh, bm, bl):
    """(ah + am + al) - (bh + bm + bl): `add` of the negation, the same bound."""
    return add(ah, am, al, np.negative(bh), np.negative(bm), np.negative(bl))


def _k_add_dd(s, ah, am, al, bh, bl, oh, om, ol):
    s0, e0 = _ts(s, ah, bh)
    s1, e1 = _ts(s, am, bl)
    t1, e3 = _ts(s, e0, s1)
    s.free(e0, s1)
    t2 = np.add(e1, al, out=e1)
    np.add(t2, e3, out=t2)
    s.free(e3)
    _renorm_into(s, s0, t1, t2, oh, om, ol)
    s.free(s0, t1, t2)


def add_dd(ah, am, al, bh, bl):
    """A td plus a double-double ``bh + bl`` (``|bl| <= 2**-52 |bh|``), error ``<= 2**-155 (|a| + |b|)``.

    `add` with ``bm = bl`` and no third part: two roundings,
    ``(2 + 7) u**3 (|ah| + |bh|)``.
    """
    return _apply(_k_add_dd, (ah, am, al, bh, bl), 3)


def _k_add_float(s, ah, am, al, b, oh, om, ol):
    s0, e0 = _ts(s, ah, b)
    t1, e3 = _ts(s, e0, am)
    s.free(e0)
    np.add(e3, al, out=e3)  # the only rounding
    _renorm_into(s, s0, t1, e3, oh, om, ol)
    s.free(s0, t1, e3)


def add_float(ah, am, al, b):
    """A td plus a float, error ``<= 2**-156 (|a| + |b|)``.

    One rounding, of ``al + e3`` with ``|al| <= 2**-105 |ah|`` and
    ``|e3| <= u |e0 + am| <= 3 u**2 (|ah| + |b|)``: ``5 u**3 (|ah| + |b|)``.
    """
    return _apply(_k_add_float, (ah, am, al, b), 3)


def neg(h, m, l):
    """-(h + m + l) (exact)."""
    return np.negative(h), np.negative(m), np.negative(l)


def absolute(h, m, l):
    """|h + m + l| (exact): the sign of a normalised td is the sign of h."""
    f = np.where(np.asarray(h) < 0, -1.0, 1.0)
    return h * f, m * f, l * f


def sign(h, m=None, l=None):
    """-1, 0 or 1 as float64: the sign of a normalised td is that of its head."""
    return np.sign(np.asarray(h, dtype=np.float64))


def _k_mul(s, ah, am, al, bh, bm, bl, oh, om, ol):
    ahh, ahl = _split(s, ah)
    bhh, bhl = _split(s, bh)
    p0, e0 = _tp(s, ah, ahh, ahl, bh, bhh, bhl)
    x, y = _split(s, bm)
    p1, e1 = _tp(s, ah, ahh, ahl, bm, x, y)
    _split_into(am, x, y)
    p2, e2 = _tp(s, am, x, y, bh, bhh, bhl)
    s.free(ahh, ahl, bhh, bhl)
    t1, f1 = _ts(s, p1, p2)
    t1b, f2 = _ts(s, t1, e0)
    s.free(p1, p2, t1, e0)
    # t2 = (f1 + f2) + ((e1 + e2) + ((ah bl + al bh) + am bm))
    np.multiply(ah, bl, out=x)
    np.multiply(al, bh, out=y)
    np.add(x, y, out=x)
    np.multiply(am, bm, out=y)
    np.add(x, y, out=x)
    np.add(e1, e2, out=e1)
    np.add(e1, x, out=e1)
    np.add(f1, f2, out=f1)
    np.add(f1, e1, out=f1)
    s.free(x, y, e1, e2, f2)
    _renorm_fast_into(s, p0, t1b, f1, oh, om, ol)
    s.free(p0, t1b, f1)


def _split_into(a, hi, lo):
    """`_split` into given buffers."""
    np.multiply(a, _SPLITTER, out=hi)
    np.subtract(hi, a, out=lo)
    np.subtract(hi, lo, out=hi)
    np.subtract(a, hi, out=lo)


def mul(ah, am, al, bh, bm, bl):
    """(ah + am + al)(bh + bm + bl), relative error ``<= 2**-152``.

    With ``P = |ah bh|``: the products ah bh, ah bm and am bh are exact
    (`_tp`) and their sum of order ``u P`` is kept by two TwoSums; ah bl,
    al bh and am bm (each at most ``4 u**2 P``) round once (``8 u**3 P``);
    am bl, al bm and al bl are dropped (``8 u**3 P``). The six additions of
    the low-order terms (at most ``21 u**2 P``) round by at most
    ``58 u**3 P``. Total ``74 u**3 P``, and ``P <= |ab| (1 + 4.1 u)``: a
    relative error below ``2**-152.7``. The renormalisation is exact.
    """
    return _apply(_k_mul, (ah, am, al, bh, bm, bl), 3)


def _k_mul_dd(s, ah, am, al, bh, bl, oh, om, ol):
    ahh, ahl = _split(s, ah)
    bhh, bhl = _split(s, bh)
    p0, e0 = _tp(s, ah, ahh, ahl, bh, bhh, bhl)
    x, y = _split(s, bl)
    p1, e1 = _tp(s, ah, ahh, ahl, bl, x, y)
    _split_into(am, x, y)
    p2, e2 = _tp(s, am, x, y, bh, bhh, bhl)
    s.free(ahh, ahl, bhh, bhl)
    t1, f1 = _ts(s, p1, p2)
    t1b, f2 = _ts(s, t1, e0)
    s.free(p1, p2, t1, e0)
    # t2 = (f1 + f2) + ((e1 + e2) + (al bh + am bl))
    np.multiply(al, bh, out=x)
    np.multiply(am, bl, out=y)
    np.add(x, y, out=x)
    np.add(e1, e2, out=e1)
    np.add(e1, x, out=e1)
    np.add(f1, f2, out=f1)
    np.add(f1, e1, out=f1)
    s.free(x, y, e1, e2, f2)
    _renorm_fast_into(s, p0, t1b, f1, oh, om, ol)
    s.free(p0, t1b, f1)


def mul_dd(ah, am, al, bh, bl):
    """A td times a double-double ``bh + bl`` (``|bl| <= 2**-52 |bh|``), relative error ``<= 2**-152``.

    As `mul` with ``bm = bl``: ah bl and am bh exact, al bh and am bl
    rounded (``6 u**3 P``), al bl dropped (``4 u**3 P``), the sums
    ``48 u**3 P``: ``58 u**3 P``, below ``2**-153``.
    """
    return _apply(_k_mul_dd, (ah, am, al, bh, bl), 3)


def _k_mul_float(s, ah, am, al, b, oh, om, ol):
    bh, bl = _split(s, b)
    x, y = _split(s, ah)
    p0, e0 = _tp(s, ah, x, y, b, bh, bl)
    _split_into(am, x, y)
    p1, e1 = _tp(s, am, x, y, b, bh, bl)
    t1, f = _ts(s, p1, e0)
    s.free(p1, e0)
    np.add(f, e1, out=f)
    np.multiply(al, b, out=x)
    np.add(f, x, out=f)
    s.free(bh, bl, x, y, e1)
    _renorm_fast_into(s, p0, t1, f, oh, om, ol)
    s.free(p0, t1, f)


def mul_float(ah, am, al, b):
    """A td times a float, relative error ``<= 2**-155``.

    ah b and am b exact, al b rounded (``2 u**3 P``); the low sum
    ``(f + e1) + al b`` (at most ``7 u**2 P``) rounds twice
    (``12 u**3 P``): ``14 u**3 P``, below ``2**-155.1``.
    """
    return _apply(_k_mul_float, (ah, am, al, b), 3)


def _k_recip(s, ah, am, al, oh, om, ol):
    r0 = np.divide(1.0, ah, out=s.take())
    r0h, r0l = _split(s, r0)
    x, y = _split(s, ah)
    p, e = _tp(s, ah, x, y, r0, r0h, r0l)
    _split_into(am, x, y)
    q, f = _tp(s, am, x, y, r0, r0h, r0l)
    g = np.multiply(al, r0, out=x)
    np.subtract(1.0, p, out=p)  # exact: p = fl(ah r0) is within 2u of 1 (Sterbenz)
    np.negative(q, out=q)
    d0, t = _ts(s, p, q)
    np.negative(e, out=e)
    d1, t2 = _ts(s, d0, e)
    s.free(p, q, e, d0, y)
    # dl = ((t + t2) - f) - g: d = 1 - a r0 = d1 + dl, |d| <= 3u (1 + u)
    np.add(t, t2, out=t)
    np.subtract(t, f, out=t)
    np.subtract(t, g, out=t)
    s.free(t2, f, g)
    dl = t
    # S = d + d**2 + d**3 (+ d**4/(1 - d) < 2**-205, dropped): 1/a = r0 (1 + S)
    dh_, dl_ = _split(s, d1)
    sq, sqe = _tp(s, d1, dh_, dl_, d1, dh_, dl_)
    s.free(dh_, dl_)
    sh, se = _fts(s, d1, sq)  # |sq| <= 5u |d1|
    v = np.multiply(dl, 2.0, out=s.take())
    np.add(v, sq, out=v)
    np.multiply(v, d1, out=v)
    np.add(sqe, v, out=v)
    np.add(dl, v, out=v)
    np.add(se, v, out=v)
    s.free(d1, sq, sqe, se, dl)
    sh2, sl = _fts(s, sh, v)
    s.free(sh, v)
    shh, shl = _split(s, sh2)
    c0, c1 = _tp(s, r0, r0h, r0l, sh2, shh, shl)
    s.free(shh, shl, r0h, r0l, sh2)
    np.multiply(r0, sl, out=sl)
    np.add(c1, sl, out=c1)
    _renorm_fast_into(s, r0, c0, c1, oh, om, ol)
    s.free(r0, c0, c1, sl)


def recip(ah, am, al):
    """1 / (ah + am + al) for a nonzero td (2**-990 < |ah| < 2**990), relative error ``<= 2**-152``.

    From ``r0 = fl(1 / ah)``: ``d = 1 - a r0`` is below ``3u (1 + u)``
    and is computed from exact products (ah r0 and am r0 by `_tp`, al r0
    rounded at ``2 u**3``; ``1 - fl(ah r0)`` is exact by Sterbenz's lemma),
    with four roundings of its low part: at most ``35 u**3``. Then
    ``1 / a = r0 (1 + S)``, ``S = d + d**2 + d**3`` (the rest is below
    ``2**-205``), S rounding by ``31 u**3`` and ``r0 S`` by ``15 u**3``:
    ``81 u**3 <= 2**-152.6`` relative. Newton's iteration, written as one
    series step from a float64 guess.
    """
    return _apply(_k_recip, (ah, am, al), 3)


def div(ah, am, al, bh, bm, bl):
    """(ah + am + al) / (bh + bm + bl), relative error ``<= 2**-151`` (`mul` by `recip`)."""
    return mul(ah, am, al, *recip(bh, bm, bl))


def from_float(x):
    """A float64 array as a td: ``(x, 0, 0)`` (exact)."""
    x = np.asarray(x, dtype=np.float64)
    return x.copy(), np.zeros_like(x), np.zeros_like(x)


def to_float(h, m, l, e=None):
    """``(h + m + l) 2**e`` as float64, faithfully rounded.

    ``fl(h + fl(m + l))``: the inner rounding moves the sum by at most
    ``2**-104 |h|``, so the result is one of the two float64 around the
    exact value, and the nearest one unless the value lies within
    ``2**-104`` of a midpoint. ``ldexp`` by e is then exact in the normal
    range; into the subnormal range it rounds once more, and the two
    roundings together stay below one unit of the subnormal grid
    (``2**-1075 + 2**-1075``): still faithful. Overflow gives inf, without
    a warning; an exponent far below gives 0.
    """
    s = np.add(h, np.add(m, l))
    if e is None:
        return s
    with np.errstate(over="ignore"):
        return np.ldexp(s, np.asarray(e, dtype=np.int64))


def to_scaled(h, m, l, e=None):
    """``(h', m', l', e')`` with ``h'`` in [1, 2) (or 0) and the same value ``(h' + m' + l') 2**e'``.

    Exact: the parts are scaled by one power of two. `e` (int64, default
    0) is the exponent of the input; a zero value gets the exponent 0.
    """
    h = np.asarray(h, dtype=np.float64)
    _, k = np.frexp(h)
    zero = h == 0
    k = np.where(zero, 0, k - 1).astype(np.int64)
    f = np.ldexp(1.0, -k)
    if e is not None:
        k = np.where(zero, 0, k + e)
    return h * f, m * f, l * f, k


def from_scaled(h, m, l, e):
    """``(h, m, l) 2**e`` as a plain td: exact unless a part leaves the normal range."""
    e = np.asarray(e, dtype=np.int64)
    with np.errstate(over="ignore"):
        return np.ldexp(h, e), np.ldexp(m, e), np.ldexp(l, e)


# --- exp --------------------------------------------------------------------------------
#
# exp(x) = 2**M 2**(j / 2**16) exp(r): n = rint(x / L) with L = ln 2 / 2**16,
# M = n >> 16, j = n & 0xffff, and r = x - n L, |r| <= 2**-17.5. The table holds
# T_j = 2**(j / 2**16) as tds (1.5 MiB, built on first use); exp(r) = 1 + E is a
# polynomial. For |x| <= EXP_MAX, |n| < 2**30.

TABLE_BITS = 16
_NT = 1 << TABLE_BITS
EXP_MAX = 11356.0  # |n| <= 1.0737e9 < 2**30 below this
EXP_MIN = -EXP_MAX  # exp(EXP_MIN) is about 2**-16383
_FBITS = 240  # fixed-point bits of the table construction
_D_HALF = 1 << 11  # the table of 2**(n / 2**16) - 1 covers |n| <= _D_HALF
_NEAR = 1 << 16  # expm1 evaluates expm1(r) to an error relative to r for |n| < _NEAR


def _ln2() -> Fraction:
    """ln 2 from the ``decimal`` module at 90 digits (error below 1e-89), as an exact rational."""
    return Fraction(decimal.Context(prec=90).ln(2))


def _ln2_parts() -> tuple[float, ...]:
    """L = ln 2 / 2**16 as P1 + ... + P7 (negated, to be added).

    P1 is L rounded *down* to a multiple of 2**-39 (23 bits, L in
    [2**-17, 2**-16)); P2 .. P6 are the rest rounded to multiples of
    2**-62, 2**-85, 2**-108, 2**-131 and 2**-154 (at most 23 bits each);
    P7 is the rest rounded to a float. With |n| < 2**30, n P1 .. n P6 are
    exact products, n P7 rounds by at most 2**-178, and
    |L - (P1 + ... + P7)| <= 2**-208 costs |n| 2**-208 <= 2**-178.
    Rounding P1 down keeps xh and n P1 within a factor 2 (Sterbenz) also
    when |n| = 1 (checked below: L - P1 > 2u L).
    """
    rest = _ln2() / _NT
    unit = Fraction(1, 1 << 39)
    parts = [math.floor(rest / unit) * unit]
    assert rest - parts[0] > rest * Fraction(1, 1 << 52)
    rest -= parts[0]
    for k in (62, 85, 108, 131, 154):
        unit = Fraction(1, 1 << k)
        parts.append(round(rest / unit) * unit)
        rest -= parts[-1]
    parts.append(Fraction(float(rest)))
    return tuple(-float(p) for p in parts)


_NP = _ln2_parts()
_INV_L = float(_NT / _ln2())


def _dd_const(q: Fraction) -> tuple[float, float]:
    h = float(q)
    return h, float(q - Fraction(h))


def _td_const(q: Fraction) -> tuple[float, float, float]:
    h, m = _dd_const(q)
    return h, m, float(q - Fraction(h) - Fraction(m))


def _halves(x: float) -> tuple[float, float]:
    return tuple(float(v) for v in split(np.float64(x)))


# 1/k! for exp's polynomial: dd where the analysis needs it, with Dekker halves of K5H.
_K3H, _K3L = _dd_const(Fraction(1, 6))
_K4H, _K4L = _dd_const(Fraction(1, 24))
_K5H, _K5L = _dd_const(Fraction(1, 120))
_K6, _K7, _K8 = 1 / 720, 1 / 5040, 1 / 40320
_K5HH, _K5HL = _halves(_K5H)
_K60 = 1 / 60


def _td_of_fixed(v: int, f: int) -> tuple[float, float, float]:
    """The triple-double of v 2**-f (a Python int), each part the nearest float to the rest.

    Python converts an int to the nearest float, so the error is at most
    ``ulp(l) / 2 <= 2**-159 |value|``.
    """
    h = math.ldexp(float(v), -f)
    v -= int(math.ldexp(h, f))
    m = math.ldexp(float(v), -f)
    v -= int(math.ldexp(m, f))
    return h, m, math.ldexp(float(v), -f)


@functools.cache
def _tables():
    """(T, D): T_j = 2**(j / 2**16) for j < 2**16, D_n = 2**(n / 2**16) - 1 for |n| <= _D_HALF.

    Built on first use (about 0.1 s) in fixed point with 240 fraction
    bits: 2**(a / 256) and 2**(b / 2**16), a, b < 256, from the ``decimal``
    module at 100 digits, multiplied as Python integers (error a few units
    of 2**-240). D is taken from the same integers, so its relative error
    is also about 2**-159 (`_td_of_fixed`), although D_n is as small as
    2**-16.5.
    """
    ctx = decimal.Context(prec=100)
    ln2 = ctx.ln(decimal.Decimal(2))
    scale = decimal.Decimal(1 << _FBITS)  # exact: 73 digits

    def fixed(y):
        return int(ctx.to_integral_value(ctx.multiply(ctx.exp(y), scale)))

    coarse = [fixed(ctx.multiply(ln2, ctx.divide(a, 256))) for a in range(256)]
    fine = [fixed(ctx.multiply(ln2, ctx.divide(b, _NT))) for b in range(256)]
    half = 1 << (_FBITS - 1)
    v = [(c * g + half) >> _FBITS for c in coarse for g in fine]
    t = tuple(np.array(col) for col in zip(*(_td_of_fixed(x, _FBITS) for x in v)))
    one = 1 << _FBITS
    dv = [((v[n + _NT] + 1) >> 1) - one for n in range(-_D_HALF, 0)] + [v[n] - one for n in range(_D_HALF + 1)]
    d = tuple(np.array(col) for col in zip(*(_td_of_fixed(x, _FBITS) for x in dv)))
    return t, d


def _k_reduce(s, xh, xm, xl):
    """n and r = x - n L = rh + rm + rl, with an absolute error below 2**-171.

    t = (xh - n P1) - n P2 is exact: xh - n P1 by Sterbenz's lemma (n = 0,
    or xh and n P1 within a factor 2), and then both terms are multiples
    of 2**-70 (|xh| >= 2**-18 when n != 0) with a difference below 2**-17.
    The remaining terms (|n P3| <= 2**-33, |xm| <= 2**-38.5, |n P4| <=
    2**-56, |n P5| <= 2**-79, |xl| <= 2**-91.5, |n P6| <= 2**-102, |n P7|
    <= 2**-125) are added by TwoSums level by level; only the last level,
    at most 2**-121.5, rounds (2**-173), besides n P7 and L's last part.
    Then |rh| <= 2**-17.52, |rm| <= 2**-69.6, |rl| <= 2**-122.6; for n = 0,
    r = x exactly.
    """
    np1, np2, np3, np4, np5, np6, np7 = _NP
    n = np.multiply(xh, _INV_L, out=s.take())
    np.rint(n, out=n)
    t = np.multiply(n, np1, out=s.take())
    np.add(xh, t, out=t)
    x = np.multiply(n, np2, out=s.take())
    np.add(t, x, out=t)  # exact (see above)
    a = np.multiply(n, np3, out=s.take())
    if xm is not None:
        a1, e1 = _ts(s, xm, a)
        s.free(a)
        a = a1
    np.multiply(n, np4, out=x)
    a2, e2 = _ts(s, a, x)
    s.free(a)
    rh, e3 = _ts(s, t, a2)
    s.free(t, a2)
    np.multiply(n, np5, out=x)
    b, e4 = _ts(s, e3, x)
    s.free(e3)
    c = e2
    if xm is not None:
        c, e5 = _ts(s, e1, e2)
        s.free(e1, e2)
    else:
        e5 = None
    if xl is not None:
        c1, e6 = _ts(s, c, xl)
        s.free(c)
        c = c1
        if e5 is None:
            e5 = e6
        else:
            np.add(e5, e6, out=e5)
            s.free(e6)
    np.multiply(n, np6, out=x)
    c1, e7 = _ts(s, c, x)
    s.free(c)
    b2, e8 = _ts(s, b, c1)
    s.free(b, c1)
    # low = (((e5 + e7) + n P7) + e4) + e8, at most 2**-121.5
    if e5 is not None:
        np.add(e7, e5, out=e7)
        s.free(e5)
    np.multiply(n, np7, out=x)
    np.add(e7, x, out=e7)
    np.add(e7, e4, out=e7)
    np.add(e7, e8, out=e7)
    s.free(e4, e8)
    rm, rl = _ts(s, b2, e7, x, s.take())
    s.free(b2, e7)
    return n, rh, rm, rl


def _k_expm1_fast(s, rh, rm, rl):
    """expm1(r) = e0 + b + d for |r| <= 2**-17.5, absolute error below 2**-154.

    E = r + r**2/2 + r**3 P(r), P(r) = sum r**k / (k + 3)!:

    - r**2/2 = (s0 + s1)/2 + (s2 + s3) + rm**2/2 + rh rl, with rh**2 = s0 + s1
      and rh rm = s2 + s3 exact (error below 2**-191);
    - P to 2**-106.6 (relative 2**-104): a float Horner for the terms from
      r**3/720 on, double-double steps for 1/120, 1/24 and 1/6, the
      truncation after r**5/8! (2**-123.5) and the first-order term of rm;
    - q = r P and r**3 P = r**2 q in double-double: error below 2**-154.6
      (the terms are below 2**-55.1);
    - the parts are gathered by exact Fast2Sums and TwoSums into e0 (the
      head, near r), b (below 2**-68.6) and d (below 2**-104.7, rounding
      by 2**-157.7).

    About 150 passes.
    """
    mul, add = np.multiply, np.add
    rhh, rhl = _split(s, rh)
    s0, s1 = _tp(s, rh, rhh, rhl, rh, rhh, rhl)
    x, y = _split(s, rm)
    s2, s3 = _tp(s, rh, rhh, rhl, rm, x, y)
    # v = K5L + rh (K6 + rh (K7 + rh K8)), then P4 = K4 + rh K5H + rh v
    v = mul(rh, _K8, out=s.take())
    add(v, _K7, out=v)
    mul(v, rh, out=v)
    add(v, _K6, out=v)
    mul(v, rh, out=v)
    add(v, _K5L, out=v)
    a5, b5 = _tp(s, rh, rhh, rhl, _K5H, _K5HH, _K5HL)
    mul(v, rh, out=v)
    add(v, b5, out=v)
    p4h, t4 = _fts(s, _K4H, a5)  # |a5| <= 2**-24.4 < K4H
    s.free(a5, b5)
    add(v, _K4L, out=v)
    add(t4, v, out=v)  # p4l
    s.free(t4)
    _split_into(p4h, x, y)
    a4, b4 = _tp(s, rh, rhh, rhl, p4h, x, y)
    s.free(p4h)
    # pl = t3 + (K3L + (b4 + (rh p4l + rm (K4H + rh / 60)))): P(r) - P(rh) ~ rm P'(rh)
    w = mul(rh, _K60, out=s.take())
    add(w, _K4H, out=w)
    mul(w, rm, out=w)
    mul(v, rh, out=v)
    add(v, w, out=v)
    add(v, b4, out=v)
    add(v, _K3L, out=v)
    s.free(b4)
    ph, t3 = _fts(s, _K3H, a4)
    s.free(a4)
    add(t3, v, out=v)  # pl
    s.free(t3)
    # q = r P = rh ph + (rh pl + rm ph)
    _split_into(ph, x, y)
    q0, q1 = _tp(s, rh, rhh, rhl, ph, x, y)
    mul(rh, v, out=w)
    mul(rm, ph, out=v)
    add(w, v, out=w)
    add(q1, w, out=q1)
    s.free(ph)
    # r**3 P = r**2 q, r**2 = s0 + (s1 + 2 s2)
    s0h, s0l = _split(s, s0)
    _split_into(q0, x, y)
    c0, c1 = _tp(s, s0, s0h, s0l, q0, x, y)
    s.free(s0h, s0l)
    mul(s0, q1, out=w)
    mul(s2, 2.0, out=v)
    add(s1, v, out=v)
    mul(v, q0, out=v)
    add(w, v, out=w)
    add(c1, w, out=c1)
    s.free(q0, q1)
    # gather E = rh + rm + rl + s0/2 + s1/2 + s2 + s3 + rm**2/2 + rh rl + c0 + c1
    mul(s0, 0.5, out=s0)
    big_a, a1 = _fts(s, s0, c0)  # |c0| ~ |r|/3 s0/2
    s.free(c0)
    e0, a2 = _fts(s, rh, big_a)  # |big_a| <= 2**-18.4 |rh|
    s.free(big_a)
    b, a3 = _ts(s, rm, a2)
    s.free(a2)
    mul(s1, 0.5, out=s1)
    cc, a4 = _ts(s, s2, s1)
    s.free(s2, s1)
    cc2, a5 = _ts(s, cc, a1)
    s.free(cc, a1)
    b2, a6 = _ts(s, b, cc2)
    s.free(b, cc2)
    # d = ((((s3 + (rm**2/2 + rh rl)) + (a4 + a5)) + rl) + (a3 + a6)) + c1
    mul(rm, rm, out=w)
    mul(w, 0.5, out=w)
    mul(rh, rl, out=v)
    add(w, v, out=w)
    add(s3, w, out=w)
    add(a4, a5, out=a4)
    add(w, a4, out=w)
    add(w, rl, out=w)
    add(a3, a6, out=a3)
    add(w, a3, out=w)
    add(w, c1, out=w)
    s.free(s3, a4, a5, a3, a6, c1, v, x, y, rhh, rhl)
    return e0, b2, w


def _k_exp(s, xh, xm, xl, oh, om, ol, oe):
    ok = (xh >= EXP_MIN) & (xh <= EXP_MAX)  # False for NaN
    bad = not ok.all()
    if bad:  # compute at 0 and overwrite at the end
        xh0 = xh
        xh, xm, xl = (None if v is None else np.where(ok, v, 0.0) for v in (xh, xm, xl))
    n, rh, rm, rl = _k_reduce(s, xh, xm, xl)
    e0, b, d = _k_expm1_fast(s, rh, rm, rl)
    s.free(rh, rm, rl)
    ni = n.astype(np.int64)
    s.free(n)
    j = np.bitwise_and(ni, _NT - 1).astype(np.intp)  # take() wants np.intp (int32 on wasm32)
    (tth, ttm, ttl), _ = _tables()
    th = np.take(tth, j, out=s.take())
    tm = np.take(ttm, j, out=s.take())
    tl = np.take(ttl, j, out=s.take())
    # T (1 + E) = T + th e0 + th b + tm e0 (exact products) + tm b + tl e0 + th d
    thh, thl = _split(s, th)
    e0h, e0l = _split(s, e0)
    p0, p1 = _tp(s, th, thh, thl, e0, e0h, e0l)
    x, y = _split(s, b)
    p2, p3 = _tp(s, th, thh, thl, b, x, y)
    _split_into(tm, x, y)
    p4, p5 = _tp(s, tm, x, y, e0, e0h, e0l)
    s.free(thh, thl, e0h, e0l)
    hh, f0 = _fts(s, th, p0)  # th >= 1 > |p0|
    s.free(p0)
    mm, f1 = _ts(s, tm, f0)
    s.free(f0)
    nn, f2 = _ts(s, p2, p1)
    s.free(p2, p1)
    nn2, f3 = _ts(s, nn, p4)
    s.free(nn, p4)
    mm2, f4 = _ts(s, mm, nn2)
    s.free(mm, nn2)
    # low = (((((p3 + p5) + (tm b + tl e0)) + (f2 + f3)) + th d) + tl) + (f1 + f4)
    np.add(p3, p5, out=p3)
    np.multiply(tm, b, out=p5)
    np.multiply(tl, e0, out=x)
    np.add(p5, x, out=p5)
    np.add(p3, p5, out=p3)
    np.add(f2, f3, out=f2)
    np.add(p3, f2, out=p3)
    np.multiply(th, d, out=p5)
    np.add(p3, p5, out=p3)
    np.add(p3, tl, out=p3)
    np.add(f1, f4, out=f1)
    np.add(p3, f1, out=p3)
    s.free(p5, x, y, f1, f2, f3, f4, th, tm, tl, d, b, e0)
    _renorm_fast_into(s, hh, mm2, p3, oh, om, ol)
    s.free(hh, mm2, p3)
    np.right_shift(ni, TABLE_BITS, out=oe)
    below = np.less(oh, 1.0)  # only j = 0 with r < 0; then 2 oh is in [1, 2)
    if below.any():
        np.add(oh, oh * below, out=oh)
        np.add(om, om * below, out=om)
        np.add(ol, ol * below, out=ol)
        np.subtract(oe, below, out=oe)
    if bad:
        low = xh0 < EXP_MIN
        high = ~ok & ~low  # NaN or above EXP_MAX
        for o in (oh, om, ol):
            o[low] = 0.0
            o[high] = np.nan
        oe[~ok] = 0


def exp(xh, xm=None, xl=None):
    """exp(xh + xm + xl) as ``(h, m, l, e)``, value ``(h + m + l) 2**e``, relative error ``<= 2**-152``.

    .. math:: h + m + l = 2^{-e} \\exp(x_h + x_m + x_l), \\qquad 1 \\le h < 2.

    Parameters
    ----------
    xh, xm, xl : array_like
        A normalised triple-double argument (broadcast together); xm and xl
        may be None (zero): a float or double-double argument, and fewer
        passes.

    Returns
    -------
    h, m, l : ndarray of float64
        A normalised td with h in [1, 2).
    e : ndarray of int64
        The binary exponent, kept apart so that results far below the
        float64 range (x down to EXP_MIN = -11356, where exp is about
        2**-16383) keep their relative precision.

    Notes
    -----
    Exactly ``(1, 0, 0, 0)`` at x = 0 and ``(0, 0, 0, 0)`` for x below
    EXP_MIN (-inf included). NaN and x above EXP_MAX (outside the domain)
    give ``(nan, nan, nan, 0)``.

    Error analysis. ``exp(x) = 2**M T_j exp(r)`` (Tang's method) with
    ``n = rint(x / L)``, ``L = ln 2 / 2**16``, ``M = n >> 16``,
    ``j = n & 0xffff``:

    - the reduction ``r = x - n L`` has an absolute error below 2**-171
      (`_k_reduce`), a relative error of exp as small;
    - ``T_j`` is a nearest-rounded td: relative error 2**-159 (`_tables`);
    - ``expm1(r) = E`` to 2**-154 absolute (`_k_expm1_fast`), relative
      to ``1 + E >= 1 - 2**-17.4``;
    - ``T (1 + E)``, in units of th: th e0, th b and tm e0 are exact
      products; th d rounds by 2**-157.7 (tm b and tl e0 by less than
      2**-173); tm d is dropped (2**-156.7); the low-order sum rounds four
      times at the level of 2**-103 (th d, tl, f1 + f4 and the total):
      2**-154.35. Together 2**-154.

    Total below ``2**-159 + 2**-171 + 2**-154 + 2**-154 < 2**-152.9``
    (measured: 2**-157.3).

    Cost: about 300 passes over a chunk, three table gathers.

    See Also
    --------
    crossentropy_ref._dd.exp : the double-double version (2**-99).

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref._engine import _td
    >>> float(np.exp(-1000.0) * 1e300)  # float64: exp underflows to 0 first
    0.0
    >>> h, m, l, e = _td.exp(np.array([-1000.0]))
    >>> int(e[0])  # exp(-1000) = 1.235... * 2**-1443
    -1443
    >>> float(_td.to_float(*_td.mul_float(h, m, l, 1e300), e)[0])  # mpmath: 5.075958897549457e-135
    5.075958897549457e-135
    """
    return _apply(_k_exp, (xh, xm, xl), 3, 1)


# --- near 0: expm1 and log1p as series ---------------------------------------------------


def _series_coefficients(a: list[Fraction]) -> dict:
    """The constants of `_near_series` for f(r) = r + a2 r**2 + ... + a9 r**9."""
    a2, a3, a4, a5, a6, a7, a8, a9 = a
    c = {"a2": float(a2), "a3": _td_const(a3), "a4": _dd_const(a4), "a5": _dd_const(a5), "a6": _dd_const(a6)}
    c["a5halves"], c["a6halves"] = _halves(c["a5"][0]), _halves(c["a6"][0])
    c["a7"], c["a8"], c["a9"] = float(a7), float(a8), float(a9)
    c["a6x2"] = float(2 * a6)
    return c


# expm1(r) = sum r**k / k!, log1p(r) = sum (-1)**(k + 1) r**k / k, k = 1 .. 9
_EXPM1 = _series_coefficients([Fraction(1, math.factorial(k)) for k in range(2, 10)])
_LOG1P = _series_coefficients([Fraction((-1) ** (k + 1), k) for k in range(2, 10)])


def _near_series(rh, rm, rl, c):
    """f(r) = r + a2 r**2 + r**3 q(r) for |r| <= 2**-17.4, relative error below 2**-154.8.

    f is expm1 or log1p (`_EXPM1`, `_LOG1P`); the terms after r**9 are
    below ``2**-156.6 |r| / 10!`` resp. ``|r|**9 / 10 <= 2**-159.9 |r|``.
    ``q = a3 + r P4``: ``P4 = a4 + rh (a5 + rh (a6 + rh (a7 + rh (a8 + rh a9))))``
    as a double-double, the innermost three terms in float64 (their
    rounding is scaled by ``rh**3``), then exact products with rh and
    Fast2Sums into a4, a5 and a6 (dd constants), and the first-order term
    ``rm P4'(rh) ~ rm (a5 + 2 a6 rh)``: P4 to about 2**-104 of itself,
    more than the 2**-100 needed for q to be ``2**-118`` of itself, which
    the factor ``r**2 / 2`` (at most 2**-36) takes to ``2**-154`` of f.
    Then three `mul` (2**-152.7 each) and two `add` (2**-155 each, no
    cancellation: ``|a2 r**2| <= 2**-18.4 |r|``); relative to f ~ r every
    error but the last addition's is scaled by ``|r| / 2`` or less. About
    500 passes: used for the results that need it, not by `exp`.
    """
    a4h, a4l = c["a4"]
    a5h, a5l = c["a5"]
    a6h, a6l = c["a6"]
    a5hh, a5hl = c["a5halves"]
    a6hh, a6hl = c["a6halves"]
    rhh, rhl = split(rh)
    p7 = c["a7"] + rh * (c["a8"] + rh * c["a9"])
    v6 = a6l + rh * p7
    p6 = rh * a6h
    b6 = ((rhh * a6hh - p6) + rhh * a6hl + rhl * a6hh) + rhl * a6hl  # rh a6h = p6 + b6
    p5h = a5h + p6  # Fast2Sum: |p6| <= 2**-17.4 |a6| < |a5|
    t5 = p6 - (p5h - a5h)
    p5l = t5 + (a5l + (b6 + rh * v6))
    p5hh, p5hl = split(p5h)
    q5 = rh * p5h
    b5 = ((rhh * p5hh - q5) + rhh * p5hl + rhl * p5hh) + rhl * p5hl  # rh p5h = q5 + b5
    p4h = a4h + q5  # Fast2Sum: |q5| < |a4|
    t4 = q5 - (p4h - a4h)
    p4l = t4 + (a4l + (b5 + (rh * p5l + rm * (a5h + rh * c["a6x2"]))))
    out = tuple(np.empty(rh.shape) for _ in range(3))
    with _Scratch(rh.size) as s:  # the kernels of mul_dd, add and mul, on pooled buffers
        t = [s.take() for _ in range(12)]
        q1, q, r2, r3q = t[0:3], t[3:6], t[6:9], t[9:12]
        _k_mul_dd(s, rh, rm, rl, p4h, p4l, *q1)
        _k_add(s, *c["a3"], *q1, *q)
        _k_mul(s, rh, rm, rl, rh, rm, rl, *r2)
        _k_mul(s, rh, rm, rl, *q, *q1)  # r q
        _k_mul(s, *r2, *q1, *r3q)  # r**3 q
        for v in r2:
            np.multiply(v, c["a2"], out=v)  # 1/2 or -1/2: exact
        _k_add(s, *r2, *r3q, *q)
        _k_add(s, rh, rm, rl, *q, *out)
        s.free(*t)
    return out


def _pow2_minus_one(k, big_m, th, tm, tl):
    """2**(k / 2**16) - 1 = 2**M T_j - 1 as a td, relative error below 2**-153.

    From the table D for |k| <= 2**11 (2**-159). Otherwise computed from
    T: ``2**M th - 1`` is exact by Sterbenz's lemma when 2**M th is in
    [1/2, 2], so the error is T's (2**-159 of 2**M T, at most 2**-153 of
    the result, which is at least 2**(1/32) - 1 > 2**-5.6); outside, the
    result is at least 1/2 and `add_float` adds ``2**-156 (2**M T + 1)``.
    """
    _, (tdh, tdm, tdl) = _tables()
    i = np.clip(k, -_D_HALF, _D_HALF) + _D_HALF
    d = [tdh[i], tdm[i], tdl[i]]
    big = np.flatnonzero(np.abs(k) > _D_HALF)
    if big.size:
        f = np.ldexp(1.0, big_m[big])
        for v, z in zip(d, add_float(th[big] * f, tm[big] * f, tl[big] * f, -1.0)):
            v[big] = z
    return tuple(d)


# --- expm1 ------------------------------------------------------------------------------


def _k_expm1(s, xh, oh, om, ol):
    ok = (xh >= EXP_MIN) & (xh <= EXP_MAX)  # False for NaN
    x = np.where(ok, xh, 0.0)
    nf, rh, rm, rl = _k_reduce(s, x, None, None)
    e0, b, d = _k_expm1_fast(s, rh, rm, rl)
    ni = nf.astype(np.int64)
    r = rh.copy(), rm.copy(), rl.copy()
    e0, b, d = e0.copy(), b.copy(), d.copy()
    j = ni & (_NT - 1)
    big_m = ni >> TABLE_BITS
    (tth, ttm, ttl), _ = _tables()
    th, tm, tl = tth[j], ttm[j], ttl[j]
    # W = T E (the error of E is 2**-154 absolute): th e0, th b and tm e0 exactly
    thh, thl = split(th)
    e0h, e0l = split(e0)
    p0 = th * e0
    p1 = ((thh * e0h - p0) + thh * e0l + thl * e0h) + thl * e0l
    bh, bl = split(b)
    p2 = th * b
    p3 = ((thh * bh - p2) + thh * bl + thl * bh) + thl * bl
    tmh, tml = split(tm)
    p4 = tm * e0
    p5 = ((tmh * e0h - p4) + tmh * e0l + tml * e0h) + tml * e0l
    w1, w2, w3 = renorm(p1, p2, p4)
    w = renorm(p0, w1, (((p3 + p5) + (tm * b + tl * e0)) + (w2 + w3)) + th * d)
    near = np.flatnonzero(np.abs(ni) < _NEAR)
    if near.size:  # there expm1(x) < 1: W = T expm1(r) to an error relative to r
        w = tuple(np.array(v) for v in w)
        e = _near_series(*renorm(*(v[near] for v in r)), _EXPM1)
        for v, z in zip(w, mul(th[near], tm[near], tl[near], *e)):
            v[near] = z
    f = np.ldexp(1.0, big_m)
    y = add(*_pow2_minus_one(ni, big_m, th, tm, tl), *(v * f for v in w))
    for o, v in zip((oh, om, ol), y):
        o[...] = v
    if not ok.all():
        low = xh < EXP_MIN
        for o, v in zip((oh, om, ol), (-1.0, 0.0, 0.0)):
            o[low] = v
            o[~ok & ~low] = np.nan


def expm1(x):
    """exp(x) - 1 for a float64 x, as a normalised td, relative error ``<= 2**-151``.

    Parameters
    ----------
    x : array_like
        float64 arguments; below EXP_MIN (-inf included) the result is
        ``(-1, 0, 0)``; NaN and above EXP_MAX it is NaN.

    Notes
    -----
    ``expm1(x) = (2**M T_j - 1) + 2**M T_j expm1(r)`` with the reduction of
    `exp`. Near 0 the error must be relative to the result, not to 1 as
    in `exp`: for |x| < ln 2 (|n| < 2**16), ``expm1(r)`` comes from
    `_near_series` (2**-154.8 relative), ``T expm1(r)`` from `mul`
    (2**-152.7), ``2**M T - 1`` from `_pow2_minus_one` (2**-153), and the
    last `add` adds terms of at most three times the result (n = 1,
    r = -L/2 is the worst case): 2**-153.4. Together below 2**-151.4.
    For |x| >= ln 2, ``|e**x / (e**x - 1)| <= 2`` and `exp`'s 2**-152.5
    at most doubles.
    """
    return _apply(_k_expm1, (x,), 3)


# --- log1p ------------------------------------------------------------------------------

_LN2F = math.log(2.0)
_SERIES_EXP = -60  # below 2**-59 the series v - v**2/2 + v**3/3 is used
_L_TD = _td_const(_ln2() / _NT)


def _log1p_table(h, m, l, e):
    """log1p(v) for v = (h + m + l) 2**e in [2**-60, e**EXP_MAX], h in [1, 2): a plain td.

    Tang's table-driven logarithm, written so that 1 + v is never formed
    (it would round v's low bits away): with n = rint(y0 / L), y0 =
    fl(log1p(v)) (or ``log(h) + e ln 2`` for v above 2**1000),

        log1p(v) = n L + log1p(d),  d = v 2**(-n / 2**16) + (2**(-n / 2**16) - 1),

    both terms of d from the table. |d| <= 2**-17.4 is checked (else n is
    taken again from ``n L + log1p(d)``). Errors, relative to y = log1p(v):

    - ``v 2**(-n/2**16)``, at most ``y (1 + 2**-17)``: `mul` of s by T,
      2**-152.6;
    - ``2**(-n/2**16) - 1``, at most 2y: 2**-159 of itself from the table
      D; computed (`_pow2_minus_one`, |n| > 2**11, so y > 2**-5.5) T's
      2**-159, and `add_float`'s 2**-155 when y > ln 2: below 2**-153.4 y;
    - their `add`: ``2**-155 * 3y``; so d is within ``2**-151.5 y``;
    - `_near_series`: 2**-154.8 of ``|log1p(d)| <= y``; ``n L``
      (`mul_float` of L as a td): 2**-155 of ``nL <= 2y``; the last `add`:
      ``2**-155 * 3y``.

    Total ``(1 + 0.1 + 0.18 + 0.27) 2**-151.5 y``, below ``2**-150.8 y``.
    """
    hs = h + (m + l)
    y0 = np.log1p(np.ldexp(hs, np.minimum(e, 1000)))
    big = np.flatnonzero(e > 1000)
    if big.size:  # log1p(v) = log(v) + log1p(1/v), 1/v < 2**-1000
        y0[big] = np.log(hs[big]) + e[big] * _LN2F
    (tth, ttm, ttl), _ = _tables()
    for _ in range(3):
        n = np.rint(y0 * _INV_L)
        k = (-n).astype(np.int64)
        big_m = k >> TABLE_BITS
        j = k & (_NT - 1)
        th, tm, tl = tth[j], ttm[j], ttl[j]
        ph, pm, pl = mul(h, m, l, th, tm, tl)
        f = e + big_m  # v 2**(-n / 2**16) = (s T_j) 2**(e + M)
        d = add(np.ldexp(ph, f), np.ldexp(pm, f), np.ldexp(pl, f), *_pow2_minus_one(k, big_m, th, tm, tl))
        if np.all(np.abs(d[0]) <= 2.0**-17.4):
            return add(*mul_float(*_L_TD, n), *_near_series(*d, _LOG1P))
        y0 = n / _INV_L + np.log1p(np.maximum(d[0], -0.5))
    raise FloatingPointError("log1p: the table index did not settle")  # pragma: no cover


def _log1p_series(h, m, l, e):
    """log1p(v) = v (1 + f), f = -v/2 + v**2/3, for v = (h + m + l) 2**e < 2**-59.

    The dropped ``v**3/4`` is below ``2**-177 v``; f is a double-double
    accurate to 2**-160 (its parts may underflow: then they are below
    2**-1000 and do not matter). `mul_dd` and `add` (no cancellation):
    below 2**-154.9.
    """
    vf = np.ldexp(h, e)
    fh = -0.5 * vf
    fl = vf * vf / 3.0 - 0.5 * np.ldexp(m, e)
    return to_scaled(*add(h, m, l, *mul_dd(h, m, l, fh, fl)), e)


def _k_log1p(s, sh, sm, sl, se, oh, om, ol, oe):
    sh, sm, sl = (np.broadcast_to(v, oh.shape) for v in (sh, sm, sl))
    h, m, l, e = to_scaled(sh, sm, sl, None if se is None else np.broadcast_to(se, oh.shape))
    tiny = e < _SERIES_EXP
    for part, f in ((tiny, _log1p_series), (~tiny, lambda *a: to_scaled(*_log1p_table(*a)))):
        if part.all():  # one branch for the whole chunk: no gathering
            for o, r in zip((oh, om, ol, oe), f(h, m, l, e)):
                o[...] = r
            return
        idx = np.flatnonzero(part)
        if idx.size:
            for o, r in zip((oh, om, ol, oe), f(h[idx], m[idx], l[idx], e[idx])):
                o[idx] = r


def log1p(sh, sm, sl, se=None):
    r"""log(1 + s) for ``s = (sh + sm + sl) 2**se >= 0``, as ``(h, m, l, e)``, relative error ``<= 2**-150``.

    .. math:: (h + m + l)\, 2^{e} = \log\bigl(1 + (s_h + s_m + s_l)\, 2^{s_e}\bigr).

    Parameters
    ----------
    sh, sm, sl : array_like
        A normalised td, s >= 0.
    se : array_like of int64, default None
        A binary exponent of s (0 when None), as `exp` returns it: a sum of
        exps far below the float64 range keeps its precision, and so does
        log1p(s), which is about s there. s may be up to e**EXP_MAX (about
        2**16383).

    Returns
    -------
    h, m, l : ndarray of float64
        h in [1, 2), or 0 for s = 0.
    e : ndarray of int64

    Notes
    -----
    For ``s < 2**-59`` the series ``s - s**2/2 + s**3/3`` (2**-154.9,
    `_log1p_series`), otherwise a table-driven logarithm
    (`_log1p_table`, 2**-150.8). Exactly 0 at s = 0.
    """
    return _apply(_k_log1p, (sh, sm, sl, se), 3, 1, int_inputs=(3,))
