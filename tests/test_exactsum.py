"""Tests for crossentropy_ref._engine._exactsum: exact totals, their merge and their rounding.

Ground truth: exact rational arithmetic with fractions.Fraction (`exact_value`
builds each term's exact ratio from ``float.as_integer_ratio`` and scales it
by ``2**exp``; nothing of the module's frexp/bincount method is reused), and
its correct rounding by ``float(Fraction)``, which is CPython's int/int true
division: correctly rounded to nearest, ties to even, subnormals included,
OverflowError when the rounded value is not finite (taken as +-inf here;
the boundary is checked by hand in TestToFloat). Non-finite cases follow
IEEE 754 addition and division, evaluated by Python's float operators or
numpy on the non-finite operands, as each test says. Hypothesis runs with
the project's derandomized "ci" profile (tests/conftest.py). No timings
here: the speed is measured by hand, outside the tests.
"""

from __future__ import annotations

import itertools
import math
import pickle
import re
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossentropy_ref._engine import _exactsum as es
from crossentropy_ref._engine._exactsum import (
    EXP_LIMIT,
    ZERO,
    ExactTotal,
    exact_sum,
    exact_total,
    merge,
    merge_all,
    ratio,
    to_float,
)

RNG = np.random.default_rng(20261207)
MAX = sys.float_info.max  # (2**53 - 1) 2**971
TINY = 5e-324  # 2**-1074, the least subnormal


def exact_value(x, exp=None) -> Fraction:
    """The exact sum of the finite entries of ``x * 2**exp`` as a Fraction.

    Each float is ``a / 2**t`` exactly (``float.as_integer_ratio``); the
    terms are put over the common denominator ``2**K`` as integers, which
    is the same rational arithmetic as adding Fractions one by one, only
    faster on long arrays.
    """
    x = np.asarray(x, dtype=np.float64)
    ks = np.zeros(x.shape, dtype=np.int64) if exp is None else np.broadcast_to(exp, x.shape)
    xs, ks = x.ravel().tolist(), [int(k) for k in np.ravel(ks)]
    big_k = 1074 - min(ks + [0])  # every term a / 2**t * 2**k is an integer over 2**big_k
    n = 0
    for v, k in zip(xs, ks):
        if math.isfinite(v):
            a, b = v.as_integer_ratio()  # b = 2**t, t <= 1074
            n += a << (big_k + k - (b.bit_length() - 1))
    return Fraction(n, 1 << big_k)


def nearest(value: Fraction) -> float:
    """`value` rounded to the nearest float64, ties to even; +-inf past the largest float."""
    try:
        return float(value)  # CPython's correctly rounded int/int true division
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def value_of(t: ExactTotal) -> Fraction:
    return Fraction(t.mant) * Fraction(2) ** t.scale


