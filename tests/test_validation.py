"""Tests for crossentropy_ref._validation: bad input, dtypes, and arguments left untouched.

Every error message below is part of the public contract (the message shape
is "`name` must ...; got ..."), so each is matched in full, not by a fragment.
TypeError is for a wrong kind of value, ValueError for a wrong shape or value.
"""

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import crossentropy_ref as ce
from crossentropy_ref import textbook
from crossentropy_ref._engine._blocks import BLOCK_ELEMENTS

Z45 = np.zeros((4, 5))
Y4 = np.zeros(4, dtype=np.int64)
REDUCTION_MSG = "`reduction` must be one of ('none', 'mean', 'sum'); got "
REAL_MSG = "must hold real numbers (integer or floating point); got "


def case(fn, args, kwargs, exc, msg, id):
    return pytest.param(fn, args, kwargs, exc, msg, id=id)


# Checks shared by cross_entropy and cross_entropy_grad (same argument handling).
CE_CASES = [
    case(None, (Z45, [0, 1, 5, 0]), {}, ValueError,
         "`target` must hold class indices in [0, 5) or `ignore_index`=-100; got 5 at position (2,)",
         "index-too-large"),
    case(None, (Z45, [0, -1, 2, 0]), {}, ValueError,
         "`target` must hold class indices in [0, 5) or `ignore_index`=-100; got -1 at position (1,)",
         "index-negative"),
    case(None, (Z45, [0, -100, 2, 0]), {"ignore_index": -1}, ValueError,
         "`target` must hold class indices in [0, 5) or `ignore_index`=-1; got -100 at position (1,)",
         "index-not-ignored"),
    case(None, (np.zeros((2, 3, 4)), np.array([[0, 0, 0, 0], [0, 0, 7, 0]])), {}, ValueError,
         "`target` must hold class indices in [0, 3) or `ignore_index`=-100; got 7 at position (1, 2)",
         "index-spatial"),
    case(None, (np.zeros(3), 3), {}, ValueError,
         "`target` must hold class indices in [0, 3) or `ignore_index`=-100; got 3 at position ()", "index-unbatched"),
    case(None, (Z45, [0, 1, 2]), {}, ValueError,
         "`target` must have shape (4,) (class indices) or (4, 5) (class probabilities) to match `logits` of shape "
         "(4, 5); got (3,)", "batch-mismatch"),
    case(None, (np.zeros((2, 3, 4)), np.zeros((2, 5), dtype=np.int64)), {}, ValueError,
         "`target` must have shape (2, 4) (class indices) or (2, 3, 4) (class probabilities) to match `logits` of "
         "shape (2, 3, 4); got (2, 5)", "spatial-mismatch"),
    case(None, (Z45, np.zeros((4, 4))), {}, ValueError,
         "`target` must have shape (4,) (class indices) or (4, 5) (class probabilities) to match `logits` of shape "
         "(4, 5); got (4, 4)", "probabilities-wrong-shape"),
    case(None, (Z45, Y4), {"reduction": "avg"}, ValueError, REDUCTION_MSG + "'avg'", "reduction-unknown"),
    case(None, (Z45, Y4), {"reduction": None}, TypeError, REDUCTION_MSG + "NoneType None", "reduction-not-str"),
    case(None, (Z45, Y4), {"label_smoothing": 1.5}, ValueError,
         "`label_smoothing` must be in [0, 1]; got 1.5", "smoothing-above-1"),
    case(None, (Z45, Y4), {"label_smoothing": -0.1}, ValueError,
         "`label_smoothing` must be in [0, 1]; got -0.1", "smoothing-negative"),
    case(None, (Z45, Y4), {"label_smoothing": float("nan")}, ValueError,
         "`label_smoothing` must be in [0, 1]; got nan", "smoothing-nan"),
    case(None, (Z45, Y4), {"label_smoothing": "0.1"}, TypeError,
         "`label_smoothing` must be a real number in [0, 1]; got str '0.1'", "smoothing-str"),
    case(None, (Z45, Y4), {"label_smoothing": True}, TypeError,
         "`label_smoothing` must be a real number in [0, 1]; got bool True", "smoothing-bool"),
    case(None, (Z45, Y4, [1.0, 2.0]), {}, ValueError,
         "`weight` must have shape (5,), one per class; got (2,)", "weight-length"),
    case(None, (Z45, Y4), {"weight": np.ones((1, 5))}, ValueError,
         "`weight` must have shape (5,), one per class; got (1, 5)", "weight-2d"),
    case(None, (Z45, Y4, np.ones(5, dtype=complex)), {}, TypeError,
         "`weight` " + REAL_MSG + "complex128 array of shape (5,)", "weight-complex"),
    case(None, (Z45, np.zeros(4)), {}, TypeError,
         "`target` must hold integer class indices; got float64 array of shape (4,)", "index-float"),
    case(None, (Z45, np.zeros(4, dtype=bool)), {}, TypeError,
         "`target` must hold integer class indices; got bool array of shape (4,)", "index-bool"),
    case(None, (Z45, np.zeros((4, 5), dtype=complex)), {}, TypeError,
         "`target` must hold class probabilities (real numbers); got complex128 array of shape (4, 5)",
         "probabilities-complex"),
    case(None, ([["a", "b"]], [0]), {}, TypeError, "`logits` " + REAL_MSG + "<U1 array of shape (1, 2)", "logits-str"),
    case(None, (np.zeros((2, 2), dtype=complex), [0, 0]), {}, TypeError,
         "`logits` " + REAL_MSG + "complex128 array of shape (2, 2)", "logits-complex"),
    case(None, (np.zeros((2, 2), dtype=bool), [0, 0]), {}, TypeError,
         "`logits` " + REAL_MSG + "bool array of shape (2, 2)", "logits-bool"),
    case(None, (1.0, 0), {}, ValueError, "`logits` must have at least 1 dimension(s); got shape ()", "logits-0d"),
    case(None, (np.zeros((2, 0)), [0, 0]), {}, ValueError,
         "`logits` must have at least one class along axis 1; got shape (2, 0)", "no-classes"),
    case(None, (np.zeros(0), 0), {}, ValueError,
         "`logits` must have at least one class along axis 0; got shape (0,)", "no-classes-unbatched"),
    case(None, (Z45, np.zeros((4, 5))), {"ignore_index": 0}, ValueError,
         "`ignore_index` must be negative (unused) with class-probability targets, as in torch; got 0",
         "ignore-index-with-probabilities"),
    case(None, (Z45, Y4), {"ignore_index": 1.0}, TypeError,
         "`ignore_index` must be an integer; got float 1.0", "ignore-index-float"),
]

