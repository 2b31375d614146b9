"""Compiled kernels (numba) for the first tier: the same arithmetic, fused into one pass.

numba is optional (the ``fast`` extra). When it imports, and unless
``CROSSENTROPY_REF_ENGINE=numpy``, the block functions call these kernels in
place of their numpy passes. Each kernel performs the *same sequence of
float64 operations* as its numpy counterpart (no fused multiply-add, no
reassociation: numba's default strict IEEE mode), so both engines return
identical bits; ``tests/test_engine.py`` checks that on every accuracy input.
What changes is the memory traffic: one pass over the logits instead of a few
dozen, with every intermediate in registers.

Kernels are compiled on first use and cached on disk (numba's ``cache=True``),
and release the GIL, so the engine's thread pool runs blocks in parallel.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import _pexp

try:  # numba is optional
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

_SETTING = os.environ.get("CROSSENTROPY_REF_ENGINE", "auto").strip().lower()
AVAILABLE = numba is not None


def enabled() -> bool:
    """Whether the compiled kernels are used (numba present and not switched off)."""
    return AVAILABLE and _STATE["engine"] != "numpy"


_STATE = {"engine": "numpy" if _SETTING == "numpy" else "auto"}


def set_engine(name: str) -> None:
    """'numpy' or 'auto' (compiled kernels when numba is installed). For the tests."""
    _STATE["engine"] = name


if numba is not None:
    _SHIFT = 1.5 * 2.0**52  # as in _pexp (a property of float64, not a tuning)
    _jit = numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
    _inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")

    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _f2i(typingctx, x):
        """The bits of a float64 as an int64 (a bitcast, free)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))

        return types.int64(types.float64), codegen

    @intrinsic
    def _i2f(typingctx, x):
        """An int64's bits as a float64 (a bitcast, free)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.int64), codegen

    _SHIFT_BITS = int(np.array(_SHIFT).view(np.int64))

    @_inline
    def _exp_pair(xh, xl, K, t_hi, t_lo):
        """exp(xh + xl) as (hi, lo): _pexp.exp_pair, operation for operation, without branches.

        K = (FLOOR, INV_L, L1, L2, L3, C3, C4, C5): passed in, not frozen as globals,
        so that numba's on-disk cache can never hold stale constants.
        """
        floor, inv_l, l1, l2, l3, c3, c4, c5 = K
        x = xh if xh > floor else floor
        xl = xl if xh > floor else 0.0
        t = x * inv_l
        t = t + _SHIFT
        ni = _f2i(t) - _SHIFT_BITS
        n = t - _SHIFT
        r = x - n * l1
        r = r - n * l2
        r = r - n * l3
        r = r + xl
        q = r * c5
        q = q + c4
        q = q * r
        q = q + c3
        q = q * r
        q = q + 0.5
        q = q * r
        q = q * r
        q = q + r
        j = ni & 127
        th = t_hi[j]
        lo = th * q
        lo = lo + t_lo[j]
        m = ni >> 7
        e1 = m if m > -1022 else -1022
        e2 = m - e1
        e2 = e2 if e2 > -1022 else -1022
        f1 = _i2f((e1 + 1023) << 52)
        f2 = _i2f((e2 + 1023) << 52)
        return (th * f1) * f2, (lo * f1) * f2

    @_inline
    def _two_sum(a, b):
        s = a + b
        bp = s - a
        ap = s - bp
        return s, (a - ap) + (b - bp)

    @_jit
    def row_stats(z, m_out, k_out, sh_out, sl_out, tiny_out, th, tl, K, t_hi, t_lo, minx):
        """Per position of z (bn, C, bs): max, first argmax, s = sum_{j != k} exp(z_j - m) as a
        pair (the halving TwoSum tree of _rows.tree_sum), and the count of terms below
        exp(_MINX). `th`, `tl` are (C,) scratch arrays. Positions whose maximum is not
        finite are computed with a shift of 0 (callers mask them)."""
        bn, c, bs = z.shape
        for i in range(bn):
            for p in range(bs):
                m = z[i, 0, p]
                k = 0
                for j in range(1, c):
                    v = z[i, j, p]
                    if v > m or (v != v and m == m):
                        m = v
                        k = j
                    if m != m:
                        break
                m_out[i, 0, p] = m
                k_out[i, 0, p] = k
                mm = m if (m - m) == 0.0 else 0.0
                tiny = 0
                for j in range(c):
                    v = z[i, j, p]
                    s = v - mm
                    bp = s - v
                    ap = s - bp
                    err = (v - ap) - (bp + mm)
                    tiny += (s < minx) & (s > -np.inf)
                    h, l = _exp_pair(s, err, K, t_hi, t_lo)
                    th[j] = h
                    tl[j] = l
                th[k] = 0.0
                tl[k] = 0.0
                n = c
                while n > 1:
                    half = n // 2
                    for j in range(half):
                        a = th[j]
                        b = th[n - half + j]
                        s = a + b
                        bp = s - a
                        ap = s - bp
                        e = (a - ap) + (b - bp)
                        tl[j] = (tl[j] + tl[n - half + j]) + e
                        th[j] = s
                    n -= half
                sh_out[i, 0, p] = th[0]
                sl_out[i, 0, p] = tl[0]
                tiny_out[i, 0, p] = tiny

    @_jit
    def row_stats_2d(z, m_out, k_out, sh_out, sl_out, tiny_out, th, tl, K, t_hi, t_lo, minx):
        """row_stats for a C-contiguous (bn, C) block (bs = 1): contiguous loops that vectorize."""
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
            else:  # as numpy's argmax: the first NaN
                for j in range(c):
                    if row[j] != row[j]:
                        k = j
                        m = row[j]
                        break
            m_out[i] = m
            k_out[i] = k
            mm = m if (m - m) == 0.0 else 0.0
            tiny = 0
            for j in range(c):
                v = row[j]
                s = v - mm
                bp = s - v
                ap = s - bp
                err = (v - ap) - (bp + mm)
                tiny += (s < minx) & (s > -np.inf)
                h, l = _exp_pair(s, err, K, t_hi, t_lo)
                th[j] = h
                tl[j] = l
            th[k] = 0.0
            tl[k] = 0.0
            n = c
            while n > 1:
                half = n // 2
                off = n - half
                for j in range(half):
                    a = th[j]
                    b = th[off + j]
                    s = a + b
                    bp = s - a
                    ap = s - bp
                    tl[j] = (tl[j] + tl[off + j]) + ((a - ap) + (b - bp))
                    th[j] = s
                n -= half
            sh_out[i] = th[0]
            sl_out[i] = tl[0]
            tiny_out[i] = tiny


def constants() -> tuple:
    """The arguments every kernel takes for exp_pair: (K, t_hi, t_lo)."""
    t_hi, t_lo = _pexp.table()
    k = (_pexp.FLOOR, _pexp.INV_L, _pexp.L1, _pexp.L2, _pexp.L3, _pexp.C3, _pexp.C4, _pexp.C5)
    return k, np.ascontiguousarray(t_hi), np.ascontiguousarray(t_lo)
