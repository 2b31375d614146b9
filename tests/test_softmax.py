"""Tests for crossentropy_ref._softmax: logsumexp, log_softmax and softmax.

Expected values come from torch 2.13.0 in float64 (parity, tolerance in
_helpers.RTOL_TORCH / ATOL_TORCH) or from exact identities stated per test.
Accuracy against mpmath is in test_accuracy.py.
"""

import warnings

import numpy as np
import pytest
from _helpers import TORCH_SOFTMAX_FAMILY, assert_torch_close, dyadic_floats, exact_shifts, softmax_inputs
from hypothesis import given
from hypothesis import strategies as st

import crossentropy_ref as ce

FAMILY = {"log_softmax": ce.log_softmax, "softmax": ce.softmax, "logsumexp": ce.logsumexp}
SHAPES = [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)]
SHAPE_AXES = [(shape, axis) for shape in SHAPES for axis in range(-len(shape), len(shape))]


def _expected_shape(name, shape, axis):
    if name != "logsumexp":
        return shape
    return tuple(n for i, n in enumerate(shape) if i != axis % len(shape))


class TestTorchParity:
    @pytest.mark.parametrize("name", FAMILY)
    @pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES, ids=[f"{s}-axis{a}" for s, a in SHAPE_AXES])
    def test_every_axis(self, name, shape, axis):
        x = np.random.default_rng(7).normal(scale=5.0, size=shape)
        out = FAMILY[name](x, axis=axis)
        assert np.shape(out) == _expected_shape(name, shape, axis)
        assert_torch_close(out, TORCH_SOFTMAX_FAMILY[name](x, axis))

    @pytest.mark.parametrize("name", FAMILY)
    def test_default_axis_is_last(self, name):
        x = np.random.default_rng(8).normal(size=(2, 3, 4))
        np.testing.assert_array_equal(FAMILY[name](x), FAMILY[name](x, axis=-1))
        np.testing.assert_array_equal(FAMILY[name](x), FAMILY[name](x, axis=2))

    def test_logsumexp_of_1d_is_a_float64_scalar(self):
        assert type(ce.logsumexp([1.0, 2.0])) is np.float64

    @pytest.mark.parametrize("name", FAMILY)
    @given(args=softmax_inputs())
    def test_property(self, name, args):
        x, axis = args
        assert_torch_close(FAMILY[name](x, axis=axis), TORCH_SOFTMAX_FAMILY[name](x, axis))

    @pytest.mark.parametrize("name", FAMILY)
    @given(args=softmax_inputs(elements=st.sampled_from((-np.inf, np.nan)) | st.floats(-50, 50)))
    def test_nan_and_neg_inf(self, name, args):
        # NaN propagates to its slice only; -inf entries are probability 0 (and a
        # slice of only -inf is NaN for (log_)softmax and -inf for logsumexp), as in torch.
        x, axis = args
        assert_torch_close(FAMILY[name](x, axis=axis), TORCH_SOFTMAX_FAMILY[name](x, axis))

    @pytest.mark.parametrize("name", FAMILY)
    @pytest.mark.parametrize(
        "x",
        [
            [[np.nan]],
            [[-np.inf]],
            [[np.inf]],
            [[np.inf, 0.0, 1.0], [np.inf, -np.inf, 0.0], [np.inf, np.inf, 0.0], [0.0, np.inf, 2.0]],
        ],
        ids=["single-nan", "single-neg-inf", "single-pos-inf", "rows-holding-pos-inf"],
    )
    def test_non_finite_maximum(self, name, x):
        # torch 2.13.0: a slice whose maximum is NaN or +-inf gives NaN in every
        # entry of log_softmax and softmax (x - max is NaN); logsumexp is NaN, -inf
        # or inf. A single class is no exception.
        x = np.array(x)
        assert_torch_close(FAMILY[name](x, axis=1), TORCH_SOFTMAX_FAMILY[name](x, 1))


