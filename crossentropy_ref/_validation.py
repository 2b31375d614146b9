"""Input checks shared by every public function.

Every check raises with one message shape: the parameter in backticks, what was
expected, and what was received, e.g.
"`target` must have shape (4,) to match `logits` of shape (4, 5); got (3,)".
``TypeError`` is for a wrong kind of value, ``ValueError`` for a wrong shape or
value. Nothing here writes into its arguments.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import operator

import numpy as np
from numpy.typing import ArrayLike, NDArray

REDUCTIONS = ("none", "mean", "sum")

# dtype kinds accepted as real numbers: signed and unsigned integers, floats.
_REAL_KINDS = "iuf"
_INDEX_KINDS = "iu"


# torch's deprecated reduction flags: accepted positionally or by name by torch, not here.
_TORCH_LEGACY = ("size_average", "reduce")


def torch_signature_guard(fn):
    """Turn a torch-style call that `fn`'s signature refuses into a clear TypeError.

    torch's losses take every option positionally, with the deprecated
    `size_average` and `reduce` among them; here the options are keyword-only
    and those two are not accepted. Without this, such a call gets Python's
    generic "takes from 2 to 3 positional arguments" message.
    ``functools.wraps`` keeps `fn`'s name, docstring and signature.
    """
    params = inspect.signature(fn).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    options = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    names = ", ".join(f"`{n}`" for n in positional)
    opts = ", ".join(f"`{n}`" for n in options)

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        if len(args) > len(positional):
            raise TypeError(
                f"{fn.__name__}() takes {names} positionally and its options ({opts}) as keywords only; "
                f"got {len(args)} positional arguments. torch's positional `size_average` and `reduce` "
                "are not accepted: pass the options by name, e.g. reduction='sum'"
            )
        for name in _TORCH_LEGACY:
            if name in kwargs:
                raise TypeError(
                    f"{fn.__name__}() does not accept `{name}`, which torch deprecates; "
                    f"pass `reduction` ('none', 'mean' or 'sum') instead; got {name}={kwargs[name]!r}"
                )
        return fn(*args, **kwargs)

    return guarded


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def _as_array(x: ArrayLike, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"`{name}` must be an array of real numbers; got {type(x).__name__} ({exc})") from None
    return a


def as_real_array(x: ArrayLike, name: str, *, min_ndim: int = 0) -> NDArray[np.float64]:
    """Return `x` as float64, rejecting bool, complex and non-numeric input."""
    a = _as_array(x, name)
    if a.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"`{name}` must hold real numbers (integer or floating point); got {_describe(a)}")
    if a.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s); got shape {a.shape}")
    # asarray copies only when the dtype changes; callers never write into it.
    return np.asarray(a, dtype=np.float64)


def as_logits(x: ArrayLike, name: str = "logits") -> NDArray[np.float64]:
    """Logits for the multi-class losses: (C,), (N, C) or (N, C, d1, ..., dk)."""
    return as_real_array(x, name, min_ndim=1)


def index_target_shape(logits_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of class-index targets for `logits_shape` (class axis removed)."""
    if len(logits_shape) == 1:
        return ()
    return (logits_shape[0],) + tuple(logits_shape[2:])


def as_index_target(
    target: ArrayLike,
    logits_shape: tuple[int, ...],
    ignore_index: int,
    *,
    name: str = "target",
    logits_name: str = "logits",
) -> NDArray[np.int64]:
    """Class-index target: integer dtype, shape `logits_shape` minus the class axis,
    each entry in [0, C) or equal to `ignore_index`."""
    t = _as_array(target, name)
    expected = index_target_shape(logits_shape)
    if t.shape != expected:
        raise ValueError(
            f"`{name}` must have shape {expected} to match `{logits_name}` of shape {logits_shape}; got {t.shape}"
        )
    if t.dtype.kind not in _INDEX_KINDS:
        raise TypeError(f"`{name}` must hold integer class indices; got {_describe(t)}")
    n_classes = logits_shape[0] if len(logits_shape) == 1 else logits_shape[1]
    t = np.asarray(t, dtype=np.int64)
    bad = ((t < 0) | (t >= n_classes)) & (t != ignore_index)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if t.ndim else ()
        value = int(t[where])
        raise ValueError(
            f"`{name}` must hold class indices in [0, {n_classes}) or `ignore_index`={ignore_index}; "
            f"got {value} at position {where}"
        )
    return t


