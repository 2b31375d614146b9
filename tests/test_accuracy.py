"""Accuracy in units in the last place (ulp), against mpmath ground truth.

Every float64 result of crossentropy_ref must be within MAX_ULP = 4 ulp of the
exact value of the function at the given float64 inputs: the exact value is
computed by _helpers' mp_* functions and MpRow at mp.dps = 50 (MP_DPS) from the
exact float inputs; test_mpmath_reference_matches_the_definitions checks those
identities against the plain definitions evaluated at mp.dps = 450. The error
of a result v is |v - exact| / ulp, with ulp = np.spacing of the exact value
rounded to float64 (_helpers.ulp_errors; below the normal range that spacing
is 2**-1074).

Covered, per family of inputs (FAMILIES):

- cross_entropy with every option (class weights, ignore_index, the three
  reductions, label smoothing, probability targets, K-dimensional logits),
  its gradient, nll_loss, log_softmax, softmax, logsumexp, and both binary
  losses (with weight, pos_weight and targets strictly inside (0, 1));
- the "hard" families: gaps of 30 to 740 between logits; 10**4 classes whose
  exp terms all matter; soft targets with tiny masses; label smoothing on
  confident predictions; 'sum' and 'mean' over 10**6 positions.

The gradient and softmax are held to MAX_ULP where their exact value is a
normal float64 (a subnormal has fewer bits to be accurate to). That includes
the gradient entries a q_c - b_c whose two terms cancel, measured by
kappa = (a q_c + b_c) / |a q_c - b_c| >= 1: the family "targets near the
prediction" has kappa up to 2**53 and beyond (the target is softmax(z)
itself), where a float64 formula would be off by about kappa ulp. The report
gives the worst error of the entries with kappa > KAPPA_MAX separately.

The same quantities from torch 2.13.0 in float64 are measured too, and only
reported; what torch gets wrong is asserted as documented facts about torch.

Without pytest::

    cd /work/main && .venv/bin/python tests/test_accuracy.py

prints the worst error in ulp per function and per family, for
crossentropy_ref and for torch float64.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import (
    DEFAULT_ENGINE,
    ENGINES,
    MP_DPS,
    TORCH_SOFTMAX_FAMILY,
    MpRow,
    mp_binary_cross_entropy_with_logits,
    mp_mass,
    relative_errors,
    torch_binary_cross_entropy,
    torch_binary_cross_entropy_with_logits,
    torch_cross_entropy,
    torch_nll_loss,
    ulp_errors,
    with_engine,
)

import crossentropy_ref as ce

MAX_ULP = 4.0
KAPPA_MAX = 2.0


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MultiClassCase:
    """Logits (N, C) with index (N,) or probability (N, C) targets, and the loss options.

    `spatial` > 1 rearranges the N rows as K-dimensional logits (N / spatial, C,
    spatial), the layout whose class axis is in the middle.
    """

    logits: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None
    label_smoothing: float = 0.0
    ignore_index: int = -100
    spatial: int = 1


def _rows_with_gaps(rng, n, c, low, high):
    """Rows whose maximum is `low`..`high` above every other logit (a random offset added)."""
    z = rng.uniform(-5.0, 5.0, size=(n, 1)) - rng.uniform(low, high, size=(n, c))
    k = rng.integers(0, c, size=n)
    z[np.arange(n), k] = z[np.arange(n), k] + rng.uniform(low, high, size=n) + rng.uniform(0, 1, size=n)
    # Some rows keep a second logit close to the maximum, so that s is not only tiny terms.
    close = rng.random(n) < 0.3
    j = (k + 1) % c
    z[close, j[close]] = z[close, k[close]] - rng.uniform(0, 3, size=close.sum())
    return z, k


def _soft(rng, n, c, tiny=False):
    p = rng.random((n, c))
    if tiny:
        # Masses of 1e-300 .. 1e-8 beside ordinary ones.
        p[:, 1:] *= 10.0 ** rng.uniform(-300, -8, size=(n, c - 1))
    return p / p.sum(axis=1, keepdims=True)


def _families() -> dict[str, dict[str, MultiClassCase]]:
    rng = np.random.default_rng(20261129)
    fam: dict[str, dict[str, MultiClassCase]] = {}

    # Random logits, every option.
    cases = {}
    for c in (2, 3, 5, 10):
        z = rng.normal(scale=3.0, size=(60, c))
        y = rng.integers(0, c, size=60)
        w = rng.uniform(0.1, 3.0, size=c)
        y_ign = y.copy()
        y_ign[::7] = -1
        cases[f"C={c}, index"] = MultiClassCase(z, y)
        cases[f"C={c}, index, weights, ignore_index=-1"] = MultiClassCase(z, y_ign, w, ignore_index=-1)
        cases[f"C={c}, label smoothing 0.3, weights"] = MultiClassCase(z, y, w, 0.3)
        cases[f"C={c}, label smoothing 1.0"] = MultiClassCase(z, y, None, 1.0)
        cases[f"C={c}, probabilities"] = MultiClassCase(z, _soft(rng, 60, c))
        cases[f"C={c}, probabilities, weights, smoothing 0.1"] = MultiClassCase(z, _soft(rng, 60, c), w, 0.1)
        cases[f"C={c}, K-dim, index, weights"] = MultiClassCase(z, y, w, spatial=4)
        cases[f"C={c}, K-dim, probabilities"] = MultiClassCase(z, _soft(rng, 60, c), spatial=6)
    fam["random"] = cases

    # Gaps of 30 to 740 between the maximum and the other logits.
    cases = {}
    for c in (2, 3, 8):
        z, k = _rows_with_gaps(rng, 120, c, 30.0, 740.0)
        other = (k + 1 + rng.integers(0, c - 1, size=120)) % c
        cases[f"C={c}, target = max"] = MultiClassCase(z, k)
        cases[f"C={c}, target = max, weights"] = MultiClassCase(z, k, rng.uniform(0.1, 3.0, size=c))
        cases[f"C={c}, wrong target"] = MultiClassCase(z, other)
        cases[f"C={c}, K-dim, target = max"] = MultiClassCase(z, k, spatial=8)
        cases[f"C={c}, probabilities"] = MultiClassCase(z, _soft(rng, 120, c))
    fam["gaps 30..740"] = cases

    # 10**4 classes whose exp terms all matter: logits within 25 of the maximum
    # (e^-25 ~ 1e-11 of the largest term, far above an ulp of the sum), and rows
    # whose maximum stands 40 above the rest (then the loss of the maximum is s).
    c = 10**4
    z = rng.uniform(-25.0, 0.0, size=(3, c)) + rng.uniform(-3, 3, size=(3, 1))
    z[2, 0] = z[2, 1:].max() + 40.0 + rng.uniform(0, 1)
    y = np.array([int(np.argmax(z[0])), 17, 0])
    fam["10^4 classes"] = {
        "index": MultiClassCase(z, y),
        "probabilities, smoothing 0.1": MultiClassCase(z, _soft(rng, 3, c), None, 0.1),
        "K-dim (1, 10^4, 3)": MultiClassCase(z, y, spatial=3),
    }

    # Soft targets with tiny masses on confident and ordinary rows.
    cases = {}
    for c in (3, 6):
        z, _ = _rows_with_gaps(rng, 100, c, 30.0, 700.0)
        zr = rng.normal(scale=4.0, size=(100, c))
        cases[f"C={c}, confident"] = MultiClassCase(z, _soft(rng, 100, c, tiny=True))
        cases[f"C={c}, confident, weights"] = MultiClassCase(z, _soft(rng, 100, c, tiny=True), rng.uniform(0.1, 3, c))
        cases[f"C={c}, random logits"] = MultiClassCase(zr, _soft(rng, 100, c, tiny=True))
    fam["tiny soft masses"] = cases

    # Label smoothing on confident predictions (the target is the maximum).
    cases = {}
    for c in (2, 5):
        z, k = _rows_with_gaps(rng, 100, c, 30.0, 700.0)
        for eps in (1e-9, 1e-3, 0.1, 0.5):
            cases[f"C={c}, eps={eps:g}"] = MultiClassCase(z, k, None, eps)
        cases[f"C={c}, eps=0.1, weights"] = MultiClassCase(z, k, rng.uniform(0.1, 3.0, c), 0.1)
    fam["smoothing, confident"] = cases

    # Targets close to the prediction: a q_c and b_c agree in many leading bits, so the
    # gradient entries cancel (kappa from about 10 to 2**53 and more).
    cases = {}
    for c in (3, 7):
        z = rng.normal(scale=3.0, size=(80, c))
        q64 = ce.softmax(z, axis=1)  # the prediction itself, rounded: kappa ~ 2**53
        q32 = ce.softmax(z.astype(np.float32), axis=1)  # rounded to float32's 24 bits: kappa ~ 2**24
        cases[f"C={c}, target = softmax(z) in float64"] = MultiClassCase(z, q64)
        cases[f"C={c}, target = softmax(z) in float32"] = MultiClassCase(z, q32.astype(np.float64))
        cases[f"C={c}, target = softmax(z) (1 + 1e-6 noise)"] = MultiClassCase(
            z, q64 * (1 + 1e-6 * rng.normal(size=z.shape)))
        cases[f"C={c}, target = softmax(z), weights"] = MultiClassCase(z, q64, rng.uniform(0.5, 2.0, c))
        # Label smoothing whose eps / C lands on softmax entries: logits chosen so that
        # q_c ~ eps / C (1 + small) for the non-target classes.
        eps = 0.3
        zs = np.log(np.full((80, c), eps / c) * (1 + 1e-7 * rng.normal(size=(80, c))))
        y = rng.integers(0, c, size=80)
        zs[np.arange(80), y] = np.log(1 - eps + eps / c)
        cases[f"C={c}, smoothing 0.3, q_c ~ eps / C"] = MultiClassCase(zs, y, None, eps)
    fam["targets near the prediction"] = cases

    # Issue 16's families. Log-probabilities as logits: logsumexp is the log of a sum
    # that is 1 up to the roundings of the logs, so its exact value is near 0 and the
    # m + log1p(s) of a float64 formula cancels (kappa ~ 2**53).
    cases = {}
    for c in (2, 3, 10, 100):
        lp = np.log(_soft(rng, 60, c))
        cases[f"C={c}, log of random probabilities"] = MultiClassCase(lp, rng.integers(0, c, size=60))
    ln2 = float(np.log(2.0))
    cases["[-ln 2, -ln 2] and [-ln C] * C"] = MultiClassCase(
        np.array([[-ln2, -ln2, -np.inf, -np.inf], [-np.log(4.0)] * 4, [-np.log(3.0)] * 3 + [-np.inf]]),
        np.array([0, 1, 2]))
    fam["log-probabilities"] = cases

    # Self-distillation: the target is the prediction itself, from this package and from
    # torch, both float64 (kappa ~ 2**53 for every gradient entry).
    cases = {}
    for c in (3, 10, 300):
        z = rng.normal(scale=3.0, size=(40, c))
        cases[f"C={c}, target = ce.softmax(z)"] = MultiClassCase(z, ce.softmax(z, axis=1))
        cases[f"C={c}, target = torch.softmax(z)"] = MultiClassCase(z, torch.softmax(torch.from_numpy(z), 1).numpy())
        cases[f"C={c}, target = torch.softmax(z), weights, smoothing 0.1"] = MultiClassCase(
            z, torch.softmax(torch.from_numpy(z), 1).numpy(), rng.uniform(0.5, 2.0, c), 0.1)
    fam["self-distillation"] = cases

    # Gaps of 700 to 745 (the terms of s are subnormal or nearly), scaled by weights up to
    # 1e300 and down to 1e-300; and weights spanning 1e-300 .. 1e300 on ordinary logits.
    cases = {}
    for c in (2, 3):
        z, k = _rows_with_gaps(rng, 60, c, 700.0, 745.0)
        big = 10.0 ** rng.uniform(250, 300, size=c)
        tiny = 10.0 ** rng.uniform(-300, -250, size=c)
        cases[f"C={c}, target = max, weights up to 1e300"] = MultiClassCase(z, k, big)
        cases[f"C={c}, target = max, weights down to 1e-300"] = MultiClassCase(z, k, tiny)
        cases[f"C={c}, probabilities, weights up to 1e300"] = MultiClassCase(z, _soft(rng, 60, c, tiny=True), big)
        cases[f"C={c}, smoothing 0.1, weights up to 1e300"] = MultiClassCase(z, k, big, 0.1)
    cases["[[0, -740]], weights [1e300, 1]"] = MultiClassCase(np.array([[0.0, -740.0]] * 4), np.array([0, 0, 1, 0]),
                                                              np.array([1e300, 1.0]))
    fam["gaps 700..745, weights to 1e300"] = cases
    cases = {}
    for c in (3, 7):
        z = rng.normal(scale=3.0, size=(60, c))
        w = 10.0 ** rng.uniform(-300, 300, size=c)
        y = rng.integers(0, c, size=60)
        cases[f"C={c}, index"] = MultiClassCase(z, y, w)
        cases[f"C={c}, index, smoothing 0.2"] = MultiClassCase(z, y, w, 0.2)
        cases[f"C={c}, probabilities"] = MultiClassCase(z, _soft(rng, 60, c), w)
        cases[f"C={c}, weights all 1e308"] = MultiClassCase(z, y, np.full(c, 1e308))
    fam["weights 1e-300..1e300"] = cases
    return fam


FAMILIES = _families()
CASES = [(f, n) for f in FAMILIES for n in FAMILIES[f]]


@functools.cache
def _row(z: tuple) -> MpRow:
    return MpRow(np.array(z))


@functools.cache
def _softmax_row(z: tuple) -> list:
    return _row(z).softmax()


def _layout(case: MultiClassCase, a: np.ndarray, classes: bool) -> np.ndarray:
    """Rows (N, C) or per-row values (N,) to the K-dim layout (N/S, C, S) or (N/S, S)."""
    s = case.spatial
    if s == 1:
        return a
    n = a.shape[0] // s
    a = a[: n * s]
    if classes:
        return np.ascontiguousarray(a.reshape(n, s, -1).transpose(0, 2, 1))
    return a.reshape(n, s)


def _unlayout(case: MultiClassCase, a: np.ndarray, classes: bool) -> np.ndarray:
    s = case.spatial
    if s == 1:
        return a
    return a.transpose(0, 2, 1).reshape(-1, a.shape[1]) if classes else a.reshape(-1)


@functools.cache
@with_engine
def multiclass_errors(family: str, name: str, engine: str = DEFAULT_ENGINE) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{quantity: (ulp errors of ours, ulp errors of torch float64, kappa)} for one case.

    kappa is the condition number of each gradient entry (1 for every other quantity).
    """
    case = FAMILIES[family][name]
    n_rows = (case.logits.shape[0] // case.spatial) * case.spatial
    z, t = case.logits[:n_rows], case.target[:n_rows]
    c = z.shape[1]
    prob = t.ndim == 2
    rows = [_row(tuple(r)) for r in z]
    mass = [mp_mass(c, ti, case.weight, case.label_smoothing) for ti in t]
    if not prob:
        # An ignored position has no mass: its loss and gradient are exactly 0.
        mass = [b if ti != case.ignore_index else [mpmath.mpf(0)] * c for b, ti in zip(mass, t)]
    opts = {"label_smoothing": case.label_smoothing, "ignore_index": case.ignore_index}
    zl, tl = _layout(case, z, True), _layout(case, t, prob)
    out = {}

    def add(q, ours, theirs, exact, kappa=None, normal_only=False):
        ours, theirs = np.asarray(ours, dtype=np.float64).reshape(-1), np.asarray(theirs).reshape(-1)
        e_o, e_t = ulp_errors(ours, exact), ulp_errors(theirs, exact)
        kappa = np.ones(e_o.shape) if kappa is None else kappa
        if normal_only:
            keep = np.array([abs(float(x)) >= np.finfo(np.float64).tiny or x == 0 for x in exact])
            e_o, e_t, kappa = e_o[keep], e_t[keep], kappa[keep]
        out[q] = (e_o, e_t, kappa)

    loss_t, grad_t = torch_cross_entropy(zl, tl, case.weight, reduction="none", **opts)
    exact_loss = [r.cross_entropy(b) for r, b in zip(rows, mass)]
    add("cross_entropy", _unlayout(case, ce.cross_entropy(zl, tl, case.weight, reduction="none", **opts), False),
        _unlayout(case, loss_t, False), exact_loss)
    exact_grad, kappa = [], []
    with mpmath.workdps(MP_DPS):
        for z_row, b in zip(z, mass):
            q = _softmax_row(tuple(z_row))
            a = mpmath.fsum(b)
            g = [a * qc - bc for qc, bc in zip(q, b)]
            k = int(np.argmax(z_row))
            # At the maximum, (a - b_k) - a (1 - q_k) with 1 - q_k = s / (1 + s): no cancellation in 1 - q_k.
            r = _row(tuple(z_row))
            # a - b_k summed over the other classes: a 1e-89 mass beside 1 is lost in a - b_k at 50 digits.
            rest = mpmath.fsum(bc for j, bc in enumerate(b) if j != k)
            g[k] = rest - a * r.s / (1 + r.s)
            exact_grad += g
            # An exact 0 (an ignored position: a = b = 0) has nothing to cancel: kappa = 1.
            kap = [(a * qc + bc) / abs(gc) if gc != 0 else (1 if a * qc + bc == 0 else math.inf)
                   for qc, bc, gc in zip(q, b, g)]
            if q[k] > 0.5 and g[k] != 0:  # computed from 1 - q_k: its terms are a - b_k and a (1 - q_k)
                kap[k] = (abs(rest) + a * r.s / (1 + r.s)) / abs(g[k])
            kappa += [float(x) for x in kap]
    kappa = np.maximum(np.array(kappa), 1.0)
    add("cross_entropy_grad", _unlayout(case, ce.cross_entropy_grad(zl, tl, case.weight, reduction="none", **opts),
        True), _unlayout(case, grad_t, True), exact_grad, kappa, normal_only=True)
    # 'mean' divides by the same denominator as the loss, inside the same rounding.
    with mpmath.workdps(MP_DPS):
        den = _mp_denominator(case, t, c)
        exact_mean = [g / den for g in exact_grad]
    ours_mean = ce.cross_entropy_grad(zl, tl, case.weight, reduction="mean", **opts)
    torch_mean = torch_cross_entropy(zl, tl, case.weight, reduction="mean", **opts)[1]
    add("cross_entropy_grad mean", _unlayout(case, ours_mean, True), _unlayout(case, torch_mean, True),
        exact_mean, kappa, normal_only=True)
    for red in ("sum", "mean"):
        ours = ce.cross_entropy(zl, tl, case.weight, reduction=red, **opts)
        theirs = torch_cross_entropy(zl, tl, case.weight, reduction=red, **opts)[0]
        with mpmath.workdps(MP_DPS):
            total = mpmath.fsum(exact_loss)
            if red == "mean":
                total /= _mp_denominator(case, t, c)
        add(f"cross_entropy {red}", ours, theirs, [total])
    if case.spatial == 1 and not prob and case.label_smoothing == 0:
        lp = ce.log_softmax(z, axis=1)
        add("nll_loss", ce.nll_loss(lp, t, case.weight, ignore_index=case.ignore_index, reduction="none"),
            torch_nll_loss(lp, t, case.weight, ignore_index=case.ignore_index, reduction="none"),
            _mp_nll(lp, t, case.weight, case.ignore_index))
    if case.weight is None and case.label_smoothing == 0 and case.ignore_index == -100:
        # The softmax family once per set of logits.
        add("log_softmax", _unlayout(case, ce.log_softmax(zl, axis=1), True),
            _unlayout(case, TORCH_SOFTMAX_FAMILY["log_softmax"](zl, 1), True), [v for r in rows for v in r.log_softmax()])
        add("softmax", _unlayout(case, ce.softmax(zl, axis=1), True),
            _unlayout(case, TORCH_SOFTMAX_FAMILY["softmax"](zl, 1), True),
            [v for zr in z for v in _softmax_row(tuple(zr))],
            normal_only=True)
        add("logsumexp", _unlayout(case, ce.logsumexp(zl, axis=1), False),
            _unlayout(case, TORCH_SOFTMAX_FAMILY["logsumexp"](zl, 1), False), [r.logsumexp() for r in rows])
    return out


def _mp_denominator(case, t, c):
    """The 'mean' denominator: the number of positions (probabilities) or sum of w_y over kept targets."""
    if t.ndim == 2:
        return mpmath.mpf(t.shape[0])
    w = np.ones(c) if case.weight is None else case.weight
    return mpmath.fsum(mpmath.mpf(float(w[y])) for y in t if y != case.ignore_index)


def _mp_nll(lp, t, weight, ignore_index):
    w = np.ones(lp.shape[1]) if weight is None else weight
    with mpmath.workdps(MP_DPS):
        return [0 if y == ignore_index else -mpmath.mpf(float(w[y])) * mpmath.mpf(float(lp[i, y]))
                for i, y in enumerate(t)]


# --- binary losses ------------------------------------------------------------


def _binary_cases():
    rng = np.random.default_rng(7)
    n = 400
    soft = rng.uniform(0.0, 1.0, n)
    soft[:50] = rng.uniform(0, 1e-6, 50)  # strictly inside (0, 1), some tiny
    soft = np.clip(soft, 1e-300, 1 - 2**-53)
    big = rng.choice([-1.0, 1.0], n) * rng.uniform(30.0, 740.0, n)
    ordinary = rng.normal(scale=5.0, size=n)
    w, pw = rng.uniform(0.1, 3.0, n), rng.uniform(0.1, 5.0, n)
    gap7 = rng.uniform(700.0, 745.0, n)
    return {
        "random logits": {
            "hard targets": (ordinary, rng.integers(0, 2, n).astype(float), None, None),
            "soft targets, weight, pos_weight": (ordinary, soft, w, pw),
        },
        "gaps 30..740": {
            "hard targets": (big, (big > 0).astype(float), None, None),
            "wrong hard targets": (big, (big < 0).astype(float), None, None),
            "soft targets": (big, soft, None, None),
            "soft targets, weight, pos_weight": (big, soft, w, pw),
        },
        # Issue 16: losses of e**-700 .. e**-745 (subnormal in float64) times weights and
        # pos_weight up to 1e300, and infinite logits (their limits: 0 or inf).
        "gaps 700..745, weights to 1e300": {
            "pos_weight to 1e300": (gap7, np.ones(n), None, 10.0 ** rng.uniform(200, 300, n)),
            "weight to 1e300": (-gap7, np.zeros(n), 10.0 ** rng.uniform(200, 300, n), None),
            "soft targets, both": (gap7 * rng.choice([-1.0, 1.0], n), soft, 10.0 ** rng.uniform(0, 300, n),
                                   10.0 ** rng.uniform(0, 300, n)),
        },
        "infinite logits": {
            "(inf, 1), (inf, 0), (-inf, 0), (-inf, 1)": (np.array([np.inf, np.inf, -np.inf, -np.inf]),
                                                         np.array([1.0, 0.0, 0.0, 1.0]), None, None),
        },
    }


BINARY_CASES = _binary_cases()


@functools.cache
@with_engine
def binary_errors(family: str, name: str, engine: str = DEFAULT_ENGINE):
    x, t, w, pw = BINARY_CASES[family][name]
    ones = np.ones_like(x)
    w1, pw1 = (ones if a is None else a for a in (w, pw))
    exact = [mp_binary_cross_entropy_with_logits(*a) for a in zip(x, t, w1, pw1)]
    out = {}
    for red in ("none", "sum", "mean"):
        ours = ce.binary_cross_entropy_with_logits(x, t, w, reduction=red, pos_weight=pw)
        theirs = torch_binary_cross_entropy_with_logits(x, t, w, reduction=red, pos_weight=pw)
        with mpmath.workdps(MP_DPS):
            ex = exact if red == "none" else [mpmath.fsum(exact) / (1 if red == "sum" else len(exact))]
        out[f"binary_cross_entropy_with_logits {red}"] = (ulp_errors(ours, ex), ulp_errors(theirs, ex))
    # binary_cross_entropy on probabilities, including ones within 1e-300 of 0 and of 1.
    with mpmath.workdps(MP_DPS):
        p = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x])
    p = np.clip(p, 0.0, 1.0)
    exact = [_mp_bce(pi, ti, wi) for pi, ti, wi in zip(p, t, w1)]
    for red in ("none", "mean"):
        ours = ce.binary_cross_entropy(p, t, w, reduction=red)
        theirs = torch_binary_cross_entropy(p, t, w, reduction=red)
        with mpmath.workdps(MP_DPS):
            ex = exact if red == "none" else [mpmath.fsum(exact) / len(exact)]
        out[f"binary_cross_entropy {red}"] = (ulp_errors(ours, ex), ulp_errors(theirs, ex))
    return out


