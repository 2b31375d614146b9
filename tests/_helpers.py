"""Shared test helpers: torch references, the mpmath ground truth, Hypothesis strategies.

Imported by the test modules as ``from _helpers import ...`` (pytest puts
``tests/`` on ``sys.path``: it holds no ``__init__.py`` and the default
import mode is "prepend").

Expected values come from three sources only:

- torch 2.13.0 in float64 (``torch_*`` below), for option-for-option parity;
- mpmath (``mp_*`` below, at ``MP_DPS`` significant digits), for accuracy;
- a formula worked by hand, stated next to the assertion that uses it.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import mpmath
import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crossentropy_ref._engine import _jit

REDUCTIONS = ("none", "mean", "sum")

# Parity with torch 2.13.0 in float64. Both sides compute in float64, so the
# results agree to a few ulps almost everywhere; rtol=1e-10 leaves a wide margin.
# atol=1e-12 covers entries whose true value is tiny and which torch computes
# with an absolute (not relative) error of about 1e-16 * |logit|: the loss and
# the true-class gradient of a confident row, which torch rounds to 0 or to a
# multiple of ulp(logsumexp). Parity logits are bounded by PARITY_BOUND so that
# this absolute error stays below ~1e-14.
RTOL_TORCH = 1e-10
ATOL_TORCH = 1e-12
PARITY_BOUND = 50.0

# mpmath ground truth: significant decimal digits of every mp_* computation.
MP_DPS = 50

# The package's two engines (issue 16): numpy everywhere, and the compiled kernels
# where numba is installed. Accuracy tests run on each; "compiled" is the default.
ENGINES = ("numpy", "compiled") if _jit.AVAILABLE else ("numpy",)
DEFAULT_ENGINE = ENGINES[-1]


@contextlib.contextmanager
def using_engine(name: str):
    """Compute with one engine inside the block (the package's private switch)."""
    old = _jit.engine()
    _jit.set_engine("numpy" if name == "numpy" else "compiled")
    try:
        yield
    finally:
        _jit.set_engine(old)


def with_engine(fn):
    """Run ``fn(..., engine)`` (its last argument) under `using_engine`."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        engine = kwargs.get("engine", args[-1] if args and args[-1] in ENGINES else DEFAULT_ENGINE)
        with using_engine(engine):
            return fn(*args, **kwargs)

    return run


# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def class_count(shape: tuple[int, ...]) -> int:
    """C for logits of `shape`: axis 0 when unbatched, else axis 1."""
    return shape[0] if len(shape) == 1 else shape[1]


def index_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of class-index targets for logits of `shape` (class axis removed)."""
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def class_axis(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


def assert_torch_close(ours, theirs, *, rtol: float = RTOL_TORCH, atol: float = ATOL_TORCH) -> None:
    """`ours` is float64 with the shape of `theirs` and equal within the parity tolerance.

    NaN must match NaN and infinities must match in sign (numpy's assert_allclose rules).
    """
    ours_arr = np.asarray(ours)
    theirs_arr = np.asarray(theirs)
    assert ours_arr.dtype == np.float64, ours_arr.dtype
    assert ours_arr.shape == theirs_arr.shape, (ours_arr.shape, theirs_arr.shape)
    np.testing.assert_allclose(ours_arr, theirs_arr, rtol=rtol, atol=atol, equal_nan=True)


def assert_reduced_type(result, reduction: str, logits_ndim: int) -> None:
    """A float64 scalar for 'mean'/'sum' and for unbatched 'none'; a float64 array otherwise."""
    if reduction != "none" or logits_ndim == 1:
        assert type(result) is np.float64, type(result)
    else:
        assert isinstance(result, np.ndarray) and result.dtype == np.float64


# ---------------------------------------------------------------------------
# torch 2.13.0 references, float64
# ---------------------------------------------------------------------------


def _t(x) -> torch.Tensor:
    """A float64 tensor holding a copy of `x`."""
    return torch.tensor(np.array(x, dtype=np.float64))


def _t_or_none(x):
    return None if x is None else _t(x)


def torch_cross_entropy(logits, target, weight=None, **options):
    """torch's F.cross_entropy in float64 and its autograd gradient.

    Returns ``(loss, grad)`` as numpy arrays; ``grad`` is the gradient of
    ``loss.sum()``, which for ``reduction='none'`` is what
    ``crossentropy_ref.cross_entropy_grad`` returns. A target with the shape of
    the logits is passed as float64 probabilities, any other as int64 indices.
    """
    z = _t(logits).requires_grad_()
    t = np.asarray(target)
    if t.shape == tuple(z.shape):
        tt = torch.tensor(t.astype(np.float64))
    else:
        tt = torch.tensor(t.astype(np.int64))
    loss = F.cross_entropy(z, tt, _t_or_none(weight), **options)
    loss.sum().backward()
    grad = z.grad if z.grad is not None else torch.zeros_like(z)
    return loss.detach().numpy(), grad.numpy()


def torch_nll_loss(log_probs, target, weight=None, **options):
    t = torch.tensor(np.asarray(target).astype(np.int64))
    return F.nll_loss(_t(log_probs), t, _t_or_none(weight), **options).numpy()


def torch_binary_cross_entropy(probs, target, weight=None, *, reduction="mean"):
    return F.binary_cross_entropy(_t(probs), _t(target), _t_or_none(weight), reduction=reduction).numpy()


def torch_binary_cross_entropy_with_logits(logits, target, weight=None, *, reduction="mean", pos_weight=None):
    return F.binary_cross_entropy_with_logits(
        _t(logits), _t(target), _t_or_none(weight), reduction=reduction, pos_weight=_t_or_none(pos_weight)
    ).numpy()


TORCH_SOFTMAX_FAMILY = {
    "log_softmax": lambda x, axis: torch.log_softmax(_t(x), dim=axis).numpy(),
    "softmax": lambda x, axis: torch.softmax(_t(x), dim=axis).numpy(),
    "logsumexp": lambda x, axis: torch.logsumexp(_t(x), dim=axis).numpy(),
}


# ---------------------------------------------------------------------------
# Test problems and Hypothesis strategies
# ---------------------------------------------------------------------------


@dataclass
class CEProblem:
    """Arguments of one cross_entropy / cross_entropy_grad call."""

    logits: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None
    options: dict = field(default_factory=dict)  # ignore_index, reduction, label_smoothing
    weight_positional: bool = False

    def call(self, fn):
        """Call `fn` (ours) with the weight passed positionally or by keyword."""
        if self.weight_positional:
            return fn(self.logits, self.target, self.weight, **self.options)
        return fn(self.logits, self.target, weight=self.weight, **self.options)

    def torch(self):
        return torch_cross_entropy(self.logits, self.target, self.weight, **self.options)


def parity_floats(bound: float = PARITY_BOUND) -> st.SearchStrategy[float]:
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False)


@st.composite
def multiclass_shapes(draw, *, max_classes: int = 5, max_batch: int = 4, max_side: int = 3):
    """(C,), (N, C), (N, C, d1) or (N, C, d1, d2); N and the d's may be 0, C >= 1."""
    extra = draw(st.integers(0, 3))
    c = draw(st.integers(1, max_classes))
    if extra == 0:
        return (c,)
    n = draw(st.integers(0, max_batch))
    spatial = draw(st.lists(st.integers(0, max_side), min_size=extra - 1, max_size=extra - 1))
    return (n, c, *spatial)


def normalize_probabilities(raw: np.ndarray, axis: int) -> np.ndarray:
    """Rows of `raw` (>= 0) scaled to sum to 1 along `axis`; all-zero rows become uniform."""
    total = raw.sum(axis=axis, keepdims=True)
    uniform = np.full_like(raw, 1.0 / raw.shape[axis])
    return np.where(total > 0, raw / np.where(total > 0, total, 1.0), uniform)


@st.composite
def ce_problems(
    draw,
    *,
    elements: st.SearchStrategy[float] | None = None,
    kinds: tuple[str, ...] = ("index", "probabilities"),
    max_classes: int = 5,
    normalized: bool | None = None,
    weights: bool = True,
):
    """A random cross_entropy problem: shape, logits, target kind, weight and options.

    With `normalized` True, probability targets sum to 1 over classes; with
    None Hypothesis chooses (torch accepts any real targets).
    """
    shape = draw(multiclass_shapes(max_classes=max_classes))
    c = class_count(shape)
    logits = draw(hnp.arrays(np.float64, shape, elements=parity_floats() if elements is None else elements))
    kind = draw(st.sampled_from(kinds))
    # No subnormal weights: a 'mean' denominator below 2.2e-308 overflows the
    # quotient, tested on its own in test_losses.py (test_tiny_mean_denominator).
    class_weights = hnp.arrays(np.float64, (c,), elements=st.floats(0, 4, allow_subnormal=False))
    weight = draw(st.none() | class_weights) if weights else None
    options = {
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(st.sampled_from((0.0, 0.1, 1.0)) | st.floats(0, 1)),
    }
    if kind == "index":
        ignore_index = draw(st.sampled_from((-100, -1)) | st.integers(0, c - 1))
        labels = st.integers(0, c - 1) | st.just(ignore_index)
        target = draw(hnp.arrays(np.int64, index_shape(shape), elements=labels))
    else:
        ignore_index = draw(st.sampled_from((-100, -1)))
        target = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
        if normalized or (normalized is None and draw(st.booleans())):
            target = normalize_probabilities(target, class_axis(shape))
    if ignore_index != -100 or draw(st.booleans()):
        options["ignore_index"] = ignore_index
    return CEProblem(logits, target, weight, options, weight_positional=draw(st.booleans()))


@st.composite
def softmax_inputs(draw, *, elements: st.SearchStrategy[float] | None = None, max_dims: int = 4):
    """(x, axis): any shape with at least one dimension, non-empty along `axis`."""
    shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    shape[axis] = max(shape[axis], 1)
    x = draw(hnp.arrays(np.float64, tuple(shape), elements=parity_floats() if elements is None else elements))
    return x, axis


@st.composite
def binary_problems(draw, *, logits: bool, elements: st.SearchStrategy[float] | None = None):
    """Arguments of binary_cross_entropy(_with_logits): (x, target, weight, options).

    `weight` and `pos_weight` are drawn with shapes that broadcast to the shape
    of `x` (e.g. its last axis alone, or size-1 axes).
    """
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if logits:
        x = draw(hnp.arrays(np.float64, shape, elements=parity_floats() if elements is None else elements))
    else:
        # Probabilities, including the exact 0 and 1 where torch clamps log at -100.
        x = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from((0.0, 1.0)) | st.floats(0.0, 1.0)))
    target = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from((0.0, 1.0)) | st.floats(0.0, 1.0)))

    def broadcastable():
        shapes = hnp.broadcastable_shapes(shape, min_dims=0, max_dims=len(shape), min_side=0).filter(
            lambda s: np.broadcast_shapes(s, shape) == shape  # not larger than `shape`
        )
        return st.none() | shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=st.floats(0, 4)))

    weight = draw(broadcastable())
    options = {"reduction": draw(st.sampled_from(REDUCTIONS))}
    if logits:
        options["pos_weight"] = draw(broadcastable())
    return x, target, weight, options


