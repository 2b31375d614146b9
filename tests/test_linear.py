"""Tests for crossentropy_ref._linear: linear_cross_entropy and linear_cross_entropy_grad.

Expected values come from:

- torch 2.13.0 in float64: ``F.linear_cross_entropy`` (its reference path,
  ``options=None``, and its chunked path) and ``F.linear`` then
  ``F.cross_entropy``, loss and autograd gradients, on Hypothesis-generated
  inputs. Both sides compute in float64; torch's logits carry a matmul's
  rounding, so the tolerance is ``rtol=1e-10`` and an atol of ``1e-12``
  times the largest ``sum_k |x_k| |W_ck| + |b_c|`` (the scale of its logits'
  error, ``K u`` of that, times a loss gradient of at most 2 per logit);
- mpmath at mp.dps = 80 (MP_DPS_LINEAR) for the 4-ulp claim: the logits are
  formed exactly (``fractions.Fraction`` sums of the exact float64
  products), then the loss is evaluated in mpmath with the cancellation-free
  form ``sum_c b_c ((m - z_c) + log1p(S))``;
- by hand, stated per test.
"""

from __future__ import annotations

import copy
import math
import re
import zlib
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import mp_mass, ulp_errors
from hypothesis import given
from hypothesis import strategies as st

import crossentropy_ref as ce
from crossentropy_ref import _linear

MP_DPS_LINEAR = 80
MAX_ULP = 4.0
U = 2.0**-53


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


def exact_logits(x, W, b=None) -> list[list[Fraction]]:
    """z[n][j] = sum_k x[n, k] W[j, k] + b[j], exactly, for x (N, K) and W (M, K)."""
    xf = [[Fraction(float(t)) for t in row] for row in np.asarray(x, dtype=np.float64)]
    wf = [[Fraction(float(t)) for t in row] for row in np.asarray(W, dtype=np.float64)]
    bf = [Fraction(0)] * len(wf) if b is None else [Fraction(float(t)) for t in np.ravel(b)]
    return [[sum((a * c for a, c in zip(row, wr)), Fraction(0)) + bj for wr, bj in zip(wf, bf)] for row in xf]


def _mp(f: Fraction):
    return mpmath.mpf(f.numerator) / f.denominator


def mp_row_loss(z: list[Fraction], b: list) -> mpmath.mpf:
    """sum_c b_c (-log softmax(z)_c) for exact logits z, at MP_DPS_LINEAR digits."""
    with mpmath.workdps(MP_DPS_LINEAR):
        k = max(range(len(z)), key=lambda j: z[j])
        d = [_mp(z[k] - zj) for zj in z]  # m - z_c, exact differences rounded once
        s = mpmath.fsum(mpmath.exp(-dc) for j, dc in enumerate(d) if j != k)
        L = mpmath.log1p(s)
        return mpmath.fsum(bc * (dc + L) for bc, dc in zip(b, d) if bc != 0)


def mp_row_grad(z: list[Fraction], b: list) -> list:
    """a softmax(z) - b per class, for exact logits z."""
    with mpmath.workdps(MP_DPS_LINEAR):
        k = max(range(len(z)), key=lambda j: z[j])
        e = [mpmath.exp(-_mp(z[k] - zj)) for zj in z]
        tot = mpmath.fsum(e)
        a = mpmath.fsum(b)
        return [a * ej / tot - bj for ej, bj in zip(e, b)]


def exact_position_losses(x, W, target, *, b=None, weight=None, eps=0.0, ignore_index=-100):
    """Per-position exact losses (mpf) of 2-D x (N, K), W (C, K) (no K-dim), index or probability target."""
    z = exact_logits(x, W, b)
    c = W.shape[0]
    out = []
    for n, row in enumerate(z):
        t = target[n]
        if np.ndim(t) == 0 and int(t) == ignore_index:
            out.append(mpmath.mpf(0))
            continue
        out.append(mp_row_loss(row, mp_mass(c, t, weight, eps)))
    return out


def naive_losses(x, W, target, *, b=None, weight=None, eps=0.0):
    """The float64 matmul, then the (accurate) cross_entropy: the logits' rounding alone."""
    z = np.asarray(x) @ np.asarray(W).T + (0 if b is None else b)
    return ce.cross_entropy(z, target, weight, reduction="none", label_smoothing=eps)