def _mp_bce(p, t, w):
    """-w [t max(log p, -100) + (1 - t) max(log(1 - p), -100)], torch's definition with its clamps."""
    with mpmath.workdps(MP_DPS):
        p, t, w = mpmath.mpf(float(p)), mpmath.mpf(float(t)), mpmath.mpf(float(w))
        lp = max(mpmath.log(p), -100) if p > 0 else mpmath.mpf(-100)
        lq = max(mpmath.log1p(-p), -100) if p < 1 else mpmath.mpf(-100)  # log(1 - p) loses p < 1e-50
        return -w * (t * lp + (1 - t) * lq)


# --- reductions over 10**6 positions --------------------------------------------

MILLION = 10**6


@functools.cache
@with_engine
def million_errors(engine: str = DEFAULT_ENGINE):
    """'sum' and 'mean' over 10**6 positions, for cross_entropy, nll_loss and the binary loss.

    The exact value: the positions repeat 500 distinct rows (gaps up to 700,
    weights, ignored targets) in a random order; each distinct row's loss is
    computed by mpmath at MP_DPS digits, and the exact total is
    sum over distinct rows of count * loss, also in mpmath (every count is an
    exact integer), so 10**6 mpmath evaluations are not needed.
    """
    rng = np.random.default_rng(1_000_000)
    c, distinct = 3, 500
    zd, _ = _rows_with_gaps(rng, distinct, c, 0.0, 700.0)
    yd = rng.integers(0, c, size=distinct)
    yd[::10] = -100
    w = np.array([0.5, 1.0, 2.0])
    pick = rng.integers(0, distinct, size=MILLION)
    counts = np.bincount(pick, minlength=distinct)
    z, y = zd[pick], yd[pick]
    out = {}
    with mpmath.workdps(MP_DPS):
        per = [mpmath.mpf(0) if yi == -100 else _row(tuple(zr)).cross_entropy(mp_mass(c, yi, w))
               for zr, yi in zip(zd, yd)]
        total = mpmath.fsum(int(n) * l for n, l in zip(counts, per))
        denom = mpmath.fsum(int(n) * mpmath.mpf(float(w[yi])) for n, yi in zip(counts, yd) if yi != -100)
    for layout, zz, yy in (("(10^6, 3)", z, y), ("K-dim (100, 3, 10^4)", z.reshape(100, -1, c).transpose(0, 2, 1),
                                                      y.reshape(100, -1))):
        for red, ex in (("sum", total), ("mean", total / denom)):
            ours = ce.cross_entropy(np.ascontiguousarray(zz), yy, w, reduction=red)
            out[f"cross_entropy {red}, {layout}"] = ulp_errors([ours], [ex])
    # nll_loss on exact log-probabilities of the distinct rows (mpmath rounded), 10**6 times.
    with mpmath.workdps(MP_DPS):
        lpd = np.array([[float(v) for v in _row(tuple(zr)).log_softmax()] for zr in zd])
        per = [0 if yi == -100 else -mpmath.mpf(float(w[yi])) * mpmath.mpf(float(lpd[i, yi]))
               for i, yi in enumerate(yd)]
        total = mpmath.fsum(int(n) * l for n, l in zip(counts, per))
    out["nll_loss sum, (10^6, 3)"] = ulp_errors([ce.nll_loss(lpd[pick], y, w, reduction="sum")], [total])
    out["nll_loss mean, (10^6, 3)"] = ulp_errors([ce.nll_loss(lpd[pick], y, w, reduction="mean")], [total / denom])
    # The binary loss with logits over 10**6 elements: 500 distinct (x, t) pairs repeated.
    xd, td = rng.normal(scale=20.0, size=distinct), rng.uniform(0, 1, distinct)
    per = [mp_binary_cross_entropy_with_logits(a, b) for a, b in zip(xd, td)]
    with mpmath.workdps(MP_DPS):
        total = mpmath.fsum(int(n) * l for n, l in zip(counts, per))
    got = ce.binary_cross_entropy_with_logits(xd[pick], td[pick], reduction="mean")
    out["binary_cross_entropy_with_logits mean, 10^6"] = ulp_errors([got], [total / MILLION])
    return out