NLL_CASES = [
    case(ce.nll_loss, (Z45, [0, 1, 5, 0]), {}, ValueError,
         "`target` must hold class indices in [0, 5) or `ignore_index`=-100; got 5 at position (2,)",
         "index-too-large"),
    case(ce.nll_loss, (Z45, [0, 1, 2]), {}, ValueError,
         "`target` must have shape (4,) to match `log_probs` of shape (4, 5); got (3,)", "batch-mismatch"),
    case(ce.nll_loss, (Z45, np.zeros((4, 5))), {}, ValueError,
         "`target` must have shape (4,) to match `log_probs` of shape (4, 5); got (4, 5)", "probabilities"),
    case(ce.nll_loss, (1.0, 0), {}, ValueError,
         "`log_probs` must have at least 1 dimension(s); got shape ()", "log-probs-0d"),
    case(ce.nll_loss, (np.zeros((2, 0)), [0, 0]), {}, ValueError,
         "`log_probs` must have at least one class along axis 1; got shape (2, 0)", "no-classes"),
    case(ce.nll_loss, (Z45, np.zeros(4)), {}, TypeError,
         "`target` must hold integer class indices; got float64 array of shape (4,)", "index-float"),
    case(ce.nll_loss, (Z45, Y4), {"reduction": "avg"}, ValueError, REDUCTION_MSG + "'avg'", "reduction-unknown"),
    case(ce.nll_loss, (Z45, Y4, np.ones(4)), {}, ValueError,
         "`weight` must have shape (5,), one per class; got (4,)", "weight-length"),
    case(ce.nll_loss, (np.zeros((4, 5), dtype=complex), Y4), {}, TypeError,
         "`log_probs` " + REAL_MSG + "complex128 array of shape (4, 5)", "log-probs-complex"),
]

