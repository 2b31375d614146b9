"""Tests for crossentropy_ref._binary: binary_cross_entropy and binary_cross_entropy_with_logits.

Expected values: torch 2.13.0 in float64 within _helpers.RTOL_TORCH = 1e-10 and
ATOL_TORCH = 1e-12, or by-hand formulas stated per test. Accuracy for large
|x| against mpmath is in test_accuracy.py; bad input in test_validation.py.
"""

import itertools
import warnings

import numpy as np
import pytest
from _helpers import (
    REDUCTIONS,
    assert_torch_close,
    binary_problems,
    torch_binary_cross_entropy,
    torch_binary_cross_entropy_with_logits,
)
from hypothesis import given
from hypothesis import strategies as st

import crossentropy_ref as ce

SHAPES = {"scalar": (), "N": (5,), "NC": (3, 4), "NCd": (2, 3, 4)}


def _broadcast_shapes(shape):
    """Shapes that broadcast to `shape`: none, the full shape, the last axis, a scalar, size-1 leading axes."""
    options = {"none": None, "full": shape, "scalar": ()}
    if len(shape) >= 1:
        options["last-axis"] = shape[-1:]
    if len(shape) >= 2:
        options["leading-ones"] = (1,) * (len(shape) - 1) + shape[-1:]
        options["first-axis"] = (shape[0],) + (1,) * (len(shape) - 1)
    return options


def _inputs(shape, seed=11):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=6.0, size=shape)
    probs = rng.uniform(size=shape)
    target = rng.uniform(size=shape)
    if target.ndim:
        target.reshape(-1)[::2] = np.round(target.reshape(-1)[::2])  # hard 0/1 labels mixed with soft ones
    return logits, probs, target


def _weight(rng, wshape):
    return None if wshape is None else rng.uniform(0.5, 2.0, size=wshape)


BCE_GRID = [
    pytest.param(shape, wshape, red, id=f"{sid}-w:{wid}-{red}")
    for (sid, shape), red in itertools.product(SHAPES.items(), REDUCTIONS)
    for wid, wshape in _broadcast_shapes(shape).items()
]
BCE_LOGITS_GRID = [
    pytest.param(shape, wshape, pshape, red, id=f"{sid}-w:{wid}-pw:{pid}-{red}")
    for (sid, shape), red in itertools.product(SHAPES.items(), REDUCTIONS)
    for (wid, wshape), (pid, pshape) in itertools.product(_broadcast_shapes(shape).items(), repeat=2)
]


class TestBinaryCrossEntropy:
    @pytest.mark.parametrize(("shape", "wshape", "reduction"), BCE_GRID)
    def test_grid(self, shape, wshape, reduction):
        _, probs, target = _inputs(shape)
        probs.reshape(-1)[:2] = (0.0, 1.0)[: probs.size]  # exact 0 and 1: log clamped at -100, as in torch
        weight = _weight(np.random.default_rng(1), wshape)
        ours = ce.binary_cross_entropy(probs, target, weight, reduction=reduction)
        assert_torch_close(ours, torch_binary_cross_entropy(probs, target, weight, reduction=reduction))
        if reduction != "none" or not shape:
            assert type(ours) is np.float64

    @given(args=binary_problems(logits=False))
    def test_property(self, args):
        probs, target, weight, options = args
        assert_torch_close(
            ce.binary_cross_entropy(probs, target, weight, **options),
            torch_binary_cross_entropy(probs, target, weight, **options),
        )

    def test_log_is_clamped_at_minus_100(self):
        # By hand: torch clamps each log at -100, so a certain wrong prediction costs 100.
        assert ce.binary_cross_entropy([0.0, 1.0], [1.0, 0.0], reduction="none").tolist() == [100.0, 100.0]
        assert ce.binary_cross_entropy([0.0, 1.0], [0.0, 1.0], reduction="sum") == 0.0

    def test_tiny_probabilities_keep_their_loss(self):
        # -log(1 - x) = x + x^2/2 + ..., which rounds to x for x <= 1e-17 (x^2/2 is
        # below half an ulp of x; by hand). torch 2.13.0 computes log1p(-x) too and
        # agrees, while log(1 - x) would give 0 for x below 1.1e-16.
        x = np.array([1e-20, 1e-17])
        np.testing.assert_array_equal(ce.binary_cross_entropy(x, np.zeros(2), reduction="none"), x)
        x = np.array([1e-20, 1e-17, 1e-16, 3e-16])
        np.testing.assert_array_equal(
            ce.binary_cross_entropy(x, np.zeros(4), reduction="none"),
            torch_binary_cross_entropy(x, np.zeros(4), reduction="none"),
        )

    def test_empty_mean_is_nan(self):
        # torch: mean over no elements is NaN, sum is 0.
        assert np.isnan(ce.binary_cross_entropy(np.zeros(0), np.zeros(0)))
        assert ce.binary_cross_entropy(np.zeros(0), np.zeros(0), reduction="sum") == 0.0
        assert np.isnan(torch_binary_cross_entropy(np.zeros(0), np.zeros(0)))

    @given(x=st.floats(-5, 5), t=st.floats(0, 1))
    def test_agrees_with_the_logits_version(self, x, t):
        # bce(sigmoid(x), t) = bce_with_logits(x, t) mathematically; |x| <= 5 keeps
        # sigmoid(x) away from 0 and 1, so rounding it costs < 1e-14 relative.
        sigmoid = 1.0 / (1.0 + np.exp(-x))
        np.testing.assert_allclose(
            ce.binary_cross_entropy([sigmoid], [t]), ce.binary_cross_entropy_with_logits([x], [t]), rtol=1e-12
        )


