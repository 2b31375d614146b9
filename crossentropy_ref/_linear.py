"""The LM head's loss without its logits: ``linear_cross_entropy`` and its gradient.

The logits ``z = x W^T + b`` are computed one chunk of rows at a time, never
all at once, and each chunk as a pair ``z = zh + zl`` about ``beta`` bits more
accurate than a float64 matmul (see below), by an error-free splitting of the
operands (Ozaki's scheme, one level):

    x = x1 + x',   W = W1 + W'        (per row of x, per class of W)

where ``x1`` keeps the leading ``beta`` bits of its row (relative to the row's
largest entry, ``2**ex``) and ``W1`` the leading ``beta`` bits of its class,
``beta = floor((53 - ceil(log2 K)) / 2)`` for ``K = in_features``. Every
product ``x1_k W1_ck`` is then an integer times ``2**(ex + ew - 2 beta)`` of
at most ``2 beta`` bits, and a sum of K of them at most 53 bits: the BLAS
product ``x1 W1^T`` is exact whatever its order of summation. The rest,

    x W^T - x1 W1^T = x1 W'^T + x' W^T,

is of relative size ``2**-beta`` and is computed by two plain BLAS products,
whose rigorous error bound ``gamma_K sum_k |a_k| |b_k|`` (Higham, Accuracy and
Stability, 3.5) is bounded by the row norms (Cauchy-Schwarz): the logits'
error is at most ``delta_c = 2**ex (gamma_K (|x1| |W'_c| + |x'| |W_c|) + u |B_c|)``
plus the last roundings, about ``2**-(beta + 53 - log2 K)`` of ``|x| |W_c|``.

The loss of the logits ``zh`` is computed by the package's engine as a pair
with an error bound (`_engine._loss`), and the low parts enter by a
first-order correction: with ``g = dloss/dz`` at ``zh`` (the engine's
gradient, within 4 ulp),

    loss(zh + zl) = loss(zh) + sum_c g_c zl_c + R2,
    |R2| <= 2 (sum_{c != k} |a| p_c) M**2 e**(2M),   M = max_c |z_c - zh_c|

for any class k (the Taylor remainder of ``a logsumexp`` is ``a/2`` times a
variance of the step under the softmax at a point between zh and z, at most
``(1 - p_k) (2M)**2`` there, and those masses are within ``e**(2M)`` of the
masses p at zh), and ``|a| p_c <= |g_c| + |b_c|``. A position's value is accepted when the sum
of these bounds proves it within 4 ulp; a position that fails is recomputed
by the engine's deep tier (triple-double), and one that still fails, in
``decimal`` from the exact products (`_decimal_loss`).
"""

from __future__ import annotations

import decimal
import math
import sys

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._engine import _deepest as dec
from ._engine import _exactsum as xs
from ._engine import loss_deep
from ._engine._deep import TD_EPS
from ._engine._eft import fast_two_sum, two_sum
from ._engine._loss import first_tier_done
from ._engine._reduce import _block_values, _proven
from ._engine._rows import U
from ._losses import _check_inputs, _is_zero, cross_entropy_grad

# The extra memory's budget: the chunks of logits (two float64 arrays of CHUNK_SHARE of the
# (N, C) logits, with a floor of MIN_ROWS rows: fewer rows would make the matmuls slow) and
# the split classes of W (about CLASS_BYTES).
CHUNK_SHARE = 1 / 40
MIN_ROWS = 128
CLASS_BYTES = 1 << 23
# Rows handed to the engine at a time: its temporaries are a few arrays of this many logits.
ENGINE_ELEMENTS = 1 << 17
_TINY = 2.0**-1074


def _gamma(k: int) -> float:
    """gamma_k = k u / (1 - k u), rounded up (Higham's bound for a sum of k products)."""
    return k * U / (1 - k * U) * (1 + 2.0**-40)


def _check_options(options) -> None:
    if options is not None and type(options).__name__ != "LinearCrossEntropyOptions":
        raise TypeError(
            "`options` must be None or a torch.nn.LinearCrossEntropyOptions (it only chooses how torch "
            f"chunks the work, which changes nothing here); got {type(options).__name__} {options!r}"
        )


class LinearProblem(NamedTuple):
    """Checked inputs of linear_cross_entropy, as 2-D arrays: x (N, K), W (C D, K), b (C D,)."""

    reduction: str
    eps: float
    probabilities: bool
    ignore_index: int  # -100 for probability targets (unused)
    logits_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    b_shape: tuple[int, ...] | None
    c: int
    d: int  # d1 ... dk of K-dimensional weights (1 without)
    k: int  # in_features
    n: int
    x: np.ndarray  # (N, K)
    w2: np.ndarray  # (C D, K)
    b2: np.ndarray | None  # (C D,)
    weight: np.ndarray | None  # (C,)
    t: np.ndarray  # index targets (N, D) in their own dtype, or probabilities (N, C, D)
    valid: np.ndarray | None  # index targets: the positions that count (N, D)
    cache: dict  # W's per-class statistics, computed once (_class_stats)