BCE = ce.binary_cross_entropy
BCEL = ce.binary_cross_entropy_with_logits
HALF23 = np.full((2, 3), 0.5)
BINARY_CASES = [
    case(BCE, ([0.5, 1.5], [0.0, 1.0]), {}, ValueError,
         "`probs` must hold values in [0, 1]; got 1.5 at position (1,)", "bce-probs-above-1"),
    case(BCE, ([[0.5, -0.5]], [[0.0, 1.0]]), {}, ValueError,
         "`probs` must hold values in [0, 1]; got -0.5 at position (0, 1)", "bce-probs-negative"),
    case(BCE, ([0.5, 0.5], [0.0, 2.0]), {}, ValueError,
         "`target` must hold values in [0, 1]; got 2.0 at position (1,)", "bce-target-above-1"),
    case(BCE, ([0.5, 0.5], [0.0, 1.0, 1.0]), {}, ValueError,
         "`target` must have shape (2,) to match `probs` of shape (2,); got (3,)", "bce-target-shape"),
    case(BCE, (HALF23, HALF23, np.ones(2)), {}, ValueError,
         "`weight` must broadcast to the shape (2, 3) of `probs`; got (2,)", "bce-weight-shape"),
    case(BCE, (np.full(3, 0.5), np.full(3, 0.5), np.ones((2, 3))), {}, ValueError,
         "`weight` must broadcast to the shape (3,) of `probs`; got (2, 3)", "bce-weight-larger"),
    case(BCE, (np.ones(2, dtype=bool), np.ones(2)), {}, TypeError,
         "`probs` " + REAL_MSG + "bool array of shape (2,)", "bce-probs-bool"),
    case(BCE, ([0.5], ["a"]), {}, TypeError, "`target` " + REAL_MSG + "<U1 array of shape (1,)", "bce-target-str"),
    case(BCE, ([0.5], [0.5]), {"reduction": "mean "}, ValueError, REDUCTION_MSG + "'mean '", "bce-reduction"),
    case(BCEL, ([0.5, 0.5], [0.0, -1.0]), {}, ValueError,
         "`target` must hold values in [0, 1]; got -1.0 at position (1,)", "bcel-target-negative"),
    case(BCEL, ([0.5, 0.5], [0.0]), {}, ValueError,
         "`target` must have shape (2,) to match `logits` of shape (2,); got (1,)", "bcel-target-shape"),
    case(BCEL, (np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2)), {}, ValueError,
         "`weight` must broadcast to the shape (2, 3) of `logits`; got (2,)", "bcel-weight-shape"),
    case(BCEL, (np.zeros((2, 3)), np.zeros((2, 3))), {"pos_weight": np.ones(2)}, ValueError,
         "`pos_weight` must broadcast to the shape (2, 3) of `logits`; got (2,)", "bcel-pos-weight-length"),
    case(BCEL, (np.zeros(3), np.zeros(3)), {"pos_weight": np.ones((2, 3))}, ValueError,
         "`pos_weight` must broadcast to the shape (3,) of `logits`; got (2, 3)", "bcel-pos-weight-larger"),
    case(BCEL, (np.zeros(3), np.zeros(3)), {"pos_weight": np.ones(3, dtype=complex)}, TypeError,
         "`pos_weight` " + REAL_MSG + "complex128 array of shape (3,)", "bcel-pos-weight-complex"),
    case(BCEL, ("abc", np.zeros(3)), {}, TypeError, "`logits` " + REAL_MSG + "<U3 array of shape ()",
         "bcel-logits-str"),
    case(BCEL, ([0.0], [1.0]), {"reduction": 1}, TypeError, REDUCTION_MSG + "int 1", "bcel-reduction-int"),
]

SOFTMAX_CASES = [
    case(None, (np.zeros((2, 3)),), {"axis": 2}, ValueError,
         "`axis` must be in [-2, 2) for an input with 2 dimension(s); got 2", "axis-too-large"),
    case(None, (np.zeros((2, 3)),), {"axis": -3}, ValueError,
         "`axis` must be in [-2, 2) for an input with 2 dimension(s); got -3", "axis-too-negative"),
    # logsumexp also takes a tuple of axes, and says so (the message is keyed by function).
    case(None, (np.zeros((2, 3)),), {"axis": 1.0}, TypeError,
         {"": "`axis` must be an integer; got float 1.0",
          "logsumexp": "`axis` must be an integer or a tuple of integers; got float 1.0"}, "axis-float"),
    case(None, (np.zeros(3),), {"axis": None}, TypeError,
         {"": "`axis` must be an integer; got NoneType None",
          "logsumexp": "`axis` must be an integer or a tuple of integers; got NoneType None"}, "axis-none"),
    # A 0-d input is one element, as in torch; only axes outside [-1, 0] are rejected.
    case(None, (1.0,), {"axis": 1}, ValueError,
         "`axis` must be in [-1, 1) for an input with 0 dimension(s) (a 0-d input counts as one element, as in "
         "torch); got 1", "x-0d-axis"),
    case(None, (np.zeros((2, 0)),), {}, ValueError,
         "`x` must have at least one entry along axis 1; got shape (2, 0)", "empty-axis"),
    case(None, (np.zeros(3, dtype=complex),), {}, TypeError, "`x` " + REAL_MSG + "complex128 array of shape (3,)",
         "x-complex"),
    case(None, (["a", "b"],), {}, TypeError, "`x` " + REAL_MSG + "<U1 array of shape (2,)", "x-str"),
]