def torch_linear(x, W, target, **kw):
    """torch 2.13.0, float64: loss and autograd gradients of loss.sum() (input, weight, bias)."""
    tx = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    tw = torch.tensor(np.asarray(W, dtype=np.float64), requires_grad=True)
    b = kw.pop("linear_bias", None)
    tb = None if b is None else torch.tensor(np.asarray(b, dtype=np.float64), requires_grad=True)
    wt = kw.pop("weight", None)
    t = np.asarray(target)
    logits_shape = (*tx.shape[:-1], tw.shape[0], *tw.shape[1:-1])
    tt = torch.tensor(t.astype(np.float64) if t.shape == logits_shape else t.astype(np.int64))
    loss = F.linear_cross_entropy(tx, tw, tt, linear_bias=tb,
                                  weight=None if wt is None else torch.tensor(np.asarray(wt, dtype=np.float64)),
                                  **kw)
    loss.sum().backward()
    grads = [None if a is None else (a.grad if a.grad is not None else torch.zeros_like(a)).numpy()
             for a in (tx, tw, tb)]
    return loss.detach().numpy(), grads


def logit_scale(x, W, b=None) -> float:
    """max over logits of sum_k |x_k| |W_ck| + |b_c|: the scale of a float64 matmul's error."""
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    w2 = np.asarray(W, dtype=np.float64).reshape(-1, x2.shape[-1])
    s = np.abs(x2) @ np.abs(w2).T + (0 if b is None else np.abs(np.ravel(b)))
    return float(max(1.0, s.max())) if s.size else 1.0


# ---------------------------------------------------------------------------
# Against torch 2.13.0 (float64)
# ---------------------------------------------------------------------------


