"""The gradient of cross_entropy with respect to the logits, written into its output.

An entry is ``g_c = (a q_c - b_c) / D`` with ``q = softmax(z)``, ``b`` the
target mass, ``a = sum_c b_c`` and D the 'mean' denominator (1 otherwise).

*Index targets without smoothing* (``b = w_y e_y``): every entry but the
target's is ``f q_c`` with ``f = w_y / D``, a product that never cancels; it
is formed as ``e_c F`` with ``F = f / (1 + s)`` a double-double per position,
exactly multiplied and rounded once (`_family.mul_round`): within ``u + 2**-56``
of its value. The target's entry ``f (q_y - 1)`` cancels by at most a factor
3 when y is not the maximum (q_y <= 1/2), and is computed in double-double;
when y is the maximum it is ``-f s / (1 + s)``, known to the relative
accuracy of s, which the first pass bounds: a position whose s is not known
to 2.9u (s in the subnormal range) goes to the deep tier.

*Soft targets and smoothing* can cancel to any degree (``kappa_c = (a q_c +
b_c) / |g_c|``); they take the double-double tier of `_softgrad` (every
quantity to about 2**-100), which marks the positions holding an entry its
bound cannot prove; those go to the deep tier.

Weights enter scaled by powers of two (see `_loss`), so that the mass never
overflows whatever the weights; the power of two and the denominator are
applied in the final rounding.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _dd as dd
from . import _jit
from . import _softgrad as sg
from ._eft import two_sum
from ._pexp import exp_pair
from ._blocks import iter_blocks, run_blocks, workspace
from ._driver import count
from ._family import _fill, mul_round
from ._dd import smoothing_pairs
from ._loss import Problem
from ._rows import U, rows, rows_scaled


def _scale_pair(h, l, e):
    """``(h + l) 2**e`` as a pair, exact while no part leaves the normal range."""
    return np.ldexp(h, e), np.ldexp(l, e)


def index_grad_block(pb: Problem, zb, yb, g, ws, inv_d) -> np.ndarray:
    """Fill the block `g` for index targets without smoothing; returns the escalation mask.

    ``inv_d = (h, l, e)``: 1 / D as a pair times 2**e (1 for 'sum' and 'none').
    """
    compiled = _jit.enabled()
    valid = yb != pb.ignore_index
    yc = np.where(valid, yb, 0)
    ih, il, ie = inv_d
    # f = w_y / D as a pair with exponent: w_y = wm_y 2**we_y.
    if pb.w is None:
        fh, fl, fe = np.full(yc.shape, ih), np.full(yc.shape, il), np.full(yc.shape, ie)
    else:
        wm = np.take(pb.wm, yc)
        fh, fl = dd.mul_float(ih, il, wm)
        fe = np.take(pb.we, yc) + ie
    fh = np.where(valid, fh, 0.0)
    fl = np.where(valid, fl, 0.0)
    fused = False
    if compiled and _jit.contiguous_rows(zb) and _jit.contiguous_rows(g):
        with np.errstate(over="ignore"):
            f2h, f2l = _scale_pair(fh, fl, fe)
        # f 2**fe as a plain pair where that is safe (the entries are then exact up to their
        # one rounding): the fused kernel writes them with one exp per logit.
        fused = bool(np.all((np.abs(f2h) < 2.0**990) & ((np.abs(f2h) >= 2.0**-990) | (f2h == 0))))
    if fused:
        r = rows_scaled(zb, f2h, f2l, g)
        xh = xl = eh = el = None
    else:
        got = rows(zb, ws, keep_terms=not compiled)
        r, (xh, xl, eh, el) = (got, (None,) * 4) if compiled else got
    rh, rl = dd.recip_one_plus(r.sh, r.sl)  # R = 1 / (1 + s), 2**-102
    Fh, Fl = dd.mul(fh, fl, rh, rl)  # F = f R, times 2**fe
    # Fold 2**fe into F where F 2**fe is a normal float (then only subnormal entries, which
    # carry no accuracy claim, could round differently); elsewhere scale the entries after.
    with np.errstate(over="ignore"):
        sFh, sFl = _scale_pair(Fh, Fl, fe)
    # (Below 2**995 too: mul_round splits F by Dekker's method, which overflows beyond.)
    folded = (np.abs(sFh) < 2.0**995) & ((np.abs(sFh) >= 2.0**-1022) | (Fh == 0))
    Gh, Gl = (sFh, sFl) if folded.all() else (np.where(folded, sFh, Fh), np.where(folded, sFl, Fl))
    if fused:
        folded = np.ones(folded.shape, dtype=bool)  # the kernel applied f 2**fe directly
    elif compiled:
        _fill(zb, r.m, Gh, Gl, g)
    else:
        mul_round(eh, el, Gh, Gl, g, ws)
    if not folded.all():
        extra = np.where(folded, 0, fe)
        with np.errstate(over="ignore"):
            g[...] = np.ldexp(g, np.broadcast_to(extra, g.shape))
    # The target's entry f (q_y - 1).
    at_max = yc == r.k
    with np.errstate(invalid="ignore", over="ignore"):
        if compiled:  # exp(z_y - m) for the target only, by the numpy engine's pair exp
            mm = np.where(r.ok, r.m, 0.0)
            dh, dl = two_sum(np.take_along_axis(zb, yc, axis=1), -mm)
            dl = np.where(np.isfinite(dh), dl, 0.0)
            ey_h, ey_l = np.empty(dh.shape), np.empty(dh.shape)
            exp_pair(dh, dl, ey_h, ey_l, workspace(dh.shape))
        else:
            ey_h = np.take_along_axis(eh, yc, axis=1)
            ey_l = np.take_along_axis(el, yc, axis=1)
        qh, ql = dd.mul(ey_h, ey_l, rh, rl)
        th, tl = dd.add(qh, ql, -1.0, 0.0)  # q_y - 1 in [-1, -1/2]: no cancellation beyond 3
        # y = k: q_k - 1 = -s / (1 + s), without the cancellation.
        sh, sl = dd.mul(r.sh, r.sl, rh, rl)
        th = np.where(at_max, -sh, th)
        tl = np.where(at_max, -sl, tl)
        vh, vl = dd.mul(th, tl, fh, fl)
        gy = np.ldexp(vh + vl, fe)
    np.put_along_axis(g, yc, gy, axis=1)
    np.copyto(g, np.nan, where=~r.ok)
    np.copyto(g, 0.0, where=~valid)  # an ignored position is exactly 0, whatever else is NaN
    # y = k: its entry is as accurate as s; escalate where s is not known to 2.9 u.
    # And a term in the subnormal range carries an absolute error (2**-1074), which a
    # factor |F 2**fe| above 1 would lift into the normal range: escalate those too.
    with np.errstate(invalid="ignore", over="ignore"):
        loose = at_max & ~(r.s_err <= 2.9 * U * r.sh)
        if np.any(r.tiny):
            loose |= (r.tiny > 0) & ~(np.abs(np.ldexp(Fh, fe)) <= 1.0)
    return loose & valid & r.ok


def soft_grad_block(pb: Problem, zb, tb, g, den_eff: float | None) -> np.ndarray:
    """Fill the block `g` for probability targets or smoothing (double-double tier).

    `tb` is the probability block (bn, C, bs) or the index block (bn, 1, bs).
    `den_eff` divides the scaled result (D 2**-w_exp, or 2**-w_exp alone).
    Returns the mask of positions for the deep tier.
    """
    if _jit.enabled():
        return _soft_grad_compiled(pb, zb, tb, g, den_eff)
    k = np.argmax(zb, axis=1, keepdims=True)
    m = np.take_along_axis(zb, k, axis=1)
    if pb.probabilities:
        valid = None
        mass = sg.prob_mass(tb, pb.ws, pb.eps)
    else:
        valid = tb != pb.ignore_index
        yc = np.where(valid, tb, 0)
        w_y = valid.astype(np.float64) if pb.ws is None else np.where(valid, np.take(pb.ws, yc), 0.0)
        mass = sg.index_mass(zb.shape, yc, w_y, pb.ws, pb.w_total, pb.eps)
    hard, _ = sg.grad_block(zb, m, k, mass, den_eff, g)
    np.copyto(g, np.nan, where=~np.isfinite(m))
    if valid is not None:
        hard &= valid
        np.copyto(g, 0.0, where=~valid)
    return hard


def _soft_grad_compiled(pb: Problem, zb, tb, g, den_eff) -> np.ndarray:
    """soft_grad_block by the fused double-double kernel (`_jit.soft_grad`)."""
    bn, c, bs = zb.shape
    (oh, ol), (eh, el) = smoothing_pairs(pb.eps, pb.c)
    hard = np.zeros((bn, bs), dtype=np.bool_)
    w = pb.ws if pb.ws is not None else np.ones(1)
    if pb.probabilities:
        pt, yv = tb, np.zeros((1, 1), dtype=np.int64)
    else:
        pt = np.zeros((1, 1, 1))
        yv = np.where(tb[:, 0, :] == pb.ignore_index, -1, tb[:, 0, :]).astype(np.int64)
    cls_h, cls_l = _class_mass(pb)
    _jit.soft_grad(zb, pt, yv, pb.probabilities, w, pb.ws is not None, oh, ol, eh, el, pb.eps != 0.0,
                   cls_h, cls_l, pb.w_total[0], pb.w_total[1], 1.0 if den_eff is None else float(den_eff), g, hard,
                   sg.DD_BOUND, sg.DD_FLOOR, sg._TIER_SHARE, _jit.constants()[1], *(np.empty(c) for _ in range(4)))
    return hard[:, None, :]


def _class_mass(pb: Problem):
    """The smoothing mass w_c eps / C of every class, as (C,) double-double parts."""
    (_, _), (eh, el) = smoothing_pairs(pb.eps, pb.c)
    w = np.ones(pb.c) if pb.ws is None else pb.ws
    return dd.mul_float(eh, el, w)


def grad(pb: Problem, inv_d, den_eff, deep) -> np.ndarray:
    """cross_entropy_grad for the checked problem `pb`.

    `inv_d` is 1 / D as (h, l, e) for the index path; `den_eff` the divisor
    of the scaled soft path (None for 1); D = 0 ('mean' with nothing to
    average) makes every entry NaN but the ignored ones, as torch does.
    ``deep(pb, idx, g)`` recomputes the positions `idx` into the output.
    """
    out = np.empty(pb.shape)
    n, c, s = pb.z.shape
    g3 = out.reshape(n, c, s)
    soft = pb.probabilities or pb.eps != 0.0
    pending: list[np.ndarray] = []
    lock = threading.Lock()

    def fill(rows_, cols):
        zb = pb.z[rows_, :, cols]
        gb = g3[rows_, :, cols]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            if soft:
                tb = pb.p[rows_, :, cols] if pb.probabilities else pb.y[rows_, cols][:, None, :]
                bad = soft_grad_block(pb, zb, tb, gb, den_eff)
            else:
                bad = index_grad_block(pb, zb, pb.y[rows_, cols][:, None, :], gb, workspace(zb.shape), inv_d)
        count("first", bad.size - int(np.count_nonzero(bad)))
        if bad.any():
            idx = np.argwhere(bad[:, 0, :])
            idx[:, 0] += rows_.start or 0
            idx[:, 1] += cols.start or 0
            with lock:
                pending.append(idx)

    if n * s:
        # The double-double tier makes dozens of temporaries per block: smaller blocks bound
        # their memory; it runs on one thread (its many short numpy calls keep taking the GIL).
        compiled = _jit.enabled()
        size = _jit.block_elements(c) if compiled else (sg.BLOCK_ELEMENTS if soft else None)
        run_blocks(fill, iter_blocks(n, c, s, elements=size), parallel=compiled or not soft)
    if pending:
        idx = np.concatenate(pending)
        count("deep", len(idx))
        deep(pb, idx, g3)
    return out
