"""The deep tier's triple-double arithmetic as compiled kernels (numba).

`_td` evaluates every triple-double operation as numpy passes over chunks of
arrays: a few hundred numpy calls per operation, each holding the GIL for
its Python overhead, so the engine's threads barely overlap there. The
functions below are the same operations on scalars, transliterated from
`_td` operation by operation and in the same order (Dekker's products and
splits included, no fused multiply-add and no reassociation), so they give
the same bits; ``tests/test_engine.py`` compares the two on the deep tier's
inputs. The kernels at the end fuse the steps the deep tier runs per
logit: the exponentials of a chunk of classes (`exp_chunk`), the masses
``b_c`` (`mass_chunk`), and the gradient entries with their bounds
(`grad_chunk`), releasing the GIL.

Like `_jit`'s kernels, they take every constant as an argument (`constants`),
so a kernel cached on disk never holds stale ones.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from . import _jit
from . import _td as td

AVAILABLE = _jit.AVAILABLE


@functools.cache
def constants() -> tuple:
    """(EXP, T): exp's reduction and polynomial constants as one float tuple, and its table
    T_j = 2**(j / 2**16) as three arrays (the parts of a td)."""
    (tth, ttm, ttl), _ = td._tables()
    exp_c = (
        td._INV_L, *td._NP, td.EXP_MIN, td.EXP_MAX,
        td._K3H, td._K3L, td._K4H, td._K4L, td._K5H, td._K5L, td._K6, td._K7, td._K8,
        td._K5HH, td._K5HL, td._K60, td._SPLITTER,
    )
    tables = tuple(np.ascontiguousarray(a) for a in (tth, ttm, ttl))
    return tuple(float(x) for x in exp_c), tables


def td_const(x: Fraction) -> tuple[float, float, float]:
    """A rational as the nearest td, part by part."""
    h = float(x)
    r = x - Fraction(h)
    m = float(r)
    return h, m, float(r - Fraction(m))


if AVAILABLE:
    import math

    _inline = _jit._inline
    _kernel = _jit._jit

    @_inline
    def _ts(a, b):
        """TwoSum, as _td._ts."""
        so = a + b
        bp = so - a
        eo = so - bp
        eo = a - eo
        bp = b - bp
        return so, eo + bp

    @_inline
    def _fts(a, b):
        """Fast2Sum, as _td._fts."""
        so = a + b
        eo = so - a
        return so, b - eo

    @_inline
    def _split(a, sp):
        """Dekker's halves, as _td._split (sp: the splitter 2**27 + 1)."""
        hi = a * sp
        lo = hi - a
        hi = hi - lo
        lo = a - hi
        return hi, lo

    @_inline
    def _tp(a, ah, al, b, bh, bl):
        """Dekker's product from the halves, as _td._tp."""
        p = a * b
        e = ah * bh
        e = e - p
        t = ah * bl
        e = e + t
        t = al * bh
        e = e + t
        t = al * bl
        e = e + t
        return p, e

    @_inline
    def _renorm_fast(a, b, c):
        """As _td._renorm_fast_into."""
        x, y = _ts(b, c)
        h = a + x
        z = h - a
        z = x - z
        om, ol = _fts(z, y)
        return h, om, ol

    @_inline
    def _renorm(a, b, c):
        """As _td._renorm_into."""
        x, e2 = _ts(b, c)
        h, e1 = _ts(a, x)
        m, l = _ts(e1, e2)
        oh, x = _ts(h, m)
        om, ol = _ts(x, l)
        return oh, om, ol

    @_inline
    def add(ah, am, al, bh, bm, bl):
        """As _td.add."""
        s0, e0 = _ts(ah, bh)
        s1, e1 = _ts(am, bm)
        t1, e3 = _ts(e0, s1)
        t2 = al + bl
        t2 = e1 + t2
        t2 = t2 + e3
        return _renorm(s0, t1, t2)

    @_inline
    def mul(ah, am, al, bh, bm, bl, sp):
        """As _td.mul."""
        ahh, ahl = _split(ah, sp)
        bhh, bhl = _split(bh, sp)
        p0, e0 = _tp(ah, ahh, ahl, bh, bhh, bhl)
        x, y = _split(bm, sp)
        p1, e1 = _tp(ah, ahh, ahl, bm, x, y)
        x, y = _split(am, sp)
        p2, e2 = _tp(am, x, y, bh, bhh, bhl)
        t1, f1 = _ts(p1, p2)
        t1b, f2 = _ts(t1, e0)
        x = ah * bl
        y = al * bh
        x = x + y
        y = am * bm
        x = x + y
        e1 = e1 + e2
        e1 = e1 + x
        f1 = f1 + f2
        f1 = f1 + e1
        return _renorm_fast(p0, t1b, f1)

    @_inline
    def mul_float(ah, am, al, b, sp):
        """As _td.mul_float."""
        bh, bl = _split(b, sp)
        x, y = _split(ah, sp)
        p0, e0 = _tp(ah, x, y, b, bh, bl)
        x, y = _split(am, sp)
        p1, e1 = _tp(am, x, y, b, bh, bl)
        t1, f = _ts(p1, e0)
        f = f + e1
        x = al * b
        f = f + x
        return _renorm_fast(p0, t1, f)

    @_inline
    def _ldexp(x, e):
        """np.ldexp(x, e) for an int64 e: clipped to +-2200 first, which changes no result
        (a nonzero float times 2**2200 overflows, times 2**-2200 underflows to 0)."""
        e = e if e < 2200 else 2200
        e = e if e > -2200 else -2200
        return math.ldexp(x, e)

    @_inline
    def _exp(xh, xm, C, tth, ttm, ttl):
        """_td.exp(xh, xm): exp(xh + xm) = (h + m + l) 2**e, as _td._k_exp (the argument a
        double-double, xl = None there)."""
        (inv_l, np1, np2, np3, np4, np5, np6, np7, exp_min, exp_max,
         k3h, k3l, k4h, k4l, k5h, k5l, k6, k7, k8, k5hh, k5hl, k60, sp) = C
        ok = (xh >= exp_min) and (xh <= exp_max)  # False for NaN
        xh0 = xh
        if not ok:  # computed at 0, overwritten at the end
            xh = 0.0
            xm = 0.0
        # _k_reduce, with xm and no xl
        n = np.rint(xh * inv_l)
        t = n * np1
        t = xh + t
        x = n * np2
        t = t + x
        a = n * np3
        a1, e1 = _ts(xm, a)
        a = a1
        x = n * np4
        a2, e2 = _ts(a, x)
        rh, e3 = _ts(t, a2)
        x = n * np5
        b, e4 = _ts(e3, x)
        c, e5 = _ts(e1, e2)
        x = n * np6
        c1, e7 = _ts(c, x)
        b2, e8 = _ts(b, c1)
        e7 = e7 + e5
        x = n * np7
        e7 = e7 + x
        e7 = e7 + e4
        e7 = e7 + e8
        rm, rl = _ts(b2, e7)
        # _k_expm1_fast
        rhh, rhl = _split(rh, sp)
        s0, s1 = _tp(rh, rhh, rhl, rh, rhh, rhl)
        x, y = _split(rm, sp)
        s2, s3 = _tp(rh, rhh, rhl, rm, x, y)
        v = rh * k8
        v = v + k7
        v = v * rh
        v = v + k6
        v = v * rh
        v = v + k5l
        a5, b5 = _tp(rh, rhh, rhl, k5h, k5hh, k5hl)
        v = v * rh
        v = v + b5
        p4h, t4 = _fts(k4h, a5)
        v = v + k4l
        v = t4 + v
        x, y = _split(p4h, sp)
        a4, b4 = _tp(rh, rhh, rhl, p4h, x, y)
        w = rh * k60
        w = w + k4h
        w = w * rm
        v = v * rh
        v = v + w
        v = v + b4
        v = v + k3l
        ph, t3 = _fts(k3h, a4)
        v = t3 + v
        x, y = _split(ph, sp)
        q0, q1 = _tp(rh, rhh, rhl, ph, x, y)
        w = rh * v
        v = rm * ph
        w = w + v
        q1 = q1 + w
        s0h, s0l = _split(s0, sp)
        x, y = _split(q0, sp)
        c0, c1 = _tp(s0, s0h, s0l, q0, x, y)
        w = s0 * q1
        v = s2 * 2.0
        v = s1 + v
        v = v * q0
        w = w + v
        c1 = c1 + w
        s0 = s0 * 0.5
        big_a, a1 = _fts(s0, c0)
        e0, a2 = _fts(rh, big_a)
        b, a3 = _ts(rm, a2)
        s1 = s1 * 0.5
        cc, a4 = _ts(s2, s1)
        cc2, a5 = _ts(cc, a1)
        b2, a6 = _ts(b, cc2)
        w = rm * rm
        w = w * 0.5
        v = rh * rl
        w = w + v
        w = s3 + w
        a4 = a4 + a5
        w = w + a4
        w = w + rl
        a3 = a3 + a6
        w = w + a3
        w = w + c1
        b = b2
        d = w
        # T (1 + E)
        ni = np.int64(n)
        j = ni & 65535
        th = tth[j]
        tm = ttm[j]
        tl = ttl[j]
        thh, thl = _split(th, sp)
        e0h, e0l = _split(e0, sp)
        p0, p1 = _tp(th, thh, thl, e0, e0h, e0l)
        x, y = _split(b, sp)
        p2, p3 = _tp(th, thh, thl, b, x, y)
        x, y = _split(tm, sp)
        p4, p5 = _tp(tm, x, y, e0, e0h, e0l)
        hh, f0 = _fts(th, p0)
        mm, f1 = _ts(tm, f0)
        nn, f2 = _ts(p2, p1)
        nn2, f3 = _ts(nn, p4)
        mm2, f4 = _ts(mm, nn2)
        p3 = p3 + p5
        p5 = tm * b
        x = tl * e0
        p5 = p5 + x
        p3 = p3 + p5
        f2 = f2 + f3
        p3 = p3 + f2
        p5 = th * d
        p3 = p3 + p5
        p3 = p3 + tl
        f1 = f1 + f4
        p3 = p3 + f1
        oh, om, ol = _renorm_fast(hh, mm2, p3)
        oe = ni >> 16
        if oh < 1.0:  # only j = 0 with r < 0; then 2 oh is in [1, 2)
            oh = oh + oh
            om = om + om
            ol = ol + ol
            oe -= 1
        if not ok:
            if xh0 < exp_min:
                oh = om = ol = 0.0
            else:
                oh = om = ol = np.nan
            oe = 0
        return oh, om, ol, oe

    @_kernel
    def exp_chunk(z, m, eh, em, el, ee, C, tth, ttm, ttl):
        """exp(z_ij - m_i) = (eh + em + el) 2**ee for a (n, w) chunk: the shift exact
        (TwoSum; its low part 0 where the shift is not finite), then _td.exp."""
        n, w = z.shape
        for i in range(n):
            mi = m[i]
            for j in range(w):
                v = z[i, j]
                xh, xl = _ts(v, -mi)
                xl = xl if (xh - xh) == 0.0 else 0.0
                h, mm, l, e = _exp(xh, xl, C, tth, ttm, ttl)
                eh[i, j] = h
                em[i, j] = mm
                el[i, j] = l
                ee[i, j] = e

    @_kernel
    def mass_chunk(p, keep_h, keep_m, keep_l, sm_h, sm_m, sm_l, eps_on, ws, use_ws, bh, bm, bl, sp):
        """b = w'_c ((1 - eps) p_c + eps / C) as a td, for a (n, w) chunk of p (the
        probabilities, or a one-hot row): _deep._mass_cols's td operations. ws is (1, w) or
        (n, w), the scaled weights."""
        n, w = p.shape
        row_ws = ws.shape[0] > 1
        for i in range(n):
            for j in range(w):
                h, m, l = mul_float(keep_h, keep_m, keep_l, p[i, j], sp)
                if eps_on:
                    h, m, l = add(h, m, l, sm_h, sm_m, sm_l)
                if use_ws:
                    h, m, l = mul_float(h, m, l, ws[i if row_ws else 0, j], sp)
                bh[i, j] = h
                bm[i, j] = m
                bl[i, j] = l

    @_kernel
    def grad_chunk(eh, em, el, ee, bh, bm, bl, rh, rm, rl, ah, am, al,
                   k_col, kh, km, kl, mag_k, e_k, fh, fm, fl, fe, td_eps, u, v_out, ok_rows, sp):
        """The gradient entries (a q_c - b_c) f of a (n, w) chunk, as _deep.grad_deep's td
        steps: a q_c = a e_c R 2**ee_c and b_c each moved to the entry's exponent (the larger
        of theirs), subtracted, times f, rounded (v_out); the entry at the column k_col[i]
        (-1: none in this chunk) is given as (kh, km, kl) 2**e_k with its magnitude mag_k.
        ok_rows[i] stays True only if every entry of the row passes _deep._accept."""
        n, w = eh.shape
        for i in range(n):
            ok = ok_rows[i]
            for j in range(w):
                ph, pm, pl = mul(eh[i, j], em[i, j], el[i, j], rh[i], rm[i], rl[i], sp)
                th, tm, tl = mul(ph, pm, pl, ah[i], am[i], al[i], sp)
                b = bh[i, j]
                e_c = ee[i, j]
                if b == 0.0:
                    e_ent = e_c
                else:
                    eb = math.frexp(b)[1] if (b - b) == 0.0 else 0
                    e_ent = e_c if e_c > eb else np.int64(eb)
                if j == k_col[i]:
                    gh, gm, gl = kh[i], km[i], kl[i]
                    mag = mag_k[i]
                    e_ent = e_k[i]
                else:
                    d1 = e_c - e_ent
                    d1 = d1 if d1 > -2200 else -2200
                    t1h, t1m, t1l = _ldexp(th, d1), _ldexp(tm, d1), _ldexp(tl, d1)
                    d2 = -e_ent
                    d2 = d2 if d2 > -2200 else -2200
                    b_h, b_m, b_l = _ldexp(b, d2), _ldexp(bm[i, j], d2), _ldexp(bl[i, j], d2)
                    gh, gm, gl = add(t1h, t1m, t1l, -b_h, -b_m, -b_l)
                    mag = abs(t1h) + abs(b_h)
                gh, gm, gl = mul(gh, gm, gl, fh, fm, fl, sp)
                e = e_ent + fe
                v = _ldexp(gh + (gm + gl), e)
                bound = _ldexp(td_eps * mag * abs(fh) * 2.0, e) + 2.0**-1074 * 8
                a = abs(v)
                fine = (bound <= 3.9 * u * (a - bound)) or (a == 0.0 and bound == 0.0) or not ((v - v) == 0.0)
                ok = ok and fine
                v_out[i, j] = v
            ok_rows[i] = ok