# ---------------------------------------------------------------------------
# mpmath ground truth
# ---------------------------------------------------------------------------
#
# All mp_* functions take float64 inputs, which mpmath represents exactly, and
# compute at MP_DPS significant digits. For one row z with maximum m = z_k,
#
#     S = sum_{j != k} exp(z_j - m),   logsumexp(z) = m + log1p(S),
#     -log softmax(z)_c = (m - z_c) + log1p(S)
#
# are exact identities; evaluated in mpmath they keep MP_DPS digits even where
# the loss is e^-700 and logsumexp(z) - z_c would need 300+ digits to resolve
# it. test_accuracy.py checks them against the plain definitions evaluated at
# a precision high enough for those.


class MpRow:
    """mpmath quantities of one row of logits (1-D float64)."""

    def __init__(self, z) -> None:
        z = [float(v) for v in np.asarray(z, dtype=np.float64)]
        with mpmath.workdps(MP_DPS):
            self.k = int(np.argmax(z))
            self.m = mpmath.mpf(z[self.k])
            self.d = [self.m - mpmath.mpf(v) for v in z]  # m - z_c >= 0, to MP_DPS digits
            self.e = [mpmath.exp(-dc) for dc in self.d]  # exp(z_c - m), e[k] = 1
            self.s = mpmath.fsum(e for j, e in enumerate(self.e) if j != self.k)
            self.log1p_s = mpmath.log1p(self.s)

    def logsumexp(self):
        with mpmath.workdps(MP_DPS):
            return self.m + self.log1p_s

    def neg_log_softmax(self, c: int):
        with mpmath.workdps(MP_DPS):
            return self.d[c] + self.log1p_s

    def log_softmax(self) -> list:
        with mpmath.workdps(MP_DPS):
            return [-self.neg_log_softmax(c) for c in range(len(self.d))]

    def softmax(self) -> list:
        with mpmath.workdps(MP_DPS):
            return [e / (1 + self.s) for e in self.e]

    def cross_entropy(self, b) -> mpmath.mpf:
        """sum_c b_c (-log q_c) for a target mass vector `b` (mpf list)."""
        with mpmath.workdps(MP_DPS):
            return mpmath.fsum(bc * self.neg_log_softmax(c) for c, bc in enumerate(b) if bc != 0)

    def cross_entropy_grad(self, b) -> list:
        """a q_c - b_c with a = sum(b); at the maximum, (a - b_k) - a (1 - q_k) with 1 - q_k = S / (1 + S)."""
        with mpmath.workdps(MP_DPS):
            a = mpmath.fsum(b)
            q = self.softmax()
            g = [a * qc - bc for qc, bc in zip(q, b)]
            g[self.k] = (a - b[self.k]) - a * self.s / (1 + self.s)
            return g


