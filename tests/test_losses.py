"""Tests for crossentropy_ref._losses: cross_entropy, cross_entropy_grad and nll_loss.

Expected values: torch 2.13.0 in float64, loss and autograd gradient (of
``loss.sum()`` for ``reduction='none'``), within _helpers.RTOL_TORCH = 1e-10
and ATOL_TORCH = 1e-12; or exact identities and by-hand formulas stated per
test. Accuracy against mpmath is in test_accuracy.py; bad input in
test_validation.py.
"""

import itertools
import warnings

import numpy as np
import pytest
from _helpers import (
    REDUCTIONS,
    CEProblem,
    assert_reduced_type,
    assert_torch_close,
    ce_problems,
    class_axis,
    class_count,
    dyadic_floats,
    exact_shifts,
    index_shape,
    parity_floats,
    torch_cross_entropy,
    torch_nll_loss,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import crossentropy_ref as ce
from crossentropy_ref._engine._blocks import BLOCK_ELEMENTS

SHAPES = {"C": (4,), "NC": (3, 4), "NCd1": (3, 4, 2), "NCd1d2": (2, 4, 2, 3)}
WEIGHTS = ("no-weight", "weight-keyword", "weight-positional")
SMOOTHING = (0.0, 0.1, 1.0)
# ignore_index: the default -100 (with some targets set to -100), or a valid class (1).
IGNORE = ("default", "class1")


def make_problem(shape, kind, weight_mode="no-weight", ignore="default", seed=1234, **options):
    """A deterministic problem on `shape`: logits N(0, 4^2), weights U(0.5, 2)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=shape)
    c = class_count(shape)
    weight = None if weight_mode == "no-weight" else rng.uniform(0.5, 2.0, size=c)
    if kind == "index":
        target = rng.integers(0, c, size=index_shape(shape))
        if ignore == "default":
            if target.ndim:
                target.reshape(-1)[::3] = -100  # every third position ignored
        else:
            options["ignore_index"] = 1
    else:
        target = rng.dirichlet(np.ones(c), size=index_shape(shape))  # (..., C)
        target = np.moveaxis(target, -1, class_axis(shape))
    return CEProblem(logits, target, weight, options, weight_positional=weight_mode == "weight-positional")


GRID = [
    pytest.param(shape, kind, w, ig, red, eps, id=f"{sid}-{kind}-{w}-{ig}-{red}-eps{eps}")
    for (sid, shape), kind, w, red, eps in itertools.product(
        SHAPES.items(), ("index", "prob"), WEIGHTS, REDUCTIONS, SMOOTHING
    )
    for ig in (IGNORE if kind == "index" else ("default",))
]


class TestCrossEntropyTorchParity:
    @pytest.mark.parametrize(("shape", "kind", "weight_mode", "ignore", "reduction", "eps"), GRID)
    def test_grid(self, shape, kind, weight_mode, ignore, reduction, eps):
        pb = make_problem(shape, kind, weight_mode, ignore, reduction=reduction, label_smoothing=eps)
        loss, grad = pb.torch()
        ours = pb.call(ce.cross_entropy)
        assert_reduced_type(ours, reduction, len(shape))
        assert_torch_close(ours, loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @given(pb=ce_problems())
    def test_property(self, pb):
        loss, grad = pb.torch()
        ours = pb.call(ce.cross_entropy)
        assert_reduced_type(ours, pb.options["reduction"], pb.logits.ndim)
        assert_torch_close(ours, loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("eps", SMOOTHING)
    @pytest.mark.parametrize("weight_mode", ("no-weight", "weight-keyword"))
    @pytest.mark.parametrize("shape", [(4,), (3, 4), (3, 4, 2)], ids=["C", "NC", "NCd1"])
    def test_everything_ignored(self, shape, weight_mode, eps, reduction):
        # torch: the loss is 0 per position, 0 summed and NaN (0/0) for 'mean';
        # autograd gives a zero gradient in every case.
        pb = make_problem(shape, "index", weight_mode, reduction=reduction, label_smoothing=eps)
        pb.target = np.full(index_shape(shape), -100)
        loss, grad = pb.torch()
        assert_torch_close(pb.call(ce.cross_entropy), loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("eps", (0.0, 0.1))
    @pytest.mark.parametrize("kind", ("index", "prob"))
    @pytest.mark.parametrize("shape", [(0, 4), (0, 4, 2), (2, 4, 0)], ids=["N0", "N0-d1", "d1-0"])
    def test_empty_batch(self, shape, kind, eps, reduction):
        # torch: 'mean' is NaN (0/0), 'sum' 0, 'none' empty; the gradient is empty.
        pb = make_problem(shape, kind, "weight-keyword", reduction=reduction, label_smoothing=eps)
        loss, grad = pb.torch()
        assert_torch_close(pb.call(ce.cross_entropy), loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @pytest.mark.parametrize(
        "shape",
        [
            (9 * BLOCK_ELEMENTS // 64, 64),  # many blocks of rows: runs on the thread pool
            (2, 3, BLOCK_ELEMENTS // 2),  # a row bigger than a block: split along positions
            (2, BLOCK_ELEMENTS + 5),  # more classes than a block: one position per block
        ],
        ids=["row-blocks", "position-blocks", "class-blocks"],
    )
    @pytest.mark.parametrize("kind", ("index", "prob"))
    def test_blocked_paths(self, shape, kind):
        pb = make_problem(shape, kind, "weight-keyword", reduction="none", label_smoothing=0.1)
        loss, grad = pb.torch()
        assert_torch_close(pb.call(ce.cross_entropy), loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)
        pb.options["reduction"] = "mean"
        loss, grad = pb.torch()
        assert_torch_close(pb.call(ce.cross_entropy), loss)
        assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @given(pb=ce_problems(kinds=("index",), elements=st.sampled_from((-np.inf, np.nan)) | parity_floats()))
    def test_nan_and_neg_inf_logits_with_index_targets(self, pb):
        # NaN poisons its own position; a -inf logit is a class of probability 0.
        # Gradients at ignored positions are 0 here and NaN in torch when the
        # position holds a NaN: compared separately in test_nan_propagates_per_position.
        loss, grad = pb.torch()
        assert_torch_close(pb.call(ce.cross_entropy), loss)
        ignore = pb.options.get("ignore_index", -100)
        ignored = np.expand_dims(pb.target == ignore, class_axis(pb.logits.shape))
        ours = pb.call(ce.cross_entropy_grad)
        assert_torch_close(np.where(ignored, 0.0, ours), np.where(ignored, 0.0, grad))

    @pytest.mark.parametrize("eps", (0.0, 0.1))
    @pytest.mark.parametrize(
        ("z", "targets"),
        [
            ([[np.nan]], [[0]]),
            ([[-np.inf]], [[0]]),
            ([[np.inf, 0.0, 1.0], [0.0, np.inf, -np.inf], [1.0, 2.0, 3.0]], [[0, 0, 2], [1, 1, 0], [2, 0, 1]]),
        ],
        ids=["single-class-nan", "single-class-neg-inf", "rows-holding-pos-inf"],
    )
    def test_non_finite_maximum(self, z, targets, eps):
        # torch 2.13.0: at a position whose largest logit is NaN or +-inf, the loss
        # and every gradient entry are NaN (log_softmax computes z - max = NaN),
        # whatever the target; a single class is no exception.
        for target in targets:
            pb = CEProblem(np.array(z), np.array(target), options={"reduction": "none", "label_smoothing": eps})
            loss, grad = pb.torch()
            assert_torch_close(pb.call(ce.cross_entropy), loss)
            assert_torch_close(pb.call(ce.cross_entropy_grad), grad)

    @pytest.mark.parametrize("eps", (0.0, 0.1))
    @pytest.mark.parametrize("kind", ("index", "prob"))
    def test_nan_propagates_per_position(self, kind, eps):
        z = np.random.default_rng(3).normal(size=(5, 3, 2))
        z[1, 2, 0] = np.nan  # position (1, 0): not ignored
        z[3, 0, 1] = np.nan  # position (3, 1): ignored for index targets
        if kind == "index":
            target = np.array([[0, 1], [2, 0], [1, 1], [2, -100], [0, 2]])
        else:
            target = make_problem((5, 3, 2), "prob").target
        pb = CEProblem(z, target, options={"reduction": "none", "label_smoothing": eps})
        loss, grad = pb.torch()
        ours = pb.call(ce.cross_entropy)
        assert_torch_close(ours, loss)
        nan_positions = {(1, 0), (3, 1)} if kind == "prob" else {(1, 0)}
        assert {tuple(i) for i in np.argwhere(np.isnan(ours))} == nan_positions
        g = pb.call(ce.cross_entropy_grad)
        assert {tuple(i) for i in np.argwhere(np.isnan(g).any(axis=1))} == nan_positions
        if kind == "index":
            # The ignored position keeps loss 0 and gradient 0 (torch's autograd gives NaN there).
            assert ours[3, 1] == 0.0
            np.testing.assert_array_equal(g[3, :, 1], 0.0)
            assert np.isnan(grad[3, :, 1]).all()
            keep = np.ones(z.shape, bool)
            keep[3, :, 1] = False
            assert_torch_close(g[keep], grad[keep])
            # 'mean' with the NaN only at the ignored position stays finite, as in torch.
            target[1, 0] = -100
            pb = CEProblem(z, target, options={"reduction": "mean", "label_smoothing": eps})
            assert np.isfinite(pb.call(ce.cross_entropy))
            assert_torch_close(pb.call(ce.cross_entropy), pb.torch()[0])

    def test_zero_mass_classes_at_neg_inf_contribute_nothing(self):
        # 0 log 0 = 0 (Notes): a class with a -inf logit and no target mass is the
        # same as no class at all (to rounding, rtol 1e-15), and its gradient entry
        # is 0. torch 2.13.0 computes 0 * -inf = NaN instead.
        z = np.array([[1.0, -np.inf, 0.5, 2.0], [-np.inf, 3.0, 0.0, -1.0]])
        p = np.array([[0.2, 0.0, 0.3, 0.5], [0.0, 0.6, 0.1, 0.3]])
        for row in range(2):
            keep = np.isfinite(z[row])
            full = ce.cross_entropy(z[row], p[row], reduction="none")
            dropped = ce.cross_entropy(z[row, keep], p[row, keep], reduction="none")
            np.testing.assert_allclose(full, dropped, rtol=1e-15)
            g = ce.cross_entropy_grad(z[row], p[row], reduction="none")
            np.testing.assert_array_equal(g[~keep], 0.0)
            g_dropped = ce.cross_entropy_grad(z[row, keep], p[row, keep], reduction="none")
            np.testing.assert_allclose(g[keep], g_dropped, rtol=1e-15)
        assert np.isnan(torch_cross_entropy(z, p, reduction="none")[0]).all()


    def test_tiny_mean_denominator(self):
        # A subnormal class weight as the only target weight: 'mean' divides a loss
        # of order 0.03 by 5e-324 and overflows. torch 2.13.0 returns inf, silently;
        # so must this (the gradient's value is not compared: torch gives NaN there).
        z, y, w = np.array([0.0, 0.0]), np.array(0), np.array([5e-324, 1.0])
        options = {"label_smoothing": 0.1, "reduction": "mean"}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = ce.cross_entropy(z, y, w, **options)
            ce.cross_entropy_grad(z, y, w, **options)
        assert_torch_close(loss, torch_cross_entropy(z, y, w, **options)[0])


class TestCrossEntropyGradient:
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize(
        ("shape", "kind", "weight_mode", "eps"),
        [
            ((4,), "index", "no-weight", 0.0),
            ((3, 4), "index", "weight-keyword", 0.1),
            ((2, 3, 2), "index", "weight-keyword", 1.0),
            ((3, 4), "prob", "no-weight", 0.0),
            ((2, 3, 2), "prob", "weight-keyword", 0.3),
        ],
    )
    def test_central_differences(self, shape, kind, weight_mode, eps, reduction):
        # Central differences with h = 1e-6: truncation error h^2 |f'''| / 6 ~ 1e-13,
        # rounding error ~ eps_mach |f| / h ~ 1e-9 for |f| ~ 10; tolerance atol = 1e-7.
        pb = make_problem(shape, kind, weight_mode, reduction=reduction, label_smoothing=eps)
        h = 1e-6

        def f(z):
            return float(np.sum(ce.cross_entropy(z, pb.target, pb.weight, **pb.options)))

        fd = np.empty(shape)
        for i in np.ndindex(shape):
            zp, zm = pb.logits.copy(), pb.logits.copy()
            zp[i] += h
            zm[i] -= h
            fd[i] = (f(zp) - f(zm)) / (2 * h)
        np.testing.assert_allclose(pb.call(ce.cross_entropy_grad), fd, rtol=0, atol=1e-7)

    @given(pb=ce_problems(kinds=("index",), weights=False))
    def test_is_softmax_minus_target(self, pb):
        # Unweighted, unsmoothed, 'sum': the gradient is softmax(z) - onehot(y) at
        # every position that is not ignored, 0 elsewhere (closed form, by hand).
        # atol: softmax(z) - 1 cancels where q_y -> 1, leaving a few ulp(1) = 2.2e-16.
        pb.options.update(reduction="sum", label_smoothing=0.0)
        ignore = pb.options.get("ignore_index", -100)
        ax = class_axis(pb.logits.shape)
        valid = pb.target != ignore
        onehot = np.moveaxis(ce.one_hot(np.where(valid, pb.target, 0), class_count(pb.logits.shape)), -1, ax)
        expected = np.where(np.expand_dims(valid, ax), ce.softmax(pb.logits, axis=ax) - onehot, 0.0)
        np.testing.assert_allclose(pb.call(ce.cross_entropy_grad), expected, rtol=1e-13, atol=5e-16)


class TestCrossEntropyInvariants:
    @given(pb=ce_problems(elements=dyadic_floats), data=st.data())
    def test_shift_invariance(self, pb, data):
        # A per-position shift (constant along the class axis) of exactly
        # representable values leaves every m - z_c unchanged (see _helpers), so
        # loss and gradient are bitwise equal.
        ax = class_axis(pb.logits.shape)
        shift_shape = list(pb.logits.shape)
        shift_shape[ax] = 1
        shift = data.draw(hnp.arrays(np.float64, tuple(shift_shape), elements=exact_shifts))
        shifted = CEProblem(pb.logits + shift, pb.target, pb.weight, pb.options)
        np.testing.assert_array_equal(shifted.call(ce.cross_entropy), pb.call(ce.cross_entropy))
        np.testing.assert_array_equal(shifted.call(ce.cross_entropy_grad), pb.call(ce.cross_entropy_grad))

    @given(pb=ce_problems(elements=st.floats(-1e4, 1e4), normalized=True))
    def test_non_negative(self, pb):
        # Non-negative weights and target mass: every term b_c (-log q_c) is >= 0.
        pb.options["reduction"] = "none"
        assert np.all(pb.call(ce.cross_entropy) >= 0)
        for reduction in ("sum", "mean"):
            pb.options["reduction"] = reduction
            total = pb.call(ce.cross_entropy)
            assert total >= 0 or np.isnan(total)  # NaN: 'mean' over nothing (0/0)

    @given(pb=ce_problems(kinds=("index",)))
    def test_one_hot_probabilities_equal_indices(self, pb):
        # The one-hot target is the index target written as probabilities: same
        # per-position losses and gradients (also weighted and smoothed), and the
        # same 'mean' when nothing is ignored and there are no weights.
        ax = class_axis(pb.logits.shape)
        c = class_count(pb.logits.shape)
        pb.target = np.where((pb.target >= 0) & (pb.target < c), pb.target, 0)
        pb.options.pop("ignore_index", None)
        onehot = np.moveaxis(ce.one_hot(pb.target, c), -1, ax)
        as_probs = CEProblem(pb.logits, onehot, pb.weight, dict(pb.options))
        reductions = ("none", "sum", "mean") if pb.weight is None else ("none", "sum")
        for reduction in reductions:
            pb.options["reduction"] = as_probs.options["reduction"] = reduction
            np.testing.assert_allclose(as_probs.call(ce.cross_entropy), pb.call(ce.cross_entropy), rtol=1e-13, atol=0)
            # atol: a q_c - b_c may cancel to rounding noise (e.g. label_smoothing=1, equal logits).
            np.testing.assert_allclose(
                as_probs.call(ce.cross_entropy_grad), pb.call(ce.cross_entropy_grad), rtol=1e-13, atol=1e-15
            )

    @given(pb=ce_problems(elements=st.floats(-1e4, 1e4)))
    def test_no_warnings_for_finite_logits(self, pb):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = pb.call(ce.cross_entropy)
            grad = pb.call(ce.cross_entropy_grad)
        if pb.options["reduction"] != "mean":
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


NLL_GRID = [
    pytest.param(shape, w, ig, red, id=f"{sid}-{w}-{ig}-{red}")
    for (sid, shape), w, ig, red in itertools.product(SHAPES.items(), WEIGHTS, (*IGNORE, "all"), REDUCTIONS)
]


class TestNllLoss:
    @pytest.mark.parametrize(("shape", "weight_mode", "ignore", "reduction"), NLL_GRID)
    def test_grid(self, shape, weight_mode, ignore, reduction):
        pb = make_problem(shape, "index", weight_mode, "default" if ignore == "all" else ignore, reduction=reduction)
        if ignore == "all":
            pb.target = np.full(index_shape(shape), -100)
        log_probs = ce.log_softmax(pb.logits, axis=class_axis(shape))
        ours = CEProblem(log_probs, pb.target, pb.weight, pb.options, pb.weight_positional).call(ce.nll_loss)
        assert_reduced_type(ours, reduction, len(shape))
        assert_torch_close(ours, torch_nll_loss(log_probs, pb.target, pb.weight, **pb.options))

    @given(pb=ce_problems(kinds=("index",), elements=st.sampled_from((-np.inf, np.inf, np.nan)) | parity_floats()))
    def test_property(self, pb):
        # nll_loss takes any real log_probs (as in torch, they are not checked),
        # including infinities and NaN, which stay 0 at ignored positions.
        pb.options.pop("label_smoothing")
        assert_torch_close(pb.call(ce.nll_loss), torch_nll_loss(pb.logits, pb.target, pb.weight, **pb.options))

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize(
        ("log_probs", "target"),
        [([[-np.inf, 0.0], [-0.5, -1.0]], [-100, 1]), ([[-np.inf], [np.inf]], [0, 0])],
        ids=["ignored-neg-inf", "pos-and-neg-inf"],
    )
    def test_infinite_log_probs_are_silent(self, log_probs, target, reduction):
        # torch 2.13.0, silently: an ignored position contributes 0 whatever its
        # log-probabilities hold (log_softmax gives -inf for a -inf logit, and the
        # class an ignored target is read at must not turn 0 * -inf into a warning);
        # inf + (-inf) in 'sum' / 'mean' is NaN.
        log_probs, target = np.array(log_probs), np.array(target)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = ce.nll_loss(log_probs, target, reduction=reduction)
        assert_torch_close(ours, torch_nll_loss(log_probs, target, reduction=reduction))

    @given(pb=ce_problems(kinds=("index",), elements=st.floats(-1e4, 1e4)))
    def test_equals_cross_entropy_of_log_softmax(self, pb):
        # cross_entropy(z, y) = nll_loss(log_softmax(z, axis=1), y): the same
        # float64 terms, so equal to rounding (rtol 1e-14).
        pb.options.pop("label_smoothing")
        ax = class_axis(pb.logits.shape)
        via_nll = CEProblem(ce.log_softmax(pb.logits, axis=ax), pb.target, pb.weight, pb.options).call(ce.nll_loss)
        np.testing.assert_allclose(via_nll, pb.call(ce.cross_entropy), rtol=1e-14, atol=0)