@functools.cache
@with_engine
def mixed_sign_errors(engine: str = DEFAULT_ENGINE):
    """'sum' and 'mean' whose terms cancel: negative class weights, over thousands of positions.

    - cross_entropy: 2000 pairs of positions whose losses are equal and whose weights
      are +w and -w (the logits of the second are those of the first with classes 0
      and 1 swapped, its target class 1 instead of 0), plus 8 confident positions whose
      losses are about 1e-20. The exact total is the sum of those 8 (mpmath, 50 digits,
      on every position); a float64 sum of the rounded losses misses it entirely.
    - nll_loss on inputs that are not log-probabilities, mixed signs, weights +-:
      the exact sum of the products w_y x_y (mpmath, 50 digits).
    - binary_cross_entropy_with_logits with weights of both signs over 4000 elements.
    """
    rng = np.random.default_rng(16)
    n, c = 2000, 3
    z = rng.normal(scale=3.0, size=(n, c))
    z2 = z[:, [1, 0, 2]]
    conf = np.zeros((8, c))
    conf[:, 0] = rng.uniform(44.0, 47.0, 8)  # loss about e**-45 = 2.9e-20
    logits = np.concatenate([z, z2, conf])
    target = np.concatenate([np.zeros(n, int), np.ones(n, int), np.zeros(8, int)])
    w = np.array([1.5, -1.5, 0.7])
    out = {}
    with mpmath.workdps(MP_DPS):
        exact = [_row(tuple(r)).cross_entropy(mp_mass(c, y, w)) for r, y in zip(logits, target)]
        total = mpmath.fsum(exact)
        den = mpmath.fsum(mpmath.mpf(float(w[y])) for y in target)
    out["cross_entropy sum, +-w pairs"] = ulp_errors([ce.cross_entropy(logits, target, w, reduction="sum")], [total])
    out["cross_entropy mean, +-w pairs"] = ulp_errors([ce.cross_entropy(logits, target, w, reduction="mean")],
                                                      [total / den])
    x = rng.normal(scale=10.0, size=(4000, c))
    y = rng.integers(0, c, size=4000)
    wn = np.array([2.0, -1.0, -0.5])
    with mpmath.workdps(MP_DPS):
        terms = [-mpmath.mpf(float(wn[t])) * mpmath.mpf(float(x[i, t])) for i, t in enumerate(y)]
        total = mpmath.fsum(terms)
        den = mpmath.fsum(mpmath.mpf(float(wn[t])) for t in y)
    out["nll_loss sum, mixed signs"] = ulp_errors([ce.nll_loss(x, y, wn, reduction="sum")], [total])
    out["nll_loss mean, mixed signs"] = ulp_errors([ce.nll_loss(x, y, wn, reduction="mean")], [total / den])
    xb = rng.normal(scale=4.0, size=4000)
    tb = rng.uniform(0, 1, 4000)
    wb = rng.choice([-1.0, 1.0], 4000) * rng.uniform(0.5, 2.0, 4000)
    with mpmath.workdps(MP_DPS):
        exact = [mp_binary_cross_entropy_with_logits(a, b, c_) for a, b, c_ in zip(xb, tb, wb)]
        total = mpmath.fsum(exact)
    out["binary_cross_entropy_with_logits sum, weights +-"] = ulp_errors(
        [ce.binary_cross_entropy_with_logits(xb, tb, wb, reduction="sum")], [total])
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _quantity(q: str) -> str:
    return q.split(" ")[0].rstrip(",")