def mp_mass(c: int, target, weight=None, label_smoothing: float = 0.0) -> list:
    """Target mass b_c = w_c ((1 - eps) p_c + eps / C) of one position, as mpf.

    `target` is a class index (int) or a length-C probability vector.
    """
    with mpmath.workdps(MP_DPS):
        eps = mpmath.mpf(label_smoothing)
        if np.ndim(target) == 0:
            p = [mpmath.mpf(1 if j == int(target) else 0) for j in range(c)]
        else:
            p = [mpmath.mpf(float(v)) for v in target]
        w = [mpmath.mpf(1)] * c if weight is None else [mpmath.mpf(float(v)) for v in weight]
        return [w[j] * ((1 - eps) * p[j] + eps / c) for j in range(c)]


def mp_softplus(x):
    """log(1 + e^x) for an mpf x, at the current precision."""
    return mpmath.log1p(mpmath.exp(x))


def mp_binary_cross_entropy_with_logits(x: float, t: float, w: float = 1.0, pw: float = 1.0):
    """w [pw t softplus(-x) + (1 - t) softplus(x)], the definition of torch's loss.

    At x = +-inf one softplus is 0 and the other inf; a term whose coefficient is
    exactly 0 (t = 0, t = 1 or a zero weight) is 0 there, the limit as x grows.
    """
    with mpmath.workdps(MP_DPS):
        x, t, w, pw = (mpmath.mpf(float(v)) for v in (x, t, w, pw))
        terms = [(pw * t, mp_softplus(-x)), (1 - t, mp_softplus(x))]
        return w * mpmath.fsum(c * v for c, v in terms if c != 0 and w != 0)


