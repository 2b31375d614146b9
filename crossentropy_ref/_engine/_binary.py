"""The binary losses, elementwise, as scaled pairs with error bounds.

``binary_cross_entropy_with_logits``: with ``sp(x) = log(1 + e**x)``,

    loss = w (pw t sp(-x) + (1 - t) sp(x)),   sp(x) = max(x, 0) + log1p(e**-|x|).

``e**-|x|`` comes from `_pexp.exp_pair` with its power of two kept apart, so
``sp`` of a large |x| (e**-740 is subnormal) keeps its relative precision
however large the weights that multiply it; ``log1p`` is `_rows.log1p_pair`
(or its series below 2**-60). The weights are split by frexp, the products
formed in double-double, and the two terms (each non-negative when w and pw
are) added at the larger of their two powers of two. Relative error of each
term below 2**-55; the result's bound is checked per element, and only a
negative `pos_weight` can make the two terms cancel.

``binary_cross_entropy`` (probabilities): ``log p`` and ``log(1 - p)`` (with
``1 - p`` exact) to about 2**-100 by one Newton step on the double-double
``exp``, clamped at -100 as torch does.

Infinite logits follow the limits: sp(-inf) = 0, sp(inf) = inf, and a term
whose coefficient is exactly 0 (t = 1, t = 0, or a zero weight) contributes
0 even beside an infinity.
"""

from __future__ import annotations

import numpy as np

from . import _dd as dd
from ._eft import fast_two_sum
from ._pexp import exp_pair
from ._rows import log1p_pair

# Each term's relative error: exp_pair (2**-58), log1p_pair (2**-95 + the argument's),
# the double-double products and sums (2**-100): below 2**-55 with a wide margin.
TERM_EPS = 2.0**-55
# exp of arguments at or below this is below 2**-4000 in magnitude: 0 times any float64.
_SCALED_FLOOR = -3000.0


def _ws(shape):
    bufs = {}

    def ws(slot, dtype=np.float64):
        key = (slot, np.dtype(dtype))
        if key not in bufs:
            bufs[key] = np.empty(shape, dtype=dtype)
        return bufs[key]

    return ws


def softplus_pair(x: np.ndarray):
    """``(sp(x) as (hi, lo, e), sp(-x) as (hi, lo, e))`` for finite x: value (hi + lo) 2**e.

    The smaller of the two is ``log1p(a)`` with ``a = e**-|x|``; the larger
    is ``|x| + log1p(a)``, which never needs a power of two apart.
    """
    a = -np.abs(x)
    ah, al = np.empty(x.shape), np.empty(x.shape)
    ae = np.empty(x.shape, dtype=np.int64)
    exp_pair(a, None, ah, al, _ws(x.shape), scale_out=ae, floor=_SCALED_FLOOR)
    gone = a <= _SCALED_FLOOR
    # a < 2**-60: log1p(a) = a (1 - a/2 + ...) with the power of two kept; the dropped
    # a**2 / 2 relative to a is below 2**-61, kept to first order (so the rest is < 2**-120).
    small = ae < -60
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        uh, ul = np.ldexp(ah, np.maximum(ae, -1100)), np.ldexp(al, np.maximum(ae, -1100))
        lh, ll = log1p_pair(uh, ul)
        half_a = 0.5 * ah * np.ldexp(ah, np.maximum(ae, -1100))  # (a / 2) a 2**-ae, for the series
        small_h, small_l = ah, al - half_a
    th = np.where(small, small_h, lh)
    tl = np.where(small, small_l, ll)
    te = np.where(small, ae, 0)
    th = np.where(gone, 0.0, th)
    tl = np.where(gone, 0.0, tl)
    te = np.where(gone, 0, te)
    # |x| + log1p(a): the log1p part scaled down to |x|'s level (it underflows only where it
    # is far below an ulp of |x|).
    with np.errstate(under="ignore"):
        bh, bl = dd.add(np.abs(x), 0.0, np.ldexp(th, te), np.ldexp(tl, te))
    pos = x >= 0
    sp_x = (np.where(pos, bh, th), np.where(pos, bl, tl), np.where(pos, 0, te))
    sp_mx = (np.where(pos, th, bh), np.where(pos, tl, bl), np.where(pos, te, 0))
    return sp_x, sp_mx


def _coef(parts):
    """Product of floats and pairs as a double-double with a separate power of two.

    `parts` is a list of (hi, lo) pairs; each is first split by frexp so that the
    products stay in [1/16, 1] in magnitude.
    """
    h, l, e = 1.0, 0.0, 0
    for ph, pl in parts:
        m, k = np.frexp(ph)
        pl = np.ldexp(pl, -k)
        h, l = dd.mul(h, l, m, pl)
        e = e + k
    return h, l, e