def worst_ulp() -> dict[tuple[str, str], tuple[float, float]]:
    """{(function, family): (worst ulp error of ours, of torch float64)} over every case here."""
    table: dict[tuple[str, str], list[float]] = {}

    def put(fn, fam, e_o, e_t):
        cur = table.setdefault((fn, fam), [0.0, 0.0])
        cur[0] = max(cur[0], float(np.max(e_o, initial=0.0)))
        cur[1] = max(cur[1], float(np.max(e_t, initial=0.0))) if not np.isnan(e_t).any() else math.nan

    for fam, name in CASES:
        for q, (e_o, e_t, kappa) in multiclass_errors(fam, name).items():
            well = kappa <= KAPPA_MAX  # entries that cancel are reported on their own line
            put(_quantity(q), fam, e_o[well], e_t[well])
            if not well.all():
                put(f"{_quantity(q)}, kappa > {KAPPA_MAX:g}", fam, e_o[~well], e_t[~well])
    for fam in BINARY_CASES:
        for name in BINARY_CASES[fam]:
            for q, (e_o, e_t) in binary_errors(fam, name).items():
                put(_quantity(q), fam, e_o, e_t)
    for q, e in million_errors().items():
        put(_quantity(q), "10^6 positions", e, [math.nan])  # torch is not run on these
    for q, e in mixed_sign_errors().items():
        put(_quantity(q), "mixed-sign sums", e, [math.nan])
    return {k: tuple(v) for k, v in table.items()}


