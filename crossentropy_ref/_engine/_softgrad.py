"""The gradient of soft targets and label smoothing, to a few ulp of the exact value.

An entry of the gradient is ``g_c = a q_c - b_c``, with ``q = softmax(z)``,
``b`` the target mass and ``a = sum_c b_c``. For an index target without
smoothing ``b`` is zero except at the target, and float64 is enough (see
`_losses._grad_block`). With soft targets or smoothing, ``a q_c`` and
``b_c`` are both positive and can be close: a prediction near its target.
Their difference then keeps the rounding errors of both terms, magnified
by ``kappa = (a q_c + b_c) / |a q_c - b_c|``. No float64 formula avoids
that, because ``q_c`` itself is rounded.

So the entries are computed in two tiers:

1. Double-double (`_dd`): ``exp(z_j - m)`` to about ``2**-100``, the sum
   ``s``, ``1 / (1 + s)``, ``a`` and ``b`` all carried with about 106 bits,
   and ``g`` rounded once at the end. Its error bound is
   ``2**-97 (a q_c + b_c)`` (measured: below ``2**-98``), which is under
   one ulp of ``g_c`` while ``kappa`` is below about ``2**44``.
2. The ``decimal`` module, for the positions holding an entry beyond that
   bound: every quantity of the position at about ``20 + log10(C kappa)``
   digits, more if the result is not known to a quarter of an ulp.
   Only targets that copy the prediction to about 13 digits or more get
   here (for example ``softmax(z)`` itself). An entry whose two terms still
   agree at _MAX_DIGITS digits, to all but 5 of them, is returned as 0: an
   exact zero, such as equal logits with a uniform target.

The entry at the largest logit ``k`` is computed as
``(a - b_k) - a s / (1 + s)`` when ``q_k > 1/2``, with ``a - b_k`` summed
over the other classes, as in float64.
"""

from __future__ import annotations

import decimal
import math
from typing import NamedTuple

import numpy as np

from . import _dd as dd
from ._dd import smoothing_pairs
from ._eft import two_sum

# The double-double tier's error bound, relative to a q_c + b_c (see the module docstring).
DD_BOUND = 2.0**-97
# Absolute error from the low parts of results below about 2**-969 (exp's underflow).
DD_FLOOR = 2.0**-1050
# An entry goes to the decimal tier when DD_BOUND (a q + b) + DD_FLOOR exceeds this
# share of |g|: then the double-double result could be off by more than about an ulp.
_TIER_SHARE = 2.0**-53
# Inputs beyond this size could overflow Dekker's splitting (2**995); such blocks keep
# the float64 result.
DD_MAX = 2.0**500
_MAX_DIGITS = 400
# Where double-double found the two terms equal, the decimal tier starts at this many
# digits (and doubles them while the terms still agree, up to _MAX_DIGITS).
_ZERO_DIGITS = 80
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


def usable(mass: Mass) -> bool:
    """Whether the double-double tier can take this mass (finite, and far from overflow)."""
    with np.errstate(invalid="ignore"):
        return bool(np.all(mass.ah <= DD_MAX)) and bool(np.all(np.isfinite(mass.ah)))


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
        scale[:, c] = ph + mass.bh[:, c]  # a q_c + b_c: what the bound is relative to
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
        np.put_along_axis(scale, k, np.where(near, resth + uh, np.take_along_axis(scale, k, axis=1)), axis=1)
    # Entries whose double-double value may be off by more than about an ulp: to the decimal tier.
    g_abs = np.abs(gh + gl)
    # Both terms positive (a q_c = scale - b_c > 0): only then can they cancel.
    hard = (DD_BOUND * scale + DD_FLOOR > _TIER_SHARE * g_abs) & (mass.bh > 0) & (scale > mass.bh)
    hard = np.any(hard, axis=1, keepdims=True) & fin
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.max(scale / g_abs, axis=1, keepdims=True) if hard.any() else None
    np.copyto(g, dd.round_div(gh, gl, 1.0 if denom is None else denom))
    return hard, kappa


def grad_position_decimal(z, p, y, w, eps: float, denom: float | None, kappa: float) -> list[float]:
    """a q - b for one position, with the ``decimal`` module, to within an ulp.

    `z` (C,) are the logits; the target is the probabilities `p` (C,) or,
    when `p` is None, the class index `y`; `w` (C,) or None the class
    weights. `kappa` is the cancellation the double-double tier saw. Every
    float converts to a Decimal exactly, and each operation rounds at the
    context's precision P, so every term is within (C + 10) 10**(1 - P) of
    its value, relatively. The first P is 20 digits plus those of C and of
    `kappa`; an entry whose difference is not known to 2**-54 of itself at
    that P makes the position run again at twice the digits (Ziv's
    strategy), up to _MAX_DIGITS, where an entry whose terms still agree to
    all the digits carried but 5 is returned as 0.
    """
    c = len(z)
    if math.isfinite(kappa):
        digits = 20 + len(str(c + 10)) + len(str(int(max(kappa, 1.0))))
    else:
        digits = _ZERO_DIGITS  # the double-double difference was exactly 0
    while True:
        digits = min(digits, _MAX_DIGITS)
        out = _position_decimal(z, p, y, w, eps, denom, digits, last=digits == _MAX_DIGITS)
        if out is not None:
            return out
        digits *= 2


def _position_decimal(z, p, y, w, eps, denom, digits: int, last: bool) -> list[float] | None:
    """grad_position_decimal at `digits`; None if an entry is not known well enough (unless `last`)."""
    D = decimal.Decimal
    c = len(z)
    with decimal.localcontext(decimal.Context(prec=digits, Emin=-999999, Emax=999999)):
        rel = D(c + 10) * D(10) ** (1 - digits)  # bound on each term's relative error
        zs = [D(float(v)) for v in z]
        k = max(range(c), key=lambda j: (zs[j], -j))  # the first maximum, as argmax
        m = zs[k]
        e = [(v - m).exp() if v.is_finite() else D(0) for v in zs]
        s = sum((e[j] for j in range(c) if j != k), D(0))
        one_s = 1 + s
        smooth = D(float(eps)) / c
        keep = 1 - D(float(eps))
        ps = [D(float(v)) for v in p] if p is not None else [D(int(j == y)) for j in range(c)]
        b = [(keep * pj + smooth) * (D(float(w[j])) if w is not None else 1) for j, pj in enumerate(ps)]
        a = sum(b, D(0))
        out = []
        for j in range(c):
            if j == k and one_s < 2:  # q_k > 1/2: (a - b_k) - a s / (1 + s)
                terms = (sum((b[i] for i in range(c) if i != k), D(0)), a * s / one_s)
            else:
                terms = (a * e[j] / one_s, b[j])
            v = terms[0] - terms[1]
            bound = (abs(terms[0]) + abs(terms[1])) * rel
            if bound > abs(v) * D(2) ** -54:
                if not last:
                    return None  # not known to a quarter of an ulp: more digits
                if abs(v) <= (abs(terms[0]) + abs(terms[1])) * D(10) ** (5 - digits):
                    v = D(0)  # the terms agree to every digit carried
            if denom is not None:
                v = v / D(float(denom))
            out.append(float(v))
    return out
