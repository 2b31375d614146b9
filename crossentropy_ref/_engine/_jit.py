"""Compiled kernels (numba) for the first tier: the same quantities, in one pass over the logits.

numba is optional (the ``fast`` extra). When it imports, and unless
``CROSSENTROPY_REF_ENGINE=numpy``, the first pass over each block runs here
instead of as numpy passes: max and argmax, the exact shift, ``exp`` as a
pair, the pairwise TwoSum sums, ``log1p`` of the sum, and the bounds, with
every intermediate in registers. The arithmetic differs in one place from
the numpy engine's: ``exp`` is evaluated with fused multiply-adds and no
table (`_exp2`), because a table lookup keeps the loop from vectorising;
its error bound is derived below and both engines' results are held to the
same 4 ulp by the same tests (``tests/test_accuracy.py`` runs each).

``_exp2(xh, xl)``: with ``k = rint(x / ln 2)``, ``r = x - k ln 2`` (|r| <=
0.347; ``x - k L1`` exact by the FMA, the rest of the reduction kept as a
low part ``rl`` by TwoSum), ``exp(x) = 2**k (1 + r + r**2/2 + c + rl (1 +
...))`` with ``r**2`` exact (FMA), ``c = r**3 (1/6 + r/24 + ... + r**12/15!)``
(truncation below ``r**13 / 16! < 2**-63``, evaluation error below
``3u |c| < 2**-59.5``), and the sum ``1 + r + r**2/2`` kept exactly by two
Fast2Sums. What remains are four roundings of a low part below 0.0071:
``2**-58.2``. Relative bound `EPS` = 2**-56 (measured worst: 2**-58.3).

Kernels are compiled on first use and cached on disk (numba's ``cache=True``).
They take every constant as an argument, so a cached kernel can never hold
stale constants; and they release the GIL, so the engine's thread pool runs
blocks in parallel.
"""

from __future__ import annotations

import decimal
import functools
import math
import os
from fractions import Fraction

import numpy as np

from . import _dd

try:  # numba is optional
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None
ENGINES = ("auto", "compiled", "numpy")
# The engine in use: None until the first call reads CROSSENTROPY_REF_ENGINE (so that a
# bad value is an error at that call, with its name, rather than at import).
_STATE: dict = {"engine": None}

# Relative error bound of _exp2 (module docstring), and of the row sums built on it.
EPS = 2.0**-56
ABS = 2.0**-1074


def engine() -> str:
    """'compiled' or 'numpy': the engine the functions use now."""
    name = _STATE["engine"]
    if name is None:
        raw = os.environ.get("CROSSENTROPY_REF_ENGINE", "").strip().lower() or "auto"
        if raw not in ENGINES:
            raise ValueError(f"CROSSENTROPY_REF_ENGINE must be one of {ENGINES}; got {raw!r}")
        name = _STATE["engine"] = _resolve(raw, "CROSSENTROPY_REF_ENGINE")
    return name


def _resolve(name: str, what: str) -> str:
    if name == "compiled" and not AVAILABLE:
        raise ValueError(f"{what}='compiled' needs numba: pip install crossentropy_ref[fast]")
    return "compiled" if name == "auto" and AVAILABLE else ("numpy" if name == "auto" else name)


def enabled() -> bool:
    """Whether the compiled kernels are used (numba present and not switched off)."""
    return engine() == "compiled"


def block_elements(c: int = 1) -> int | None:
    """Logits per block for C classes: larger with the compiled kernels, whose per-block
    scratch is a few small arrays, so that the per-block Python work (a few dozen numpy
    calls on per-position arrays, the exact sums) is spread over more logits: about 4096
    positions, within [2**16, 2**20] logits (the per-position temporaries, dozens of
    arrays of one float per position, stay near 1 MiB). None: the numpy engine's default."""
    if not enabled():
        return None
    return min(1 << 20, max(1 << 16, 4096 * c))


def contiguous_rows(z: np.ndarray) -> bool:
    """Whether a (bn, C, bs) block is (bn, C) C-contiguous with bs = 1 (the 2-D kernels)."""
    bn, c, bs = z.shape
    return bs == 1 and z.strides[1] == 8 and (bn == 1 or z.strides[0] == 8 * c)


def set_engine(name: str) -> None:
    """Use the engine `name`: 'auto' (compiled when numba is installed), 'compiled' or 'numpy'."""
    _STATE["engine"] = _resolve(name, "engine")


@functools.cache
def constants() -> tuple:
    """(K, DT): the constants of `_exp2` and the double-double exp's tables, as kernel arguments."""
    ln2 = Fraction(decimal.Context(prec=60).ln(2))
    e = math.frexp(float(ln2))[1]
    unit = Fraction(2) ** (e - 32)
    l1 = math.floor(ln2 / unit) * unit  # 32 bits: k L1 is exact for |k| < 2**21
    rest = ln2 - l1
    l2 = float(rest)
    l3 = float(rest - Fraction(l2))
    coeffs = tuple(float(Fraction(1, math.factorial(j))) for j in range(3, 16))  # 1/3! .. 1/15!
    k = (float(1 / ln2), float(l1), l2, l3) + coeffs
    t_hi, t_lo = _dd._table()
    dt = (np.ascontiguousarray(t_hi), np.ascontiguousarray(t_lo), _dd._INV_L, _dd._L1, _dd._L2, _dd._L3, _dd._L4)
    return k, dt