ONE_HOT_CASES = [
    case(ce.one_hot, ([0, 3], 3), {}, ValueError,
         "`target` must hold class indices below `num_classes`=3; got 3", "index-too-large"),
    case(ce.one_hot, ([0, -1], 3), {}, ValueError, "`target` must hold non-negative class indices; got -1", "negative"),
    case(ce.one_hot, ([0.0, 1.0], 3), {}, TypeError,
         "`target` must hold integer class indices; got float64 array of shape (2,)", "float"),
    case(ce.one_hot, ([True],), {}, TypeError, "`target` must hold integer class indices; got bool array of shape (1,)",
         "bool"),
    case(ce.one_hot, ([0], -2), {}, ValueError,
         "`num_classes` must be -1 (infer) or a non-negative integer; got -2", "num-classes-negative"),
    case(ce.one_hot, ([0], 3.0), {}, TypeError, "`num_classes` must be an integer; got float 3.0", "num-classes-float"),
    case(ce.one_hot, (np.zeros(0, dtype=np.int64),), {}, ValueError,
         "`num_classes` must be given for an empty `target`; got -1", "empty-without-num-classes"),
]


def _check(fn, args, kwargs, exc, msg):
    with pytest.raises(exc, match=f"^{re.escape(msg)}$") as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc  # exactly TypeError or ValueError, not a subclass


@pytest.mark.parametrize("fn", [ce.cross_entropy, ce.cross_entropy_grad], ids=["loss", "grad"])
@pytest.mark.parametrize(("_", "args", "kwargs", "exc", "msg"), CE_CASES)
def test_cross_entropy_rejects(fn, _, args, kwargs, exc, msg):
    _check(fn, args, kwargs, exc, msg)


def test_cross_entropy_rejects_ragged_logits():
    # The message ends with numpy's own explanation, which is not ours to pin.
    with pytest.raises(TypeError, match=r"^`logits` must be an array of real numbers; got list \(.+\)$"):
        ce.cross_entropy([[1.0, 2.0], [1.0]], [0, 0])


@pytest.mark.parametrize(("fn", "args", "kwargs", "exc", "msg"), NLL_CASES + BINARY_CASES + ONE_HOT_CASES)
def test_rejects(fn, args, kwargs, exc, msg):
    _check(fn, args, kwargs, exc, msg)


@pytest.mark.parametrize("fn", [ce.log_softmax, ce.softmax, ce.logsumexp], ids=lambda f: f.__name__)
@pytest.mark.parametrize(("_", "args", "kwargs", "exc", "msg"), SOFTMAX_CASES)
def test_softmax_family_rejects(fn, _, args, kwargs, exc, msg):
    if isinstance(msg, dict):
        msg = msg.get(fn.__name__, msg[""])
    _check(fn, args, kwargs, exc, msg)


def test_torch_treats_negative_smoothing_as_zero():
    # Why the ValueError above is a documented difference: torch 2.13.0 silently
    # returns the unsmoothed loss for label_smoothing=-0.1.
    z, y = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), torch.tensor([0])
    assert F.cross_entropy(z, y, label_smoothing=-0.1).item() == F.cross_entropy(z, y).item()


# ---------------------------------------------------------------------------
# Every public function: arguments are never written, any real dtype computes in float64
# ---------------------------------------------------------------------------


