"""Hypothesis strategies for cross-entropy inputs on the grid every format shares.

Every value drawn (logits, probabilities, weights) has at most 8 significant
bits and a magnitude in [2**-6, 2**15] or 0, so it is exactly representable
in float32, float16 and bfloat16: a kernel under test and the reference see
the same numbers whatever the dtype.

Needs Hypothesis (``pip install 'crossentropy_ref[testing]'``).

Examples
--------
>>> import numpy as np
>>> from hypothesis import given, settings
>>> import crossentropy_ref as ce
>>> from crossentropy_ref.testing import strategies as ces
>>> @settings(max_examples=20, derandomize=True, database=None,
...           deadline=None)
... @given(ces.cross_entropy_inputs(margin=(10, 100)))
... def test_loss_is_non_negative(args):
...     logits, target, kwargs = args
...     loss = ce.cross_entropy(logits, target, **kwargs)
...     assert not np.any(loss < 0)  # NaN where every weight is 0 ('mean')
>>> test_loss_is_non_negative()
"""

from __future__ import annotations

import numpy as np

from ._cases import snap

try:
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "crossentropy_ref.testing.strategies needs Hypothesis: install the `testing` extra, "
        "pip install 'crossentropy_ref[testing]'"
    ) from None

__all__ = [
    "cross_entropy_inputs",
    "index_targets",
    "logits",
    "options",
    "probability_targets",
    "shapes",
]

REDUCTIONS = ("none", "mean", "sum")
# Dyadic smoothing values; any float in [0, 1] is valid, these keep eps / C simple.
SMOOTHING = (0.0, 0.125, 0.25, 0.5, 1.0)


def _grid(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] rounded to 8 significant bits (the shared grid)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda x: float(snap(x)))


