"""crossentropy_ref._engine._td: triple-double arithmetic, exp, expm1 and log1p.

Expected values: exact rationals (fractions.Fraction of the float parts)
for renorm and the arithmetic, mpmath at mp.dps = 80 for exp, expm1 and
log1p, each float converted exactly (mpmath.mpf(float)). The bounds
asserted are the ones the docstrings state and derive.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossentropy_ref._engine import _td as td

DPS = 80


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _frac(*parts) -> Fraction:
    return sum((Fraction(float(p)) for p in parts), Fraction(0))


def _mp(*parts, e=0) -> mpmath.mpf:
    return mpmath.fsum(mpmath.mpf(float(p)) for p in parts) * mpmath.mpf(2) ** int(e)


def _normalised(h, m, l) -> bool:
    """The invariant of every returned td: |m| <= 2**-52 |h|, |l| <= 2**-53 |m|."""
    return bool(np.all((np.abs(m) <= 2.0**-52 * np.abs(h)) & (np.abs(l) <= 2.0**-53 * np.abs(m))))


def _random_td(rng, n, lo=-300, hi=300, *, sign=True):
    """Normalised tds with heads of magnitude 2**lo .. 2**hi and random lower parts."""
    h = rng.uniform(1, 2, n) * 2.0 ** rng.integers(lo, hi, n)
    if sign:
        h *= rng.choice([-1.0, 1.0], n)
    m = h * rng.uniform(-(2.0**-53), 2.0**-53, n)
    l = m * rng.uniform(-(2.0**-53), 2.0**-53, n)
    return td.renorm(h, m, l)


def _worst_log2(errors) -> float:
    worst = max(errors)
    return -math.inf if worst == 0 else math.log2(worst)


class TestRenorm:
    def test_exact_and_normalised_for_cancelling_floats(self):
        rng = _rng(1)
        n = 3000
        a = rng.normal(size=n) * 2.0 ** rng.integers(-200, 200, n)
        b = rng.normal(size=n) * 2.0 ** rng.integers(-200, 200, n)
        c = rng.normal(size=n) * 2.0 ** rng.integers(-200, 200, n)
        b[::3] = -a[::3]  # a + b = 0 exactly
        c[1::3] = -(a[1::3] + b[1::3])  # a + b + c nearly 0
        b[2::3] = -a[2::3] * (1 + 2.0**-52)  # Sterbenz cancellation
        h, m, l = td.renorm(a, b, c)
        assert _normalised(h, m, l)
        for i in range(n):  # expected: the exact rational sum
            assert _frac(h[i], m[i], l[i]) == _frac(a[i], b[i], c[i])

    @given(st.lists(st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False), min_size=3, max_size=3))
    def test_exact_for_any_three_floats(self, xs):
        h, m, l = (float(v) for v in td.renorm(*xs))
        assert _frac(h, m, l) == _frac(*xs)
        assert abs(m) <= 2.0**-52 * abs(h) and abs(l) <= 2.0**-53 * abs(m)

    def test_does_not_write_into_its_arguments(self):
        a, b, c = np.array([1.0, 2.0]), np.array([1e-20, 3e-17]), np.array([5e-40, -1e-33])
        copies = [v.copy() for v in (a, b, c)]
        td.renorm(a, b, c)
        for v, w in zip((a, b, c), copies):
            np.testing.assert_array_equal(v, w)


class TestAdd:
    def _pairs(self):
        rng = _rng(2)
        n = 2000
        a = _random_td(rng, n)
        b = _random_td(rng, n)
        # Every other b cancels a to 60..140 bits: -a plus a td 2**-140 .. 2**-60 of a.
        small = _random_td(rng, n, -140, -60)
        near = td.add(*td.neg(*a), *(v * np.abs(a[0]) for v in small))
        b = tuple(np.where(np.arange(n) % 2 == 0, x, y) for x, y in zip(near, b))
        return a, b

    @pytest.mark.parametrize("op", ["add", "sub", "add_dd", "add_float"])
    def test_error_below_the_stated_bound_of_abs_a_plus_abs_b(self, op):
        a, b = self._pairs()
        bound = {"add": 2.0**-155, "sub": 2.0**-155, "add_dd": 2.0**-155, "add_float": 2.0**-156}[op]
        if op == "add":
            got, bb = td.add(*a, *b), b
        elif op == "sub":
            got, bb = td.sub(*a, *b), td.neg(*b)
        elif op == "add_dd":
            got, bb = td.add_dd(*a, b[0], b[1]), (b[0], b[1], 0 * b[0])
        else:
            got, bb = td.add_float(*a, b[0]), (b[0], 0 * b[0], 0 * b[0])
        assert _normalised(*got)
        errors = []
        for i in range(a[0].size):
            x, y = _frac(*(v[i] for v in a)), _frac(*(v[i] for v in bb))
            errors.append(float(abs(_frac(*(v[i] for v in got)) - (x + y)) / (abs(x) + abs(y))))
        assert _worst_log2(errors) <= math.log2(bound)

    def test_same_sign_sum_is_relative(self):
        rng = _rng(3)
        a, b = _random_td(rng, 1000, sign=False), _random_td(rng, 1000, sign=False)
        got = td.add(*a, *b)
        errors = [
            float(abs(_frac(*(v[i] for v in got)) / (_frac(*(v[i] for v in a)) + _frac(*(v[i] for v in b))) - 1))
            for i in range(1000)
        ]
        assert _worst_log2(errors) <= -155

    def test_exact_cancellation_gives_zero(self):
        a = _random_td(_rng(4), 10)
        h, m, l = td.sub(*a, *a)
        assert np.all(h == 0) and np.all(m == 0) and np.all(l == 0)


class TestMul:
    @pytest.mark.parametrize(("op", "bound"), [("mul", -152), ("mul_dd", -152), ("mul_float", -155)])
    def test_relative_error_below_the_stated_bound(self, op, bound):
        rng = _rng(5)
        n = 2000
        a, b = _random_td(rng, n, -400, 400), _random_td(rng, n, -400, 400)
        if op == "mul":
            got, bb = td.mul(*a, *b), b
        elif op == "mul_dd":
            got, bb = td.mul_dd(*a, b[0], b[1]), (b[0], b[1])
        else:
            got, bb = td.mul_float(*a, b[0]), (b[0],)
        assert _normalised(*got)
        errors = [
            float(abs(_frac(*(v[i] for v in got)) / (_frac(*(v[i] for v in a)) * _frac(*(v[i] for v in bb))) - 1))
            for i in range(n)
        ]
        assert _worst_log2(errors) <= bound

    def test_broadcasts_and_keeps_shapes(self):
        a = td.from_float(np.arange(1.0, 7.0).reshape(2, 3))
        h, m, l = td.mul_float(*a, np.array([[2.0], [0.5]]))
        assert h.shape == (2, 3)
        np.testing.assert_array_equal(h, [[2, 4, 6], [2, 2.5, 3]])  # by hand
        assert np.all(m == 0) and np.all(l == 0)


class TestRecipDiv:
    def test_recip_relative_error_below_2_to_the_minus_152(self):
        rng = _rng(6)
        a = _random_td(rng, 2000, -900, 900)
        got = td.recip(*a)
        assert _normalised(*got)
        errors = [float(abs(_frac(*(v[i] for v in got)) * _frac(*(v[i] for v in a)) - 1)) for i in range(2000)]
        assert _worst_log2(errors) <= -152

    def test_div_relative_error_below_2_to_the_minus_151(self):
        rng = _rng(7)
        a, b = _random_td(rng, 2000, -400, 400), _random_td(rng, 2000, -400, 400)
        got = td.div(*a, *b)
        errors = [
            float(abs(_frac(*(v[i] for v in got)) * _frac(*(v[i] for v in b)) / _frac(*(v[i] for v in a)) - 1))
            for i in range(2000)
        ]
        assert _worst_log2(errors) <= -151


def _exp_arguments(seed: int, n: int):
    """Arguments over exp's domain: [-1e4, 1], small, tiny, and as tds with nonzero low parts."""
    rng = _rng(seed)
    x = np.concatenate(
        [
            rng.uniform(-1e4, 1, n // 2),
            -rng.exponential(3.0, n // 4),
            rng.uniform(-1e-4, 1e-4, n // 8),
            -(10.0 ** rng.uniform(-300, 4, n - n // 2 - n // 4 - n // 8)),
        ]
    )
    xm = x * rng.uniform(-(2.0**-53), 2.0**-53, x.size)
    xl = xm * rng.uniform(-(2.0**-53), 2.0**-53, x.size)
    return td.renorm(x, xm, xl)


class TestExp:
    def test_relative_error_below_2_to_the_minus_152_for_td_arguments(self):
        x = _exp_arguments(8, 10_000)
        h, m, l, e = td.exp(*x)
        assert _normalised(h, m, l)
        assert np.all((h >= 1) & (h < 2))
        with mpmath.workdps(DPS):  # expected: mpmath.exp of the exact td value
            errors = [
                float(abs(_mp(h[i], m[i], l[i], e=e[i]) / mpmath.exp(_mp(*(v[i] for v in x))) - 1))
                for i in range(h.size)
            ]
        assert _worst_log2(errors) <= -152

    @pytest.mark.parametrize("parts", [1, 2], ids=["float argument", "double-double argument"])
    def test_float_and_double_double_arguments(self, parts):
        x = _exp_arguments(9, 2000)[:parts]
        h, m, l, e = td.exp(*x)
        with mpmath.workdps(DPS):
            errors = [
                float(abs(_mp(h[i], m[i], l[i], e=e[i]) / mpmath.exp(_mp(*(v[i] for v in x))) - 1))
                for i in range(h.size)
            ]
        assert _worst_log2(errors) <= -152

    def test_exactly_one_at_zero_and_zero_at_minus_infinity(self):
        h, m, l, e = td.exp(np.array([0.0, -0.0, -np.inf, td.EXP_MIN - 1, -1e300]))
        # By hand: exp(0) = 1 exactly; below EXP_MIN (e**-11357 < 2**-16384) the result is 0.
        np.testing.assert_array_equal(h, [1, 1, 0, 0, 0])
        np.testing.assert_array_equal(m, 0)
        np.testing.assert_array_equal(l, 0)
        np.testing.assert_array_equal(e, 0)

    def test_outside_the_domain_gives_nan(self):
        h, m, l, e = td.exp(np.array([np.nan, np.inf, td.EXP_MAX * 2, 0.5]))
        assert np.isnan(h[:3]).all() and np.isnan(m[:3]).all() and np.isnan(l[:3]).all()
        assert np.isfinite(h[3])
        np.testing.assert_array_equal(e[:3], 0)

    def test_keeps_precision_far_below_the_float64_range(self):
        x = np.array([-745.5, -1000.0, -5000.0, td.EXP_MIN])
        h, m, l, e = td.exp(x)
        with mpmath.workdps(DPS):
            for i in range(4):
                want = mpmath.exp(mpmath.mpf(float(x[i])))
                assert abs(_mp(h[i], m[i], l[i], e=e[i]) / want - 1) <= mpmath.mpf(2) ** -152
        assert e[-1] == -16384  # exp(-11356) = 1.69 * 2**-16384 (mpmath)

    def test_chunks_and_broadcasting_give_the_same_values(self):
        x = _exp_arguments(10, 3 * td.CHUNK + 17)
        whole = td.exp(*x)
        pieces = [td.exp(*(v[i : i + 1000] for v in x)) for i in range(0, x[0].size, 1000)]
        for k in range(4):
            np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in pieces]))
        col = td.exp(x[0][:5].reshape(5, 1), x[1][:5].reshape(5, 1), np.zeros(3))
        assert col[0].shape == (5, 3)
        np.testing.assert_array_equal(col[0][:, 2], td.exp(x[0][:5], x[1][:5])[0])

    def test_threads_get_their_own_buffers(self):
        # The scratch buffers are per thread: two threads at once give the sequential values.
        from concurrent.futures import ThreadPoolExecutor

        args = [_exp_arguments(seed, td.CHUNK + 100) for seed in (20, 21, 22, 23)]
        want = [td.exp(*x) for x in args]
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda x: td.exp(*x), args))
        for g, w in zip(got, want):
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b)

    def test_does_not_write_into_its_arguments(self):
        x = _exp_arguments(11, 100)
        copies = [v.copy() for v in x]
        td.exp(*x)
        for v, w in zip(x, copies):
            np.testing.assert_array_equal(v, w)