def public_calls():
    """name -> (function, args, kwargs) on small valid inputs (float64 where real)."""
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(3, 4, 2))
    y = rng.integers(0, 4, size=(3, 2))
    p = rng.dirichlet(np.ones(4), size=(3, 2)).transpose(0, 2, 1)
    w = rng.uniform(0.5, 2.0, size=4)
    x = rng.normal(scale=3.0, size=(3, 4))
    t = rng.uniform(size=(3, 4))
    big = rng.normal(size=(9 * BLOCK_ELEMENTS // 64, 64))  # enough blocks for the thread pool
    return {
        "cross_entropy-index": (ce.cross_entropy, (z, y, w), {"label_smoothing": 0.1}),
        "cross_entropy-probabilities": (ce.cross_entropy, (z, p, w), {"reduction": "none"}),
        "cross_entropy_grad-index": (ce.cross_entropy_grad, (z, y, w), {"label_smoothing": 0.1}),
        "cross_entropy_grad-probabilities": (ce.cross_entropy_grad, (z, p, w), {}),
        "cross_entropy_grad-blocks": (ce.cross_entropy_grad, (big, rng.integers(0, 64, size=big.shape[0])), {}),
        "nll_loss": (ce.nll_loss, (ce.log_softmax(z, axis=1), y, w), {}),
        "binary_cross_entropy": (ce.binary_cross_entropy, (rng.uniform(size=(3, 4)), t, w), {}),
        "binary_cross_entropy_with_logits": (
            ce.binary_cross_entropy_with_logits, (x, t, w), {"pos_weight": w[::-1].copy()}
        ),
        "log_softmax": (ce.log_softmax, (z,), {"axis": 1}),
        "softmax": (ce.softmax, (z,), {"axis": 1}),
        "logsumexp": (ce.logsumexp, (z,), {"axis": 1}),
        "one_hot": (ce.one_hot, (y,), {"num_classes": 4}),
        "textbook.softmax": (textbook.softmax, (x,), {}),
        "textbook.cross_entropy": (textbook.cross_entropy, (t, ce.softmax(x)), {}),
    }


CALLS = public_calls()


def _arrays(args, kwargs):
    return [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("name", CALLS)
def test_arguments_are_not_modified(name):
    fn, args, kwargs = CALLS[name]
    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
    before = [a.copy() for a in _arrays(args, kwargs)]
    fn(*args, **kwargs)
    for a, b in zip(_arrays(args, kwargs), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CALLS)
def test_read_only_arguments_are_accepted(name):
    # A write into an argument would raise "assignment destination is read-only".
    fn, args, kwargs = CALLS[name]
    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
    for a in _arrays(args, kwargs):
        a.setflags(write=False)
    fn(*args, **kwargs)


def _cast(a, dtype):
    """`a` in `dtype`; for integers rounded first (probabilities become 0/1, still valid), and
    made non-negative first for unsigned ones."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return a.astype(dtype)
    return np.round(np.abs(a) if dtype.kind == "u" else a).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("name", [n for n in CALLS if n != "one_hot" and not n.startswith("textbook")])
def test_real_inputs_of_any_dtype_give_float64(name, dtype):
    # Every real-valued argument cast to `dtype` gives exactly the result for the
    # same values cast to float64, in float64. Index targets keep their int64.
    fn, args, kwargs = CALLS[name]

    def real(a):
        return isinstance(a, np.ndarray) and a.dtype.kind == "f"

    def cast_all(to):
        new_args = tuple(to(_cast(a, dtype)) if real(a) else a for a in args)
        new_kwargs = {k: to(_cast(v, dtype)) if real(v) else v for k, v in kwargs.items()}
        return new_args, new_kwargs

    low_args, low_kwargs = cast_all(lambda a: a)
    f64_args, f64_kwargs = cast_all(lambda a: a.astype(np.float64))
    out = fn(*low_args, **low_kwargs)
    assert np.asarray(out).dtype == np.float64
    np.testing.assert_array_equal(out, fn(*f64_args, **f64_kwargs))


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8, np.uint64])
def test_index_targets_of_any_integer_dtype(dtype):
    # Documented difference: torch needs int64 indices; any integer width is accepted here.
    fn, (z, y, w), kwargs = CALLS["cross_entropy-index"]
    np.testing.assert_array_equal(fn(z, y.astype(dtype), w, **kwargs), fn(z, y, w, **kwargs))
    np.testing.assert_array_equal(ce.cross_entropy_grad(z, y.astype(dtype), w), ce.cross_entropy_grad(z, y, w))
    np.testing.assert_array_equal(ce.nll_loss(z, y.astype(dtype)), ce.nll_loss(z, y))


# --- torch-style calls: positional options, size_average and reduce -------------

TORCH_STYLE = [
    (ce.cross_entropy, ([[1.0, 2.0]], [0], None, None, -100), "`ignore_index`, `reduction`, `label_smoothing`"),
    (ce.cross_entropy_grad, ([[1.0, 2.0]], [0], None, None), "`ignore_index`, `reduction`, `label_smoothing`"),
    (ce.nll_loss, ([[-0.5, -1.0]], [0], None, None, -100), "`ignore_index`, `reduction`"),
    (ce.binary_cross_entropy, ([0.5], [1.0], None, None), "`reduction`"),
    (ce.binary_cross_entropy_with_logits, ([0.5], [1.0], None, None, None, "sum"), "`reduction`, `pos_weight`"),
]


@pytest.mark.parametrize(("fn", "args", "options"), TORCH_STYLE, ids=[f.__name__ for f, _, _ in TORCH_STYLE])
def test_torch_style_positional_options_get_a_clear_type_error(fn, args, options):
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\) takes .* keywords only; got {len(args)} positional"):
        fn(*args)
    with pytest.raises(TypeError) as info:
        fn(*args)
    assert options in str(info.value) and "reduction='sum'" in str(info.value)


@pytest.mark.parametrize("legacy", ["size_average", "reduce"])
@pytest.mark.parametrize(("fn", "args", "options"), TORCH_STYLE, ids=[f.__name__ for f, _, _ in TORCH_STYLE])
def test_torch_legacy_flags_are_refused_by_name(fn, args, options, legacy):
    with pytest.raises(TypeError, match=rf"does not accept `{legacy}`.*pass `reduction`.*got {legacy}=True"):
        fn(*args[:2], **{legacy: True})


def test_the_guard_keeps_the_signature_and_the_docstring():
    import inspect

    params = inspect.signature(ce.cross_entropy).parameters
    assert list(params) == ["logits", "target", "weight", "ignore_index", "reduction", "label_smoothing"]
    assert params["reduction"].kind is inspect.Parameter.KEYWORD_ONLY
    assert ce.cross_entropy.__doc__.startswith("Cross-entropy loss")


# ---------------------------------------------------------------------------
# Issue 17: every input a user passes, accepted exactly or refused by name
# ---------------------------------------------------------------------------

ml_dtypes = pytest.importorskip("ml_dtypes")

# The accepted input types and dtypes, and the refusals, as one table: the API page
# renders this list (docs/reference/api.md), and the tests below check every row.
LOW_PRECISION = ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]


@pytest.mark.parametrize("name", LOW_PRECISION)
def test_low_precision_floats_are_accepted_exactly(name):
    # Every bfloat16 / float8 value is a float64 value (by hand: at most 8 significant bits):
    # the result equals the float64 computation on the same values, bit for bit.
    dt = getattr(ml_dtypes, name)
    z = np.random.default_rng(1).normal(size=(6, 5)).astype(dt)
    y = np.array([0, 1, 2, 3, 4, 0])
    z64 = z.astype(np.float64)
    assert ce.cross_entropy(z, y) == ce.cross_entropy(z64, y)
    np.testing.assert_array_equal(ce.softmax(z, axis=1), ce.softmax(z64, axis=1))
    p = ce.softmax(z64, axis=1).astype(dt)
    assert ce.cross_entropy(z64, p) == ce.cross_entropy(z64, p.astype(np.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.float8_e4m3fn])
def test_torch_tensors_are_accepted_with_their_exact_values(dtype):
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(2)).to(dtype)
    z64 = z.to(torch.float64).numpy()  # exact widening
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    assert ce.cross_entropy(z, y) == ce.cross_entropy(z64, y.numpy())


def test_torch_tensors_that_require_grad_are_read_detached():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 0])
    assert ce.cross_entropy(z, y) == ce.cross_entropy(z.detach().numpy(), y.numpy())
    assert z.grad is None  # nothing flowed back into the tensor


def test_masked_arrays_are_refused():
    z = np.ma.masked_array(Z45, mask=np.zeros((4, 5), bool))
    with pytest.raises(TypeError, match=re.escape("`logits` must not be a masked array: its mask would be ignored")):
        ce.cross_entropy(z, Y4)
    with pytest.raises(TypeError, match=re.escape("or, for class-index targets, mark the positions to skip with "
                                                  "`ignore_index`")):
        ce.cross_entropy(Z45, np.ma.masked_array(Y4, mask=[0, 1, 0, 0]))


class _FakeDaskArray:
    """Stands for a dask array: the refusal keys on the type's module, as for real ones."""

    __module__ = "dask.array.core"
    shape = (4, 5)

    def __array__(self, dtype=None, copy=None):  # pragma: no cover - must not be called
        raise AssertionError("a dask array must not be pulled into memory")


def test_dask_arrays_are_refused_with_what_to_call_instead():
    with pytest.raises(TypeError, match=re.escape("`logits` is a dask array, which would be computed whole into "
                                                  "memory here; compute it yourself (x.compute()) if it fits, or, "
                                                  "for the losses, call crossentropy_ref.dask.cross_entropy or "
                                                  "nll_loss, which keep it lazy and chunked (the `dask` extra); "
                                                  "got _FakeDaskArray of shape (4, 5)")):
        ce.cross_entropy(_FakeDaskArray(), Y4)


def test_a_ragged_target_names_target():
    with pytest.raises(TypeError, match=re.escape("`target` must be an array of real numbers; got list")):
        ce.cross_entropy(Z45, [[0, 1], [2]])


def test_uint64_targets_beyond_2_to_the_63_are_reported_as_they_are():
    big = 2**63 + 5
    t = np.array([0, big, 1, 2], dtype=np.uint64)
    with pytest.raises(ValueError, match=re.escape(f"got {big} at position (1,)")):
        ce.cross_entropy(Z45, t)
    # ...and one equal to such an ignore_index is ignored (by hand: the mean of the other three
    # losses, each log 5 for zero logits).
    got = ce.cross_entropy(Z45, np.array([0, 2**63, 1, 2], dtype=np.uint64), ignore_index=2**63)
    assert got == ce.cross_entropy(Z45[[0, 2, 3]], [0, 1, 2])


@pytest.mark.parametrize(("value", "what"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_class_weights_are_refused(value, what):
    w = np.ones(5)
    w[3] = value
    msg = f"`weight` must hold finite weights; got {what} at position (3,)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        ce.cross_entropy(Z45, Y4, w)
    with pytest.raises(ValueError, match=re.escape(msg)):
        ce.nll_loss(Z45, Y4, w)
    with pytest.raises(ValueError, match=re.escape(f"`weight` must hold finite weights; got {what} at position (1,)")):
        ce.binary_cross_entropy_with_logits([0.0, 1.0], [0.0, 1.0], [1.0, value])
    with pytest.raises(ValueError, match=re.escape(f"`pos_weight` must hold finite weights; got {what} at position (0,)")):
        ce.binary_cross_entropy_with_logits([0.0, 1.0], [0.0, 1.0], pos_weight=[value, 1.0])


def test_negative_class_weights_stay_accepted():
    # torch 2.13.0 computes the weighted sum too; ours within 1e-12 of it (parity tolerance).
    z = np.random.default_rng(3).normal(size=(4, 5))
    w = np.array([1.0, -2.0, 0.5, 1.0, -1.0])
    y = np.array([1, 0, 4, 2])
    want = F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(w), reduction="sum").item()
    assert ce.cross_entropy(z, y, w, reduction="sum") == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("value", "what"), [(np.nan, "nan"), (np.inf, "inf"), (-0.5, "-0.5")])
def test_non_finite_or_negative_probability_targets_are_refused(value, what):
    p = np.full((4, 5), 0.2)
    p[2, 1] = value
    kind = "non-negative class probabilities" if value == -0.5 else "finite class probabilities"
    with pytest.raises(ValueError, match=re.escape(f"`target` must hold {kind}; got {what} at position (2, 1)")):
        ce.cross_entropy(Z45, p)
    with pytest.raises(ValueError, match=re.escape(f"`target` must hold {kind}; got {what} at position (2, 1)")):
        ce.cross_entropy_grad(Z45, p)


def test_teacher_logits_passed_as_target_are_refused():
    # The mistake of issue 17: logits (with negative entries) where probabilities belong.
    teacher = np.random.default_rng(4).normal(size=(4, 5))
    with pytest.raises(ValueError, match=re.escape("`target` must hold non-negative class probabilities; got")):
        ce.cross_entropy(Z45, teacher)


def test_probability_rows_need_not_sum_to_1_as_in_torch():
    # A row of mass 2 gives twice the loss of the normalised row; torch 2.13.0 agrees.
    z = np.random.default_rng(5).normal(size=(3, 4))
    p = np.random.default_rng(6).random((3, 4))
    p /= p.sum(axis=1, keepdims=True)
    assert ce.cross_entropy(z, 2 * p, reduction="sum") == pytest.approx(2 * ce.cross_entropy(z, p, reduction="sum"),
                                                                        rel=1e-15)
    want = F.cross_entropy(torch.from_numpy(z), torch.from_numpy(2 * p), reduction="sum").item()
    assert ce.cross_entropy(z, 2 * p, reduction="sum") == pytest.approx(want, rel=1e-12)


def test_long_double_is_accepted_where_float64_holds_its_values():
    z = np.random.default_rng(7).normal(size=(4, 5))
    assert ce.cross_entropy(z.astype(np.longdouble), Y4) == ce.cross_entropy(z, Y4)
    if np.finfo(np.longdouble).nmant > 52:  # x86-64 Linux: a 64-bit significand
        zl = z.astype(np.longdouble)
        zl[1, 2] += np.longdouble(2.0) ** -60
        with pytest.raises(ValueError, match=re.escape("`logits` must hold values that float64 holds exactly; got "
                                                       "long double values that float64 cannot hold")):
            ce.cross_entropy(zl, Y4)


def test_a_bad_thread_count_is_an_error_at_the_first_call_not_at_import():
    import subprocess
    import sys

    code = ("import crossentropy_ref as ce\n"
            "try:\n"
            "    ce.cross_entropy([[0.0, 1.0]], [0])\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    env = {**__import__("os").environ, "CROSSENTROPY_REF_THREADS": "auto"}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == ("CROSSENTROPY_REF_THREADS must be a positive integer (or 0 or unset: one thread "
                                  "per core); got 'auto'")


def test_configure_sets_threads_and_engine_and_returns_the_old_settings():
    old = ce.configure(threads=1, engine="numpy")
    try:
        assert ce.configure() == {"threads": 1, "engine": "numpy"}
        assert ce.cross_entropy(Z45, Y4) == np.log(5.0)  # by hand: uniform over 5 classes
    finally:
        ce.configure(**old)
    with pytest.raises(ValueError, match=re.escape("`threads` must be 0 (one per core) or more; got -1")):
        ce.configure(threads=-1)
    with pytest.raises(ValueError, match=re.escape("`engine` must be one of ('auto', 'compiled', 'numpy'); got 'gpu'")):
        ce.configure(engine="gpu")


def test_no_warnings_where_numpy_used_to_warn():
    # (pytest turns warnings into errors: each call must be silent.)
    z = np.array([[0.0, -740.0], [3.0, 1.0]])
    assert np.isfinite(ce.cross_entropy(z, [0, 1], [1e308, 1e308]))  # 'mean' of huge weights
    assert np.isfinite(ce.binary_cross_entropy_with_logits([-740.0], [1.0], pos_weight=[1e300]))
    # The cast to float16 overflows to inf, as in torch; a slice holding inf is NaN, as in torch.
    assert np.isnan(ce.softmax(np.array([1e5, 0.0]), dtype=np.float16)).all()


class TestAs32BitPlatforms:
    """numpy's index type np.intp is int32 on wasm32 (Pyodide) and 32-bit Linux, where
    take() refuses int64 indices ("Cannot cast array data from dtype('int64') to
    dtype('int32') according to the rule 'safe'"). This machine's intp is int64, so
    the tests emulate such a platform: np.intp becomes int32, argmax returns int32,
    and the take family casts its indices to int32 under numpy's 'safe' rule, as the
    32-bit numpy does. Every index path then runs, on the numpy engine (numba does
    not exist there)."""

    @pytest.fixture(autouse=True)
    def platform_32bit(self, monkeypatch):
        int32 = np.int32
        take, tae, pae, argmax = np.take, np.take_along_axis, np.put_along_axis, np.argmax

        def safe(idx):
            return np.asarray(idx).astype(int32, casting="safe")

        monkeypatch.setattr(np, "intp", int32)
        monkeypatch.setattr(np, "take", lambda a, idx, *args, **kw: take(a, safe(idx), *args, **kw))
        monkeypatch.setattr(np, "take_along_axis", lambda a, idx, *args, **kw: tae(a, safe(idx), *args, **kw))
        monkeypatch.setattr(np, "put_along_axis", lambda a, idx, *args, **kw: pae(a, safe(idx), *args, **kw))
        monkeypatch.setattr(np, "argmax", lambda *args, **kw: argmax(*args, **kw).astype(int32))
        old = ce.configure(engine="numpy")
        yield
        ce.configure(**old)

    @pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint64])
    @pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"reduction": "none"}, {"ignore_index": 2}])
    def test_index_targets(self, dtype, options):
        z = np.random.default_rng(8).normal(size=(5, 4, 3))
        y = np.array([[0, 1, 2], [3, 2, 1], [2, 2, 0], [1, 0, 3], [3, 3, 3]], dtype=dtype)
        w = np.array([1.0, 0.5, 2.0, 1.5])
        assert np.all(np.isfinite(ce.cross_entropy(z, y, w, **options)))
        assert np.all(np.isfinite(ce.cross_entropy_grad(z, y, w, **options)))
        if "label_smoothing" not in options:
            assert np.all(np.isfinite(ce.nll_loss(ce.log_softmax(z, axis=1), y, w, **options)))

    def test_the_deep_tier(self):
        # Positions that escalate (subnormal terms under a huge weight) take the deep tier's paths.
        z = np.array([[0.0, -740.0, -720.0]] * 3)
        g = ce.cross_entropy_grad(z, np.array([0, 0, 1]), np.array([1e300, 1.0, 1.0]), reduction="sum")
        assert np.all(np.isfinite(g))

    def test_softmax_family_and_binary_losses(self):
        z = np.random.default_rng(9).normal(size=(4, 6))
        lp = np.log(ce.softmax(z, axis=1))  # logsumexp of log-probabilities: the deep tier
        for fn in (ce.softmax, ce.log_softmax, ce.logsumexp):
            assert np.all(np.isfinite(fn(z, axis=1)))
        assert np.all(np.isfinite(ce.logsumexp(lp, axis=1)))
        assert np.isfinite(ce.binary_cross_entropy_with_logits(z[0], np.full(6, 0.3), pos_weight=np.full(6, 2.0)))
        assert np.isfinite(ce.binary_cross_entropy(ce.softmax(z[0]), np.full(6, 0.3)))