def same_float(a: float, b: float) -> bool:
    """Equal as float64 bit patterns up to NaN payloads: NaN == NaN, and 0.0 != -0.0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def is_canonical(t: ExactTotal) -> bool:
    return (t.mant % 2 == 1) or (t.mant == 0 and t.scale == 0)


def mixed(rng, n, lo=-320.0, hi=307.9):
    """n floats of random sign, magnitudes 10**lo..10**hi (subnormals below 2.2e-308), some zeros."""
    x = rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n) * 10.0 ** rng.uniform(lo, hi, n)
    x[rng.random(n) < 0.05] = 0.0
    return x


# Every finite float64, subnormals and the extremes included.
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.one_of(finite_floats, st.sampled_from([math.nan, math.inf, -math.inf]))


class TestExactTotal:
    @pytest.mark.parametrize("seed", range(6))
    def test_random_mixed_sign_is_exact(self, seed):
        # Expected: exact_value (Fractions); magnitudes 1e-320..1e308, both signs, zeros.
        rng = np.random.default_rng(seed)
        x = mixed(rng, int(rng.integers(1, 3000)))
        t = exact_total(x)
        assert value_of(t) == exact_value(x)
        assert is_canonical(t)
        assert not (t.nan or t.pos_inf or t.neg_inf)
        assert same_float(to_float(t), nearest(exact_value(x)))

    @pytest.mark.parametrize("seed", range(4))
    def test_exp_pushes_terms_outside_float64(self, seed):
        # Expected: exact_value (Fractions). x 2**exp spans about 2**-4100..2**4000.
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(1, 2000))
        x, e = mixed(rng, n), rng.integers(-3000, 3001, n)
        t = exact_total(x, e)
        assert value_of(t) == exact_value(x, e)
        assert is_canonical(t)
        assert same_float(to_float(t), nearest(exact_value(x, e)))

    def test_terms_beyond_float64_whose_sum_is_a_normal_float(self):
        # By hand: 2**1070 - (1 - 2**-53) 2**1070 = 2**1017, though each term overflows float64.
        x, e = [1.0, -(1.0 - 2.0**-53)], [1070, 1070]
        assert exact_sum(x, e) == 2.0**1017
        # The same at exponent 2000 is 2**1947: past the float64 range, so +inf.
        assert exact_sum(x, [2000, 2000]) == math.inf
        # And at -2000, terms far below the subnormals: 2**-2053, rounds to +0.0.
        assert same_float(exact_sum(x, [-2000, -2000]), 0.0)

    def test_cancellation_down_to_the_last_bit(self):
        # By hand: v, -v and a term t cancel to exactly t, whatever the order of the terms.
        v = mixed(RNG, 4000)
        for tiny in (TINY, 3 * TINY, -2.0**-1060, 1.0):
            x = RNG.permutation(np.concatenate([v, -v, [tiny]]))
            assert exact_sum(x) == tiny
        # One ulp of 1 left over: (1 + 2**-52) - 1 = 2**-52, among large cancelling terms.
        x = np.array([1e300, 1.0 + 2.0**-52, -1e300, 1e-300, -1.0, -1e-300])
        assert exact_sum(x) == 2.0**-52
        # The naive sum loses it (shown to make the case meaningful, not part of the contract).
        assert float(np.sum(x)) != 2.0**-52

    def test_subnormal_terms(self):
        # Expected: exact_value (Fractions); every term a subnormal or zero.
        x = RNG.integers(-(2**52), 2**52, 500) * TINY
        assert value_of(exact_total(x)) == exact_value(x)
        assert exact_sum([TINY] * 7) == 7 * TINY  # by hand: 7 2**-1074 is a subnormal
        assert exact_sum([2.0**-1022, -TINY]) == 2.0**-1022 - TINY  # by hand: the largest subnormal

    def test_common_exponent_equals_exponent_array(self):
        # The same exact value either way (the scalar path only moves the scale).
        x = mixed(RNG, 300)
        assert exact_total(x, 57) == exact_total(x, np.full(300, 57)) == exact_total(x, np.int8(57))
        assert value_of(exact_total(x, -3000)) == exact_value(x, -3000)

    @pytest.mark.parametrize(
        ("shape", "eshape"),
        [((5, 30000), (30000,)), ((1, 200000), (200000,)), ((2, 1, 70000), (1, 70000)), ((140000,), None)],
        ids=["rows", "one-long-row", "3d", "1d"],
    )
    def test_inputs_larger_than_one_piece(self, shape, eshape):
        # Expected: exact_value (Fractions). Sizes above es._SLICE exercise the cutting into pieces.
        rng = np.random.default_rng(7)
        x = mixed(rng, int(np.prod(shape))).reshape(shape)
        e = None if eshape is None else rng.integers(-2000, 2000, eshape)
        assert np.prod(shape) > es._SLICE
        assert value_of(exact_total(x, e)) == exact_value(x, e)

    def test_non_contiguous_input(self):
        # Expected: exact_value (Fractions) of the same strided view.
        x = mixed(RNG, 6000).reshape(60, 100)[::2, ::-3].T
        e = RNG.integers(-100, 100, (x.shape[1],))
        assert value_of(exact_total(x, e)) == exact_value(x, e)

    @pytest.mark.parametrize(
        "x",
        [[], np.zeros((0, 3)), np.zeros((4, 0, 2))],
        ids=["list", "0x3", "4x0x2"],
    )
    def test_empty_is_zero(self, x):
        # By hand: the empty sum is 0.
        assert exact_total(x) == ZERO
        assert exact_total(x, np.ones(np.shape(x)[-1:], dtype=np.int64)) == ZERO
        assert same_float(exact_sum(x), 0.0)

    def test_zeros_times_any_power_of_two_are_zero(self):
        # By hand: 0 2**exp = 0.
        assert exact_total([0.0, -0.0, 0.0], [-3000, 0, 3000]) == ZERO

    @pytest.mark.parametrize(
        "specials",
        [
            combo
            for r in range(1, 4)
            for combo in itertools.combinations_with_replacement([math.nan, math.inf, -math.inf], r)
        ],
        ids=repr,
    )
    @pytest.mark.parametrize("finite", [[], [1.0, -2.5], [MAX, MAX]], ids=["none", "small", "overflowing"])
    def test_non_finite_terms_follow_ieee_addition(self, specials, finite):
        # Expected: IEEE 754 addition of the non-finite terms alone (Python's float +; a
        # finite term, however large, does not change inf, -inf or NaN), with any exponents.
        expected = sum(specials, 0.0)
        x = np.array(list(finite) + list(specials))
        for e in (None, RNG.integers(-3000, 3000, x.size)):
            t = exact_total(RNG.permutation(x) if e is None else x, e)
            assert same_float(to_float(t), expected)
            assert t.nan == any(math.isnan(s) for s in specials)
            assert t.pos_inf == (math.inf in specials)
            assert t.neg_inf == (-math.inf in specials)
            # The finite terms are still summed exactly beside the flags.
            assert value_of(t) == exact_value(x, e)

    def test_input_is_not_modified(self):
        x = np.array([[1.0, np.inf], [np.nan, -2.0]])
        e = np.array([3, -4])
        x0, e0 = x.copy(), e.copy()
        exact_total(x, e)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(e, e0)

    def test_types_that_float64_holds_exactly(self):
        # By hand: float32, float16 and small integers convert to float64 without rounding.
        x32 = mixed(RNG, 200, -40, 38).astype(np.float32)
        assert exact_total(x32) == exact_total(x32.astype(np.float64))
        assert exact_total(np.array([1, -2, 2**53], dtype=np.int64)) == exact_total([1.0, -2.0, 2.0**53])
        assert exact_total(np.array([3, 4], dtype=np.uint8), np.array([1, 2], dtype=np.uint16)) == (
            exact_total([22.0])
        )

    X_KIND = "`x` must hold real numbers (float64, or a type float64 holds exactly); got "
    EXP_KIND = "`exp` must hold integers (powers of two to scale `x` by); got "
    EXP_RANGE = f"`exp` must hold values in [{-EXP_LIMIT}, {EXP_LIMIT}]; got "

    @pytest.mark.parametrize(
        ("x", "exp", "error", "message"),
        [
            pytest.param(np.array([1 + 2j]), None, TypeError, X_KIND + "complex128 array of shape (1,)", id="complex"),
            pytest.param(np.array([True]), None, TypeError, X_KIND + "bool array of shape (1,)", id="bool"),
            pytest.param(
                np.array([1.0], dtype=np.longdouble), None, TypeError,
                X_KIND + "float128 array of shape (1,)", id="longdouble",
            ),
            pytest.param(
                np.array([2**53 + 1]), None, ValueError,
                "`x` must hold values that float64 represents exactly; got integers beyond 2**53 "
                "in an int64 array of shape (1,)", id="big-int",
            ),
            pytest.param(
                [[1.0], [1.0, 2.0]], None, TypeError, "`x` must be an array of real numbers; got list", id="ragged"
            ),
            pytest.param([1.0, 2.0], [0.5, 1.0], TypeError, EXP_KIND + "float64 array of shape (2,)", id="float-exp"),
            pytest.param([1.0, 2.0], [True, False], TypeError, EXP_KIND + "bool array of shape (2,)", id="bool-exp"),
            pytest.param(
                np.ones((2, 3)), [1, 2], ValueError,
                "`exp` must be broadcastable to the shape of `x`, (2, 3); got shape (2,)", id="exp-shape",
            ),
            pytest.param(np.ones(3), [0, EXP_LIMIT + 1, 0], ValueError, EXP_RANGE + f"{EXP_LIMIT + 1}", id="exp-high"),
            pytest.param(np.ones(3), -EXP_LIMIT - 1, ValueError, EXP_RANGE + f"{-EXP_LIMIT - 1}", id="exp-low"),
            pytest.param(
                np.ones(2), np.array([0, 2**64 - 1], dtype=np.uint64), ValueError,
                EXP_RANGE + f"{2**64 - 1}", id="exp-uint64",
            ),
        ],
    )  # fmt: skip
    def test_bad_input_is_refused_clearly(self, x, exp, error, message):
        if isinstance(x, np.ndarray) and x.dtype == np.longdouble and np.finfo(np.longdouble).bits == 64:
            pytest.skip("np.longdouble is float64 on this platform")
        with pytest.raises(error, match=re.escape(message)):
            exact_total(x, exp)

    def test_pickled_size(self):
        # The docstring's account: 76 bytes plus one per 8 bits of the mantissa.
        cases = [([], None), (RNG.normal(size=2**16), None), (mixed(RNG, 2**16), RNG.integers(-3000, 3000, 2**16))]
        for x, e in cases:
            t = exact_total(x, e)
            blob = pickle.dumps(t)
            assert pickle.loads(blob) == t
            assert len(blob) <= 76 + t.mant.bit_length() // 8 + 8


def _all_groupings(items):
    """Every full binary bracketing of `items` in this order, each merged with `merge`."""
    if len(items) == 1:
        yield items[0]
        return
    for i in range(1, len(items)):
        for left in _all_groupings(items[:i]):
            for right in _all_groupings(items[i:]):
                yield merge(left, right)


class TestMerge:
    def test_every_order_and_grouping_gives_the_same_total(self):
        # By construction, the whole array's total; expected value: exact_value (Fractions).
        parts = [mixed(RNG, 50), [np.inf], mixed(RNG, 30, -320, -300), mixed(RNG, 40, 300, 307.9)]
        x = np.concatenate(parts)
        e = RNG.integers(-3000, 3000, x.size)
        cuts = [0, 50, 51, 81, 81, 121]  # five chunks, one empty, one holding only +inf
        chunks = [exact_total(x[a:b], e[a:b]) for a, b in itertools.pairwise(cuts)]
        whole = exact_total(x, e)
        results = {g for perm in itertools.permutations(chunks) for g in _all_groupings(list(perm))}
        results |= {merge_all(perm) for perm in itertools.permutations(chunks)}
        assert results == {whole}
        assert value_of(whole) == exact_value(x, e)
        assert whole.pos_inf and not (whole.nan or whole.neg_inf)

    @given(data=st.data())
    def test_any_chunking_any_tree(self, data):
        # Property: chunk totals merged in a random tree and order equal the whole array's
        # total bit for bit; the whole's value is exact_value (Fractions) whatever the terms.
        x = np.array(data.draw(st.lists(any_floats, max_size=40), label="x"), dtype=np.float64)
        exps = st.lists(st.integers(-3000, 3000), min_size=x.size, max_size=x.size)
        e = np.array(data.draw(exps, label="exp"), dtype=np.int64)
        cuts = sorted(data.draw(st.lists(st.integers(0, x.size), max_size=6), label="cuts"))
        bounds = [0, *cuts, x.size]
        pool = [exact_total(x[a:b], e[a:b]) for a, b in itertools.pairwise(bounds)]
        while len(pool) > 1:
            i = data.draw(st.integers(0, len(pool) - 2))
            a, b = pool[i], pool[i + 1]
            if data.draw(st.booleans()):
                a, b = b, a
            pool[i : i + 2] = [merge(a, b)]
        whole = exact_total(x, e)
        assert pool[0] == whole
        assert is_canonical(whole)
        assert value_of(whole) == exact_value(x, e)

    def test_zero_is_the_identity(self):
        t = exact_total(mixed(RNG, 100))
        assert merge(t, ZERO) == merge(ZERO, t) == t
        assert merge_all([]) == ZERO

    def test_merged_flags(self):
        # By hand: the flags are the union of the chunks' flags.
        t = merge(exact_total([np.inf, 1.0]), exact_total([-np.inf]))
        assert (t.nan, t.pos_inf, t.neg_inf) == (False, True, True)
        assert math.isnan(to_float(t))  # IEEE: inf + -inf is NaN

    def test_only_totals_are_merged(self):
        msg = "must be an ExactTotal (from exact_total or merge); got "
        with pytest.raises(TypeError, match=re.escape("`b` " + msg + "float")):
            merge(ZERO, 1.0)
        with pytest.raises(TypeError, match=re.escape("`totals` " + msg + "tuple")):
            merge_all([ZERO, (1, 0)])


class TestToFloat:
    def test_overflow_only_in_the_final_rounding(self):
        # By hand: MAX + MAX - MAX = MAX exactly (a naive left-to-right sum overflows to inf).
        assert exact_sum([MAX, MAX, -MAX]) == MAX
        assert sum([MAX, MAX, -MAX]) == math.inf
        # MAX + 2**970 is the midpoint between MAX (odd significand) and 2**1024: ties to
        # even go up, and 2**1024 overflows (IEEE 754, 7.4).
        assert exact_sum([MAX, 1.0], [0, 970]) == math.inf
        assert exact_sum([-MAX, -1.0], [0, 970]) == -math.inf
        # Just below the midpoint: MAX.
        assert exact_sum([MAX, 1.0, -1.0], [0, 970, 900]) == MAX
        assert nearest(exact_value([MAX, 1.0], [0, 970])) == math.inf  # the oracle agrees

    @pytest.mark.parametrize(
        ("x", "e", "expected"),
        [
            ([1.0, 1.0], [0, -53], 1.0),  # 1 + 2**-53: tie between 1 and 1 + 2**-52, to even 1
            ([1.0 + 2.0**-52, 1.0], [0, -53], 1.0 + 2.0**-51),  # tie, to even: up
            ([-1.0, -1.0], [0, -53], -1.0),  # negative tie
            ([1.0, 1.0, 1.0], [0, -53, -1074], 1.0 + 2.0**-52),  # a tie broken by 2**-1074
            ([1.0, 1.0, -1.0], [0, -53, -1074], 1.0),  # and the other way
            ([1.0], [-1075], 0.0),  # 2**-1075: tie between 0 and 2**-1074, to even 0
            ([3.0], [-1075], 2 * TINY),  # 3 2**-1075: tie between 1 and 2 units, to even 2
            ([1.0, 1.0], [-1075, -1200], TINY),  # just above half the least subnormal
            ([-1.0], [-1076], -0.0),  # rounds to zero: a negative value gives -0.0
            ([1.0, 1.0], [-1022, -1075], 2.0**-1022),  # tie at the smallest normal, to even
            ([2.0**-1022, TINY, 1.0], [0, 0, -1075], 2.0**-1022 + 2 * TINY),  # odd + half: up
        ],
    )
    def test_ties_to_even_and_subnormals(self, x, e, expected):
        # Expected by hand (each row's comment); the Fraction oracle must agree.
        assert same_float(exact_sum(x, e), expected)
        assert same_float(nearest(exact_value(x, e)), expected)

    @given(x=st.lists(finite_floats, max_size=12), e=st.lists(st.integers(-1200, 1200), min_size=12, max_size=12))
    def test_correct_rounding(self, x, e):
        # Expected: exact_value (Fractions) rounded by CPython's correctly rounded division.
        e = e[: len(x)]
        assert same_float(exact_sum(x, e), nearest(exact_value(x, e)))

    def test_exact_zero_is_positive_zero(self):
        # Documented: the sign of an exact zero is not kept (IEEE would give -0.0 for -0.0 + -0.0).
        assert same_float(exact_sum([-0.0, -0.0]), 0.0)
        assert same_float(exact_sum([1.5, -1.5]), 0.0)  # as IEEE: x + (-x) = +0.0

    def test_only_totals_are_rounded(self):
        msg = "`total` must be an ExactTotal (from exact_total or merge); got float"
        with pytest.raises(TypeError, match=re.escape(msg)):
            to_float(1.0)


class TestRatio:
    @pytest.mark.parametrize("seed", range(5))
    def test_quotient_of_exact_totals(self, seed):
        # Expected: Fraction division of exact_value's, rounded by CPython's division.
        rng = np.random.default_rng(300 + seed)
        n = int(rng.integers(1, 200))
        num_x, den_x = mixed(rng, n), mixed(rng, n)
        num_e, den_e = rng.integers(-1500, 1500, n), rng.integers(-1500, 1500, n)
        num, den = exact_total(num_x, num_e), exact_total(den_x, den_e)
        assert same_float(ratio(num, den), nearest(exact_value(num_x, num_e) / exact_value(den_x, den_e)))

    def test_mean_with_cancelling_weights(self):
        # The 'mean' reduction: sum(w l) / sum(w). Expected: Fraction division.
        w = np.array([1e300, 3.0, -1e300, 2.0**-40])
        loss = np.array([2.5, 1.0, 2.5, 7.0])
        num, den = exact_total(w * loss), exact_total(w)  # each w * loss is exact here (by hand)
        # By hand: the sums are exactly 3 + 7 2**-40 and 3 + 2**-40.
        expected = nearest((3 + Fraction(7, 2**40)) / (3 + Fraction(1, 2**40)))
        assert same_float(ratio(num, den), expected)
        # Left-to-right float sums lose the 3s in 1e300 + 3 - 1e300 and give 7 instead.
        assert sum((w * loss).tolist()) / sum(w.tolist()) == 7.0

    @pytest.mark.parametrize(
        ("num", "den", "expected"),
        [
            ([1.0], [1.0], 1.0),
            ([1.0, 2.0], [3.0], 1.0),
            ([1.0], [1.0, 1.0, 1.0], Fraction(1, 3)),
            ([1.0], [3.0], Fraction(1, 3)),
            ([MAX, MAX], [2.0], MAX),  # a numerator beyond float64, a quotient inside
            ([1.0], [3.0 * TINY], Fraction(1, 3 * Fraction(TINY))),  # overflow: inf
            ([TINY], [3.0], Fraction(TINY) / 3),  # rounds to 0 (1/3 of the least subnormal)
            ([2 * TINY], [3.0], Fraction(2 * TINY) / 3),  # rounds to the least subnormal
        ],
    )
    def test_hand_cases(self, num, den, expected):
        # Expected: by hand, or Fraction division rounded by CPython's division (Fraction rows).
        want = nearest(expected) if isinstance(expected, Fraction) else expected
        assert same_float(ratio(exact_total(num), exact_total(den)), want)

    @pytest.mark.parametrize("num", [math.nan, math.inf, -math.inf, 2.5, -2.5, 0.0], ids=repr)
    @pytest.mark.parametrize("den", [math.nan, math.inf, -math.inf, 4.0, -4.0, 0.0], ids=repr)
    def test_non_finite_and_zero_follow_ieee_division(self, num, den):
        # Expected: IEEE 754 division by numpy on the same operands, an exact zero being +0.0.
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = float(np.divide(np.float64(num), np.float64(den)))
        assert same_float(ratio(exact_total([num]), exact_total([den])), expected)

    def test_both_infinities_make_nan(self):
        # IEEE: inf + -inf is NaN, so the quotient is NaN.
        assert math.isnan(ratio(exact_total([np.inf, -np.inf]), exact_total([1.0])))
        assert math.isnan(ratio(exact_total([1.0]), exact_total([np.inf, -np.inf])))

    def test_only_totals_are_divided(self):
        msg = "`den` must be an ExactTotal (from exact_total or merge); got int"
        with pytest.raises(TypeError, match=re.escape(msg)):
            ratio(ZERO, 3)


class TestExactSum:
    def test_is_to_float_of_exact_total(self):
        x, e = mixed(RNG, 500), RNG.integers(-1100, 1100, 500)
        assert same_float(exact_sum(x, e), to_float(exact_total(x, e)))

    def test_agrees_with_math_fsum(self):
        # Expected: math.fsum, Shewchuk's correctly rounded sum (a second, independent oracle).
        x = mixed(RNG, 5000, -300, 300)
        assert exact_sum(x) == math.fsum(x.tolist())