@st.composite
def linear_problems(draw):
    """Small problems over every option: unbatched or batched, K-dim weights, bias, class
    weights, smoothing, index (with ignored positions) or probability targets."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batched = draw(st.booleans())
    kdims = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)) if batched else []
    n = draw(st.integers(0, 5)) if batched else None
    k = draw(st.integers(1, 40))
    c = draw(st.integers(1, 6))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    x = rng.normal(scale=scale, size=(n, k) if batched else (k,))
    W = rng.normal(scale=scale, size=(c, *kdims, k))
    kw = {}
    if draw(st.booleans()):
        kw["linear_bias"] = rng.normal(size=(c, *kdims))
    if draw(st.booleans()):
        kw["weight"] = rng.uniform(0.5, 2.0, size=c)
    kw["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))
    logits_shape = ((n,) if batched else ()) + (c, *kdims)
    if draw(st.booleans()):
        p = rng.dirichlet(np.ones(c), size=((n,) if batched else ()) + tuple(kdims))
        target = np.moveaxis(p, -1, 1 if batched else 0)
        assert target.shape == logits_shape
    else:
        target = rng.integers(0, c, size=((n,) if batched else ()) + tuple(kdims))
        ii = -100
        if draw(st.booleans()):
            ii = kw["ignore_index"] = int(draw(st.sampled_from([-100, 0, 5])))
        if target.ndim and draw(st.booleans()):
            target.reshape(-1)[::2] = ii
    return x, W, target, kw


@given(linear_problems())
def test_matches_torch_float64(problem):
    x, W, target, kw = problem
    loss_t, (gx_t, gw_t, gb_t) = torch_linear(x, W, target, **copy.deepcopy(kw))
    atol = 1e-12 * logit_scale(x, W, kw.get("linear_bias"))
    loss = ce.linear_cross_entropy(x, W, target, **kw)
    assert np.asarray(loss).dtype == np.float64
    np.testing.assert_allclose(loss, loss_t, rtol=1e-10, atol=atol, equal_nan=True)
    gx, gw, gb = ce.linear_cross_entropy_grad(x, W, target, **kw)
    np.testing.assert_allclose(gx, gx_t, rtol=1e-10, atol=atol, equal_nan=True)
    np.testing.assert_allclose(gw, gw_t, rtol=1e-10, atol=atol * max(1, np.size(x)), equal_nan=True)
    if kw.get("linear_bias") is None:
        assert gb is None
    else:
        np.testing.assert_allclose(gb, gb_t, rtol=1e-10, atol=atol * max(1, np.size(x)), equal_nan=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch_chunked_path_and_linear_then_cross_entropy(reduction):
    # torch's chunked path (options=LinearCrossEntropyOptions(batch_chunk_size=8)) and its
    # reference path F.linear + F.cross_entropy, float64, on N=40, K=64, C=50 with ignored rows.
    rng = np.random.default_rng(7)
    x, W, b = rng.normal(size=(40, 64)), rng.normal(scale=0.2, size=(50, 64)), rng.normal(size=50)
    y = rng.integers(0, 50, size=40)
    y[::5] = -100
    opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=8, chunking_method=None)
    tx, tw, tb = (torch.tensor(a) for a in (x, W, b))
    chunked = F.linear_cross_entropy(tx, tw, torch.tensor(y), linear_bias=tb, reduction=reduction,
                                     options=opts).numpy()
    plain = F.cross_entropy(F.linear(tx, tw, tb), torch.tensor(y), reduction=reduction).numpy()
    ours = ce.linear_cross_entropy(x, W, y, linear_bias=b, reduction=reduction, options=opts)
    atol = 1e-12 * logit_scale(x, W, b)
    np.testing.assert_allclose(ours, chunked, rtol=1e-10, atol=atol)
    np.testing.assert_allclose(ours, plain, rtol=1e-10, atol=atol)
    # options changes nothing here: the same bits without it.
    np.testing.assert_array_equal(ours, ce.linear_cross_entropy(x, W, y, linear_bias=b, reduction=reduction))


def test_equals_cross_entropy_of_exact_logits():
    # Dyadic inputs with few bits: x @ W.T + b is exact in float64 (by hand: products of
    # 8-bit numbers, sums of 16 of them, far below 53 bits), so the two must agree bit for bit.
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(6, 16)) / 64.0
    W = rng.integers(-128, 128, size=(5, 2, 16)) / 128.0
    b = rng.integers(-128, 128, size=(5, 2)) / 32.0
    y = rng.integers(0, 5, size=(6, 2))
    z = (x @ W.reshape(10, 16).T + b.reshape(10)).reshape(6, 5, 2)
    for red in ("none", "sum", "mean"):
        for eps in (0.0, 0.3):
            np.testing.assert_array_equal(
                ce.linear_cross_entropy(x, W, y, linear_bias=b, reduction=red, label_smoothing=eps),
                ce.cross_entropy(z, y, reduction=red, label_smoothing=eps))
    gz = ce.cross_entropy_grad(z, y, reduction="sum")
    gx, gw, gb = ce.linear_cross_entropy_grad(x, W, y, linear_bias=b, reduction="sum")
    np.testing.assert_allclose(gb, gz.sum(axis=0), rtol=1e-15, atol=0)


# ---------------------------------------------------------------------------
# The logits: zh + zl within delta of the exact products
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 1024, 5000])
def test_split_logits_are_within_their_bound(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(3, k)) * np.exp(rng.normal(scale=3, size=(3, 1)))
    W = rng.normal(scale=0.05, size=(4, k))
    x[0, : k // 2] *= 1e8  # a row whose large entries cancel below (W's row 0 is symmetric)
    W[0, : k // 2] = 1.0
    W[0, k // 2 : 2 * (k // 2)] = 1.0
    x[0, k // 2 : 2 * (k // 2)] = -x[0, : k // 2]
    b = rng.normal(size=4)
    lin = _linear._check_linear(x, W, np.zeros(3, dtype=np.int64), b, None, "none", None, 0.0, None)
    zh, zl, stats = _linear._logits_block(lin, slice(0, 3))
    delta = _linear._delta(lin, stats, slice(0, 3), zl)
    exact = exact_logits(x, W, b)
    for n in range(3):
        for c in range(4):
            err = abs(exact[n][c] - Fraction(float(zh[n, c, 0])) - Fraction(float(zl[n, c, 0])))
            assert err <= Fraction(float(delta[n, c, 0])), (n, c, float(err), delta[n, c, 0])
            # and the bound is a double-double's: by the module docstring, 2 gamma_K 2**-beta
            # |x_n| |W_c| (norms, each at most sqrt(K) 2**e, 2**e <= 2 max), gamma_K <= 2 K u;
            # plus the roundings of the low part (u of it).
            beta = (53 - math.ceil(math.log2(k))) // 2
            scale = k * k * 2.0 ** -(beta + 48) * np.abs(x[n]).max() * np.abs(W[c]).max()
            assert delta[n, c, 0] <= scale + 2.0**-100 * abs(zh[n, c, 0]) + 2.0**-1070


# ---------------------------------------------------------------------------
# Accuracy: within 4 ulp of the exact loss of the exact product (mpmath)
# ---------------------------------------------------------------------------


def _lm_rows(rng, n, k, c, gap=0.0):
    """LM-head-like rows: x ~ N(0, 1), W ~ N(0, 1/K); with `gap`, the target's logit is lifted
    by about `gap` (a confident row) through a column of x that only the target class reads."""
    x = rng.normal(size=(n, k))
    W = rng.normal(scale=1 / math.sqrt(k), size=(c, k))
    y = rng.integers(0, c, size=n)
    if gap:
        x[:, 0] = gap
        W[:, 0] = 0.0
        W[y, 0] = 1.0
        # distinct targets per row would need distinct columns: use one target for all rows
        y[:] = y[0]
        W[:, 0] = 0.0
        W[y[0], 0] = 1.0
    return x, W, y


def _cancelling(rng, n, k, c):
    """x W^T sums that cancel: each logit is about 1e6 + 1e6 ... - 1e6 ... plus a small part, so a
    float64 matmul's error (K u 1e6 ~ 1e-7) dwarfs the small part's last bits."""
    x = rng.normal(size=(n, k))
    W = rng.normal(scale=1 / math.sqrt(k), size=(c, k))
    q = k // 4  # columns [0, q) and [q, 2q) cancel pairwise; the rest is an ordinary row
    x[:, :q] = rng.normal(scale=1e6, size=(n, q))
    x[:, q : 2 * q] = -x[:, :q]
    W[:, q : 2 * q] = W[:, :q]
    return x, W, rng.integers(0, c, size=n)


def _accuracy_case(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # a fixed seed per case
    if name == "lm-head":
        x, W, y = _lm_rows(rng, 6, 1024, 20)
        return x, W, y, {}
    if name == "confident":
        x, W, y = _lm_rows(rng, 6, 256, 20, gap=35.0)
        return x, W, y, {}
    if name == "confident-tiny-loss":
        x, W, y = _lm_rows(rng, 4, 64, 8, gap=600.0)
        return x, W, y, {}
    if name == "cancelling":
        x, W, y = _cancelling(rng, 6, 512, 12)
        return x, W, y, {}
    if name == "cancelling-confident":
        x, W, y = _cancelling(rng, 6, 512, 12)
        x[:, -1] = 40.0
        W[:, -1] = 0.0
        W[y[0], -1] = 1.0
        y[:] = y[0]
        return x, W, y, {}
    if name == "large-k":
        x, W, y = _lm_rows(rng, 3, 8192, 6, gap=20.0)
        return x, W, y, {}
    if name == "weights-smoothing-bias":
        x, W, y = _lm_rows(rng, 6, 300, 10, gap=25.0)
        y[::3] = -100
        return x, W, y, dict(weight=rng.uniform(0.1, 10, size=10), label_smoothing=0.1,
                             linear_bias=rng.normal(size=10))
    if name == "probabilities":
        x, W, _ = _cancelling(rng, 5, 256, 7)
        p = rng.dirichlet(np.ones(7) * 0.2, size=5)
        return x, W, p, dict(weight=rng.uniform(0.5, 2, size=7))
    if name == "ignore-index-class":
        x, W, y = _lm_rows(rng, 6, 128, 5)
        y[0], y[1] = 0, 2  # one position ignored (class 2 is the ignore_index), one kept at least
        return x, W, y, dict(ignore_index=2)
    raise AssertionError(name)


ACCURACY = ["lm-head", "confident", "confident-tiny-loss", "cancelling", "cancelling-confident", "large-k",
            "weights-smoothing-bias", "probabilities", "ignore-index-class"]
# Cases where a float64 matmul is too inaccurate: the logits' rounding alone costs more than 4 ulp
# (checked below, so that these cases keep testing what they claim to).
ADVERSARIAL = {"confident", "confident-tiny-loss", "cancelling", "cancelling-confident", "large-k",
               "probabilities"}


@pytest.mark.parametrize("name", ACCURACY)
def test_losses_within_4_ulp_of_mpmath(name):
    x, W, t, kw = _accuracy_case(name)
    ii = kw.get("ignore_index", -100)
    exact = exact_position_losses(x, W, t, b=kw.get("linear_bias"), weight=kw.get("weight"),
                                  eps=kw.get("label_smoothing", 0.0), ignore_index=ii)
    ours = ce.linear_cross_entropy(x, W, t, reduction="none", **kw)
    err = ulp_errors(ours, exact)
    assert err.max() <= MAX_ULP, (name, err)
    if name in ADVERSARIAL:
        naive = naive_losses(x, W, t, b=kw.get("linear_bias"), weight=kw.get("weight"),
                             eps=kw.get("label_smoothing", 0.0))
        assert ulp_errors(naive, exact).max() > MAX_ULP, name
    # 'sum' and 'mean': the exact sum (and the exact denominator), rounded once
    with mpmath.workdps(MP_DPS_LINEAR):
        total = mpmath.fsum(exact)
        if np.ndim(t) == 2:
            den = mpmath.mpf(len(t))
        else:
            valid = [int(v) != ii for v in t]
            w = kw.get("weight")
            den = mpmath.fsum(mpmath.mpf(1 if w is None else float(w[int(v)])) for v, ok in zip(t, valid) if ok)
        mean = total / den
    assert ulp_errors([ce.linear_cross_entropy(x, W, t, reduction="sum", **kw)], [total]).max() <= MAX_ULP
    assert ulp_errors([ce.linear_cross_entropy(x, W, t, reduction="mean", **kw)], [mean]).max() <= MAX_ULP


def test_k_dimensional_within_4_ulp():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 200))
    W = rng.normal(scale=0.1, size=(6, 2, 200))
    x[:, 0] = 40.0
    W[:, :, 0] = 0.0
    W[4, :, 0] = 1.0  # class 4 is confident at every position
    y = np.full((3, 2), 4)
    y[0, 1] = -100
    ours = ce.linear_cross_entropy(x, W, y, reduction="none")
    for s in range(2):
        exact = exact_position_losses(x, W[:, s, :], y[:, s])
        assert ulp_errors(ours[:, s], exact).max() <= MAX_ULP


def test_mixed_sign_weights_that_cancel_give_the_exact_sum():
    # By hand: two positions with mirrored logits (z and z reversed) and targets 0 and 1, weights
    # (1, -1): the two losses are equal with opposite signs, so the exact sum is 0. The first tier
    # cannot prove a sum that cancels; the decimal recomputation gives the exact 0.
    x = np.array([[1.0, 0.3], [0.3, 1.0]])
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ce.linear_cross_entropy(x, W, [0, 1], weight=[1.0, -1.0], reduction="sum") == 0.0


# ---------------------------------------------------------------------------
# Gradient
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lm-head", "cancelling", "confident", "weights-smoothing-bias", "probabilities"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_meet_the_documented_standard(name, reduction):
    # The standard of linear_cross_entropy_grad's Notes, against the exact gradient: G from
    # mpmath at the exact logits, its products with W and x (and sum over rows) in mpmath.
    x, W, t, kw = _accuracy_case(name)
    x, W = x[:3], W  # three rows keep mpmath's products small
    t = t[:3]
    b, w, eps = kw.get("linear_bias"), kw.get("weight"), kw.get("label_smoothing", 0.0)
    ii = kw.get("ignore_index", -100)
    gx, gw, gb = ce.linear_cross_entropy_grad(x, W, t, reduction=reduction, **kw)
    z = exact_logits(x, W, b)
    c = W.shape[0]
    G, B, M = [], [], []
    for n, row in enumerate(z):
        if np.ndim(t[n]) == 0 and int(t[n]) == ii:
            G.append([mpmath.mpf(0)] * c)
            B.append([mpmath.mpf(0)] * c)
        else:
            bm = mp_mass(c, t[n], w, eps)
            G.append(mp_row_grad(row, bm))
            B.append(bm)
        M.append(max(abs(float(v)) for v in row))
    if reduction == "mean":
        with mpmath.workdps(MP_DPS_LINEAR):
            if np.ndim(t) == 2:
                den = mpmath.mpf(len(t))
            else:
                den = mpmath.fsum(mpmath.mpf(1 if w is None else float(w[int(v)])) for v in t if int(v) != ii)
            G = [[g / den for g in row] for row in G]
            B = [[bb / den for bb in row] for row in B]
    with mpmath.workdps(MP_DPS_LINEAR):
        Gf = np.array([[float(g) for g in row] for row in G])
        Babs = np.array([[abs(float(bb)) for bb in row] for row in B])
        Mn = np.array(M)[:, None]

        def magnitude(m):  # the standard's per-term factor, for a sum of length m
            return (m + 10 + 2 * Mn) * U * np.abs(Gf) + 2 * Mn * U * Babs

        exact_gx = [[mpmath.fsum(G[n][j] * float(W[j, k]) for j in range(c)) for k in range(x.shape[1])]
                    for n in range(len(x))]
        for n in range(len(x)):
            bound = magnitude(c)[n] @ np.abs(W)
            err = np.array([abs(float(gx[n, k] - exact_gx[n][k])) for k in range(x.shape[1])])
            assert np.all(err <= bound), (n, float(np.max(err / np.maximum(bound, 1e-300))))
        rows = len(x)
        for j in range(c):
            exact_gw = [mpmath.fsum(G[n][j] * float(x[n, k]) for n in range(rows)) for k in range(x.shape[1])]
            bound = magnitude(rows)[:, j] @ np.abs(x)
            err = np.array([abs(float(gw[j, k] - exact_gw[k])) for k in range(x.shape[1])])
            assert np.all(err <= bound), j
        if b is not None:
            exact_gb = [mpmath.fsum(G[n][j] for n in range(rows)) for j in range(c)]
            err = np.array([abs(float(gb[j] - exact_gb[j])) for j in range(c)])
            assert np.all(err <= magnitude(rows).sum(axis=0))


def test_gradient_by_finite_differences_of_the_exact_loss():
    # Central differences of the loss in x[0, 1] and W[2, 0], step 2**-20: the error of the
    # difference quotient is O(h**2) = 1e-12 of the curvature's scale, below the 1e-8 tolerance.
    rng = np.random.default_rng(5)
    x, W, b = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=3)
    y = np.array([0, 2, 1, 2])
    gx, gw, gb = ce.linear_cross_entropy_grad(x, W, y, linear_bias=b, label_smoothing=0.2)
    h = 2.0**-20

    def f(xx, ww, bb):
        return float(ce.linear_cross_entropy(xx, ww, y, linear_bias=bb, label_smoothing=0.2))

    xp, xm = x.copy(), x.copy()
    xp[0, 1] += h
    xm[0, 1] -= h
    assert abs((f(xp, W, b) - f(xm, W, b)) / (2 * h) - gx[0, 1]) < 1e-8
    wp, wm = W.copy(), W.copy()
    wp[2, 0] += h
    wm[2, 0] -= h
    assert abs((f(x, wp, b) - f(x, wm, b)) / (2 * h) - gw[2, 0]) < 1e-8
    bp, bm = b.copy(), b.copy()
    bp[1] += h
    bm[1] -= h
    assert abs((f(x, W, bp) - f(x, W, bm)) / (2 * h) - gb[1]) < 1e-8


# ---------------------------------------------------------------------------
# Memory: never the (N, C) logits
# ---------------------------------------------------------------------------


def test_logit_chunks_are_a_small_share_of_the_logits():
    # N = 8192 rows: chunks of 1/40 of them (205 rows), so the two float64 chunk arrays are
    # 2/40 = 5 % of the (N, C) logits; below 5120 rows, the floor of 128 rows (BLAS panels).
    rng = np.random.default_rng(0)
    for n, rows in ((8192, 205), (4096, 128), (100, 128)):
        lin = _linear._check_linear(rng.normal(size=(n, 4)), rng.normal(size=(10, 4)), np.zeros(n, dtype=np.int64),
                              None, None, "mean", None, 0.0, None)
        chunks = list(_linear._row_chunks(lin))
        assert max(r.stop - r.start for r in chunks) == min(rows, n)
        assert chunks[0].start == 0 and chunks[-1].stop == n


# ---------------------------------------------------------------------------
# Inputs: validation, types, no modification
# ---------------------------------------------------------------------------


def _small():
    rng = np.random.default_rng(1)
    return rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), np.array([0, 1, 4, 2])


BAD = [
    (dict(input=np.zeros((2, 2, 3))), ValueError, "`input` must have shape (in_features,) or (N, in_features); "
     "got (2, 2, 3)"),
    (dict(linear_weight=np.zeros(3)), ValueError, "`linear_weight` must have shape (C, in_features) or "
     "(C, d1, ..., dk, in_features); got (3,)"),
    (dict(linear_weight=np.zeros((5, 2))), ValueError, "`linear_weight` must have in_features = 3 as its last "
     "axis to match `input` of shape (4, 3); got (5, 2)"),
    (dict(linear_weight=np.zeros((0, 3))), ValueError, "`linear_weight` must have at least one class along "
     "axis 0; got shape (0, 3)"),
    (dict(input=np.zeros(3), linear_weight=np.zeros((5, 2, 3)), target=np.zeros(2, dtype=np.int64)), ValueError,
     "`input` must be batched, (N, 3), for the K-dimensional loss of `linear_weight` of shape (5, 2, 3); "
     "got (3,)"),
    (dict(linear_bias=np.zeros(4)), ValueError, "`linear_bias` must have shape (5,) to match `linear_weight` of "
     "shape (5, 3); got (4,)"),
    (dict(target=np.zeros(3, dtype=np.int64)), ValueError, "`target` must have shape (4,) (class indices) or "
     "(4, 5) (class probabilities) to match the logits `input` @ `linear_weight`.T, of shape (4, 5); got (3,)"),
    (dict(target=np.full((4, 5), 0.2), ignore_index=-100), ValueError, "`ignore_index` must be None with "
     "class-probability targets, as in torch; got -100"),
    (dict(target=np.array([0, 1, 5, 2])), ValueError, "`target` must hold class indices in [0, 5) or "
     "`ignore_index`=-100; got 5 at position (2,)"),
    (dict(input=np.array([[0.0, np.nan, 0.0]] * 4)), ValueError, "`input` must hold finite values; got nan at "
     "position (0, 1)"),
    (dict(linear_weight=np.full((5, 3), np.inf)), ValueError, "`linear_weight` must hold finite values; got inf "
     "at position (0, 0)"),
    (dict(linear_bias=np.array([0, 0, np.nan, 0, 0])), ValueError, "`linear_bias` must hold finite values; got "
     "nan at position (2,)"),
    (dict(options="chunked"), TypeError, "`options` must be None or a torch.nn.LinearCrossEntropyOptions (it "
     "only chooses how torch chunks the work, which changes nothing here); got str 'chunked'"),
    (dict(reduction="avg"), ValueError, "`reduction` must be one of ('none', 'mean', 'sum'); got 'avg'"),
    (dict(label_smoothing=1.5), ValueError, "`label_smoothing` must be in [0, 1]; got 1.5"),
    (dict(ignore_index=1.5), TypeError, "`ignore_index` must be an integer; got float 1.5"),
    (dict(weight=np.ones(4)), ValueError, "`weight` must have shape (5,), one per class; got (4,)"),
    (dict(input=np.array([[1j, 0, 0]] * 4)), TypeError, "`input` must hold real numbers (integer or floating "
     "point); got complex128 array of shape (4, 3)"),
]


@pytest.mark.parametrize("fn", [ce.linear_cross_entropy, ce.linear_cross_entropy_grad])
@pytest.mark.parametrize(("override", "exc", "msg"), BAD)
def test_rejects(fn, override, exc, msg):
    x, W, y = _small()
    args = dict(input=x, linear_weight=W, target=y)
    args.update(override)
    with pytest.raises(exc, match=re.escape(msg)):
        fn(**args)


@pytest.mark.parametrize("fn", [ce.linear_cross_entropy, ce.linear_cross_entropy_grad])
def test_arguments_are_not_modified_and_may_be_read_only(fn):
    rng = np.random.default_rng(2)
    args = [rng.normal(size=(5, 7)), rng.normal(size=(4, 2, 7)), rng.integers(0, 4, size=(5, 2))]
    kw = dict(linear_bias=rng.normal(size=(4, 2)), weight=rng.uniform(0.5, 2, size=4), label_smoothing=0.1)
    before = [a.copy() for a in (*args, *kw.values()) if isinstance(a, np.ndarray)]
    for a in (*args, *kw.values()):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    fn(*args, **kw)
    for a, b in zip([a for a in (*args, *kw.values()) if isinstance(a, np.ndarray)], before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_any_array_type_and_dtype():
    # float32 arrays, nested lists and torch tensors give exactly the float64 result of the same values.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    W = rng.normal(size=(4, 5)).astype(np.float32)
    y = np.array([0, 3, 1], dtype=np.int32)
    ref = ce.linear_cross_entropy(x.astype(np.float64), W.astype(np.float64), y.astype(np.int64))
    assert ce.linear_cross_entropy(x, W, y) == ref
    assert ce.linear_cross_entropy(x.tolist(), W.tolist(), y.tolist()) == ref
    assert ce.linear_cross_entropy(torch.tensor(x, requires_grad=True), torch.tensor(W), torch.tensor(y)) == ref


def test_unbatched_and_torch_default_ignore_index():
    # Unbatched input (K,) with a 0-d target; ignore_index=None is -100 for index targets (torch's
    # documented mapping), so a target of -100 is ignored: 'mean' over no position is NaN (torch too).
    x, W, y = _small()
    assert ce.linear_cross_entropy(x[1], W, y[1]) == ce.linear_cross_entropy(x[1:2], W, y[1:2])
    out = ce.linear_cross_entropy(x[1], W, np.array(1), reduction="none")
    assert type(out) is np.float64
    assert math.isnan(ce.linear_cross_entropy(x[:1], W, [-100]))
    assert math.isnan(float(F.linear_cross_entropy(torch.tensor(x[:1]), torch.tensor(W), torch.tensor([-100]))))
    gx, gw, gb = ce.linear_cross_entropy_grad(x[1], W, y[1])
    assert gx.shape == (3,) and gw.shape == (5, 3) and gb is None


# ---------------------------------------------------------------------------
# The escalation paths
# ---------------------------------------------------------------------------


def test_unproven_positions_go_to_decimal_and_are_exact(monkeypatch):
    # Logits near 1e15 with a gap of 40 (by hand: z = (1e15 + 40, 1e15), loss log1p(e**-40)
    # ~ 4.2e-18): the bound on the split products' error (2**50 gamma_3 |x'| |W|, about 1e-14
    # absolute) times sum |g| (~ 2 loss) is ~1e-14 of the loss, so the first tier cannot prove
    # 4 ulp and the position is computed in decimal from the exact products.
    calls = []
    real = _linear._decimal_loss
    monkeypatch.setattr(_linear, "_decimal_loss", lambda *a: calls.append(a) or real(*a))
    x = np.array([[1e15, 40.0, 0.1]])
    W = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ours = ce.linear_cross_entropy(x, W, [0], reduction="none")
    assert len(calls) == 1
    exact = exact_position_losses(x, W, np.array([0]))
    assert ulp_errors(ours, exact).max() <= MAX_ULP


def test_cancelling_mixed_sign_weights_take_the_deep_tier(monkeypatch):
    # By hand: weights (1, -1) and label_smoothing 1 (a uniform target) make the loss
    # (1/2)(-log q0) - (1/2)(-log q1) = (z1 - z0) / 2. Row 0 has z0 = 1 + 1e-20, z1 = 1: the
    # float64 logits are equal, the loss of the leading parts is an exact 0 that the first tier
    # cannot prove (its terms cancel), so the engine's deep tier computes it, and the low part
    # gives the loss -1e-20 / 2 (then proven in decimal). Row 1: z = (2.5, 2), loss -0.25.
    calls = []
    real = _linear.loss_deep
    monkeypatch.setattr(_linear, "loss_deep", lambda pb, idx: calls.append(len(idx)) or real(pb, idx))
    x = np.array([[1.0, 1e-20], [2.0, 0.5]])
    W = np.array([[1.0, 1.0], [1.0, 0.0]])
    ours = ce.linear_cross_entropy(x, W, [0, 1], weight=[1.0, -1.0], label_smoothing=1.0, reduction="none")
    assert calls == [1]
    assert ours[0] == -0.5 * 1e-20 and ours[1] == -0.25