def _check_linear(input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing,
                  options) -> LinearProblem:
    """Parse and check every input of linear_cross_entropy once."""
    reduction = v.check_reduction(reduction)
    eps = v.check_label_smoothing(label_smoothing)
    if ignore_index is not None:
        ignore_index = v.check_int(ignore_index, "ignore_index")
    _check_options(options)
    x = v.as_real_array(input, "input")
    if x.ndim not in (1, 2):
        raise ValueError(f"`input` must have shape (in_features,) or (N, in_features); got {x.shape}")
    w = v.as_real_array(linear_weight, "linear_weight")
    if w.ndim < 2:
        raise ValueError(
            f"`linear_weight` must have shape (C, in_features) or (C, d1, ..., dk, in_features); got {w.shape}"
        )
    k = x.shape[-1]
    if w.shape[-1] != k:
        raise ValueError(
            f"`linear_weight` must have in_features = {k} as its last axis to match `input` of shape "
            f"{x.shape}; got {w.shape}"
        )
    c = w.shape[0]
    if c == 0:
        raise ValueError(f"`linear_weight` must have at least one class along axis 0; got shape {w.shape}")
    out = w.shape[1:-1]
    if out and x.ndim == 1:
        raise ValueError(
            f"`input` must be batched, (N, {k}), for the K-dimensional loss of `linear_weight` of shape "
            f"{w.shape}; got {x.shape}"
        )
    _check_finite_chunked(x, "input")
    _check_finite_chunked(w, "linear_weight")
    b = None
    if linear_bias is not None:
        b = v.as_real_array(linear_bias, "linear_bias")
        if b.shape != (c, *out):
            raise ValueError(
                f"`linear_bias` must have shape {(c, *out)} to match `linear_weight` of shape {w.shape}; "
                f"got {b.shape}"
            )
        v.check_finite(b, "linear_bias", "values")
    in_shape, w_shape, b_shape = x.shape, w.shape, None if b is None else b.shape
    logits_shape = (*x.shape[:-1], c, *out)
    d = math.prod(out)
    x2 = x.reshape(-1, k)  # (N, K), N = 1 for unbatched input
    n = x2.shape[0]
    w2 = w.reshape(c * d, k)
    b2 = None if b is None else b.reshape(c * d)
    weight = v.as_weight(weight, c)
    t = v._as_array(target, "target")
    expected = v.index_target_shape(logits_shape)
    if tuple(t.shape) == logits_shape:
        probabilities, valid = True, None
        if ignore_index is not None:
            raise ValueError(
                "`ignore_index` must be None with class-probability targets, as in torch; "
                f"got {ignore_index}"
            )
        ignore_index = -100
        p = v.as_prob_target(t, logits_shape)
        t2 = p.reshape(n, c, d)
    elif tuple(t.shape) == expected:
        probabilities = False
        ignore_index = -100 if ignore_index is None else ignore_index
        v.as_index_target(t, logits_shape, ignore_index)
        t2 = t.reshape(n, d)
        valid = ~v._equals(t2, ignore_index)
    else:
        raise ValueError(
            f"`target` must have shape {expected} (class indices) or {logits_shape} (class "
            f"probabilities) to match the logits `input` @ `linear_weight`.T, of shape "
            f"{logits_shape}; got {tuple(t.shape)}"
        )
    return LinearProblem(reduction=reduction, eps=eps, probabilities=probabilities, ignore_index=ignore_index,
                         logits_shape=logits_shape, in_shape=in_shape, w_shape=w_shape, b_shape=b_shape,
                         c=c, d=d, k=k, n=n, x=x2, w2=w2, b2=b2, weight=weight, t=t2, valid=valid, cache={})


def _beta(lin: LinearProblem) -> int:
    """Bits of the leading parts: K products of two of them add up exactly (<= 53 bits)."""
    return (53 - max(0, math.ceil(math.log2(max(lin.k, 1))))) // 2


