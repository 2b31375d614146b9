"""The deep tier: positions whose first-tier bound failed, recomputed in triple-double.

Every quantity of a position is carried to about 2**-150 (`_td`): the
terms ``exp(z_j - m)`` with their binary exponent kept apart (so e**-800 is
no less precise than e**-8), their sum ``s`` by a pairwise tree of td
additions at the largest exponent of the row, ``L = log1p(s)``, then the
function's result. A result whose two terms agree in fewer than about 95
leading bits is within 4 ulp here: the bounds, about ``2**-148`` of the
terms' magnitudes, are checked result by result, and the rare position
with a result beyond them goes on to the decimal tier (`_deepest`), which
also recognises the exact zeros.

Positions are processed in groups of at most `GROUP` logits (a row of
more classes is a group of its own), and a group's classes in chunks of
`CLASS_CHUNK`, so the td temporaries (dozens per logit) have the chunk's
width: the tier keeps only ``exp(z_j - m)`` (four arrays) for the whole
group. With the compiled engine, the per-logit td work runs as compiled
kernels: the pairwise sums (`_jit.td_tree`), and the exponentials, the
masses and the gradient entries (`_tdjit`), each `_td`'s operations in
the same order, so both engines give the same bits here.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from . import _deepest as dec
from . import _jit
from . import _td as td
from . import _tdjit
from ._blocks import run_blocks
from ._driver import count
from ._eft import two_sum
from ._loss import Problem

GROUP = 1 << 14
CLASS_CHUNK = 1 << 13
_NO_EXP = np.iinfo(np.int64).min // 2  # the exponent of a zero term (no term at all)
# Relative error of the td results below, generously: a dozen td operations at
# 2**-150 .. 2**-155 each (see _td), summed over at most 2**20 terms by the tree.
TD_EPS = 2.0**-140
U = 2.0**-53


def _in_parallel(fn, groups: list) -> None:
    """Run ``fn(group)`` for every group on the engine's thread pool (numpy releases the
    GIL inside the td operations); the groups write disjoint positions."""
    run_blocks(lambda g, _unused: fn(g), [(g, None) for g in groups])


def _groups(n_pos: int, c: int):
    step = max(1, GROUP // max(c, 1))
    for i in range(0, n_pos, step):
        yield slice(i, min(i + step, n_pos))


def _tree(h, m, l, copy: bool = True):
    """Sum tds along axis 1 (a pairwise tree of td additions); returns (P,) parts.
    ``copy=False`` sums in place, for arrays the caller no longer needs."""
    if _jit.enabled():
        # The same tree, compiled: C-contiguous copies where asked for (or needed).
        h, m, l = (np.array(a, dtype=np.float64, order="C", copy=copy or None) for a in (h, m, l))
        _jit.td_tree(h, m, l)
        return h[:, 0], m[:, 0], l[:, 0]
    if copy:
        h, m, l = h.copy(), m.copy(), l.copy()
    n = h.shape[1]
    while n > 1:
        half = n // 2
        off = n - half
        sh, sm, sl = td.add(h[:, :half], m[:, :half], l[:, :half], h[:, off:n], m[:, off:n], l[:, off:n])
        h[:, :half], m[:, :half], l[:, :half] = sh, sm, sl
        n -= half
    return h[:, 0], m[:, 0], l[:, 0]


def _chunks(c: int):
    """The classes of a row in chunks of at most CLASS_CHUNK: the deep tier's temporaries
    have the chunk's width, not the row's (a row of 32000 classes is one group)."""
    return [(c0, min(c, c0 + CLASS_CHUNK)) for c0 in range(0, max(c, 1), CLASS_CHUNK)]


def _scale(h, m, l, e):
    """Parts times 2**e (int array), exact unless a part leaves the normal range."""
    with np.errstate(over="ignore", under="ignore"):
        e = np.maximum(e, -2200)
        return np.ldexp(h, e), np.ldexp(m, e), np.ldexp(l, e)


class _Rows:
    """What the deep tier knows of a group of positions Z (P, C), all with a finite maximum."""

    def __init__(self, z: np.ndarray, keep_x: bool = True):
        self.z = z
        n, c = z.shape
        rows = np.arange(n)
        self.k = np.argmax(z, axis=1)
        self.m = z[rows, self.k]
        # exp(z_j - m) = (eh + em + el) 2**ee, exactly (1, 0, 0, 0) at the maximum; computed
        # a chunk of classes at a time, with s summed per chunk at the chunk's largest exponent.
        self.eh, self.em, self.el = np.empty((n, c)), np.empty((n, c)), np.empty((n, c))
        self.ee = np.empty((n, c), dtype=np.int64)
        if keep_x:
            self.xh, self.xl = np.empty((n, c)), np.empty((n, c))
        parts = []
        compiled = _jit.enabled()
        for c0, c1 in _chunks(c):
            if keep_x or not compiled:
                with np.errstate(invalid="ignore"):
                    xh, xl = two_sum(z[:, c0:c1], -self.m[:, None])
                xl = np.where(np.isfinite(xh), xl, 0.0)
                if keep_x:
                    self.xh[:, c0:c1], self.xl[:, c0:c1] = xh, xl
            if compiled:  # the same shift and td.exp, compiled (_tdjit: the same bits)
                th, tm, tl = (np.empty((n, c1 - c0)) for _ in range(3))
                te = np.empty((n, c1 - c0), dtype=np.int64)
                exp_c, tables = _tdjit.constants()
                _tdjit.exp_chunk(z[:, c0:c1], self.m, th, tm, tl, te, exp_c, *tables)
            else:
                th, tm, tl, te = td.exp(xh, xl)
                del xh, xl
            self.eh[:, c0:c1], self.em[:, c0:c1], self.el[:, c0:c1], self.ee[:, c0:c1] = th, tm, tl, te
            # The chunk's terms other than the maximum's, summed at the chunk's largest exponent.
            inside = (self.k >= c0) & (self.k < c1)
            kk = self.k[inside] - c0
            th[inside, kk] = tm[inside, kk] = tl[inside, kk] = 0.0
            te = np.where(th != 0, te, _NO_EXP)
            sec = np.max(te, axis=1)
            empty = sec < -(1 << 40)
            base = np.where(empty, 0, sec)
            parts.append((*_tree(*_scale(th, tm, tl, te - base[:, None]), copy=False), sec))
            del th, tm, tl, te
        # s = (sh + sm + sl) 2**se: the chunks' sums moved to the largest exponent and added
        # (exact moves unless a part leaves the float range, far below the bound's 2**-140).
        self.se = np.max([sec for *_, sec in parts], axis=0)
        self.se = np.where(self.se < -(1 << 40), 0, self.se)
        acc = None
        for ph, pm, pl, sec in parts:
            moved = _scale(ph, pm, pl, np.where(sec < -(1 << 40), 0, sec) - self.se)
            acc = moved if acc is None else td.add(*acc, *moved)
        sh, sm, sl = acc
        # L = log1p(s) = (lh + lm + ll) 2**le.
        self.sh, self.sm, self.sl = td.renorm(sh, sm, sl)
        self.lh, self.lm, self.ll, self.le = td.log1p(self.sh, self.sm, self.sl, self.se)

    def L_plain(self):
        return _scale(self.lh, self.lm, self.ll, self.le)

    def recip_one_plus_s(self):
        """R = 1 / (1 + s) as a plain td."""
        s = _scale(self.sh, self.sm, self.sl, self.se)
        o = td.add_float(*s, 1.0)
        return td.recip(*o)


class _Positions:
    """The rows (C,) of `a3` (N, C, S) at positions `idx` ((P, 2) of (n, s)), gathered only
    when asked for: ``rows[i]`` one row, ``rows[sel]`` (k, C). The deep tier takes its
    positions a group at a time, so that it never copies all of them at once (a
    self-distillation gradient escalates every position)."""

    def __init__(self, a3: np.ndarray, idx: np.ndarray):
        self.a3, self.idx = a3, idx
        self.shape = (len(idx), a3.shape[1])

    def __getitem__(self, sel):
        i = self.idx[sel]
        if i.ndim == 1:
            return self.a3[i[0], :, i[1]]
        return self.a3[i[:, 0], :, i[:, 1]]

    def cols(self, sel, cols) -> np.ndarray:
        """The entries (k, w) of the positions `sel` (an index array) at the classes `cols`:
        a slice, or an index array (k, w) of classes per position."""
        i = self.idx[sel]
        if isinstance(cols, slice):
            cols = np.arange(*cols.indices(self.shape[1]))[None, :]
        return self.a3[i[:, 0, None], cols, i[:, 1, None]]


def _rows_of(z3: np.ndarray, idx: np.ndarray) -> _Positions:
    return _Positions(z3, idx)


def _finite_max(z: _Positions) -> np.ndarray:
    """Whether each position's maximum is finite, a group of positions at a time."""
    out = np.empty(z.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        for g in _groups(z.shape[0], z.shape[1]):
            out[g] = np.isfinite(np.max(z[np.arange(g.start, g.stop)], axis=1))
    return out


def _accept(value, bound) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(value)
        return (bound <= 3.9 * U * (a - bound)) | ((a == 0) & (bound == 0)) | ~np.isfinite(value)


def _run(z3, out3, idx, compute, fallback, per_class: bool) -> None:
    """Compute positions `idx` by `compute(rows) -> (values, bounds)`; unproven ones by `fallback`."""
    z = _rows_of(z3, idx)
    fin = _finite_max(z)
    if not fin.all():  # no finite shift: NaN (or the logsumexp rules), done by the decimal tier's caller
        for i in np.flatnonzero(~fin):
            n, s = idx[i]
            v = fallback(z[i])
            if per_class:
                out3[n, :, s] = v
            else:
                out3[n, 0, s] = v
    keep = np.flatnonzero(fin)
    c = z.shape[1]
    for g in _groups(len(keep), c):
        sel = keep[g]
        vals, bounds = compute(_Rows(z[sel]))
        ok = _accept(vals, bounds)
        ok_pos = ok.all(axis=1) if per_class else ok
        for j, i in enumerate(sel):
            n, s = idx[i]
            if ok_pos[j]:
                v = vals[j]
            else:
                count("deepest", 1)
                v = fallback(z[i])
            if per_class:
                out3[n, :, s] = v
            else:
                out3[n, 0, s] = v


def logsumexp_deep(z3, out3, idx) -> None:
    def compute(r: _Rows):
        Lh, Lm, Ll = r.L_plain()
        small = r.m == 0  # the result is L itself, possibly far below the float64 range
        vh, vm, vl = td.add_float(Lh, Lm, Ll, r.m)
        v = td.to_float(vh, vm, vl)
        v = np.where(small, td.to_float(r.lh, r.lm, r.ll, r.le), v)
        bound = TD_EPS * (np.abs(r.m) + np.abs(Lh))
        return v, np.where(small, TD_EPS * np.abs(v), bound)

    def fallback(z):
        m = np.max(z)
        if np.isnan(z).any():
            return np.nan
        return m if not np.isfinite(m) else dec.logsumexp(z)

    _run(z3, out3, idx, compute, fallback, per_class=False)


def log_softmax_deep(z3, out3, idx) -> None:
    def compute(r: _Rows):
        Lh, Lm, Ll = r.L_plain()
        # (xh + xl) - L, both terms <= 0 after the sign change: no cancellation.
        vh, vm, vl = td.add_dd(-Lh[:, None], -Lm[:, None], -Ll[:, None], r.xh, r.xl)
        v = td.to_float(vh, vm, vl)
        # The maximum's entry is -L exactly, kept at L's own exponent (L may be tiny).
        v[np.arange(r.z.shape[0]), r.k] = -td.to_float(r.lh, r.lm, r.ll, r.le)
        v = np.where(np.isneginf(r.xh), -np.inf, v)
        return v, TD_EPS * np.abs(v)

    _run(z3, out3, idx, compute, _nan_or(dec.log_softmax), per_class=True)


def softmax_deep(z3, out3, idx) -> None:
    def compute(r: _Rows):
        rh, rm, rl = r.recip_one_plus_s()
        qh, qm, ql = td.mul(r.eh, r.em, r.el, rh[:, None], rm[:, None], rl[:, None])
        v = td.to_float(qh, qm, ql, r.ee)
        return v, TD_EPS * np.abs(v)

    _run(z3, out3, idx, compute, _nan_or(dec.softmax), per_class=True)


def _nan_or(f):
    def g(z):
        return np.full(z.shape, np.nan) if not np.isfinite(np.max(z)) else f(z)

    return g


# --- the loss and the gradient --------------------------------------------------------


def _td_const(x: Fraction):
    h = float(x)
    r = x - Fraction(h)
    m = float(r)
    return h, m, float(r - Fraction(m))


def _position_targets(pb: Problem, idx: np.ndarray):
    """(p (P, C) rows gathered on demand, or None; y (P,) or None; valid (P,))."""
    if pb.probabilities:
        return _Positions(pb.p, idx), None, np.ones(len(idx), dtype=bool)
    y = pb.y[idx[:, 0], idx[:, 1]]
    return None, y, y != pb.ignore_index


def _mass_td(pb: Problem, p, y, c: int, n: int):
    """b_c = w'_c ((1 - eps) p_c + eps / C) as td (n, C), in the scaled weights w'."""
    return _mass_cols(pb, p, y, c, np.arange(c)[None, :])


def _mass_cols(pb: Problem, p, y, c: int, cols: np.ndarray):
    """b at the classes `cols` ((1, w) or (n, w)) of each position: `p` the probabilities
    there (n, w), or `y` the class indices (n,)."""
    keep = _td_const(1 - Fraction(pb.eps))
    smooth = _td_const(Fraction(pb.eps) / c)
    if p is None:
        p = (cols == y[:, None]).astype(np.float64)  # one-hot
    if _jit.enabled():  # the same td operations, compiled (_tdjit: the same bits)
        p = np.ascontiguousarray(p, dtype=np.float64)
        out = tuple(np.empty(p.shape) for _ in range(3))
        ws = np.zeros((1, 1)) if pb.ws is None else np.ascontiguousarray(pb.ws[cols], dtype=np.float64)
        _tdjit.mass_chunk(p, *keep, *smooth, bool(pb.eps), ws, pb.ws is not None, *out, td._SPLITTER)
        return out
    bh, bm, bl = td.mul_float(keep[0], keep[1], keep[2], p)
    if pb.eps:
        bh, bm, bl = td.add(bh, bm, bl, *(np.full(bh.shape, v) for v in smooth))
    if pb.ws is not None:
        bh, bm, bl = td.mul_float(bh, bm, bl, pb.ws[cols])
    return bh, bm, bl


def loss_deep(pb: Problem, idx: np.ndarray):
    """The loss at positions `idx` as ``(parts, exponent, bound)``: the value is
    ``sum(parts) 2**exponent`` (parts: a tuple of (k,) arrays), within ``bound 2**exponent``."""
    k = len(idx)
    out = [np.zeros(k), np.zeros(k), np.zeros(k)]
    ex = np.zeros(k, dtype=np.int64)
    p, y, valid = _position_targets(pb, idx)
    z = _rows_of(pb.z, idx)
    fin = _finite_max(z)
    use = np.flatnonzero(valid & fin)
    out[0][valid & ~fin] = np.nan
    c = pb.c
    def group(g: slice) -> None:
        sel = use[g]
        r = _Rows(z[sel])
        Lh, Lm, Ll = r.L_plain()
        if not pb.probabilities and pb.eps == 0.0:
            # w_y (d_y + L): d_y = -(xh_y + xl_y) exactly; scaled weight wm_y 2**we_y.
            rows = np.arange(len(sel))
            yy = y[sel]
            dh, dl = -r.xh[rows, yy], -r.xl[rows, yy]
            at_max = dh == 0
            vh, vm, vl = td.add_dd(Lh, Lm, Ll, dh, np.where(np.isfinite(dh), dl, 0.0))
            e = np.zeros(len(sel), dtype=np.int64)
            # d_y = 0: the value is L at its own exponent (it may be far below the float range).
            vh, vm, vl = (np.where(at_max, a, b) for a, b in zip((r.lh, r.lm, r.ll), (vh, vm, vl)))
            e = np.where(at_max, r.le, e)
            if pb.w is not None:
                wm = pb.wm[yy]
                vh, vm, vl = td.mul_float(vh, vm, vl, wm)
                e = e + pb.we[yy]
                zero = wm == 0
                vh, vm, vl = (np.where(zero, 0.0, a) for a in (vh, vm, vl))
            inf = ~np.isfinite(dh)
            if inf.any():
                wv = np.ones(len(sel)) if pb.w is None else pb.w[yy]
                vh = np.where(inf, np.where(wv == 0, 0.0, wv * np.inf), vh)
                vm, vl = np.where(inf, 0.0, vm), np.where(inf, 0.0, vl)
            bound = TD_EPS * np.abs(vh)
        else:
            # sum_c b_c (d_c + L), all in td; b in the weights scaled by 2**-w_exp.
            bh, bm, bl = _mass_td(pb, None if p is None else p[sel], None if y is None else y[sel], c, len(sel))
            th, tm, tl = td.add_dd(Lh[:, None], Lm[:, None], Ll[:, None], -r.xh, -r.xl)
            ph, pm, pl = td.mul(bh, bm, bl, th, tm, tl)
            zero = (bh == 0) & (bm == 0)
            inf = ~np.isfinite(r.xh)
            with np.errstate(invalid="ignore"):  # bh * inf where bh = 0: NaN, replaced by the outer where
                ph = np.where(zero & inf, 0.0, np.where(inf, bh * np.inf, ph))  # 0 log 0 = 0
            pm, pl = np.where(inf, 0.0, pm), np.where(inf, 0.0, pl)
            babs = np.sum(np.abs(ph), axis=1)
            fin_rows = np.all(np.isfinite(ph), axis=1)
            vh, vm, vl = _tree(np.where(np.isfinite(ph), ph, 0.0), pm, pl)
            vh = np.where(fin_rows, vh, np.sum(ph, axis=1))
            e = np.full(len(sel), pb.w_exp if pb.ws is not None else 0, dtype=np.int64)
            bound = TD_EPS * babs
        out[0][sel], out[1][sel], out[2][sel] = vh, vm, vl
        ex[sel] = e
        # A position whose value the td bound cannot prove goes to the decimal tier.
        weak = ~_accept(td.to_float(vh, vm, vl), bound)
        for j in np.flatnonzero(weak):
            i = sel[j]
            count("deepest", 1)
            v = dec.loss(z[i], None if p is None else p[i], None if y is None else int(y[i]), pb.w, pb.eps)
            h, rest = _decimal_parts(v)
            out[0][i], out[1][i], out[2][i], ex[i] = h, rest, 0.0, 0

    _in_parallel(group, list(_groups(len(use), c)))
    return tuple(out), ex, np.zeros(k)


def _decimal_parts(v):
    import decimal

    with decimal.localcontext(decimal.Context(prec=max(60, len(v.as_tuple().digits) + 5))):
        h = float(v)
        lo = float(v - decimal.Decimal(h)) if np.isfinite(h) else 0.0
    return h, lo


def grad_deep(pb: Problem, idx: np.ndarray, g3: np.ndarray, denom: Fraction | None) -> None:
    """Recompute the gradient at positions `idx` into `g3`, in td (decimal where unproven)."""
    p, y, valid = _position_targets(pb, idx)
    z = _rows_of(pb.z, idx)
    fin = _finite_max(z)
    c = pb.c
    for i in np.flatnonzero(~valid):
        g3[idx[i, 0], :, idx[i, 1]] = 0.0
    for i in np.flatnonzero(valid & ~fin):
        g3[idx[i, 0], :, idx[i, 1]] = np.nan
    use = np.flatnonzero(valid & fin)
    # 1 / D as td, with the weights' power of two: g = (a' q - b') 2**w_exp / D.
    scale = Fraction(2) ** (pb.w_exp if pb.ws is not None else 0)
    factor = scale / denom if denom is not None else scale
    fh, fm, fl = _td_const(factor / Fraction(2) ** _exp_of(factor))
    fe = _exp_of(factor)
    def group(g: slice) -> None:
        sel = use[g]
        r = _Rows(z[sel], keep_x=False)
        n = len(sel)
        rows = np.arange(n)
        ysel = None if y is None else y[sel]

        def mass(cols):
            return _mass_cols(pb, None if p is None else p.cols(sel, cols), ysel, c, cols)

        # a = sum_c b_c, a chunk of classes at a time.
        a = None
        for c0, c1 in _chunks(c):
            part = _tree(*mass(np.arange(c0, c1)[None, :]), copy=False)
            a = part if a is None else td.add(*a, *part)
        ah, am, al = a
        rh, rm, rl = r.recip_one_plus_s()
        # The maximum where q_k > 1/2: (a - b_k) - a s / (1 + s), without cancellation in 1 - q_k
        # (there e_k = 1, so the entry's exponent is that of a or b_k: plain values).
        near = rh > 0.5
        if near.any():
            bk = mass(r.k[:, None])
            rest = td.sub(ah, am, al, *(b[:, 0] for b in bk))
            # a s / (1 + s) at s's own exponent (s may be e**-740), rest at its own.
            u = td.mul(*td.mul(r.sh, r.sm, r.sl, rh, rm, rl), ah, am, al)
            _, er = np.frexp(rest[0])
            ek = np.where(rest[0] == 0, r.se, np.maximum(r.se, er.astype(np.int64)))
            rest_s = _scale(*rest, -ek)
            u_s = _scale(*u, r.se - ek)
            at_k = td.sub(*rest_s, *u_s)
            mag_k = np.abs(rest_s[0]) + np.abs(u_s[0])
        ok = np.ones(n, dtype=bool)
        n_idx, s_idx = idx[sel, 0][:, None], idx[sel, 1][:, None]
        if _jit.enabled():
            if not near.any():
                at_k = (np.zeros(n), np.zeros(n), np.zeros(n))
                mag_k, ek = np.zeros(n), np.zeros(n, dtype=np.int64)
            for c0, c1 in _chunks(c):
                cols = np.arange(c0, c1)[None, :]
                bh, bm, bl = mass(cols)
                k_col = np.where(near & (r.k >= c0) & (r.k < c1), r.k - c0, -1).astype(np.int64)
                v = np.empty((n, c1 - c0))
                # the steps below, compiled (_tdjit.grad_chunk: the same bits)
                _tdjit.grad_chunk(r.eh[:, c0:c1], r.em[:, c0:c1], r.el[:, c0:c1], r.ee[:, c0:c1], bh, bm, bl,
                                  rh, rm, rl, ah, am, al, k_col, *at_k, mag_k, ek.astype(np.int64),
                                  fh, fm, fl, np.int64(fe), TD_EPS, U, v, ok, td._SPLITTER)
                g3[n_idx, cols, s_idx] = v
        for c0, c1 in _chunks(c) if not _jit.enabled() else ():
            cols = np.arange(c0, c1)[None, :]
            bh, bm, bl = mass(cols)
            eh, em, el, ee = (a[:, c0:c1] for a in (r.eh, r.em, r.el, r.ee))
            # a q_c = a e_c R 2**ee_c and b_c, each at its own exponent: the entry is formed at
            # the larger of the two, so that a tiny entry (e**-740 times a weight of 1e300)
            # keeps its relative precision, and terms that cancel meet at the same exponent.
            t1 = td.mul(*td.mul(eh, em, el, rh[:, None], rm[:, None], rl[:, None]),
                        ah[:, None], am[:, None], al[:, None])
            _, eb = np.frexp(bh)
            e_ent = np.where(bh == 0, ee, np.maximum(ee, eb.astype(np.int64)))
            t1s = _scale(*t1, ee - e_ent)
            del t1
            b_s = _scale(bh, bm, bl, -e_ent)
            del bh, bm, bl
            gh, gm, gl = td.sub(*t1s, *b_s)
            mag = np.abs(t1s[0]) + np.abs(b_s[0])
            del t1s, b_s
            here = np.flatnonzero(near & (r.k >= c0) & (r.k < c1))
            if len(here):
                kk = r.k[here] - c0
                for arr, val in zip((gh, gm, gl), at_k):
                    arr[here, kk] = val[here]
                mag[here, kk] = mag_k[here]
                e_ent[here, kk] = ek[here]
            gh, gm, gl = td.mul(gh, gm, gl, fh, fm, fl)
            v = td.to_float(gh, gm, gl, e_ent + fe)
            with np.errstate(over="ignore"):
                bound = np.ldexp(TD_EPS * mag * abs(fh) * 2, e_ent + fe) + 2.0**-1074 * 8
            ok &= _accept(v, bound).all(axis=1)
            g3[n_idx, cols, s_idx] = v
        for j in np.flatnonzero(~ok):
            i = sel[j]
            count("deepest", 1)
            g3[idx[i, 0], :, idx[i, 1]] = dec.grad(z[i], None if p is None else p[i],
                                                   None if y is None else int(y[i]), pb.w, pb.eps, denom)

    _in_parallel(group, list(_groups(len(use), c)))


def _exp_of(x: Fraction) -> int:
    """e with |x| / 2**e in [1, 2) (0 for x = 0)."""
    if x == 0:
        return 0
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if abs(x) < Fraction(2) ** e:
        e -= 1
    return e