def bce_with_logits(x, t, w, pw):
    """Elementwise loss as ``(hi, lo, e, bound)`` (bound absolute, in units of 2**e)."""
    shape = np.broadcast_shapes(x.shape, t.shape, *(a.shape for a in (w, pw) if a is not None))
    x, t = np.broadcast_to(x, shape), np.broadcast_to(t, shape)
    fin = np.isfinite(x)
    xf = np.where(fin, x, 0.0)
    (sxh, sxl, sxe), (smh, sml, sme) = softplus_pair(xf)
    uh, ul = fast_two_sum(np.ones(shape), -t)  # 1 - t exactly (t in [0, 1])
    one = (np.ones(shape), np.zeros(shape))
    wp = one if w is None else (np.broadcast_to(w, shape).astype(np.float64), np.zeros(shape))
    pp = one if pw is None else (np.broadcast_to(pw, shape).astype(np.float64), np.zeros(shape))
    with np.errstate(invalid="ignore", over="ignore"):
        c1h, c1l, c1e = _coef([wp, pp, (t, np.zeros(shape))])
        c2h, c2l, c2e = _coef([wp, (uh, ul)])
        t1h, t1l = dd.mul(c1h, c1l, smh, sml)  # pw t sp(-x)
        t2h, t2l = dd.mul(c2h, c2l, sxh, sxl)  # (1 - t) sp(x)
        hi, lo, e, bound = _two_terms(t1h, t1l, c1e + sme, t2h, t2l, c2e + sxe, TERM_EPS)
    hi, lo, e, bound = _infinite_logits(x, t, uh, w, pw, fin, hi, lo, e, bound)
    return hi, lo, e, bound


def _two_terms(t1h, t1l, e1, t2h, t2l, e2, eps):
    """``(t1h + t1l) 2**e1 + (t2h + t2l) 2**e2`` as ``(hi, lo, e, bound)``.

    The sum is formed at the larger exponent (the smaller term scaled down: it can
    only underflow where it is below 2**-1000 of the other); each term is within
    `eps` of its value, so the bound is ``eps (|t1| + |t2|)`` plus the underflow.
    Zero terms are exactly 0, whatever their exponent.
    """
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        z1 = (t1h == 0) & (t1l == 0)
        z2 = (t2h == 0) & (t2l == 0)
        e = np.where(z1, e2, np.where(z2, e1, np.maximum(e1, e2)))
        d1, d2 = np.maximum(e1 - e, -1100), np.maximum(e2 - e, -1100)
        a1h, a1l = np.ldexp(t1h, d1), np.ldexp(t1l, d1)
        a2h, a2l = np.ldexp(t2h, d2), np.ldexp(t2l, d2)
        hi, lo = dd.add(a1h, a1l, a2h, a2l)
        bound = eps * (np.abs(a1h) + np.abs(a2h)) + 2.0**-1074 * 4
    return hi, lo, e, bound


def _infinite_logits(x, t, uh, w, pw, fin, hi, lo, e, bound):
    """The limits at x = +-inf and NaN: a zero coefficient beside an infinity gives 0."""
    if fin.all():
        return hi, lo, e, bound
    shape = x.shape
    wv = np.ones(shape) if w is None else np.broadcast_to(w, shape)
    pv = np.ones(shape) if pw is None else np.broadcast_to(pw, shape)
    with np.errstate(invalid="ignore"):
        # x = +inf: sp(-x) = 0, sp(x) = inf: loss = w (1 - t) inf, 0 when t = 1 or w = 0.
        c_pos = wv * uh
        v_pos = np.where(c_pos == 0, 0.0, c_pos * np.inf)
        # x = -inf: sp(-x) = inf, sp(x) = 0: loss = w pw t inf, 0 when any factor is 0.
        c_neg = wv * pv * t
        v_neg = np.where(c_neg == 0, 0.0, c_neg * np.inf)
    v = np.where(x == np.inf, v_pos, np.where(x == -np.inf, v_neg, np.nan))
    hi = np.where(fin, hi, v)
    lo = np.where(fin, lo, 0.0)
    e = np.where(fin, e, 0)
    bound = np.where(fin, bound, 0.0)
    return hi, lo, e, bound


def _log_pair(ah, al):
    """``log(ah + al)`` for a pair in (0, 1], to about 2**-98 absolutely; -inf at 0.

    One Newton step on the double-double exp, which needs arguments <= 1: from
    ``y0 = log(ah)`` (float64, any decent libm), ``E = exp(y0)`` (2**-99) and
    ``r = (E - a) / a`` (a few 2**-104), ``log(a) = y0 - log1p(r) = y0 - r + r**2/2
    - r**3/3``, with |r| about 2**-52. Only results above -100 matter (torch clamps
    there), so E is never in the subnormal range.
    """
    # Entries that the masks below replace (p near 0, where y0 <= -110) may overflow or
    # divide by 0 on the way: their results are discarded.
    with np.errstate(all="ignore"):
        y0 = np.log(ah)
        ok = y0 > -110.0  # below, the clamp at -100 decides
        y = np.where(ok, y0, 0.0)
        eh, el = dd.exp(y, np.zeros_like(y))
        dh, dl = dd.add(eh, el, -ah, -al)
        qh, ql = dd.div_float(dh, dl, ah)  # / ah, then the first-order correction for al
        r = qh + (ql - qh * (al / ah))
        corr = r - r * r * (0.5 - r * (1.0 / 3.0))
        hi, lo = fast_two_sum(y, -corr)
    return np.where(ok, hi, y0), np.where(ok, lo, 0.0)