def count_cases() -> int:
    """Entries compared with an mpmath value (each a float64 result)."""
    n = sum(len(e_o) for f, nm in CASES for e_o, _, _ in multiclass_errors(f, nm).values())
    n += sum(len(e_o) for f in BINARY_CASES for nm in BINARY_CASES[f] for e_o, _ in binary_errors(f, nm).values())
    return n + len(million_errors()) + len(mixed_sign_errors())


def report() -> str:
    lines = [f"{count_cases()} results checked against mpmath at mp.dps = {MP_DPS}; worst error in ulp"]
    lines.append(f"{'function':<36}{'family':<30}{'ours':>8}{'torch':>12}")
    for (fn, fam), (o, t) in sorted(worst_ulp().items()):
        lines.append(f"{fn:<36}{fam:<30}{o:8.2f}{'n/a' if math.isnan(t) else format(t, '.3g'):>12}")
    kap = np.concatenate([k for f, n in CASES for _, _, k in multiclass_errors(f, n).values()])
    lines.append(f"gradient entries with kappa > {KAPPA_MAX:g}: {int(np.sum(kap > KAPPA_MAX))}; "
                 f"with kappa > 2**40: {int(np.sum(kap > 2.0**40))}; largest kappa {np.max(kap):.3g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def _assert_ulp(errors, allow, where):
    errors, allow = np.asarray(errors, dtype=float), np.broadcast_to(allow, np.shape(errors))
    bad = np.flatnonzero(~(errors <= allow))
    assert bad.size == 0, f"{where}: {bad.size} entries above the bound, worst {errors.max():.3g} ulp"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("family", "name"), CASES, ids=[f"{f}: {n}" for f, n in CASES])