def _class_steps(lin: LinearProblem, nbytes: int | None = None):
    step = max(1, (nbytes or CLASS_BYTES) // (8 * max(lin.k, 1)))
    m = lin.c * lin.d
    return [slice(c0, min(m, c0 + step)) for c0 in range(0, m, step)]


def _class_stats(lin: LinearProblem):
    """Per class (C D,): ew (max |W_c| < 2**ew), |W'_c| and |W_c| (2-norms, of W scaled by
    2**-ew), for the bound; and whether W can be split unscaled (every ew in a range where
    no split overflows and no product of leading parts underflows)."""
    if "class_stats" not in lin.cache:
        m = lin.c * lin.d
        ew, nwp, nw = np.empty(m, dtype=np.int64), np.empty(m), np.empty(m)
        for cs in _class_steps(lin, CLASS_BYTES // 8):  # three copies of the classes at a time
            e = _row_exponents(lin.w2[cs])
            ew[cs] = e
            _, wp, wc = _split_classes(lin, cs, e, scaled=True)
            nwp[cs], nw[cs] = np.linalg.norm(wp, axis=1), np.linalg.norm(wc, axis=1)
        unscaled = bool(m == 0 or (ew.min() >= -800 and ew.max() <= 900))
        lin.cache["class_stats"] = ew, nwp, nw, unscaled
    return lin.cache["class_stats"]


def _split_classes(lin: LinearProblem, cs: slice, ew: np.ndarray, scaled: bool):
    """``(W1, W', Wc)`` of the classes `cs`: ``Wc = W1 + W'`` exactly, W1 on the grid
    2**(ew - beta) of each class. With `scaled`, Wc is W's classes times 2**-ew (then
    |Wc| < 1); else W's classes as they are (the split's constant carries 2**ew)."""
    wc = lin.w2[cs]
    if scaled:
        wc = np.ldexp(wc, -ew[:, None])
        sigma = 1.5 * 2.0 ** (52 - _beta(lin))
    else:
        sigma = np.ldexp(1.5, (52 - _beta(lin)) + ew)[:, None]
    w1 = np.add(wc, sigma)
    np.subtract(w1, sigma, out=w1)
    return w1, wc - w1, wc


def _logits_block(lin: LinearProblem, rows: slice):
    """The block's logits as ``zh + zl`` (each (R, C, D)), and the rows' statistics
    ``(ex, |x1|, |x'|)`` from which `delta` bounds |z - (zh + zl)|; see the module docstring."""
    xb = lin.x[rows]
    r = xb.shape[0]
    ex = _row_exponents(xb)
    xs_ = np.ldexp(xb, -ex[:, None])  # |xs| < 1; exact but for entries 2**1022 below their row's largest
    x1, xp = _split(xs_, 1.5 * 2.0 ** (52 - _beta(lin)))
    ew_all, _, _, unscaled = _class_stats(lin)
    m = lin.c * lin.d
    zh, zl = np.empty((r, m)), np.empty((r, m))
    for cs in _class_steps(lin):
        ew = ew_all[cs]
        w1, wp, wc = _split_classes(lin, cs, ew, scaled=not unscaled)
        a = _matmul(x1, w1)  # exact: see the module docstring
        bb = _matmul(x1, wp)
        bb += _matmul(xp, wc)
        h, lo = two_sum(a, bb)
        sc = ex[:, None] if unscaled else ex[:, None] + ew[None, :]
        with np.errstate(over="ignore"):
            h, lo = np.ldexp(h, sc), np.ldexp(lo, sc)
        if lin.b2 is not None:
            h, t = two_sum(h, lin.b2[cs][None, :])
            lo = lo + t
        with np.errstate(invalid="ignore"):
            zh[:, cs], zl[:, cs] = fast_two_sum(h, lo)
        del w1, wp, wc, a, bb, h, lo  # before the next classes are split
    shape = (r, lin.c, lin.d)
    stats = ex, np.linalg.norm(x1, axis=1), np.linalg.norm(xp, axis=1)
    return zh.reshape(shape), zl.reshape(shape), stats


def _delta(lin: LinearProblem, stats, sub: slice, zl: np.ndarray) -> np.ndarray:
    """The bound on |z - (zh + zl)| for the rows `sub` of a block, (rs, C, D).

    The two BLAS products err by at most gamma_K (|x1| |W'_c| + |x'| |W_c|) and their
    sum by u of it (Cauchy-Schwarz bounds sum |a_k| |b_k| by the 2-norms); scaled back
    by 2**(ex + ew); the bias's addition and the renormalisation round the low part
    (2 u |zl|), and the scaling may round a subnormal low part (2**-1074 each).
    """
    ex, nx1, nxp = (a[sub] for a in stats)
    ew, nwp, nws, _ = _class_stats(lin)
    e = (_gamma(lin.k) + U) * (1 + _gamma(lin.k)) * (np.outer(nx1, nwp) + np.outer(nxp, nws))
    with np.errstate(over="ignore"):
        e = np.ldexp(e, ex[:, None] + ew[None, :])
    e = e.reshape(zl.shape)
    e *= 1 + 2.0**-40
    e += 2 * U * np.abs(zl) + 4 * _TINY
    return e


def _row_chunks(lin: LinearProblem):
    rows = max(MIN_ROWS, math.ceil(lin.n * CHUNK_SHARE))
    for r0 in range(0, lin.n, rows):
        yield slice(r0, min(lin.n, r0 + rows))


def _engine_chunks(lin: LinearProblem, r: int):
    step = max(1, ENGINE_ELEMENTS // max(lin.c * lin.d, 1))
    for s0 in range(0, r, step):
        yield slice(s0, min(r, s0 + step))


def _check_finite_chunked(a: np.ndarray, name: str) -> None:
    """check_finite a few megabytes at a time (its mask would be as large as `a`)."""
    flat = a.reshape(-1)
    step = 1 << 20
    for i in range(0, flat.size, step):
        part = flat[i : i + step]
        bad = ~np.isfinite(part)
        if bad.any():
            where = tuple(int(j) for j in np.unravel_index(i + int(np.argmax(bad)), a.shape))
            raise ValueError(f"`{name}` must hold finite values; got {float(a[where])!r} at position {where}")


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` in float64 BLAS: torch's (MKL on x86) where torch is already imported, as for
    the LM heads this function is for, else numpy's. Both only add products, so the exact
    product of the leading parts stays exact, and both meet the gamma_K bound."""
    torch = sys.modules.get("torch")
    # torch warns on read-only memory (a read-only input's views): numpy's BLAS there, no copy.
    if torch is not None and hasattr(torch, "from_numpy") and a.flags.writeable and b.flags.writeable:
        return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()
    return a @ b.T


def _row_exponents(a: np.ndarray) -> np.ndarray:
    """e per row with max|a_row| < 2**e (0 for a zero row)."""
    top = np.max(np.abs(a), axis=1) if a.shape[1] else np.zeros(a.shape[0])
    return np.frexp(top)[1].astype(np.int64)


def _split(a: np.ndarray, sigma: float):
    """``(a1, a')`` with ``a = a1 + a'`` exactly, a1 on the grid ulp(sigma) (|a| < 1 <= sigma)."""
    a1 = (a + sigma) - sigma
    return a1, a - a1


def _mass_off_max(lin: LinearProblem, zh, tb):
    """sum_{c != k} |b_c| per position (R, D), k the position's largest logit."""
    c = lin.c
    w = np.ones(c) if lin.weight is None else np.abs(lin.weight)
    kk = np.argmax(zh, axis=1)  # (R, D)
    if lin.probabilities:
        bm = w[None, :, None] * ((1 - lin.eps) * tb + lin.eps / c)
        tot = bm.sum(axis=1)
        at_k = np.take_along_axis(bm, kk[:, None, :], axis=1)[:, 0, :]
        return np.maximum(tot - at_k, 0.0) * (1 + 2.0**-40) + bm.max(axis=1) * c * U * 4, kk
    valid = ~v._equals(tb, lin.ignore_index)
    yc = np.where(valid, tb, 0).astype(np.intp)
    wy = w[yc]
    smooth = lin.eps / c * (w.sum() - w[kk])
    main = np.where(yc != kk, (1 - lin.eps) * wy, 0.0)
    return np.where(valid, (main + np.maximum(smooth, 0.0)) * (1 + 2.0**-40) + lin.eps / c * w.max() * c * U * 4,
                    0.0), kk


def _position_values(lin: LinearProblem):
    """Every position's loss as ``(hi + lo) 2**ex`` within ``bound 2**ex``, each (N, D)."""
    n, d = lin.n, lin.d
    out = np.zeros((n, d)), np.zeros((n, d)), np.zeros((n, d)), np.zeros((n, d), dtype=np.int64)
    for rows in _row_chunks(lin):
        _chunk_values(lin, rows, *out)  # its logits die with it: one chunk alive at a time
    hi_all, lo_all, bd_all, ex_all = out
    return hi_all, lo_all, ex_all, bd_all


def _chunk_values(lin: LinearProblem, rows: slice, hi_all, lo_all, bd_all, ex_all) -> None:
    """The positions of the rows `rows`, written into the (N, D) arrays."""
    zh, zl, stats = _logits_block(lin, rows)
    tb_all = lin.t[rows]
    for sub in _engine_chunks(lin, zh.shape[0]):
        rs = slice(rows.start + sub.start, rows.start + sub.stop)
        zs, tb = zh[sub], tb_all[sub]
        pb = _check_inputs(zs, tb, lin.weight, lin.ignore_index, "none", lin.eps)
        hi, lo, ex, bound, _ = _block_values(pb, slice(None), slice(None))
        ex = np.broadcast_to(np.asarray(ex, dtype=np.int64), hi.shape)[:, 0, :]
        hi, lo, bound = hi[:, 0, :], lo[:, 0, :], bound[:, 0, :]
        g = cross_entropy_grad(zs, tb, lin.weight, ignore_index=lin.ignore_index, reduction="none",
                               label_smoothing=lin.eps)
        corr, cbound = _correction(lin, zs, zl[sub], _delta(lin, stats, sub, zl[sub]), g, tb)
        del g
        with np.errstate(over="ignore", invalid="ignore"):
            cs, cb = np.ldexp(corr, -ex), np.ldexp(cbound, -ex)
            h2, l2 = two_sum(hi, cs)
            l2 = l2 + lo
            h2, l2 = fast_two_sum(h2, l2)
            fin = np.isfinite(hi) & np.isfinite(cs) & np.isfinite(h2)
            h2 = np.where(fin, h2, hi)
            l2 = np.where(fin, l2, lo)
            b2 = np.where(fin, bound + cb + 2.0**-104 * (np.abs(hi) + np.abs(cs)), bound)
        ok = first_tier_done(h2, l2, b2)
        hi_all[rs], lo_all[rs], bd_all[rs], ex_all[rs] = h2, l2, b2, ex
        if not ok.all():
            _escalate(lin, pb, rs, np.argwhere(~ok), corr, cbound, hi_all, lo_all, bd_all, ex_all)


def _chunk_grads(lin: LinearProblem, rows: slice, inv: float, gx, gw, gb) -> None:
    """The rows' G = dloss/dz at zh, and their share of the three gradients (one BLAS
    product each for the chunk)."""
    zh, _, _ = _logits_block(lin, rows)
    tb_all = lin.t[rows]
    g_all = np.empty((zh.shape[0], lin.c * lin.d))
    for sub in _engine_chunks(lin, zh.shape[0]):
        g = cross_entropy_grad(zh[sub], tb_all[sub], lin.weight, ignore_index=lin.ignore_index,
                               reduction="none", label_smoothing=lin.eps)
        if lin.reduction == "mean":
            with np.errstate(invalid="ignore"):
                g = g * inv
            if not lin.probabilities:  # ignored positions stay exactly 0 (a NaN 1 / D included)
                rs = slice(rows.start + sub.start, rows.start + sub.stop)
                g = np.where(lin.valid[rs][:, None, :], g, 0.0)
        g_all[sub] = g.reshape(g.shape[0], -1)
    del zh
    gx[rows] = _matmul(g_all, lin.w2.T)  # G W
    gw += _matmul(g_all.T, lin.x[rows].T)  # G^T x
    gb += g_all.sum(axis=0)


def _correction(lin: LinearProblem, zh, zl, delta, g, tb):
    """sum_c g_c zl_c per position (R, D), and the bound on everything the first order leaves
    out: the logits' own error, the correction's roundings and the second-order term."""
    with np.errstate(invalid="ignore", over="ignore"):
        ag = np.abs(g)
        corr = np.einsum("rcd,rcd->rd", g, zl)
        # The sum's roundings (gamma_C), and g's own error (4 ulp, or 4 subnormal ulps).
        azl = np.abs(zl)
        cb = (_gamma(lin.c) + 2.0**-50) * np.einsum("rcd,rcd->rd", ag, azl) + 4 * _TINY * azl.sum(axis=1)
        cb += np.einsum("rcd,rcd->rd", ag, delta)  # the logits' error
        off, kk = _mass_off_max(lin, zh, tb)
        np.put_along_axis(ag, kk[:, None, :], 0.0, axis=1)
        mz = (azl + delta).max(axis=1)
        # The remainder's softmax is at a point between zh and z: its masses are within e**(2M)
        # of those at zh (each logit moves by at most M), hence the factor e**(4M) (generous).
        cb += 2 * (ag.sum(axis=1) * (1 + _gamma(lin.c)) + off) * mz * mz * np.exp(4 * mz)
        cb *= 1 + 2.0**-40
        fin = np.isfinite(zh).all(axis=1)
    return np.where(fin, corr, 0.0), np.where(fin, cb, 0.0)


def _escalate(lin, pb, rs, idx, corr, cbound, hi_all, lo_all, bd_all, ex_all):
    """Positions the first tier could not prove: the deep tier for loss(zh), then decimal."""
    parts, ex, _ = loss_deep(pb, idx)
    a, s = idx[:, 0], idx[:, 1]
    val = parts[0] + (parts[1] + parts[2])
    with np.errstate(over="ignore", invalid="ignore"):
        cs = np.ldexp(corr[a, s], -ex)
        h2, l2 = two_sum(parts[0], cs)
        l2 = l2 + (parts[1] + parts[2])
        h2, l2 = fast_two_sum(h2, l2)
        b2 = TD_EPS * np.abs(val) + np.ldexp(cbound[a, s], -ex) + 2.0**-104 * (np.abs(parts[0]) + np.abs(cs))
        fin = np.isfinite(h2)
    h2, l2 = np.where(fin, h2, val), np.where(fin, l2, 0.0)
    b2 = np.where(fin, b2, 0.0)
    ok = first_tier_done(h2, l2, b2)
    ga = a + rs.start
    hi_all[ga, s], lo_all[ga, s], bd_all[ga, s], ex_all[ga, s] = h2, l2, b2, ex
    for j in np.flatnonzero(~ok):
        _decimal_into(lin, int(ga[j]), int(s[j]), hi_all, lo_all, bd_all, ex_all)


def _decimal_into(lin, i, s, hi_all, lo_all, bd_all, ex_all):
    h, lo = _decimal_parts(_decimal_loss(lin, i, s))
    hi_all[i, s], lo_all[i, s], bd_all[i, s], ex_all[i, s] = h, lo, 0.0, 0


def _decimal_parts(val: decimal.Decimal):
    with decimal.localcontext(decimal.Context(prec=max(60, len(val.as_tuple().digits) + 5))):
        h = float(val)
        lo = float(val - decimal.Decimal(h)) if math.isfinite(h) else 0.0
    return h, lo


def _decimal_loss(lin: LinearProblem, i: int, s: int) -> decimal.Decimal:
    """Position (i, s)'s loss from the exact products, in decimal (Ziv's strategy, `_deepest`)."""
    D = decimal.Decimal
    c, d = lin.c, lin.d
    rows = np.arange(c) * d + s
    xi = [D(float(t)) for t in lin.x[i]]
    wr = lin.w2[rows]
    if lin.probabilities:
        p, y = lin.t[i, :, s], None
    else:
        p, y = None, int(lin.t[i, s])
        if not lin.valid[i, s]:
            return D(0)

    def compute(digits):
        zs, zerr = [], D(0)
        for j in range(c):
            terms = [a * D(float(t)) for a, t in zip(xi, wr[j])]
            if lin.b2 is not None:
                terms.append(D(float(lin.b2[rows[j]])))
            zs.append(sum(terms, D(0)))
            zerr = max(zerr, sum((abs(t) for t in terms), D(0)))
        rel = D(lin.k + 2) * D(10) ** (1 - digits)
        m = max(zs)
        e = [(zj - m).exp() for zj in zs]
        L = (sum(e, D(0))).ln()
        b = dec.mass(c, p, y, lin.weight, lin.eps)
        terms = [bc * ((m - zj) + L) for bc, zj in zip(b, zs) if bc != 0]
        babs = sum((abs(bc) for bc in b), D(0))
        bound = sum((abs(t) for t in terms), D(0)) * dec._rel(c, digits) + 3 * babs * zerr * rel
        return [sum(terms, D(0))], [bound]

    return dec._ziv(compute, exact=True)[0]


def _denominator(lin: LinearProblem) -> xs.ExactTotal:
    if lin.probabilities:
        return xs.exact_total(np.array([float(lin.n * lin.d)]))
    if lin.weight is None:
        return xs.exact_total(np.array([float(np.count_nonzero(lin.valid))]))
    yc = np.where(lin.valid, lin.t, 0).astype(np.intp)
    wm, we = np.frexp(lin.weight)
    return xs.exact_total(np.where(lin.valid, wm[yc], 0.0), we[yc].astype(np.int64))


def _reduce(lin: LinearProblem, den: xs.ExactTotal | None, hi, lo, ex, bound):
    """The reduction of the positions' values (`den`: 'mean''s exact denominator, from the caller)."""
    if lin.reduction == "none":
        with np.errstate(over="ignore"):
            out = np.ldexp(hi + lo, ex)
        out = out.reshape(v.index_target_shape(lin.logits_shape))
        return out[()] if out.ndim == 0 else out
    total = xs.exact_total(np.concatenate([hi, lo], axis=1), np.concatenate([ex, ex], axis=1))
    if not _proven(total, xs.exact_total(bound, ex)):
        # The positions' losses cancel (mixed-sign class weights): every position exactly.
        for i in range(lin.n):
            for s in range(lin.d):
                _decimal_into(lin, i, s, hi, lo, bound, ex)
        total = xs.exact_total(np.concatenate([hi, lo], axis=1), np.concatenate([ex, ex], axis=1))
    if lin.reduction == "sum":
        return np.float64(xs.to_float(total))
    return np.float64(xs.ratio(total, den))


def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object = None,
) -> NDArray[np.float64]:
    r"""Cross-entropy of a linear layer's output, aka the fused LM-head loss.

    Mirrors ``torch.nn.functional.linear_cross_entropy`` in float64: the
    loss of :func:`cross_entropy` on the logits

    .. math::

        z_{n, c} = \sum_{k=1}^{K} x_{n, k} W_{c, k} + b_c,
        \qquad \ell_n = -\sum_{c=1}^{C} w_c\, \tilde p_{n, c}
        \log \operatorname{softmax}(z_n)_c,

    computed from the exact products, without ever holding the (N, C)
    logits.

    Parameters
    ----------
    input : array_like of shape (in_features,) or (N, in_features)
        The hidden states :math:`x` (any real dtype, a nested list or a
        torch tensor, as for :func:`cross_entropy`).
    linear_weight : array_like of shape (C, in_features) or (C, d1, ..., dk, in_features)
        The weight :math:`W` of the linear layer (``torch.nn.Linear``'s
        ``weight``). With ``d1, ..., dk`` the loss is K-dimensional: the
        logits have shape (N, C, d1, ..., dk), and `input` must be batched.
    target : array_like of shape (), (N,) or (N, d1, ..., dk), or the shape of the logits
        Class indices (integer dtype) in ``[0, C)`` or equal to
        `ignore_index`; or, when it has the logits' shape, class
        probabilities.
    linear_bias : array_like of shape (C,) or (C, d1, ..., dk), default=None
        The bias :math:`b` of the linear layer.
    weight : array_like of shape (C,), default=None
        A weight per class.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As for :func:`cross_entropy`.
    ignore_index : int or None, default=None
        None means -100 for index targets (as in torch). It must be None
        with probability targets.
    label_smoothing : float in [0, 1], default=0.0
        As for :func:`cross_entropy`.
    options : object or None, default=None
        Accepted for parity with torch, whose options object
        (``LinearCrossEntropyOptions``, in ``torch.nn``) only selects how
        the work is chunked and in which precision it accumulates; not
        used here, where the work is always chunked and exact.

    Returns
    -------
    float64 or ndarray of float64
        As for :func:`cross_entropy` on the logits.

    Raises
    ------
    TypeError
        Non-real arrays; index targets that are not integers; an `options`
        that is not a ``LinearCrossEntropyOptions``; the option checks of
        :func:`cross_entropy`.
    ValueError
        `input` not 1-D or 2-D; `linear_weight` with fewer than 2 axes, no
        class, or a last axis other than in_features; a K-dimensional
        `linear_weight` with unbatched `input`; a `linear_bias` of the wrong
        shape; NaN or infinite values in `input`, `linear_weight` or
        `linear_bias`; a `target` of neither shape; an `ignore_index`
        given with probability targets; as for :func:`cross_entropy`.

    See Also
    --------
    linear_cross_entropy_grad : Its gradients with respect to `input`, `linear_weight` and `linear_bias`.
    cross_entropy : The same loss from the logits.

    Notes
    -----
    Logarithms are natural; :math:`0 \log 0 = 0`, as in
    :func:`cross_entropy`.

    *Accuracy*. Each position's loss, and ``'sum'`` and ``'mean'``, are
    within 4 ulp of the exact loss of the exact logits :math:`x W^T + b`
    (where that is a normal float64). A float64 matmul is not enough for
    that: its logits carry an error up to :math:`\gamma_K \sum_k |x_k|
    |W_{ck}|`, and the loss moves by up to :math:`\sum_c |p_c - \tilde p_c|`
    times the logits' error, which for K = 1024 and unit-sized rows is
    hundreds of ulp of a confident prediction's loss. Here each logit is
    computed as a pair :math:`z^{hi} + z^{lo}` with an error below about
    :math:`2 \gamma_K 2^{-\beta} \lVert x \rVert \lVert W_c \rVert`
    (:math:`2^{-63}` of the norms' product for K = 1024, where a float64
    matmul's bound is :math:`2^{-43}`), by an error-free splitting of the
    operands (Ozaki et al. [1]_): each row of `input` and each class of
    `linear_weight` is split into its leading
    :math:`\beta = \lfloor (53 - \lceil \log_2 K \rceil) / 2 \rfloor`
    bits and the rest, so that the product of the leading parts is exact
    in any BLAS, and the two remaining products, :math:`2^{-\beta}` smaller,
    need only the plain float64 matmul's accuracy: three matmuls in all.
    The low parts enter the loss by a first-order correction
    :math:`\sum_c g_c z^{lo}_c`, with :math:`g` the gradient of the loss in
    the logits; the second-order term is bounded by
    :math:`2 \sum_{c \ne k} |a| p_c \max_c |z^{lo}_c|^2`. A position whose
    bound does not prove 4 ulp is recomputed in triple-double, then in
    ``decimal`` from the exact products.

    *Memory and time*. The logits are computed one chunk of rows at a
    time (1/40 of the rows, at least 128, so that the matrix products stay
    efficient), in two float64 arrays (the leading and the low parts); the
    classes of `linear_weight` are split 8 MB at a time, for every chunk of
    rows again. The extra memory is that chunk, the split classes, and
    arrays of one value per position: 9 % of the (N, C) float64 logits at
    N = 4096, C = 32000, K = 1024 (:repo-file:`benchmarks/bench.py`, case
    ``lm-head-linear``), and a smaller share for more rows. The three
    products are three times the work of the float64 matmul; where torch is
    already imported, they run on its BLAS (MKL on x86), else on numpy's.

    *Differences from PyTorch*:

    - `options` is accepted and has no effect (see above);
    - NaN or infinite values in `input`, `linear_weight` or `linear_bias`
      are a ``ValueError`` naming the first; torch returns NaN;
    - as for :func:`cross_entropy`: integer targets of any width, integer
      probability targets, and integer inputs are accepted; negative
      `label_smoothing` and a class axis of length 0 are a ``ValueError``;
      probability targets are checked (finite, non-negative); the result
      is float64 and more accurate;
    - torch raises ``RuntimeError`` for shape errors; here they are
      ``ValueError``.

    References
    ----------
    .. [1] K. Ozaki, T. Ogita, S. Oishi and S. M. Rump, "Error-free
       transformations of matrix multiplication by using fast routines of
       matrix multiplication and its applications", Numer. Algorithms 59
       (2012), doi:10.1007/s11075-011-9478-1.
    .. [2] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*,
       2nd ed., SIAM 2002, section 3.5 (the error of a dot product).

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import cross_entropy, linear_cross_entropy
    >>> x = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> print(float(linear_cross_entropy(x, W, [2, 0])))
    0.4359873742761626
    >>> print(float(cross_entropy(x @ W.T, [2, 0])))
    0.4359873742761626

    Products that cancel: summed left to right in float64, as a loop (or
    a BLAS kernel) does, ``1e16 + 1`` rounds to ``1e16`` and the logit 1
    becomes 0; the reference keeps it.

    >>> x = np.array([[1e16, 1.0, -1e16]])
    >>> W = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    >>> z = [[float(sum(a * b for a, b in zip(x[0], w))) for w in W]]
    >>> print(z, float(cross_entropy(z, [0])))
    [[0.0, 0.0]] 0.6931471805599453
    >>> print(float(linear_cross_entropy(x, W, [0])))
    0.3132616875182228
    >>> print(float(cross_entropy([[1.0, 0.0]], [0])))
    0.3132616875182228
    """
    lin = _check_linear(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                        label_smoothing, options)
    den = _denominator(lin) if lin.reduction == "mean" else None
    if den is not None and _is_zero(den):
        return np.float64(np.nan)
    return _reduce(lin, den, *_position_values(lin))


def linear_cross_entropy_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    r"""Gradients of :func:`linear_cross_entropy` with respect to `input`, `linear_weight` and `linear_bias`.

    With :math:`G = \partial \ell / \partial z` (see
    :func:`cross_entropy_grad`; the gradient of the sum of the losses for
    ``'none'``, divided by the ``'mean'`` denominator for ``'mean'``),

    .. math::

        \frac{\partial \ell}{\partial x} = G W, \qquad
        \frac{\partial \ell}{\partial W} = G^T x, \qquad
        \frac{\partial \ell}{\partial b} = \sum_n G_n.

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing, options
        As for :func:`linear_cross_entropy`.

    Returns
    -------
    grad_input : ndarray of float64, the shape of `input`
    grad_linear_weight : ndarray of float64, the shape of `linear_weight`
    grad_linear_bias : ndarray of float64, the shape of `linear_bias`, or None
        None when `linear_bias` is None.

    Raises
    ------
    TypeError, ValueError
        As for :func:`linear_cross_entropy`.

    See Also
    --------
    linear_cross_entropy, cross_entropy_grad

    Notes
    -----
    *Accuracy*. :math:`G` is computed, one chunk of rows at a time, by
    :func:`cross_entropy_grad` at the leading parts :math:`z^{hi}` of the
    double-double logits (each entry within 4 ulp, :math:`8u`, of the
    gradient there), and the three products by float64 BLAS. The standard
    this function is tested to, with :math:`b` the target mass
    (:math:`w_c \tilde p_c`, divided by the denominator for ``'mean'``),
    :math:`M_n = \max_c |z_{n,c}|` and :math:`m` the length of the sum
    (C D for `input`; N for `linear_weight` and `linear_bias`): each entry
    is within

    .. math::

        \sum \big( (m + 10 + 2 M_n)\, u\, |G_{n,c}|
        + 2 M_n u\, |b_{n,c}| \big)\, |\text{other factor}|

    of the exact gradient, the sum over the terms of the entry (the other
    factor being :math:`W_{c,k}`, :math:`x_{n,k}` or 1). The first part is
    the matmul's rounding (:math:`\gamma_m`), :math:`G`'s own error and the
    'mean' division; the second what rounding the logits to
    :math:`z^{hi}` (by at most :math:`u M_n`) does to
    :math:`G = a\,\mathrm{softmax}(z) - b`. Unlike the loss, an entry can
    therefore lose relative accuracy where its terms cancel.

    *Differences from PyTorch*: torch has no such function; it is what
    ``torch.autograd`` returns for ``F.linear_cross_entropy`` (``.sum()`` of
    it for ``reduction='none'``), here in closed form. The departures of
    :func:`linear_cross_entropy` apply.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import linear_cross_entropy_grad
    >>> np.set_printoptions(precision=6)
    >>> x = np.array([[1.0, 2.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> gx, gw, gb = linear_cross_entropy_grad(
    ...     x, W, [1], linear_bias=np.zeros(2))
    >>> print(gx)
    [[ 0.268941 -0.268941]]
    >>> print(gb)
    [ 0.268941 -0.268941]
    >>> np.set_printoptions(precision=8)
    """
    lin = _check_linear(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
                        label_smoothing, options)
    inv = 1.0
    if lin.reduction == "mean":
        den = _denominator(lin)
        inv = 1.0 / xs.to_float(den) if den.mant != 0 else np.nan
    gx = np.empty(lin.x.shape)
    gw = np.zeros(lin.w2.shape)
    gb = np.zeros(lin.w2.shape[0])
    for rows in _row_chunks(lin):
        _chunk_grads(lin, rows, inv, gx, gw, gb)  # its logits die with it: one chunk alive at a time
    gx = gx.reshape(lin.in_shape)
    gw = gw.reshape(lin.w_shape)
    return gx, gw, (None if lin.b_shape is None else gb.reshape(lin.b_shape))