class TestBinaryCrossEntropyWithLogits:
    @pytest.mark.parametrize(("shape", "wshape", "pshape", "reduction"), BCE_LOGITS_GRID)
    def test_grid(self, shape, wshape, pshape, reduction):
        logits, _, target = _inputs(shape)
        rng = np.random.default_rng(2)
        weight, pos_weight = _weight(rng, wshape), _weight(rng, pshape)
        ours = ce.binary_cross_entropy_with_logits(logits, target, weight, reduction=reduction, pos_weight=pos_weight)
        theirs = torch_binary_cross_entropy_with_logits(
            logits, target, weight, reduction=reduction, pos_weight=pos_weight
        )
        assert_torch_close(ours, theirs)
        if reduction != "none" or not shape:
            assert type(ours) is np.float64

    @given(args=binary_problems(logits=True))
    def test_property(self, args):
        logits, target, weight, options = args
        assert_torch_close(
            ce.binary_cross_entropy_with_logits(logits, target, weight, **options),
            torch_binary_cross_entropy_with_logits(logits, target, weight, **options),
        )

    def test_pos_weight_applies_along_the_last_axis(self):
        # One pos_weight per class of a multi-label problem, broadcast along the last
        # axis: with logits 0, every term is log 2 (by hand), so the loss of
        # element (i, c) with target 1 is pos_weight[c] * log 2.
        pos_weight = np.array([1.0, 2.0, 3.0])
        loss = ce.binary_cross_entropy_with_logits(
            np.zeros((2, 3)), np.ones((2, 3)), reduction="none", pos_weight=pos_weight
        )
        np.testing.assert_allclose(loss, np.log(2.0) * np.stack([pos_weight, pos_weight]), rtol=1e-15)

    @given(x=st.floats(-1e4, 1e4), t=st.floats(0, 1), w=st.floats(0, 4), pw=st.floats(0, 4))
    def test_equals_two_class_cross_entropy(self, x, t, w, pw):
        # The logistic loss is softmax cross-entropy over logits [0, x] with target
        # probabilities [1 - t, t] and class weights [1, pos_weight]: same terms,
        # both free of cancellation, so equal to rtol 1e-13 (atol 1e-300 for results
        # below the normal range, 2.2e-308, which have fewer significant bits).
        ours = ce.binary_cross_entropy_with_logits([x], [t], [w], pos_weight=[pw])
        two_class = w * ce.cross_entropy([[0.0, x]], [[1.0 - t, t]], [1.0, pw], reduction="sum")
        np.testing.assert_allclose(ours, two_class, rtol=1e-13, atol=1e-300)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_nan_propagates_per_element(self, reduction):
        x = np.array([[0.5, np.nan, -2.0], [1.0, 3.0, np.nan]])
        t = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])
        ours = ce.binary_cross_entropy_with_logits(x, t, reduction=reduction)
        assert_torch_close(ours, torch_binary_cross_entropy_with_logits(x, t, reduction=reduction))
        if reduction == "none":
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(x))

    @given(args=binary_problems(logits=True, elements=st.floats(-1e4, 1e4)))
    def test_no_warnings_for_finite_logits(self, args):
        logits, target, weight, options = args
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = ce.binary_cross_entropy_with_logits(logits, target, weight, **options)
        assert np.all(loss >= 0) or (options["reduction"] == "mean" and logits.size == 0)

    @given(args=binary_problems(logits=False))
    def test_no_warnings_for_probabilities(self, args):
        # Exact 0 and 1 included: log(0) is clamped without a divide-by-zero warning.
        probs, target, weight, options = args
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = ce.binary_cross_entropy(probs, target, weight, **options)
        assert np.all(loss >= 0) or (options["reduction"] == "mean" and probs.size == 0)