class TestExpm1:
    def test_relative_error_below_2_to_the_minus_151(self):
        rng = _rng(12)
        x = np.concatenate(
            [
                rng.uniform(-2e-5, 2e-5, 600),  # n = 0 and n = +-1: results near L/2
                -rng.exponential(1e-3, 600),
                rng.uniform(-1, 1, 600),
                -(10.0 ** rng.uniform(-300, 4, 600)),
                [0.0, 1.0, -td.EXP_MAX],
            ]
        )
        h, m, l = td.expm1(x)
        assert _normalised(h, m, l)
        with mpmath.workdps(DPS):
            errors = [
                float(abs(_mp(h[i], m[i], l[i]) / mpmath.expm1(mpmath.mpf(float(x[i]))) - 1)) if x[i] else 0.0
                for i in range(x.size)
            ]
        assert _worst_log2(errors) <= -151
        assert h[-3] == m[-3] == l[-3] == 0.0  # expm1(0) = 0 exactly

    def test_edges(self):
        h, m, l = td.expm1(np.array([-np.inf, np.nan]))
        assert (h[0], m[0], l[0]) == (-1.0, 0.0, 0.0)
        assert np.isnan(h[1])


class TestLog1p:
    def _check(self, s, e=None, bound=-150):
        h, m, l, k = td.log1p(*s, e)
        assert _normalised(h, m, l)
        assert np.all(((h >= 1) & (h < 2)) | (h == 0))
        ee = np.zeros(s[0].size, dtype=np.int64) if e is None else e
        with mpmath.workdps(DPS):  # expected: mpmath.log1p of the exact scaled td
            errors = []
            for i in range(h.size):
                want = mpmath.log1p(_mp(*(v[i] for v in s), e=ee[i]))
                errors.append(float(abs(_mp(h[i], m[i], l[i], e=k[i]) / want - 1)) if want else float(h[i] != 0))
        assert _worst_log2(errors) <= bound

    def test_tiny_to_huge_plain_arguments(self):
        rng = _rng(13)
        s = (10.0 ** rng.uniform(-300, 300, 1500),)
        s = td.renorm(s[0], s[0] * rng.uniform(-(2.0**-53), 2.0**-53, s[0].size), 0 * s[0])
        self._check(s)

    def test_arguments_near_one_and_below(self):
        rng = _rng(14)
        s = np.concatenate([rng.uniform(0, 2, 700), 10.0 ** rng.uniform(-20, -14, 300), [1.0, 2.0**-59, 2.0**-60]])
        self._check(td.renorm(s, s * rng.uniform(-(2.0**-53), 2.0**-53, s.size), 0 * s))

    def test_separate_exponent_far_below_and_above_the_float64_range(self):
        rng = _rng(15)
        s = _random_td(rng, 1000, -40, 40, sign=False)
        e = rng.integers(-6000, 6000, 1000)
        self._check(s, e)

    def test_zero_gives_exactly_zero(self):
        h, m, l, e = td.log1p(np.zeros(3), np.zeros(3), np.zeros(3), np.array([0, -5000, 7]))
        for v in (h, m, l, e):
            np.testing.assert_array_equal(v, 0)

    def test_inverse_of_exp(self):
        # log1p(exp(x) - 1) = x: with x = log1p(s), exp(x) should return 1 + s.
        s = td.renorm(np.array([1e-3, 0.5, 3.0, 1e10]), np.zeros(4), np.zeros(4))
        h, m, l, e = td.log1p(*s)
        y = td.from_scaled(h, m, l, e)
        eh, em, el, ee = td.exp(*y)
        with mpmath.workdps(DPS):
            for i in range(4):
                got = _mp(eh[i], em[i], el[i], e=ee[i])
                assert abs(got / (1 + _mp(*(v[i] for v in s))) - 1) <= mpmath.mpf(2) ** -140