if numba is not None:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _fma(typingctx, a, b, c):
        """a * b + c rounded once (llvm.fma: the hardware instruction where there is one)."""

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return types.float64(types.float64, types.float64, types.float64), codegen

    @intrinsic
    def _f2i(typingctx, x):
        """The bits of a float64 as an int64."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))

        return types.int64(types.float64), codegen

    @intrinsic
    def _i2f(typingctx, x):
        """An int64's bits as a float64."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.int64), codegen

    _SHIFT = 1.5 * 2.0**52  # adding it rounds a float below 2**51 to an integer (ties to even)
    _SHIFT_BITS = int(np.array(_SHIFT).view(np.int64))
    _jit = numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
    _inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")

    @_inline
    def _exp2(xh, xl, K):
        """exp(xh + xl) as (hi, lo) within EPS (see the module docstring); (0, 0) at or below -1100."""
        inv_ln2, l1, l2, l3, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 = K
        x = xh if xh > -1100.0 else -1100.0
        xl = xl if xh > -1100.0 else 0.0
        t = _fma(x, inv_ln2, _SHIFT)
        ki = _f2i(t) - _SHIFT_BITS
        kf = t - _SHIFT
        r1 = _fma(-kf, l1, x)  # exact
        p = kf * l2
        pe = _fma(kf, l2, -p)  # kf l2 = p + pe exactly
        r = r1 - p  # TwoSum(r1, -p)
        bp = r - r1
        ap = r - bp
        rl = ((r1 - ap) + (-p - bp)) - pe + xl - kf * l3
        r2h = r * r
        r2l = _fma(r, r, -r2h)  # r**2 = r2h + r2l exactly
        c = _fma(p15, r, p14)
        c = _fma(c, r, p13)
        c = _fma(c, r, p12)
        c = _fma(c, r, p11)
        c = _fma(c, r, p10)
        c = _fma(c, r, p9)
        c = _fma(c, r, p8)
        c = _fma(c, r, p7)
        c = _fma(c, r, p6)
        c = _fma(c, r, p5)
        c = _fma(c, r, p4)
        c = _fma(c, r, p3)
        c = c * r * r2h
        h1 = 1.0 + r  # Fast2Sum: |r| < 1
        e1 = (1.0 - h1) + r
        hh = 0.5 * r2h
        h2 = h1 + hh  # Fast2Sum: |h1| > 0.6 > r**2 / 2
        e2 = (h1 - h2) + hh
        lo = (((e1 + e2) + 0.5 * r2l) + c) + rl * h2
        g1 = ki if ki > -1022 else -1022
        g2 = ki - g1
        g2 = g2 if g2 > -1022 else -1022
        f1 = _i2f((g1 + 1023) << 52)
        f2 = _i2f((g2 + 1023) << 52)
        return (h2 * f1) * f2, (lo * f1) * f2

    @_inline
    def _dd_exp(xh, xl, DT):
        """exp(xh + xl) as a double-double within 2**-99: crossentropy_ref._engine._dd.exp."""
        if not (xh > -1100.0 and xh <= 1.0):
            return 0.0, 0.0
        h, lo, m = _dd_exp_scaled(xh, xl, DT)
        return math.ldexp(h, m), math.ldexp(lo, m)

    @_inline
    def _dd_exp_scaled(xh, xl, DT):
        """exp(xh + xl) = (h + lo) * 2**m, for -1100 < xh <= 1 (the callers check)."""
        t_hi, t_lo, inv_l, l1, l2, l3, l4 = DT
        n = np.rint(xh * inv_l)
        t = xh - n * l1
        b = -(n * l2)
        rh = t + b
        bp = rh - t
        e1 = (t - (rh - bp)) + (b - bp)
        b = -(n * l3)
        s = rh + b
        bp = s - rh
        e2 = (rh - (s - bp)) + (b - bp)
        rh = s
        s = rh + xl
        bp = s - rh
        e3 = (rh - (s - bp)) + (xl - bp)
        rh = s
        rl = (e1 + e2) + (e3 - n * l4)
        sh = rh * rh
        sl = _fma(rh, rh, -sh) + 2.0 * rh * rl
        tail = sh * (rh * (1.0 / 6.0) + sh * (1.0 / 24.0 + rh * (1.0 / 120.0 + rh * (1.0 / 720.0))))
        hs = 0.5 * sh
        ph = rh + hs
        bp = ph - rh
        e = (rh - (ph - bp)) + (hs - bp)
        pl = e + (rl + (0.5 * sl + tail))
        ni = np.int64(n)
        j = ni & 16383
        m = ni >> 14
        th = t_hi[j]
        tl = t_lo[j]
        q = th * ph
        qe = _fma(th, ph, -q)
        lo = qe + (th * pl + tl * ph) + tl
        hi = th + q
        lo = lo + (q - (hi - th))
        h2 = hi + lo
        lo = lo - (h2 - hi)
        return h2, lo, m

    @_inline
    def _log1p(sh, sl, DT):
        """log1p(sh + sl) as a pair, relative error below 2**-95: _rows.log1p_pair."""
        h = sh + sl
        sl = sl - (h - sh)
        sh = h
        if sh < 2.0**-20:
            p = sh * sh
            pe = _fma(sh, sh, -p)
            half_sq = 0.5 * p
            half_lo = 0.5 * (pe + 2.0 * sh * sl)
            tail = sh * sh * sh * (1.0 / 3.0 - sh * (0.25 - sh * 0.2))
            a = sh - half_sq
            bp = a - sh
            ae = (sh - (a - bp)) + (-half_sq - bp)
            return a, ae + (sl - half_lo + tail)
        return _log1p_newton(sh, sl, math.log1p(sh), DT)

    @_inline
    def _log1p_newton(sh, sl, y0, DT):
        """log1p(sh + sl) for sh >= 2**-20 (normalised pair), from y0 = log1p(sh) by one Newton
        step in double-double; kept apart so a loop can take the libm calls first and this
        branch-free step after, the two overlapping far better than when chained per element."""
        y0 = y0 if y0 < 700.0 else 700.0  # masked positions (sh = inf or NaN) stay finite
        eh, el, e = _dd_exp_scaled(-y0, 0.0, DT)
        f = _i2f((e + 1023) << 52)  # 2**e is normal: -y0 > -700
        eh = eh * f
        el = el * f
        oh = 1.0 + sh  # TwoSum(1, sh): sh may exceed 1
        bp = oh - 1.0
        ol = ((1.0 - (oh - bp)) + (sh - bp)) + sl
        ph = oh * eh
        pl = _fma(oh, eh, -ph) + (oh * el + ol * eh)
        rh = ph - 1.0
        r = rh + pl
        corr = r - r * r * (0.5 - r * (1.0 / 3.0))
        lh = y0 + corr
        return lh, corr - (lh - y0)

    @_inline
    def _two_sum_acc(acc_h, acc_l, h, l):
        s = acc_h + h
        bp = s - acc_h
        ap = s - bp
        return s, (acc_l + l) + ((acc_h - ap) + (h - bp))

    @_inline
    def _shift(v, m):
        """v - m as s + err exactly (TwoSum)."""
        s = v - m
        bp = s - v
        ap = s - bp
        return s, (v - ap) - (bp + m)

    @_inline
    def _finite_or_zero(m):
        """The shift of a position: its maximum, or 0 where that is not finite (masked later)."""
        return m if (m - m) == 0.0 else 0.0

    @_inline
    def _div_round(gh, gl, den):
        """(gh + gl) / den rounded once: the quotient, corrected by its exact remainder (FMA)."""
        q = (gh + gl) / den
        qp = q * den
        qe = _fma(q, den, -qp)
        return q + (((gh - qp) - qe) + gl) / den

    @_inline
    def _unproven(scale, q, dd_bound, dd_floor, share, den_abs):
        """Whether the bound dd_bound scale + dd_floor (over |den|) fails to prove an ulp of q."""
        err = (dd_bound * scale + dd_floor) / den_abs
        return scale > 0.0 and not (err <= share * abs(q) or err <= 2.0**-1074)

    @_inline
    def _tree(th, tl, n):
        """Sum the pairs th[:n] + tl[:n] by the halving TwoSum tree (as _rows.tree_sum), in place,
        and return the sum normalised; an infinite or NaN sum keeps its high part."""
        while n > 1:
            half = n // 2
            off = n - half
            for j in range(half):
                a = th[j]
                b = th[off + j]
                s = a + b
                if s - s != 0.0:
                    tl[j] = 0.0
                    th[j] = s
                    continue
                bp = s - a
                ap = s - bp
                tl[j] = (tl[j] + tl[off + j]) + ((a - ap) + (b - bp))
                th[j] = s
            n -= half
        h = th[0]
        lo = tl[0]
        if h - h != 0.0:
            return h, 0.0
        s = h + lo
        return s, lo - (s - h)

    _B = 256  # terms per inner block: the scratch stays in L1, the tree's levels vectorise

    @_jit
    def rows2d(z, m_out, k_out, sh_out, sl_out, tiny_out, lh_out, ll_out, K, DT, minx, bh, bl):
        """The first pass over a C-contiguous (bn, C) block: per row the max, its first index,
        s = sum_{j != k} exp(z_j - m) as a pair (blocks of _B terms summed by the halving
        TwoSum tree, then added by TwoSum), the count of terms below exp(minx), and
        L = log1p(s). A row holding NaN gets m = NaN; callers mask rows without a finite max."""
        bn, c = z.shape
        for i in range(bn):
            row = z[i]
            m = row[0]
            nan = row[0] != row[0]
            for j in range(1, c):
                v = row[j]
                m = v if v > m else m
                nan |= v != v
            k = 0
            if not nan:
                for j in range(c):
                    if row[j] == m:
                        k = j
                        break
            else:
                for j in range(c):
                    if row[j] != row[j]:
                        k = j
                        m = row[j]
                        break
            m_out[i] = m
            k_out[i] = k
            mm = _finite_or_zero(m)
            tiny = 0
            acc_h = 0.0
            acc_l = 0.0
            for j0 in range(0, c, _B):
                n = min(_B, c - j0)
                for j in range(n):
                    v = row[j0 + j]
                    s, err = _shift(v, mm)
                    tiny += (s < minx) & (s > -np.inf)
                    h, l = _exp2(s, err, K)
                    bh[j] = h
                    bl[j] = l
                if j0 <= k < j0 + n:
                    bh[k - j0] = 0.0
                    bl[k - j0] = 0.0
                nn = n
                while nn > 1:
                    half = nn // 2
                    off = nn - half
                    for j in range(half):
                        a = bh[j]
                        b = bh[off + j]
                        s = a + b
                        bp = s - a
                        ap = s - bp
                        bl[j] = (bl[j] + bl[off + j]) + ((a - ap) + (b - bp))
                        bh[j] = s
                    nn -= half
                acc_h, acc_l = _two_sum_acc(acc_h, acc_l, bh[0], bl[0])
            h = acc_h + acc_l
            sh_out[i] = h
            sl_out[i] = acc_l - (h - acc_h)
            tiny_out[i] = tiny
        _log1p_rows(sh_out, sl_out, lh_out, ll_out, DT)

    @_inline
    def _log1p_rows(sh, sl, lh_out, ll_out, DT):
        """L = log1p(s) for every row: the libm calls in a loop of their own (y0 into
        lh_out), the Newton steps in a second one; chained per row, the two overlap poorly
        (50 ns a row against 24)."""
        n = sh.shape[0]
        for i in range(n):
            lh_out[i] = math.log1p(sh[i])
        for i in range(n):
            h = sh[i]
            lo = sl[i]
            if h < 2.0**-20:
                lh, ll = _log1p(h, lo, DT)
            else:
                lh, ll = _log1p_newton(h, lo, lh_out[i], DT)
            lh_out[i] = lh
            ll_out[i] = ll

    @_inline
    def _recip_one_plus(sh, sl):
        """1 / (1 + s) as a double-double, one Newton step (as _dd.recip_one_plus)."""
        o_h = 1.0 + sh
        bp = o_h - 1.0
        o_l = ((1.0 - (o_h - bp)) + (sh - bp)) + sl
        r0 = 1.0 / o_h
        pr = o_h * r0
        pre = _fma(o_h, r0, -pr)
        dlt = ((1.0 - pr) - pre) - o_l * r0
        rl = r0 * dlt
        rh = r0 + rl
        return rh, rl - (rh - r0)

    @_jit
    def scaled_rows2d(z, fh, fl, out, m_out, k_out, sh_out, sl_out, tiny_out, lh_out, ll_out, K, DT, minx,
                      lo_row, bh, bl):
        """rows2d and, in the same pass, out[i, j] = exp(z_ij - m_i) f_i / (1 + s_i) rounded once:
        the softmax (f = 1) and the index gradient's entries (f = w_y / D) with one exp per
        logit. The terms' high parts wait in `out`, their low parts in `lo_row` (C,), until
        the row's sum is known; then each is multiplied by F = f R exactly (FMA) and rounded."""
        bn, c = z.shape
        for i in range(bn):
            row = z[i]
            orow = out[i]
            m = row[0]
            nan = row[0] != row[0]
            for j in range(1, c):
                v = row[j]
                m = v if v > m else m
                nan |= v != v
            k = 0
            if not nan:
                for j in range(c):
                    if row[j] == m:
                        k = j
                        break
            else:
                for j in range(c):
                    if row[j] != row[j]:
                        k = j
                        m = row[j]
                        break
            m_out[i] = m
            k_out[i] = k
            mm = _finite_or_zero(m)
            tiny = 0
            acc_h = 0.0
            acc_l = 0.0
            for j0 in range(0, c, _B):
                n = min(_B, c - j0)
                for j in range(n):
                    v = row[j0 + j]
                    s, err = _shift(v, mm)
                    tiny += (s < minx) & (s > -np.inf)
                    h, l = _exp2(s, err, K)
                    orow[j0 + j] = h
                    lo_row[j0 + j] = l
                    bh[j] = h
                    bl[j] = l
                if j0 <= k < j0 + n:
                    bh[k - j0] = 0.0
                    bl[k - j0] = 0.0
                nn = n
                while nn > 1:
                    half = nn // 2
                    off = nn - half
                    for j in range(half):
                        a = bh[j]
                        b = bh[off + j]
                        s = a + b
                        bp = s - a
                        ap = s - bp
                        bl[j] = (bl[j] + bl[off + j]) + ((a - ap) + (b - bp))
                        bh[j] = s
                    nn -= half
                acc_h, acc_l = _two_sum_acc(acc_h, acc_l, bh[0], bl[0])
            h = acc_h + acc_l
            lo = acc_l - (h - acc_h)
            sh_out[i] = h
            sl_out[i] = lo
            tiny_out[i] = tiny
            rh, rl = _recip_one_plus(h, lo)
            Fh, Fl = _dd_mul(fh[i], fl[i], rh, rl)
            for j in range(c):
                orow[j] = _mul_round(orow[j], lo_row[j], Fh, Fl)
        _log1p_rows(sh_out, sl_out, lh_out, ll_out, DT)

    @_jit
    def rows3d(z, m_out, k_out, sh_out, sl_out, tiny_out, lh_out, ll_out, K, DT, minx, th, tl):
        """rows2d for a (bn, C, bs) block whose positions are contiguous along the last axis:
        chunks of P positions (th, tl: (C + 1, P) scratch, in L1/L2; row C is spare) with the loops over the
        chunk's positions innermost and branch-free (they vectorise), the classes outermost;
        the tree adds the upper half of the classes onto the lower half."""
        bn, c, bs = z.shape
        P = th.shape[1]
        for i in range(bn):
            for p0 in range(0, bs, P):
                q = min(P, bs - p0)
                m = m_out[i, 0, p0:p0 + q]
                k = k_out[i, 0, p0:p0 + q]
                tiny = tiny_out[i, 0, p0:p0 + q]
                nan = th[c]  # a NaN count per position, in the scratch's spare row for now
                for p in range(q):
                    v = z[i, 0, p0 + p]
                    m[p] = v
                    nan[p] = 1.0 if v != v else 0.0
                for j in range(1, c):
                    for p in range(q):
                        v = z[i, j, p0 + p]
                        m[p] = v if v > m[p] else m[p]
                        nan[p] += 1.0 if v != v else 0.0
                any_nan = False
                for p in range(q):
                    k[p] = -1
                    any_nan |= nan[p] > 0.0
                if any_nan:  # as numpy's argmax: a position holding NaN has m = NaN at its first NaN
                    for p in range(q):
                        if nan[p] > 0.0:
                            for j in range(c):
                                if z[i, j, p0 + p] != z[i, j, p0 + p]:
                                    m[p] = z[i, j, p0 + p]
                                    k[p] = j
                                    break
                for j in range(c):
                    for p in range(q):
                        first = (k[p] == -1) & (z[i, j, p0 + p] == m[p])
                        k[p] = j if first else k[p]
                mm = th[c]  # the shift of each position
                tf = tl[c]  # the count of tiny terms per position, as a float (the loop vectorises)
                for p in range(q):
                    mm[p] = _finite_or_zero(m[p])
                    tf[p] = 0.0
                for j in range(c):
                    # every class, the maximum's too (zeroed below): the loop stays branch-free
                    zj = z[i, j, p0:p0 + q]
                    hj = th[j]
                    lj = tl[j]
                    for p in range(q):
                        s, err = _shift(zj[p], mm[p])
                        tf[p] += 1.0 if (s < minx) & (s > -np.inf) else 0.0
                        h, l = _exp2(s, err, K)
                        hj[p] = h
                        lj[p] = l
                for p in range(q):
                    tiny[p] = int(tf[p])
                for p in range(q):
                    th[k[p], p] = 0.0
                    tl[k[p], p] = 0.0
                nn = c
                while nn > 1:
                    half = nn // 2
                    off = nn - half
                    for j in range(half):
                        for p in range(q):
                            a = th[j, p]
                            b = th[off + j, p]
                            s = a + b
                            bp = s - a
                            ap = s - bp
                            tl[j, p] = (tl[j, p] + tl[off + j, p]) + ((a - ap) + (b - bp))
                            th[j, p] = s
                    nn -= half
                y0 = th[c]  # log1p(s) per position: the libm calls in a loop of their own
                for p in range(q):
                    a = th[0, p]
                    b = tl[0, p]
                    h = a + b
                    lo = b - (h - a)
                    sh_out[i, 0, p0 + p] = h
                    sl_out[i, 0, p0 + p] = lo
                    y0[p] = math.log1p(h)
                for p in range(q):
                    h = sh_out[i, 0, p0 + p]
                    lo = sl_out[i, 0, p0 + p]
                    if h < 2.0**-20:
                        lh, ll = _log1p(h, lo, DT)
                    else:
                        lh, ll = _log1p_newton(h, lo, y0[p], DT)
                    lh_out[i, 0, p0 + p] = lh
                    ll_out[i, 0, p0 + p] = ll

    @_inline
    def _ts2(a, b):
        """TwoSum: a + b = so + eo exactly (Knuth), as _td._ts."""
        so = a + b
        bp = so - a
        eo = so - bp
        return so, (a - eo) + (b - bp)

    @_inline
    def _td_renorm(a, b, c):
        """_td._renorm_into: the exact renormalisation of a + b + c."""
        x, e2 = _ts2(b, c)
        h, e1 = _ts2(a, x)
        m, l = _ts2(e1, e2)
        oh, x = _ts2(h, m)
        om, ol = _ts2(x, l)
        return oh, om, ol

    @_inline
    def _td_add(ah, am, al, bh, bm, bl):
        """_td.add on scalars: the same operations in the same order, so the same result."""
        s0, e0 = _ts2(ah, bh)
        s1, e1 = _ts2(am, bm)
        t1, e3 = _ts2(e0, s1)
        t2 = (e1 + (al + bl)) + e3
        return _td_renorm(s0, t1, t2)

    @_jit
    def td_tree(h, m, l):
        """_deep._tree in place on C-contiguous (P, C) triple-doubles: the same pairwise tree
        of _td.add, its result in column 0; one pass in cache instead of a numpy call per level."""
        rows, n0 = h.shape
        for i in range(rows):
            n = n0
            while n > 1:
                half = n // 2
                off = n - half
                for j in range(half):
                    a, b, c = _td_add(h[i, j], m[i, j], l[i, j], h[i, off + j], m[i, off + j], l[i, off + j])
                    h[i, j] = a
                    m[i, j] = b
                    l[i, j] = c
                n -= half

    @_inline
    def _mul_round(eh, el, fh, fl):
        """(eh + el)(fh + fl) rounded once: the exact product eh fh (FMA) plus the small terms."""
        p = eh * fh
        e = _fma(eh, fh, -p)
        return p + ((e + eh * fl) + el * fh)

    @_jit
    def grad_fill3d(z, m, fh, fl, g, K):
        """g[i, c, p] = exp(z - m) F rounded once, F = fh + fl per position: the index gradient's
        entries (the target's entry is set by the caller). z, g: C-contiguous (bn, C, bs); the
        positions' loop is innermost over unit-stride rows (it vectorises), and each position's
        shift is computed once."""
        bn, c, bs = z.shape
        mm = np.empty(bs)
        for i in range(bn):
            mrow = m[i, 0]
            for p in range(bs):
                mm[p] = _finite_or_zero(mrow[p])
            a = fh[i, 0]
            b = fl[i, 0]
            for j in range(c):
                zrow = z[i, j]
                out = g[i, j]
                for p in range(bs):
                    s, err = _shift(zrow[p], mm[p])
                    h, l = _exp2(s, err, K)
                    out[p] = _mul_round(h, l, a[p], b[p])

    @_jit
    def grad_fill2d(z, m, fh, fl, g, K):
        """grad_fill3d for C-contiguous (bn, C) blocks (contiguous inner loop)."""
        bn, c = z.shape
        for i in range(bn):
            mm = _finite_or_zero(m[i])
            a = fh[i]
            b = fl[i]
            row = z[i]
            out = g[i]
            for j in range(c):
                v = row[j]
                s, err = _shift(v, mm)
                h, l = _exp2(s, err, K)
                out[j] = _mul_round(h, l, a, b)

    @_jit
    def weighted_gaps(z, m, w, use_w, gh_out, gl_out, gabs_out, th, tl):
        """sum_c w_c (m - z_c) per position as a pair (the halving TwoSum tree over classes),
        and sum_c |w_c| (m - z_c); w_c = 1 unless use_w. A -inf logit gives inf (0 if w_c = 0).
        z: (bn, C, bs); th, tl: (C,) scratch."""
        bn, c, bs = z.shape
        for i in range(bn):
            for p in range(bs):
                mm = _finite_or_zero(m[i, 0, p])
                ga = 0.0
                for j in range(c):
                    v = z[i, j, p]
                    d = mm - v  # TwoSum(mm, -v): the gap exactly
                    bp = d - mm
                    ap = d - bp
                    de = (mm - ap) + (-v - bp)
                    wj = w[j] if use_w else 1.0
                    if d == np.inf:
                        ph = 0.0 if wj == 0.0 else wj * d
                        pl = 0.0
                    else:
                        ph = wj * d
                        pl = _fma(wj, d, -ph) + wj * de
                    th[j] = ph
                    tl[j] = pl
                    ga += abs(ph)
                h, lo = _tree(th, tl, c)
                gh_out[i, 0, p] = h
                gl_out[i, 0, p] = lo
                gabs_out[i, 0, p] = ga

    @_jit
    def weighted_gaps3d(z, m, w, use_w, gh_out, gl_out, gabs_out, th, tl):
        """weighted_gaps for a C-contiguous (bn, C, bs) block, vectorised as rows3d is: chunks of
        P positions (th, tl: (C, P) scratch), classes outermost, positions innermost and
        branch-free, the same TwoSum tree over the classes for each position."""
        bn, c, bs = z.shape
        P = th.shape[1]
        for i in range(bn):
            for p0 in range(0, bs, P):
                q = min(P, bs - p0)
                for p in range(q):
                    gabs_out[i, 0, p0 + p] = 0.0
                for j in range(c):
                    wj = w[j] if use_w else 1.0
                    zj = z[i, j, p0:p0 + q]
                    mj = m[i, 0, p0:p0 + q]
                    ga = gabs_out[i, 0, p0:p0 + q]
                    for p in range(q):
                        mm = _finite_or_zero(mj[p])
                        v = zj[p]
                        d = mm - v  # TwoSum(mm, -v): the gap exactly
                        bp = d - mm
                        ap = d - bp
                        de = (mm - ap) + (-v - bp)
                        ph = wj * d
                        pl = _fma(wj, d, -ph) + wj * de
                        inf = d == np.inf
                        ph = (0.0 if wj == 0.0 else ph) if inf else ph
                        pl = 0.0 if inf else pl
                        th[j, p] = ph
                        tl[j, p] = pl
                        ga[p] += abs(ph)
                n = c
                while n > 1:
                    half = n // 2
                    off = n - half
                    for j in range(half):
                        for p in range(q):
                            a = th[j, p]
                            b = th[off + j, p]
                            s = a + b
                            bp = s - a
                            ap = s - bp
                            lo = (tl[j, p] + tl[off + j, p]) + ((a - ap) + (b - bp))
                            fin = s - s == 0.0
                            tl[j, p] = lo if fin else 0.0
                            th[j, p] = s
                    n -= half
                for p in range(q):
                    h = th[0, p]
                    lo = tl[0, p]
                    fin = h - h == 0.0
                    hs = h + lo
                    gh_out[i, 0, p0 + p] = hs if fin else h
                    gl_out[i, 0, p0 + p] = (lo - (hs - h)) if fin else 0.0

    @_inline
    def _dd_mul(ah, al, bh, bl):
        p = ah * bh
        e = _fma(ah, bh, -p) + (ah * bl + al * bh)
        s = p + e
        return s, e - (s - p)

    @_inline
    def _mass(pv, wv, oh, ol, eh, el, eps_on):
        """b = w ((1 - eps) p + eps / C) as a double-double (1 - eps = oh + ol, eps / C = eh + el)."""
        bh, bl = _dd_mul(oh, ol, pv, 0.0)
        if eps_on:
            s = bh + eh
            bp = s - bh
            ap = s - bp
            bl = (bl + el) + ((bh - ap) + (eh - bp))
            bh = s
            t = bh + bl
            bl = bl - (t - bh)
            bh = t
        return _dd_mul(bh, bl, wv, 0.0)

    @_jit
    def prob_sums(z, m, pt, w, use_w, oh, ol, eh, el, eps_on, gh_o, gl_o, ah_o, al_o, pabs_o, babs_o, th, tl, uh, ul):
        """Per position of a probability-target block: G = sum_c b_c (m - z_c) and a = sum_c b_c
        as pairs (halving TwoSum trees), with sum |b_c d_c| and sum |b_c| for the bound;
        b_c = w_c ((1 - eps) p_c + eps / C) in double-double. 0 log 0 = 0: no mass on a -inf
        logit contributes 0. z, pt: (bn, C, bs); th, tl, uh, ul: (C,) scratch."""
        bn, c, bs = z.shape
        for i in range(bn):
            for p in range(bs):
                mm = _finite_or_zero(m[i, 0, p])
                pa = 0.0
                ba = 0.0
                for j in range(c):
                    wj = w[j] if use_w else 1.0
                    bh, bl = _mass(pt[i, j, p], wj, oh, ol, eh, el, eps_on)
                    v = z[i, j, p]
                    d = mm - v
                    bp = d - mm
                    ap = d - bp
                    de = (mm - ap) + (-v - bp)
                    if d == np.inf:
                        ph = 0.0 if (bh == 0.0 and bl == 0.0) else bh * d
                        pl = 0.0
                    else:
                        ph = bh * d
                        pl = _fma(bh, d, -ph) + (bh * de + bl * d)
                    th[j] = ph
                    tl[j] = pl
                    uh[j] = bh
                    ul[j] = bl
                    pa += abs(ph)
                    ba += abs(bh)
                gh_o[i, 0, p], gl_o[i, 0, p] = _tree(th, tl, c)
                ah_o[i, 0, p], al_o[i, 0, p] = _tree(uh, ul, c)
                pabs_o[i, 0, p] = pa
                babs_o[i, 0, p] = ba

    @_jit
    def soft_grad(z, pt, yv, is_prob, w, use_w, oh, ol, eh, el, eps_on, cls_h, cls_l, wt_h, wt_l, den, g, hard_o,
                  dd_bound, dd_floor, share, DT, teh, tel, tbh, tbl):
        """The gradient a q_c - b_c of soft targets or smoothing in double-double, divided by
        `den` with one rounding: _softgrad.grad_block, fused. z, g: (bn, C, bs); pt the
        probabilities (is_prob), or yv (bn, bs) the class indices (-1: ignored, then g = 0)
        with cls_h + cls_l (C,) the smoothing mass w_c eps / C of every class; hard_o
        (bn, bs): the positions whose bound does not prove an ulp (for the deep tier)."""
        bn, c, bs = z.shape
        for i in range(bn):
            for p in range(bs):
                m = z[i, 0, p]
                k = 0
                nan = m != m
                for j in range(1, c):
                    v = z[i, j, p]
                    if v != v and not nan:
                        nan = True
                        k = j
                        m = v
                    elif not nan and v > m:
                        m = v
                        k = j
                y = -1 if is_prob else yv[i, p]
                if not is_prob and y < 0:
                    for j in range(c):
                        g[i, j, p] = 0.0
                    hard_o[i, p] = False
                    continue
                if m - m != 0.0:  # no finite maximum: NaN, as torch
                    for j in range(c):
                        g[i, j, p] = np.nan
                    hard_o[i, p] = False
                    continue
                # exp(z_j - m) in double-double, s = sum_{j != k}; the mass b_j and a = sum b_j.
                sh = 0.0
                sl = 0.0
                ah = 0.0
                al = 0.0
                if not is_prob:
                    wy = w[y] if use_w else 1.0
                    yh, yl = _dd_mul(oh, ol, wy, 0.0)  # (1 - eps) w_y
                    ch, cl = _dd_mul(eh, el, wt_h, wt_l)  # eps W / C
                    ah, al = _two_sum_acc(yh, yl, ch, cl)
                for j in range(c):
                    v = z[i, j, p]
                    d, de = _shift(v, m)
                    if d == -np.inf:
                        de = 0.0
                    h, l = _dd_exp(d, de, DT)
                    teh[j] = h
                    tel[j] = l
                    if j != k:
                        sh, sl = _two_sum_acc(sh, sl, h, l)
                    if is_prob:
                        wj = w[j] if use_w else 1.0
                        bh, bl = _mass(pt[i, j, p], wj, oh, ol, eh, el, eps_on)
                        ah, al = _two_sum_acc(ah, al, bh, bl)
                    elif j == y:
                        bh, bl = _two_sum_acc(cls_h[j], cls_l[j], yh, yl)
                    else:
                        bh, bl = cls_h[j], cls_l[j]
                    tbh[j] = bh
                    tbl[j] = bl
                t = sh + sl
                sl = sl - (t - sh)
                sh = t
                t = ah + al
                al = al - (t - ah)
                ah = t
                rh, rl = _recip_one_plus(sh, sl)
                fh, fl = _dd_mul(ah, al, rh, rl)  # a / (1 + s)
                bad = False
                near = rh > 0.5
                rest_h = 0.0
                rest_l = 0.0
                den_abs = abs(den)
                for j in range(c):
                    bh = tbh[j]
                    bl = tbl[j]
                    if near and j == k:
                        continue
                    if near:
                        rest_h, rest_l = _two_sum_acc(rest_h, rest_l, bh, bl)
                    ph, pl = _dd_mul(teh[j], tel[j], fh, fl)  # a q_c
                    gh, gl = _two_sum_acc(ph, pl, -bh, -bl)
                    q = _div_round(gh, gl, den)
                    g[i, j, p] = q
                    scale = abs(ph) + abs(bh)
                    bad |= _unproven(scale, q, dd_bound, dd_floor, share, den_abs)
                if near:
                    # the maximum: (a - b_k) - a s / (1 + s), s / (1 + s) = s R
                    uh, ul = _dd_mul(sh, sl, rh, rl)
                    uh, ul = _dd_mul(uh, ul, ah, al)
                    gh, gl = _two_sum_acc(rest_h, rest_l, -uh, -ul)
                    q = _div_round(gh, gl, den)
                    g[i, k, p] = q
                    scale = abs(rest_h) + abs(uh)
                    bad |= _unproven(scale, q, dd_bound, dd_floor, share, den_abs)
                hard_o[i, p] = bad

    @_jit
    def log_softmax_fill(z, m, lh, ll, out):
        """out = (z - m) - L rounded once: (z - m) exactly by TwoSum, L = lh + ll per position."""
        bn, c, bs = z.shape
        for i in range(bn):
            for j in range(c):
                for p in range(bs):
                    mm = _finite_or_zero(m[i, 0, p])
                    v = z[i, j, p]
                    s, err = _shift(v, mm)
                    if s == -np.inf:
                        out[i, j, p] = -np.inf
                        continue
                    a = -lh[i, 0, p]
                    t = s + a  # TwoSum(s, -lh)
                    bp = t - s
                    ap = t - bp
                    e = (s - ap) + (a - bp)
                    out[i, j, p] = t + ((e - ll[i, 0, p]) + err)

    @_jit
    def log_softmax_fill2d(z, m, lh, ll, out):
        """log_softmax_fill for C-contiguous (bn, C) blocks (contiguous inner loop)."""
        bn, c = z.shape
        for i in range(bn):
            mm = _finite_or_zero(m[i])
            a = -lh[i]
            b = ll[i]
            row = z[i]
            o = out[i]
            for j in range(c):
                v = row[j]
                s, err = _shift(v, mm)
                t = s + a
                bp = t - s
                ap = t - bp
                e = (s - ap) + (a - bp)
                r = t + ((e - b) + err)
                o[j] = -np.inf if s == -np.inf else r


def warm() -> None:
    """Compile every kernel once (numba caches them on disk): `make venv` runs this, so that
    the book's parallel page kernels and the tests load the kernels instead of each
    compiling them (about 15 s in all on this machine)."""
    if not AVAILABLE:
        return
    import crossentropy_ref as ce

    old = ce.configure(engine="compiled")
    try:
        z = np.linspace(-2.0, 3.0, 20).reshape(4, 5)
        y = np.array([0, 1, 2, 3])
        p = ce.softmax(z, axis=1)
        z3 = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
        y3 = np.zeros((2, 4), dtype=np.intp)
        for zz, yy in ((z, y), (z3, y3)):
            ce.cross_entropy(zz, yy)
            ce.cross_entropy(zz, yy, label_smoothing=0.1)
            ce.cross_entropy_grad(zz, yy)
            ce.cross_entropy_grad(zz, yy, label_smoothing=0.1)
            ce.log_softmax(zz, axis=1)
            ce.softmax(zz, axis=1)
        ce.cross_entropy(z, p)
        ce.cross_entropy_grad(z, p)
    finally:
        ce.configure(**old)