def test_multiclass_within_4_ulp(family, name, engine):
    for q, (e_o, _, _) in multiclass_errors(family, name, engine).items():
        _assert_ulp(e_o, MAX_ULP, f"{family} / {name} / {q}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [n for n in FAMILIES["self-distillation"] if n.startswith("C=300")])
def test_deep_tier_in_class_chunks_within_4_ulp(name, engine, monkeypatch):
    # The triple-double tier works on a row's classes a chunk at a time (CLASS_CHUNK, 8192):
    # with chunks of 16 classes, the C = 300 self-distillation rows (every position in
    # that tier) take 19 chunks, the maximum in any of them.
    from crossentropy_ref._engine import _deep

    monkeypatch.setattr(_deep, "CLASS_CHUNK", 16)
    errors = multiclass_errors.__wrapped__("self-distillation", name, engine)
    for q, (e_o, _, _) in errors.items():
        _assert_ulp(e_o, MAX_ULP, f"self-distillation / {name} / {q}, chunks of 16 classes")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("family", "name"), [(f, n) for f in BINARY_CASES for n in BINARY_CASES[f]])
def test_binary_within_4_ulp(family, name, engine):
    for q, (e_o, _) in binary_errors(family, name, engine).items():
        _assert_ulp(e_o, MAX_ULP, f"{family} / {name} / {q}")


