"""The gradient of soft targets and label smoothing, double-double tier (numpy engine).

An entry of the gradient is ``g_c = a q_c - b_c``, with ``q = softmax(z)``,
``b`` the target mass and ``a = sum_c b_c``. For an index target without
smoothing ``b`` is zero except at the target, and the first tier suffices
(see `_grad`). With soft targets or smoothing, ``a q_c`` and ``b_c`` can
be close: a prediction near its target. Their difference then keeps the
rounding errors of both terms, magnified by ``kappa = (|a q_c| + |b_c|) /
|a q_c - b_c|``. No float64 formula avoids that, because ``q_c`` itself is
rounded.

So every quantity is computed here in double-double (`_dd`): ``exp(z_j - m)``
to about ``2**-100``, the sum ``s``, ``1 / (1 + s)``, ``a`` and ``b``, and
``g`` is rounded once at the end. The error bound is
``DD_BOUND (|a q_c| + |b_c|)`` plus ``DD_FLOOR`` for terms in the subnormal
range, which is within an ulp of ``g_c`` while ``kappa`` is below about
``2**44``. A position holding an entry beyond that goes to the deep tier
(triple-double, `_deep`): only targets that copy the prediction to about 13
digits or more get there (self-distillation).

The entry at the largest logit ``k`` is computed as
``(a - b_k) - a s / (1 + s)`` when ``q_k > 1/2``, with ``a - b_k`` summed
over the other classes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dd as dd
from ._dd import smoothing_pairs
from ._eft import two_sum

# The double-double tier's error bound, relative to a q_c + b_c (see the module docstring).
DD_BOUND = 2.0**-97
# Absolute error from the low parts of results below about 2**-969 (exp's underflow).
DD_FLOOR = 2.0**-1050
# An entry's bound must be within this share of |g|: then it is within an ulp.
_TIER_SHARE = 2.0**-53
# Logits per block in this tier (see _losses.cross_entropy_grad).
BLOCK_ELEMENTS = 1 << 14


class Mass(NamedTuple):
    """The target mass of a block as double-doubles: b (bn, C, bs) and a = sum_c b_c (bn, 1, bs)."""

    bh: np.ndarray
    bl: np.ndarray
    ah: np.ndarray
    al: np.ndarray


def index_mass(shape, yc, w_y, w, w_total: tuple[float, float], eps: float) -> Mass:
    """b_c = w_c eps / C + [c = y] (1 - eps) w_y for index targets (w_y = 0 where ignored)."""
    c = shape[1]
    (oh, ol), (eh, el) = smoothing_pairs(eps, c)
    if w is None:
        bh = np.full(shape, eh)
        bl = np.full(shape, el)
    else:
        ch, cl = dd.mul_float(eh, el, w)
        bh = np.broadcast_to(ch[None, :, None], shape).copy()
        bl = np.broadcast_to(cl[None, :, None], shape).copy()
    yh, yl = dd.mul_float(oh, ol, w_y)  # (1 - eps) w_y, (bn, 1, bs)
    th, tl = dd.add(np.take_along_axis(bh, yc, axis=1), np.take_along_axis(bl, yc, axis=1), yh, yl)
    np.put_along_axis(bh, yc, th, axis=1)
    np.put_along_axis(bl, yc, tl, axis=1)
    ah, al = dd.add(yh, yl, *dd.mul(eh, el, *w_total))  # a = (1 - eps) w_y + eps W / C
    return Mass(bh, bl, ah, al)


def prob_mass(p, w, eps: float) -> Mass:
    """b_c = w_c ((1 - eps) p_c + eps / C) for probability targets p (bn, C, bs)."""
    c = p.shape[1]
    if eps:
        (oh, ol), smooth = smoothing_pairs(eps, c)
        bh, bl = dd.mul_float(oh, ol, p)
        bh, bl = dd.add(bh, bl, *smooth)
    else:
        bh, bl = p.astype(np.float64, copy=True), np.zeros(p.shape)
    if w is not None:
        bh, bl = dd.mul(bh, bl, w[None, :, None], 0.0)
    ah, al = dd.tree_sum(bh, bl, 1)
    return Mass(bh, bl, ah, al)


def grad_block(z: np.ndarray, m: np.ndarray, k: np.ndarray, mass: Mass, denom: float | None, g: np.ndarray):
    """Write a q - b (divided by `denom` unless None) for the logits block `z` (bn, C, bs) into `g`.

    `m` and `k` are the maximum and its index along axis 1 (keepdims). Rows
    whose maximum is not finite are left for the caller to fill with NaN.
    Returns ``(hard, kappa)``: the mask (bn, 1, bs) of the positions that the
    decimal tier must redo, and the largest ``(a q_c + b_c) / |g_c|`` of each
    position (bn, 1, bs).
    """
    fin = np.isfinite(m)
    ms = np.where(fin, m, 0.0)
    # The elementwise work goes through the classes in chunks of about dd.CHUNK elements.
    step = max(1, dd.CHUNK // max(1, z.shape[0] * z.shape[2]))
    chunks = [slice(c0, c0 + step) for c0 in range(0, z.shape[1], step)]
    eh, el = np.empty(z.shape), np.empty(z.shape)
    for c in chunks:
        # z - m exactly (TwoSum); 0 at the maximum, whose exp is then exactly 1.
        eh[:, c], el[:, c] = dd.exp(*two_sum(z[:, c], -ms))
    # s = sum over j != k of exp(z_j - m).
    sh, sl = eh.copy(), el.copy()
    np.put_along_axis(sh, k, 0.0, axis=1)
    np.put_along_axis(sl, k, 0.0, axis=1)
    sh, sl = dd.tree_sum(sh, sl, 1)
    rh, rl = dd.recip_one_plus(sh, sl)  # q_k = 1 / (1 + s)
    fh, fl = dd.mul(mass.ah, mass.al, rh, rl)  # a / (1 + s)
    gh, gl, scale = np.empty(z.shape), np.empty(z.shape), np.empty(z.shape)
    for c in chunks:
        ph, pl = dd.mul(eh[:, c], el[:, c], fh, fl)  # a q_c
        gh[:, c], gl[:, c] = dd.sub(ph, pl, mass.bh[:, c], mass.bl[:, c])
        scale[:, c] = np.abs(ph) + np.abs(mass.bh[:, c])  # |a q_c| + |b_c|: what the bound is relative to
    # The largest logit where q_k > 1/2: (a - b_k) - a s / (1 + s), no cancellation as q_k -> 1.
    near = rh > 0.5
    if near.any():
        bh_k = mass.bh.copy()
        bl_k = mass.bl.copy()
        np.put_along_axis(bh_k, k, 0.0, axis=1)
        np.put_along_axis(bl_k, k, 0.0, axis=1)
        resth, restl = dd.tree_sum(bh_k, bl_k, 1)  # a - b_k
        uh, ul = dd.mul(*dd.mul(sh, sl, rh, rl), mass.ah, mass.al)  # a s / (1 + s)
        kh, kl = dd.sub(resth, restl, uh, ul)
        np.put_along_axis(gh, k, np.where(near, kh, np.take_along_axis(gh, k, axis=1)), axis=1)
        np.put_along_axis(gl, k, np.where(near, kl, np.take_along_axis(gl, k, axis=1)), axis=1)
        np.put_along_axis(scale, k, np.where(near, np.abs(resth) + np.abs(uh), np.take_along_axis(scale, k, axis=1)), axis=1)
    # Entries whose double-double value may be off by more than an ulp go to the deep tier:
    # the bound DD_BOUND (|a q_c| + |b_c|) + DD_FLOOR, in the units of the result (after the
    # division by `denom`), must be within 2**-53 of |g_c|, or within 2**-1074 for a result
    # below the normal range. Negative weights make both terms negative: the same test.
    g_abs = np.abs(gh + gl)
    scale = np.abs(scale)
    d = 1.0 if denom is None else abs(denom)
    with np.errstate(over="ignore", invalid="ignore"):
        err = (DD_BOUND * scale + DD_FLOOR) / d
        ok = (err <= _TIER_SHARE * (g_abs / d)) | (err <= 2.0**-1074) | (scale == 0)
    hard = np.any(~ok, axis=1, keepdims=True) & fin
    np.copyto(g, dd.round_div(gh, gl, 1.0 if denom is None else denom))
    return hard, None
