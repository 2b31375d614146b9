"""The engine's parts and its cost bound: which positions reach which tier.

The first tier (`crossentropy_ref._engine._rows`) must be within its stated
bounds; every position it cannot prove goes to the triple-double tier
(`_deep`), and only results that tier cannot prove (terms agreeing in more
than about 95 bits, or an exact zero) go to the decimal tier (`_deepest`).
The cost of an input is bounded by how many positions reach each tier, so
these tests count them (``tier_counts``), on ordinary inputs (nothing
escalates) and on the worst families of issue 16 (escalation, but no decimal
work). Expected values: mpmath at 60 digits, or exact rationals (Fraction).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from _helpers import ENGINES, using_engine

import crossentropy_ref as ce
from crossentropy_ref import _engine as engine
from crossentropy_ref._engine import _pexp, _rows
from crossentropy_ref._engine._blocks import workspace


def _exact(h, l=0.0) -> Fraction:
    return Fraction(float(h)) + Fraction(float(l))


class TestPairExp:
    def test_within_its_bound(self):
        # exp(xh + xl) against mpmath at 60 digits: |err| <= EPS exp(x) + ABS (_pexp's bound).
        rng = np.random.default_rng(1)
        x = np.concatenate([-rng.random(3000) * 745, -rng.random(2000) * 3, rng.random(300),
                            -rng.random(300) * 1e-3, [0.0, -745.0, -708.3, -1e-300]])
        xl = rng.uniform(-1, 1, x.size) * 2.0**-44 * np.minimum(np.abs(x), 1e3)
        h, l = np.empty_like(x), np.empty_like(x)
        _pexp.exp_pair(x, xl, h, l, workspace(x.shape))
        with mpmath.workdps(60):
            for a, b, hh, ll in zip(x, xl, h, l):
                ex = mpmath.exp(mpmath.mpf(float(a)) + mpmath.mpf(float(b)))
                err = abs(mpmath.mpf(float(hh)) + mpmath.mpf(float(ll)) - ex)
                assert err <= _pexp.EPS * ex + _pexp.ABS, (a, b)

    def test_special_values(self):
        # By hand: exp(0) = 1 exactly, exp(-inf) = 0, NaN stays NaN.
        x = np.array([0.0, -np.inf, np.nan, -2000.0])
        h, l = np.empty(4), np.empty(4)
        _pexp.exp_pair(x, np.array([0.0, np.nan, 0.0, 0.0]), h, l, workspace(x.shape))
        assert (h[0], l[0]) == (1.0, 0.0)
        assert h[1] == 0.0 and l[1] == 0.0 and h[3] == 0.0
        assert np.isnan(h[2])


class TestFirstPass:
    @pytest.mark.parametrize("engine_name", ENGINES)
    def test_s_and_log1p_within_their_bounds(self, engine_name):
        # s = sum_{j != k} exp(z_j - m) and L = log1p(s) against mpmath at 60 digits, on rows
        # with ordinary logits, ties, gaps of 700 (subnormal terms) and -inf.
        rng = np.random.default_rng(2)
        z = rng.normal(scale=4.0, size=(40, 9))
        z[5] = [0.0] * 9  # eight ties
        z[6, 1:] = -700.0 - rng.random(8) * 45  # every other term subnormal or below
        z[7, 1:] = -np.inf  # s = 0 exactly
        z[8, 2] = z[8].max() + 1e-15  # a near tie
        z3 = z[:, :, None]
        with using_engine(engine_name):
            r = _rows.rows(z3, workspace(z3.shape))
        with mpmath.workdps(60):
            for i, row in enumerate(z):
                k = int(np.argmax(row))
                m = mpmath.mpf(float(row[k]))
                s = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - m) for j, v in enumerate(row)
                                if j != k and np.isfinite(v))
                assert abs(mpmath.mpf(float(r.sh[i, 0, 0])) + mpmath.mpf(float(r.sl[i, 0, 0])) - s) <= r.s_err[i, 0, 0]
                L = mpmath.log1p(s)
                assert abs(mpmath.mpf(float(r.lh[i, 0, 0])) + mpmath.mpf(float(r.ll[i, 0, 0])) - L) <= r.l_err[i, 0, 0]
        assert r.sh[7, 0, 0] == 0.0 and r.s_err[7, 0, 0] == 0.0  # exactly 0, with a zero bound

    def test_tree_sum_is_exact_in_its_high_parts(self):
        # By exact rationals: the tree's result equals the sum of its inputs to 64 u**2.
        rng = np.random.default_rng(3)
        h = rng.random((5, 37, 2)) * 10.0 ** rng.uniform(-20, 0, (5, 37, 2))
        l = h * rng.uniform(-2.0**-53, 2.0**-53, h.shape)
        want = [[sum(_exact(a, b) for a, b in zip(h[i, :, j], l[i, :, j])) for j in range(2)] for i in range(5)]
        ws = workspace(h.shape)
        sh, sl = _rows.tree_sum(h.copy(), l.copy(), ws(7), ws(8), ws(9))
        for i in range(5):
            for j in range(2):
                got = _exact(sh[i, 0, j], sl[i, 0, j])
                assert abs(got - want[i][j]) <= Fraction(64, 2**106) * want[i][j]


def _counts(fn, *args, **kwargs):
    with engine.tier_counts() as c:
        fn(*args, **kwargs)
    return dict(c)


@pytest.mark.parametrize("engine_name", ENGINES)
class TestTierCounts:
    """Positions per tier: nothing escalates on ordinary inputs; the worst families escalate
    to the triple-double tier and never to the decimal one."""

    def test_ordinary_inputs_stay_in_the_first_tier(self, engine_name):
        rng = np.random.default_rng(4)
        z = rng.normal(scale=3.0, size=(64, 50))
        y = rng.integers(0, 50, 64)
        p = ce.softmax(rng.normal(size=(64, 50)), axis=1)
        calls = [
            (ce.softmax, (z,), {"axis": 1}),
            (ce.log_softmax, (z,), {"axis": 1}),
            (ce.logsumexp, (z,), {"axis": 1}),
            (ce.cross_entropy, (z, y), {"reduction": "none"}),
            (ce.cross_entropy, (z, y), {"label_smoothing": 0.1}),
            (ce.cross_entropy, (z, p), {"reduction": "sum"}),
            (ce.cross_entropy_grad, (z, y), {}),
        ]
        with using_engine(engine_name):
            for fn, args, kw in calls:
                c = _counts(fn, *args, **kw)
                assert c.get("deep", 0) == 0 and c.get("deepest", 0) == 0, (fn.__name__, kw, c)
                assert c.get("first", 0) == 64, (fn.__name__, kw, c)

    def test_self_distillation_gradient_never_reaches_the_decimal_tier(self, engine_name):
        # torch.softmax of the logits as the target: kappa ~ 2**53 for every entry.
        rng = np.random.default_rng(5)
        z = rng.normal(scale=2.0, size=(40, 300))
        t = torch.softmax(torch.from_numpy(z), 1).numpy()
        with using_engine(engine_name):
            c = _counts(ce.cross_entropy_grad, z, t)
        assert c.get("deep", 0) == 40 and c.get("deepest", 0) == 0, c

    def test_logsumexp_of_log_probabilities_never_reaches_the_decimal_tier(self, engine_name):
        rng = np.random.default_rng(6)
        p = rng.random((50, 100))
        lp = np.log(p / p.sum(axis=1, keepdims=True))
        with using_engine(engine_name):
            c = _counts(ce.logsumexp, lp, axis=1)
        assert c.get("deep", 0) <= 50 and c.get("deepest", 0) == 0, c

    def test_weighted_subnormal_losses_never_reach_the_decimal_tier(self, engine_name):
        rng = np.random.default_rng(7)
        z = np.zeros((30, 3))
        z[:, 1:] = -rng.uniform(700, 745, (30, 2))
        w = np.array([1e300, 1.0, 1.0])
        with using_engine(engine_name):
            c = _counts(ce.cross_entropy_grad, z, np.zeros(30, int), w, reduction="sum")
            c2 = _counts(ce.cross_entropy, z, np.zeros(30, int), w, reduction="none")
        assert c.get("deepest", 0) == 0 and c2.get("deepest", 0) == 0, (c, c2)

    def test_mixed_sign_sum_recomputes_every_position_once(self, engine_name):
        rng = np.random.default_rng(8)
        z = rng.normal(size=(100, 3))
        zz = np.concatenate([z, z[:, [1, 0, 2]], [[45.0, 0.0, 0.0]]])
        y = np.concatenate([np.zeros(100, int), np.ones(100, int), [0]])
        with using_engine(engine_name):
            c = _counts(ce.cross_entropy, zz, y, np.array([1.0, -1.0, 1.0]), reduction="sum")
        assert c.get("deep", 0) <= 201 and c.get("deepest", 0) == 0, c

    def test_only_exact_zeros_reach_the_decimal_tier(self, engine_name):
        # Equal logits and a uniform target: every entry is exactly 0 (by hand: q_c = 1/4).
        with using_engine(engine_name):
            c = _counts(ce.cross_entropy_grad, np.zeros((3, 4)), np.full((3, 4), 0.25))
        assert c.get("deepest", 0) == 3, c


@pytest.mark.skipif(not engine._jit.AVAILABLE, reason="numba is not installed: there is one engine")
class TestCompiledDeepTier:
    """The deep tier's compiled kernels (`_tdjit`) are `_td`'s operations transliterated to
    scalars, in the same order: the two engines' deep-tier results are the same bits."""

    def _both(self, fn, *args, **kwargs):
        out = {}
        for name in ("numpy", "compiled"):
            with using_engine(name):
                with engine.tier_counts() as c:
                    out[name] = np.asarray(fn(*args, **kwargs))
                assert c.get("deep", 0) > 0, (name, dict(c))  # the inputs reach the deep tier
        return out["numpy"], out["compiled"]

    @pytest.mark.parametrize("c", [3, 300, 20000])
    def test_self_distillation_gradient(self, c):
        rng = np.random.default_rng(c)
        z = rng.normal(scale=3.0, size=(6, c))
        t = torch.softmax(torch.from_numpy(z), 1).numpy()
        a, b = self._both(ce.cross_entropy_grad, z, t)
        assert np.array_equal(a.view(np.int64), b.view(np.int64))

    def test_weights_and_k_dims(self):
        # Targets p_c proportional to q_c / w_c: then w_c p_c cancels against a q_c.
        rng = np.random.default_rng(11)
        z = rng.normal(scale=2.0, size=(3, 40, 2, 3))
        w = rng.uniform(0.5, 2.0, 40)
        t = ce.softmax(z, axis=1) / w[None, :, None, None]
        t /= t.sum(axis=1, keepdims=True)
        a, b = self._both(ce.cross_entropy_grad, z, t, w, reduction="none")
        assert np.array_equal(a.view(np.int64), b.view(np.int64))

    def test_label_smoothing(self):
        # (1 - eps) p_c + eps / C = q_c: the smoothed target is the prediction.
        rng = np.random.default_rng(12)
        z = rng.normal(scale=0.5, size=(5, 40))
        eps = 0.01
        t = (ce.softmax(z, axis=1) - eps / 40) / (1 - eps)
        a, b = self._both(ce.cross_entropy_grad, z, t, label_smoothing=eps)
        assert np.array_equal(a.view(np.int64), b.view(np.int64))

    def test_confident_rows_and_huge_weights(self):
        # q_k > 1/2 (the maximum's entry from 1 - q_k) and weights of 1e300 beside gaps of 740.
        z = np.array([[0.0, -740.0, -741.5], [5.0, 0.0, -2.0], [0.0, -700.0, -745.0]])
        w = np.array([1e300, 1.0, 1e-300])
        y = np.array([0, 1, 0])
        a, b = self._both(ce.cross_entropy_grad, z, y, w, reduction="sum")
        assert np.array_equal(a.view(np.int64), b.view(np.int64))

    def test_logsumexp_and_loss_of_log_probabilities(self):
        # Log-probabilities as logits: logsumexp near 0 (the deep tier), and the losses too.
        rng = np.random.default_rng(13)
        p = rng.random((20, 50))
        lp = np.log(p / p.sum(axis=1, keepdims=True))
        a, b = self._both(ce.logsumexp, lp, axis=1)
        assert np.array_equal(a.view(np.int64), b.view(np.int64))