def as_prob_target(target: ArrayLike, logits_shape: tuple[int, ...], *, name: str = "target") -> NDArray[np.float64]:
    """Class-probability target: same shape as the logits, real numbers."""
    t = _as_array(target, name)
    if t.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"`{name}` must hold class probabilities (real numbers); got {_describe(t)}")
    return np.asarray(t, dtype=np.float64)


def target_is_probabilities(target: ArrayLike, logits_shape: tuple[int, ...], name: str = "target") -> bool:
    """Decide the target kind by shape, as torch does; raise if it fits neither."""
    shape = np.shape(target)
    if shape == logits_shape:
        return True
    expected = index_target_shape(logits_shape)
    if shape == expected:
        return False
    raise ValueError(
        f"`{name}` must have shape {expected} (class indices) or {logits_shape} (class probabilities) "
        f"to match `logits` of shape {logits_shape}; got {shape}"
    )


def as_weight(
    weight: ArrayLike | None, n: int, *, name: str = "weight", what: str = "one per class"
) -> NDArray[np.float64] | None:
    """Optional 1-D weight of length `n`."""
    if weight is None:
        return None
    w = as_real_array(weight, name)
    if w.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), {what}; got {w.shape}")
    return w


def check_reduction(reduction: object) -> str:
    if not isinstance(reduction, str):
        raise TypeError(f"`reduction` must be one of {REDUCTIONS}; got {type(reduction).__name__} {reduction!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


def check_label_smoothing(label_smoothing: object) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(
            f"`label_smoothing` must be a real number in [0, 1]; got {type(label_smoothing).__name__} "
            f"{label_smoothing!r}"
        )
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1]; got {eps!r}")
    return eps


def check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__} {value!r}")
    return operator.index(value)


def normalize_axis(axis: object, ndim: int) -> int:
    ax = check_int(axis, "axis")
    if not -ndim <= ax < ndim:
        raise ValueError(f"`axis` must be in [{-ndim}, {ndim}) for an input with {ndim} dimension(s); got {ax}")
    return ax % ndim


def normalize_axes(axis: object, ndim: int) -> tuple[int, ...]:
    """One axis or a tuple/list of distinct axes, as sorted non-negative ints.

    A 0-d input counts as one element with one axis, as in torch: its axes
    are in [-1, 0]. An empty tuple is allowed only for a 0-d input.
    """
    n = max(ndim, 1)
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"`axis` must be an integer or a tuple of integers; got {type(axis).__name__} {axis!r}")
    scalar = " (a 0-d input counts as one element, as in torch)" if ndim == 0 else ""
    bad = [int(a) for a in items if not -n <= a < n]
    if bad:
        raise ValueError(
            f"`axis` must be in [{-n}, {n}) for an input with {ndim} dimension(s){scalar}; got {bad[0]}"
        )
    axes = tuple(sorted(int(a) % n for a in items))
    if len(set(axes)) != len(axes):
        raise ValueError(f"`axis` must name each axis at most once; got {axis!r}")
    if not axes and ndim > 0:
        raise ValueError(f"`axis` must name at least one axis of an input with {ndim} dimension(s); got {axis!r}")
    return axes


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def as_float_dtype(dtype: object, name: str = "dtype") -> np.dtype | None:
    """None, or a floating-point numpy dtype (bfloat16 and float8 from ml_dtypes included)."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not (dt.kind == "f" or dt.name == "bfloat16" or dt.name.startswith("float8")):
        raise TypeError(f"`{name}` must be a floating-point numpy dtype such as numpy.float32; got {dtype!r}")
    return dt


def check_broadcastable(a: np.ndarray, shape: tuple[int, ...], name: str, other: str) -> None:
    try:
        out = np.broadcast_shapes(a.shape, shape)
    except ValueError:
        out = None
    if out != shape:
        raise ValueError(
            f"`{name}` must broadcast to the shape {shape} of `{other}`; got {a.shape}"
        )


def check_unit_interval(a: np.ndarray, name: str) -> None:
    """All entries in [0, 1]. NaN is let through and propagates to the loss (torch's
    binary_cross_entropy raises on a NaN probability; listed as a difference)."""
    bad = (a < 0) | (a > 1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
        raise ValueError(f"`{name}` must hold values in [0, 1]; got {float(a[where])!r} at position {where}")
