"""crossentropy_ref._engine._dd (double-double arithmetic, exp) and the decimal tier (_deepest).

Expected values: exact rationals (fractions.Fraction of the float inputs) for
the error-free operations, and mpmath at 60 significant digits for exp and
the gradient. The bounds asserted are the ones the docstrings state.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from crossentropy_ref._engine import _dd as dd
from crossentropy_ref._engine import _deepest as dec

RNG = np.random.default_rng(20261129)


def _exact(hi, lo=0.0) -> Fraction:
    return Fraction(float(hi)) + Fraction(float(lo))


def _rel(got: Fraction, exact: Fraction) -> float:
    return float(abs(got - exact) / abs(exact))


def test_two_prod_is_exact():
    a = RNG.normal(size=500) * 10.0 ** RNG.uniform(-20, 20, 500)
    b = RNG.normal(size=500) * 10.0 ** RNG.uniform(-20, 20, 500)
    p, e = dd.two_prod(a, b)
    for x, y, ph, pe in zip(a, b, p, e):
        assert _exact(ph, pe) == Fraction(float(x)) * Fraction(float(y))
        assert ph == x * y


@pytest.mark.parametrize("op", ["mul", "add", "div_float", "mul_float"])
def test_double_double_operations_within_2_to_the_minus_104(op):
    ah, bh = RNG.uniform(0.5, 2.0, 300), RNG.uniform(0.5, 2.0, 300)
    al, bl = ah * RNG.uniform(-2**-53, 2**-53, 300), bh * RNG.uniform(-2**-53, 2**-53, 300)
    if op == "mul":
        got, want = dd.mul(ah, al, bh, bl), [_exact(*x) * _exact(*y) for x, y in zip(zip(ah, al), zip(bh, bl))]
    elif op == "add":
        got, want = dd.add(ah, al, bh, bl), [_exact(*x) + _exact(*y) for x, y in zip(zip(ah, al), zip(bh, bl))]
    elif op == "div_float":
        got, want = dd.div_float(ah, al, bh), [_exact(*x) / Fraction(float(y)) for x, y in zip(zip(ah, al), bh)]
    else:
        got, want = dd.mul_float(ah, al, bh), [_exact(*x) * Fraction(float(y)) for x, y in zip(zip(ah, al), bh)]
    worst = max(_rel(_exact(h, l), w) for h, l, w in zip(*got, want))
    assert worst <= 2.0**-104


def test_recip_one_plus_within_2_to_the_minus_102():
    sh = 10.0 ** RNG.uniform(-300, 5, 300)
    sl = sh * RNG.uniform(-2**-53, 2**-53, 300)
    rh, rl = dd.recip_one_plus(sh, sl)
    worst = max(_rel(_exact(h, l), 1 / (1 + _exact(a, b))) for h, l, a, b in zip(rh, rl, sh, sl))
    assert worst <= 2.0**-102


def test_tree_sum_is_nearly_exact():
    h = RNG.uniform(0, 1, (3, 1000, 2)) * 10.0 ** RNG.uniform(-5, 5, (3, 1000, 2))
    l = h * RNG.uniform(-2**-53, 2**-53, h.shape)
    sh, sl = dd.tree_sum(h, l, 1)
    assert sh.shape == (3, 1, 2)
    for i in range(3):
        for j in range(2):
            want = sum((_exact(a, b) for a, b in zip(h[i, :, j], l[i, :, j])), Fraction(0))
            # log2(n) 2**-104 with n = 1000 (the docstring's bound for non-negative terms).
            assert _rel(_exact(sh[i, 0, j], sl[i, 0, j]), want) <= np.log2(1000) * 2.0**-104


def test_exp_within_2_to_the_minus_99_against_mpmath():
    x = np.concatenate([RNG.uniform(-745, 0, 1500), -RNG.exponential(1.0, 500), RNG.uniform(-1e-4, 1e-6, 200)])
    xl = RNG.uniform(-2**-44, 2**-44, x.size)
    hi, lo = dd.exp(x, xl)
    worst = 0.0
    with mpmath.workdps(60):
        for a, b, h, l in zip(x, xl, hi, lo):
            want = mpmath.exp(mpmath.mpf(float(a)) + mpmath.mpf(float(b)))
            if want < mpmath.mpf(2) ** -969:
                assert abs(mpmath.mpf(float(h)) + mpmath.mpf(float(l)) - want) <= mpmath.mpf(2) ** -1070
                continue
            worst = max(worst, float(abs((mpmath.mpf(float(h)) + mpmath.mpf(float(l))) / want - 1)))
    assert worst <= 2.0**-99


def test_exp_edges():
    hi, lo = dd.exp(np.array([0.0, -np.inf, -2000.0, np.nan]), np.zeros(4))
    assert hi[0] == 1.0 and lo[0] == 0.0  # exactly 1 at 0: the maximum's term
    assert hi[1] == lo[1] == hi[2] == 0.0  # below exp's range: 0
    assert hi[3] == 0.0  # outside the documented domain: 0, not a warning


def _mp_grad(z, b):
    with mpmath.workdps(60):
        zs = [mpmath.mpf(float(v)) for v in z]
        m = max(zs)
        e = [mpmath.exp(v - m) for v in zs]
        total, a = mpmath.fsum(e), mpmath.fsum(b)
        return [a * ei / total - bi for ei, bi in zip(e, b)]


@pytest.mark.parametrize("c", [5, 6])
def test_decimal_tier_matches_mpmath_where_double_double_cannot(c):
    # The target is softmax(z) rounded to float64: a q_c - b_c is about 1e-16 of its terms.
    # The decimal tier (_deepest, Ziv's strategy from 40 digits) gives every entry within 2 ulp.
    z = RNG.normal(scale=3.0, size=c)
    p = np.exp(z - z.max())
    p /= p.sum()
    got = dec.grad(z, p, None, None, 0.0, None)
    want = _mp_grad(z, [mpmath.mpf(float(v)) for v in p])
    for g, w in zip(got, want):
        assert abs(mpmath.mpf(g) - w) <= 2 * mpmath.mpf(float(np.spacing(abs(float(w)))))


def test_decimal_tier_returns_an_exact_zero():
    # By hand: equal logits give q = 1/3 and a = 3 p, so a q - p = 0 exactly (the rational path).
    p = np.full(3, 1 / 3)
    assert dec.grad(np.zeros(3), p, None, None, 0.0, None) == [0.0] * 3