class TestInvariants:
    @given(
        x=st.lists(dyadic_floats, min_size=1, max_size=8).map(np.array),
        shift=exact_shifts,
    )
    def test_shift_invariance(self, x, shift):
        # x + shift and every x_i - x_j are exact (see _helpers), so the shifted
        # softmax and log_softmax are bitwise equal and logsumexp moves by the
        # shift up to the rounding of its final addition (2 ulps allowed).
        y = x + shift
        np.testing.assert_array_equal(ce.softmax(y), ce.softmax(x))
        np.testing.assert_array_equal(ce.log_softmax(y), ce.log_softmax(x))
        lse, lse_shifted = ce.logsumexp(x), ce.logsumexp(y)
        ulp = np.spacing(max(abs(lse_shifted), abs(lse), abs(shift)))
        assert abs(lse_shifted - (lse + shift)) <= 2 * ulp

    @given(args=softmax_inputs(elements=st.floats(-1e4, 1e4)))
    def test_ranges_and_sums(self, args):
        # 0 <= softmax <= 1 summing to 1 (to C rounding errors), log_softmax <= 0,
        # max(x) <= logsumexp(x) <= max(x) + log(C): each from the definition.
        x, axis = args
        c = x.shape[axis]
        p = ce.softmax(x, axis=axis)
        assert np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=0, atol=c * np.finfo(float).eps)
        assert np.all(ce.log_softmax(x, axis=axis) <= 0)
        lse = ce.logsumexp(x, axis=axis)
        m = x.max(axis=axis)
        assert np.all(lse >= m)
        assert np.all(lse <= m + np.log(c) * (1 + 1e-15) + np.spacing(np.abs(m)))

    @given(args=softmax_inputs(elements=st.floats(-1e4, 1e4)))
    def test_siblings_agree(self, args):
        # log_softmax = x - logsumexp(x) and softmax = exp(log_softmax), up to the
        # rounding of the subtraction (relative 1e-15 of |x|) and of exp.
        x, axis = args
        ls = ce.log_softmax(x, axis=axis)
        lse = np.expand_dims(ce.logsumexp(x, axis=axis), axis)
        np.testing.assert_allclose(ls, x - lse, rtol=1e-13, atol=4 * np.spacing(np.max(np.abs(x), initial=1.0)))
        np.testing.assert_allclose(ce.softmax(x, axis=axis), np.exp(ls), rtol=1e-12, atol=1e-300)

    @pytest.mark.parametrize("name", FAMILY)
    @given(args=softmax_inputs(elements=st.floats(-1e4, 1e4)))
    def test_no_warnings_for_finite_input(self, name, args):
        x, axis = args
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = FAMILY[name](x, axis=axis)
        assert np.all(np.isfinite(out))


# The tests below were appended with the front options (0-d input, several axes, keepdim, dtype=).
import re  # noqa: E402

import torch  # noqa: E402