@pytest.mark.parametrize("engine", ENGINES)
def test_reductions_over_a_million_positions_within_4_ulp(engine):
    for q, e in million_errors(engine).items():
        _assert_ulp(e, MAX_ULP, q)


@pytest.mark.parametrize("engine", ENGINES)
def test_mixed_sign_sums_within_4_ulp(engine):
    for q, e in mixed_sign_errors(engine).items():
        _assert_ulp(e, MAX_ULP, q)


def test_at_least_5000_mpmath_cases():
    assert count_cases() >= 5000


def test_cancelling_gradient_entries_are_covered():
    # The 4 ulp bound above is tested where it is hard: many entries cancel, some by 2**40 or more
    # (the decimal tier of crossentropy_ref._grad_exact), and none of them is exempt.
    kappa = np.concatenate([multiclass_errors(f, n)["cross_entropy_grad"][2] for f, n in CASES])
    assert np.sum(kappa > KAPPA_MAX) >= 1000
    assert np.sum(kappa > 2.0**40) >= 100
    for f, n in CASES:
        case = FAMILIES[f][n]
        if case.target.ndim == 1 and case.label_smoothing == 0:
            # By hand: entry y != k is w_y (q_y - 1) with q_y <= 1/2, kappa = (1 + q_y) / (1 - q_y) <= 3;
            # the others have b_c = 0 (kappa = 1) or are computed from 1 - q_k (kappa = 1).
            assert np.all(multiclass_errors(f, n)["cross_entropy_grad"][2] <= 3 * (1 + 1e-12)), (f, n)