def bce_probs(p, t, w):
    """binary_cross_entropy elementwise as ``(hi, lo, e, bound)``.

    ``-log p`` is at least ``1 - p`` (>= 2**-53 when p < 1) and needs no power of two
    apart; ``-log(1 - p)`` is about p, which may be subnormal while the weight is
    huge: below p = 2**-60 it is the series ``p + p**2/2`` (the rest is below
    2**-120 of it) with p's own exponent (frexp, exact).
    """
    shape = np.broadcast_shapes(p.shape, t.shape, *(() if w is None else (w.shape,)))
    p, t = np.broadcast_to(p, shape), np.broadcast_to(t, shape)
    one_h, one_l = fast_two_sum(np.ones(shape), -p)  # 1 - p exactly
    lp_h, lp_l = _log_pair(p, np.zeros(shape))
    lq_h, lq_l = _log_pair(one_h, one_l)
    # torch's clamp at -100 (exact: -100 is a float)
    clamp_p = ~(lp_h > -100.0)
    clamp_q = ~(lq_h > -100.0)
    lp_h, lp_l = np.where(clamp_p, -100.0, lp_h), np.where(clamp_p, 0.0, lp_l)
    lq_h, lq_l = np.where(clamp_q, -100.0, lq_h), np.where(clamp_q, 0.0, lq_l)
    # -log(1 - p) for tiny p, at p's exponent.
    pm, pe = np.frexp(p)
    small = p < 2.0**-60
    qh = np.where(small, pm, -lq_h)
    ql = np.where(small, 0.5 * pm * p, -lq_l)
    qe = np.where(small, pe, 0)
    uh, ul = fast_two_sum(np.ones(shape), -t)
    wp = (np.ones(shape), np.zeros(shape)) if w is None else (np.broadcast_to(w, shape).astype(np.float64), np.zeros(shape))
    with np.errstate(invalid="ignore", over="ignore"):
        c1h, c1l, c1e = _coef([wp, (t, np.zeros(shape))])
        c2h, c2l, c2e = _coef([wp, (uh, ul)])
        t1h, t1l = dd.mul(c1h, c1l, -lp_h, -lp_l)  # t (-log p)
        t2h, t2l = dd.mul(c2h, c2l, qh, ql)  # (1 - t) (-log(1 - p))
        # Both terms >= 0 (for w >= 0): no cancellation. Each within 2**-95 of itself.
        return _two_terms(t1h, t1l, c1e, t2h, t2l, c2e + qe, 2.0**-90)


def _decimal_bce_with_logits(x: float, t: float, w: float, pw: float) -> float:
    """One element in the ``decimal`` module at 80 digits (the rare cancelling ones: pw < 0)."""
    import decimal

    with decimal.localcontext(decimal.Context(prec=80, Emin=-999999, Emax=999999)):
        D = decimal.Decimal
        xd = D(float(x))

        def sp(v):  # log(1 + e**v) without overflow
            if v > 0:
                return v + (1 + (-v).exp()).ln()
            return (1 + v.exp()).ln()

        val = D(float(w)) * (D(float(pw)) * D(float(t)) * sp(-xd) + (1 - D(float(t))) * sp(xd))
        return float(val)


def reduce(hi, lo, e, bound, reduction: str, deep_one=None, args=None):
    """'none', 'sum' or 'mean' of scaled pairs, exactly, escalating unproven elements.

    ``deep_one(i)`` recomputes element i (flat index) for the elements whose
    bound fails (and, for the reductions, all of them when the sum's does).
    """
    from . import _exactsum as xs
    from ._family import accepted
    from ._reduce import _proven, scaled_round

    if reduction == "none":
        out = np.asarray(scaled_round(hi, lo, e), dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~accepted(out, np.ldexp(bound, e) + 2.0**-53 * np.abs(out))
        if bad.any() and deep_one is not None:
            flat = out.reshape(-1)
            for i in np.flatnonzero(bad):
                flat[i] = deep_one(int(i))
        return out[()] if out.ndim == 0 else out
    total = xs.merge(xs.exact_total(hi, e), xs.exact_total(lo, e))
    if not _proven(total, xs.exact_total(bound, e)) and deep_one is not None:
        vals = np.array([deep_one(i) for i in range(hi.size)])
        total = xs.exact_total(vals)
    if reduction == "sum":
        return np.float64(xs.to_float(total))
    if hi.size == 0:
        return np.float64(np.nan)
    return np.float64(xs.ratio(total, xs.exact_total(np.array([float(hi.size)]))))