def shapes(
    *,
    min_classes: int = 1,
    max_classes: int = 16,
    max_batch: int = 8,
    max_kdim: int = 0,
    max_side: int = 3,
    unbatched: bool = True,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Logit shapes: (C,) when `unbatched`, (N, C), and (N, C, d1, ..., dk) up to `max_kdim`.

    Parameters
    ----------
    min_classes, max_classes : int
        The range of C.
    max_batch : int
        The largest N (N >= 1).
    max_kdim : int
        The largest number k of extra axes, each of length 1 to `max_side`.
    unbatched : bool
        Whether the unbatched shape (C,) may be drawn.
    """
    classes = st.integers(min_classes, max_classes)
    batched = st.tuples(
        st.integers(1, max_batch), classes, st.lists(st.integers(1, max_side), max_size=max_kdim)
    ).map(lambda t: (t[0], t[1], *t[2]))
    return (classes.map(lambda c: (c,)) | batched) if unbatched else batched


def _class_axis(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


@st.composite
def logits(
    draw,
    shape: tuple[int, ...] | st.SearchStrategy | None = None,
    *,
    bound: float = 64.0,
    margin: tuple[float, float] | None = None,
    **shape_kwargs,
) -> np.ndarray:
    """Float64 logits on the shared grid, optionally with a confident margin.

    Parameters
    ----------
    shape : tuple of int or strategy, default=None
        The shape, or a strategy for it (default: :func:`shapes` with
        `shape_kwargs`).
    bound : float, default=64.0
        Logits are drawn in [-bound, bound] (at most 9984).
    margin : (float, float), default=None
        If given, at each position one class is raised to ``margin`` above
        the largest other logit, with ``margin`` drawn in this range (up
        to 9984 - 2 * bound): a confident prediction.
    """
    if shape is None:
        shape = shapes(**shape_kwargs)
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    shape = tuple(shape)
    n = int(np.prod(shape))
    z = np.array(draw(st.lists(_grid(-bound, bound), min_size=n, max_size=n)), dtype=np.float64).reshape(shape)
    if margin is not None and n:
        ax = _class_axis(shape)
        zm = np.moveaxis(z, ax, -1)  # a view: positions first, classes last
        flat = zm.reshape(-1, shape[ax])
        lo, hi = margin
        for row in flat:
            k = draw(st.integers(0, row.size - 1))
            others = np.delete(row, k)
            top = others.max() if others.size else 0.0
            row[k] = float(snap(top + draw(_grid(lo, hi))))
        z = np.moveaxis(flat.reshape(zm.shape), -1, ax)
    return np.ascontiguousarray(z)


@st.composite
def index_targets(draw, shape: tuple[int, ...], *, ignore_index: int | None = None) -> np.ndarray:
    """Class indices (int64) for logits of `shape`; some equal to `ignore_index` if given."""
    ax = _class_axis(shape)
    c = shape[ax]
    tshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    values = st.integers(0, c - 1)
    if ignore_index is not None:
        values = values | st.just(ignore_index)
    n = int(np.prod(tshape))
    return np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.int64).reshape(tshape)


@st.composite
def probability_targets(draw, shape: tuple[int, ...]) -> np.ndarray:
    """Class probabilities for logits of `shape`, with zeros, summing to exactly 1.

    Each probability is ``k / 2**j`` (dyadic), so the row sums are exact and
    every value is on the shared grid.
    """
    ax = _class_axis(shape)
    moved = list(shape)
    c = moved.pop(ax)
    n = int(np.prod(moved))
    counts = np.array(draw(st.lists(st.integers(0, 3), min_size=n * c, max_size=n * c)), dtype=np.int64)
    counts = counts.reshape(n, c) if n else counts.reshape(0, c)
    for i in range(n):
        if counts[i].sum() == 0:
            counts[i, draw(st.integers(0, c - 1))] = 1
    scale = 2.0 ** np.ceil(np.log2(np.maximum(counts.sum(axis=1, keepdims=True), 1)))
    p = counts / scale
    if n:
        # Put the remainder on the largest entry: every term is k / 2**j, so the sum is exactly 1.
        p[np.arange(n), np.argmax(counts, axis=1)] += 1.0 - p.sum(axis=1)
    return np.moveaxis(p.reshape(*moved, c), -1, ax).copy()


@st.composite
def options(
    draw, classes: int, *, probabilities: bool = False, weights: bool = True, smoothing: bool = True
) -> dict:
    """Keyword arguments of ``cross_entropy``: weight, ignore_index, reduction, label_smoothing.

    Parameters
    ----------
    classes : int
        C, the length of a drawn ``weight``.
    probabilities : bool
        Options for probability targets (``ignore_index`` then stays at its
        default, as torch requires).
    weights, smoothing : bool
        Whether ``weight`` and ``label_smoothing`` may be drawn.
    """
    kw: dict = {"reduction": draw(st.sampled_from(REDUCTIONS))}
    if weights and draw(st.booleans()):
        w = draw(st.lists(_grid(0.0, 8.0), min_size=classes, max_size=classes))
        kw["weight"] = np.array(w, dtype=np.float64)
    if smoothing:
        eps = draw(st.sampled_from(SMOOTHING))
        if eps:
            kw["label_smoothing"] = eps
    if not probabilities and draw(st.booleans()):
        kw["ignore_index"] = draw(st.sampled_from((-100, 0)))
    return kw


@st.composite
def cross_entropy_inputs(
    draw,
    *,
    margin: tuple[float, float] | None = None,
    bound: float = 64.0,
    probabilities: bool | None = None,
    **shape_kwargs,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(logits, target, kwargs)`` drawn together, ready for ``cross_entropy``.

    Parameters
    ----------
    margin, bound
        As for :func:`logits`.
    probabilities : bool, default=None
        Class-probability targets (True), class indices (False), or either.
    **shape_kwargs
        Passed to :func:`shapes` (``max_classes``, ``max_kdim``, ...).
    """
    z = draw(logits(shapes(**shape_kwargs), bound=bound, margin=margin))
    shape = z.shape
    prob = draw(st.booleans()) if probabilities is None else probabilities
    kw = draw(options(shape[_class_axis(shape)], probabilities=prob))
    if prob:
        target = draw(probability_targets(shape))
    else:
        target = draw(index_targets(shape, ignore_index=kw.get("ignore_index", -100)))
    return z, target, kw