def test_exactly_cancelling_gradient_is_exactly_zero():
    # By hand: equal logits give q_c = 1/4 exactly, and the target 1/4 leaves a q_c - b_c = 0.
    g = ce.cross_entropy_grad(np.zeros((2, 4)), np.full((2, 4), 0.25))
    assert np.array_equal(g, np.zeros((2, 4)))
    # With smoothing 1.0 every b_c = 1/4 too.
    assert np.array_equal(ce.cross_entropy_grad(np.zeros((2, 4)), [1, 3], label_smoothing=1.0), np.zeros((2, 4)))


def test_confident_prediction_keeps_its_value():
    # For logits [40, 0] and target 0 the loss is log1p(e^-40) = 4.248354255291589e-18
    # (mpmath at 50 digits, rounded), and the true-class gradient is its negative.
    # torch 2.13.0 float64 rounds both to 0 (TestTorchFloat64Failures).
    exact = _row((40.0, 0.0)).cross_entropy(mp_mass(2, 0))
    assert float(exact) == 4.248354255291589e-18
    assert ulp_errors([ce.cross_entropy([[40.0, 0.0]], [0])], [exact])[0] <= MAX_ULP
    assert ulp_errors([ce.cross_entropy_grad([[40.0, 0.0]], [0])[0, 0]], [-exact])[0] <= MAX_ULP


class TestTorchFloat64Failures:
    """Documented facts about torch 2.13.0 in float64, not conditions on crossentropy_ref."""

    Z = torch.tensor([[40.0, 0.0]], dtype=torch.float64)

    def test_loss_of_logits_40_0_is_exactly_zero(self):
        assert F.cross_entropy(self.Z, torch.tensor([0])).item() == 0.0

    def test_true_class_gradient_is_exactly_zero(self):
        z = self.Z.clone().requires_grad_()
        F.cross_entropy(z, torch.tensor([0])).backward()
        assert z.grad[0, 0].item() == 0.0

    def test_log_softmax_of_the_maximum_is_exactly_zero(self):
        assert torch.log_softmax(self.Z, dim=1)[0, 0].item() == 0.0

    def test_logistic_loss_at_minus_40_is_exactly_zero(self):
        x, t = torch.tensor([-40.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)
        assert F.binary_cross_entropy_with_logits(x, t).item() == 0.0

    def test_torch_loses_all_relative_precision_on_the_gap_family(self):
        # torch float64 returns 0 for losses of about e^-30 .. e^-740 (the target is the
        # maximum): an error of x / ulp(x) >= 2**52 ulp (by hand: ulp(x) <= 2**-52 x), no
        # correct bit at all, where ours stays within 4.
        e_o, e_t, _ = multiclass_errors("gaps 30..740", "C=2, target = max")["cross_entropy"]
        assert np.max(e_t) >= 2.0**52
        assert np.max(e_o) <= MAX_ULP


# Cases whose definitions are cheap at mp.dps = 450: the spread of logits is at most
# 805, so e^-805 ~ 1e-350 is resolved beside the 1 it is added to.
DEFINITION_ROWS = [((40.0, 0.0), 0), ((800.0, 0.0, -5.0), 1), ((700.0, 0.0), 0), ((3.0, -2.5), 1), ((0.0, 700.0), 0)]


@pytest.mark.parametrize(("z", "y"), DEFINITION_ROWS)
def test_mpmath_reference_matches_the_definitions(z, y):
    # The MpRow identities (see _helpers) against -log(e^{z_y} / sum_j e^{z_j}) and
    # softmax(z)_c - [c = y] evaluated directly at mp.dps = 450: equal to 1e-45.
    row = MpRow(z)
    b = mp_mass(len(z), y)
    loss, grad = row.cross_entropy(b), row.cross_entropy_grad(b)
    with mpmath.workdps(450):
        e = [mpmath.exp(mpmath.mpf(v)) for v in z]
        total = mpmath.fsum(e)
        exact_loss = -mpmath.log(e[y] / total)
        exact_grad = [ec / total - (1 if c == y else 0) for c, ec in enumerate(e)]
        assert abs(loss - exact_loss) <= mpmath.mpf("1e-45") * abs(exact_loss)
        for g, exact in zip(grad, exact_grad):
            assert abs(g - exact) <= mpmath.mpf("1e-45") * abs(exact)


def test_ulp_errors_against_hand_values():
    # By hand: 1 + 2**-52 is one ulp above 1 (ulp(1) = 2**-52), and 1 is exact.
    assert ulp_errors([1.0 + 2**-52, 1.0], [mpmath.mpf(1), mpmath.mpf(1)]).tolist() == [1.0, 0.0]
    # The relative error of the same value is 2**-52 (relative_errors, kept for the book).
    assert relative_errors([1.0 + 2**-52], [mpmath.mpf(1)])[0] == 2.0**-52


if __name__ == "__main__":
    if len(sys.argv) > 1:  # e.g. a copy of the package under another name, to compare versions
        sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else ".")
        ce = __import__(sys.argv[1])
    print(report())