TORCH_DTYPE = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class TestTorchFrontOptions:
    """0-d input, several axes, keepdim and dtype=, each checked against torch 2.13.0 in float64."""

    @pytest.mark.parametrize("name", FAMILY)
    @pytest.mark.parametrize("value", [3.0, -2.5, 0.0, np.inf, -np.inf, np.nan])
    @pytest.mark.parametrize("axis", [0, -1])
    def test_zero_d_is_one_element(self, name, value, axis):
        # torch 2.13.0: softmax of a 0-d tensor is 1 (NaN if not finite), log_softmax 0
        # (NaN if not finite), logsumexp the element itself; the result is 0-d.
        out = FAMILY[name](np.float64(value), axis=axis)
        assert np.shape(out) == ()
        assert_torch_close(out, TORCH_SOFTMAX_FAMILY[name](np.array(value), axis))

    @pytest.mark.parametrize("name", FAMILY)
    @pytest.mark.parametrize("axis", [1, -2])
    def test_zero_d_axis_out_of_range(self, name, axis):
        # torch 2.13.0 accepts dim in [-1, 0] for a 0-d tensor.
        msg = "`axis` must be in [-1, 1) for an input with 0 dimension(s) (a 0-d input counts as one element"
        with pytest.raises(ValueError, match=re.escape(msg)):
            FAMILY[name](1.0, axis=axis)

    @pytest.mark.parametrize("keepdim", [False, True])
    @pytest.mark.parametrize("axis", [(0,), (0, 2), (2, 0), (-1, 1), (0, 1, 2), [1, 2], 1])
    def test_logsumexp_axes_and_keepdim(self, axis, keepdim):
        x = np.random.default_rng(9).normal(scale=5.0, size=(2, 3, 4))
        out = ce.logsumexp(x, axis=axis, keepdim=keepdim)
        dims = tuple(axis) if isinstance(axis, (tuple, list)) else axis
        want = torch.logsumexp(torch.from_numpy(x), dims, keepdim=keepdim).numpy()
        assert np.shape(out) == want.shape
        assert_torch_close(out, want)

    def test_logsumexp_zero_d_with_empty_axis_and_keepdim(self):
        # torch 2.13.0: logsumexp(tensor(2.), (), keepdim=True) is tensor(2.), shape [].
        out = ce.logsumexp(np.float64(2.0), axis=(), keepdim=True)
        assert np.shape(out) == () and out == 2.0

    @pytest.mark.parametrize(
        ("axis", "exc", "msg"),
        [
            ((0, 0), ValueError, "`axis` must name each axis at most once; got (0, 0)"),
            ((0, -3), ValueError, "`axis` must name each axis at most once; got (0, -3)"),
            ((), ValueError, "`axis` must name at least one axis of an input with 3 dimension(s); got ()"),
            ((0, 3), ValueError, "`axis` must be in [-3, 3) for an input with 3 dimension(s); got 3"),
            ((0, 1.0), TypeError, "`axis` must be an integer or a tuple of integers; got tuple (0, 1.0)"),
        ],
    )
    def test_logsumexp_bad_axes(self, axis, exc, msg):
        with pytest.raises(exc, match=re.escape(msg)):
            ce.logsumexp(np.zeros((2, 3, 4)), axis=axis)

    def test_logsumexp_empty_axes(self):
        msg = "`x` must have at least one entry along axes (0, 1); got shape (2, 0, 3)"
        with pytest.raises(ValueError, match=re.escape(msg)):
            ce.logsumexp(np.zeros((2, 0, 3)), axis=(0, 1))

    def test_keepdim_must_be_bool(self):
        with pytest.raises(TypeError, match=re.escape("`keepdim` must be True or False; got int 1")):
            ce.logsumexp([1.0, 2.0], keepdim=1)

    @pytest.mark.parametrize("name", ["softmax", "log_softmax"])
    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
    @pytest.mark.parametrize("source", [np.float64, np.float32, np.int64])
    def test_dtype_rounds_the_input_first(self, name, dtype, source):
        # torch 2.13.0 casts the input to `dtype` before the operation; computing torch
        # in float64 on that cast input is the float64 reference of the same values.
        x = (np.random.default_rng(10).normal(scale=4.0, size=(3, 5)) * 8).astype(source)
        out = FAMILY[name](x, axis=1, dtype=dtype)
        assert out.dtype == np.float64
        cast = torch.from_numpy(x).to(TORCH_DTYPE[np.dtype(dtype)]).double()
        assert_torch_close(out, TORCH_SOFTMAX_FAMILY[name](cast.numpy(), 1))

    @pytest.mark.parametrize("name", ["softmax", "log_softmax"])
    @pytest.mark.parametrize("dtype", [np.int64, bool, "float", object])
    def test_dtype_must_be_floating(self, name, dtype):
        with pytest.raises(TypeError, match=re.escape("`dtype` must be a floating-point numpy dtype")):
            FAMILY[name]([1.0, 2.0], dtype=dtype if dtype != "float" else "int8")