class TestConversions:
    def test_to_float_is_faithful_also_into_the_subnormal_range(self):
        rng = _rng(16)
        h, m, l = _random_td(rng, 2000, 0, 1, sign=True)
        e = rng.integers(-1130, 1000, 2000)
        got = td.to_float(h, m, l, e)
        with mpmath.workdps(DPS):
            for i in range(2000):
                exact = _mp(h[i], m[i], l[i], e=e[i])
                lo = float(np.nextafter(got[i], -np.inf))
                hi = float(np.nextafter(got[i], np.inf))
                # Faithful: the exact value lies strictly between the neighbours of the result.
                assert mpmath.mpf(lo) < exact < mpmath.mpf(hi)

    def test_to_float_overflows_to_inf_without_a_warning(self):
        assert td.to_float(1.5, 0.0, 0.0, 2000) == np.inf
        assert td.to_float(1.5, 0.0, 0.0, -2000) == 0.0

    def test_scaled_round_trip_is_exact(self):
        h, m, l = _random_td(_rng(17), 500, -500, 500)
        sh, sm, sl, e = td.to_scaled(h, m, l)
        assert np.all((np.abs(sh) >= 1) & (np.abs(sh) < 2))
        for a, b in zip(td.from_scaled(sh, sm, sl, e), (h, m, l)):
            np.testing.assert_array_equal(a, b)

    def test_sign_and_absolute(self):
        a = td.renorm(np.array([-2.0, 0.0, 3.0]), np.array([1e-17, 0.0, -1e-17]), np.zeros(3))
        np.testing.assert_array_equal(td.sign(*a), [-1, 0, 1])
        h, m, l = td.absolute(*a)
        np.testing.assert_array_equal(h, [2, 0, 3])
        np.testing.assert_array_equal(m, [-1e-17, 0, -1e-17])  # by hand: -(-2 + 1e-17) = 2 - 1e-17