def _split_exact(exact) -> tuple[np.ndarray, np.ndarray]:
    """The mpf values `exact` as float64 pairs hi + lo: hi rounded, lo the residual."""
    with mpmath.workdps(MP_DPS):
        hi = np.array([float(e) for e in exact])
        lo = np.array([float(e - mpmath.mpf(h)) if np.isfinite(h) else 0.0 for e, h in zip(exact, hi)])
    return hi, lo


def relative_errors(values, exact) -> np.ndarray:
    """|value - exact| / max(|exact|, tiny) for float64 `values` and mpf `exact` (same length).

    The exact value is split into a double-double hi + lo (lo the rounding
    residual of hi, from mpmath), so the error is measured below the last bit of
    a float64 in float64 arithmetic: value - hi is exact when value is within a
    factor 2 of the truth (Sterbenz), and a larger error needs no precision.
    The floor at the smallest normal float64 (2.2e-308) makes a true value
    below the normal range that rounds to 0 (or to a subnormal) count as exact,
    as it must: float64 cannot do better. NaN or inf gives inf.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    hi, lo = _split_exact(exact)
    assert values.shape == hi.shape
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((values - hi) - lo) / np.maximum(np.abs(hi), np.finfo(np.float64).tiny)
    return np.where(np.isfinite(values), err, np.inf)


def ulp_errors(values, exact) -> np.ndarray:
    """|value - exact| in units in the last place of the exact value, for float64 `values`, mpf `exact`.

    The ulp is ``np.spacing`` of the exact value rounded to float64 (2**-1074
    below the normal range, where every float64 is a multiple of it). The
    difference is measured below the last bit as in `relative_errors`: the
    exact value is split into hi + lo and (value - hi) - lo is formed in
    float64 (value - hi is exact when value is within a factor 2 of hi). A
    non-finite value counts as 0 ulp if it equals a non-finite exact value,
    else as inf.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    hi, lo = _split_exact(exact)
    assert values.shape == hi.shape
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((values - hi) - lo) / np.spacing(np.abs(hi))
    same = (values == hi) | (np.isnan(values) & np.isnan(hi))
    return np.where(np.isfinite(values) & np.isfinite(hi), err, np.where(same, 0.0, np.inf))


# ---------------------------------------------------------------------------
# Exact shifts
# ---------------------------------------------------------------------------
#
# Logits that are multiples of 2**-10 in [-1024, 1024], shifted by integers in
# [-2**20, 2**20]: every z + c and every difference z_i - z_j is exactly
# representable (at most 31 significant bits), so a shift-invariant algorithm
# must return bitwise the same softmax and loss.

dyadic_floats = st.integers(-(2**20), 2**20).map(lambda k: k / 1024.0)
exact_shifts = st.integers(-(2**20), 2**20).map(float)
