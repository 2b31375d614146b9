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


def _low_precision_float(dt: np.dtype) -> bool:
    """bfloat16, float8_*, float6_* and float4_* from ml_dtypes (numpy sees them as kind 'V')."""
    return dt.kind == "V" and dt.names is None and dt.name.startswith(("bfloat16", "float8", "float6", "float4"))


def _from_torch(x, name: str) -> np.ndarray:
    """A torch tensor's values as a numpy array: detached, copied to the host, and with
    bfloat16 and float8 widened to float32 first (numpy has no such dtype; exact)."""
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()  # a CUDA (or other device) tensor: its values, copied to the host
    if t.is_complex():
        raise TypeError(f"`{name}` must hold real numbers (integer or floating point); got a torch tensor of "
                        f"dtype {t.dtype} and shape {tuple(t.shape)}")
    if t.dtype.is_floating_point and t.element_size() < 4:
        import torch

        if t.dtype != torch.float16:
            t = t.to(torch.float32)  # bfloat16 and the float8 types: float32 holds them exactly
    return t.numpy()


def _as_array(x: ArrayLike, name: str) -> np.ndarray:
    """`x` as a numpy array, refusing what would silently lose information.

    - a torch tensor is read detached, from whatever device it is on;
    - a masked array would lose its mask: refused;
    - a dask array would be computed whole, into memory: refused;
    - ragged nested lists: refused with a message that names the argument.
    """
    module = type(x).__module__ or ""
    if module.startswith("torch") and hasattr(x, "detach"):
        return _from_torch(x, name)
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"`{name}` must not be a masked array: its mask would be ignored and the masked entries used; "
            "fill it (numpy.ma.filled) or, for class-index targets, mark the positions to skip with "
            f"`ignore_index`; got a masked {_describe(x)}"
        )
    if module.startswith("dask"):
        raise TypeError(
            f"`{name}` is a dask array, which would be computed whole into memory here; compute it "
            "yourself (x.compute()) if it fits, or, for the losses, call crossentropy_ref.dask.cross_entropy or "
            "nll_loss, which keep it lazy and chunked (the `dask` extra); got "
            f"{type(x).__name__} of shape {getattr(x, 'shape', '?')}"
        )
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"`{name}` must be an array of real numbers; got {type(x).__name__} ({exc})") from None
    return a


def as_real_array(x: ArrayLike, name: str, *, min_ndim: int = 0) -> NDArray[np.float64]:
    """Return `x` as float64, rejecting bool, complex and non-numeric input.

    Every integer and floating-point dtype that float64 holds exactly is accepted:
    float16, float32, the ml_dtypes formats (bfloat16, float8, ...), and integers
    up to 2**53 in magnitude; long double only where its values are float64 values.
    """
    a = _as_array(x, name)
    if _low_precision_float(a.dtype):
        a = a.astype(np.float32).astype(np.float64)  # exact: every such format fits float32
    elif a.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"`{name}` must hold real numbers (integer or floating point); got {_describe(a)}")
    if a.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s); got shape {a.shape}")
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        _check_exact(a, a.astype(np.float64), name, "long double values that float64 cannot hold")
    elif a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        big = np.abs(a.astype(np.float64)) > 2.0**53
        if big.any():
            _check_exact(a, a.astype(np.float64), name, "integers beyond 2**53 that float64 cannot hold")
    # asarray copies only when the dtype changes; callers never write into it.
    return np.asarray(a, dtype=np.float64)


def _check_exact(a: np.ndarray, f: np.ndarray, name: str, what: str) -> None:
    with np.errstate(invalid="ignore"):
        lost = ~((f.astype(a.dtype) == a) | (np.isnan(f) & np.isnan(a.astype(np.float64))))
    if lost.any():
        where = _first(lost)
        raise ValueError(f"`{name}` must hold values that float64 holds exactly; got {what}: {a[where]!r} at "
                         f"position {where}")


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def _pieces(a: np.ndarray):
    """`a`'s values as 1-D pieces of at most 2**16 (views where the layout allows): checks of
    a whole array then cost no temporary the size of the array (a probability target is as
    large as the logits)."""
    return np.nditer(a, flags=["external_loop", "buffered", "zerosize_ok"], buffersize=1 << 16, order="K")


def _all_in(a: np.ndarray, low: float) -> bool:
    """Whether every value of `a` is finite and at least `low`, piece by piece (min and max
    propagate a NaN, which makes the tests false)."""
    return all(np.isfinite(lo := p.min()) and lo >= low and np.isfinite(p.max()) for p in _pieces(a) if p.size)


def check_finite(a: np.ndarray, name: str, what: str) -> None:
    """Refuse NaN and infinities (with the first position where one is)."""
    if _all_in(a, -np.inf):
        return
    bad = ~np.isfinite(a)  # only on the way to an error: where is the first one
    if bad.any():
        where = _first(bad)
        raise ValueError(f"`{name}` must hold finite {what}; got {float(a[where])!r} at position {where}")


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
) -> tuple[NDArray[np.intp], int]:
    """Class-index target: integer dtype, shape `logits_shape` minus the class axis,
    each entry in [0, C) or equal to `ignore_index`.

    Returns ``(y, ignore)``: the indices as numpy's index type ``np.intp`` (int32
    on 32-bit platforms such as wasm32, where take() refuses int64), and the
    value that marks an ignored position in `y`: `ignore_index` itself when it
    is a class in [0, C) or the target is already ``np.intp`` (then `y` is the
    target, not a copy), else -1. The comparisons run in the target's own
    dtype, so a uint64 target of 2**63 or more is reported as it is, and can
    equal an `ignore_index` of that size.
    """
    t = target if isinstance(target, np.ndarray) else _as_array(target, name)
    check_index_target_shape(t.shape, logits_shape, name=name, logits_name=logits_name)
    if t.dtype.kind not in _INDEX_KINDS:
        raise TypeError(f"`{name}` must hold integer class indices; got {_describe(t)}")
    n_classes = logits_shape[0] if len(logits_shape) == 1 else logits_shape[1]
    ignored = _equals(t, ignore_index)
    bad = (_less(t, 0) | ~_less(t, n_classes)) & ~ignored
    if bad.any():
        where = _first(bad)
        raise ValueError(
            f"`{name}` must hold class indices in [0, {n_classes}) or `ignore_index`={ignore_index}; "
            f"got {int(t[where])} at position {where}"
        )
    # No copy of an intp target (1/C of the logits' size): the engine only reads it, and
    # compares with the marker, which is then `ignore_index` itself.
    if t.dtype == np.intp:
        return t, ignore_index
    marker = ignore_index if 0 <= ignore_index < n_classes else -1
    y = np.where(ignored, marker, t).astype(np.intp, copy=False) if ignored.any() else t.astype(np.intp)
    return y, marker


def check_index_target_shape(
    shape: tuple[int, ...], logits_shape: tuple[int, ...], *, name: str = "target", logits_name: str = "logits"
) -> None:
    """Class-index targets have the logits' shape without the class axis."""
    expected = index_target_shape(logits_shape)
    if tuple(shape) != expected:
        raise ValueError(
            f"`{name}` must have shape {expected} to match `{logits_name}` of shape {logits_shape}; got {shape}"
        )


def _equals(t: np.ndarray, value: int) -> np.ndarray:
    """t == value for any Python int, without wrapping it into t's dtype."""
    info = np.iinfo(t.dtype)
    if not info.min <= value <= info.max:
        return np.zeros(t.shape, dtype=bool)
    return t == np.array(value, dtype=t.dtype)


def _less(t: np.ndarray, value: int) -> np.ndarray:
    """t < value for any Python int (exact for uint64 above 2**63)."""
    info = np.iinfo(t.dtype)
    if value <= info.min:
        return np.zeros(t.shape, dtype=bool)
    if value > info.max:
        return np.ones(t.shape, dtype=bool)
    return t < np.array(value, dtype=t.dtype)


def as_prob_target(t: np.ndarray, logits_shape: tuple[int, ...], *, name: str = "target") -> NDArray[np.float64]:
    """Class-probability target: same shape as the logits, finite and non-negative.

    NaN, infinities and negative entries are refused with the first position
    where one is (torch accepts them and returns a meaningless loss: teacher
    logits passed by mistake give negative losses). Rows need not sum to 1,
    as in torch: the loss is then the weighted sum of the -log q_c.
    """
    if t.dtype.kind not in _REAL_KINDS and not _low_precision_float(t.dtype):
        raise TypeError(f"`{name}` must hold class probabilities (real numbers); got {_describe(t)}")
    a = as_real_array(t, name)
    if _all_in(a, 0.0):
        return a
    check_finite(a, name, "class probabilities")
    neg = a < 0
    if neg.any():
        where = _first(neg)
        raise ValueError(f"`{name}` must hold non-negative class probabilities; got {float(a[where])!r} at "
                         f"position {where}")
    return a


def as_target(target: ArrayLike, logits_shape: tuple[int, ...], name: str = "target") -> tuple[np.ndarray, bool]:
    """The target as an array (read once), and whether it holds class probabilities.

    The kind is decided by shape, as torch does: the logits' shape means
    probabilities, the logits' shape without the class axis means indices.
    """
    t = _as_array(target, name)
    return t, target_kind(t.shape, logits_shape, name)


def target_kind(shape: tuple[int, ...], logits_shape: tuple[int, ...], name: str = "target") -> bool:
    """Whether a target of `shape` holds class probabilities (True) or class indices (False)."""
    shape = tuple(shape)
    if shape == logits_shape:
        return True
    expected = index_target_shape(logits_shape)
    if shape == expected:
        return False
    raise ValueError(
        f"`{name}` must have shape {expected} (class indices) or {logits_shape} (class probabilities) "
        f"to match `logits` of shape {logits_shape}; got {shape}"
    )


def check_ignore_unused(ignore_index: int) -> None:
    """Probability targets have no class index to ignore: `ignore_index` must keep a negative value."""
    if ignore_index >= 0:
        raise ValueError(
            "`ignore_index` must be negative (unused) with class-probability targets, as in torch; "
            f"got {ignore_index}"
        )


def as_weight(
    weight: ArrayLike | None, n: int, *, name: str = "weight", what: str = "one per class"
) -> NDArray[np.float64] | None:
    """Optional 1-D weight of length `n`, finite (negative weights are allowed, as in torch)."""
    if weight is None:
        return None
    w = as_real_array(weight, name)
    if w.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), {what}; got {w.shape}")
    check_finite(w, name, "weights")
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


# dask arrays (crossentropy_ref.dask): checked from their metadata, before anything is computed;
# their values are checked chunk by chunk, by the functions above, when they are computed.


def _short(sizes: tuple) -> str:
    return str(sizes) if len(sizes) <= 4 else f"({', '.join(map(str, sizes[:3]))}, ..., {sizes[-1]})"


def check_dask_array(x, name: str, *, what: str, kinds: str) -> None:
    """A dask array of numpy chunks with known sizes, whose dtype kind is in `kinds` (float
    kinds also admit ml_dtypes' low-precision floats); `what` names what it must hold."""
    shape = tuple(x.shape)
    if any(d != d for d in shape):  # NaN: chunk sizes dask does not know yet
        raise ValueError(f"`{name}` must have known chunk sizes; got a dask array of shape {shape}: call "
                         f"{name}.compute_chunk_sizes() first")
    meta = getattr(x, "_meta", None)
    if isinstance(meta, np.ma.MaskedArray):
        raise TypeError(f"`{name}` must not be a masked array: its mask would be ignored and the masked entries "
                        f"used; got a dask array of shape {shape} with masked chunks")
    if type(meta) is not np.ndarray:
        raise TypeError(f"`{name}` must be a dask array of numpy chunks; got chunks of type {type(meta).__name__}")
    dt = x.dtype
    if dt.kind not in kinds and not ("f" in kinds and _low_precision_float(dt)):
        raise TypeError(f"`{name}` must hold {what}; got a dask array of dtype {dt} and shape {shape}")


def check_one_chunk(chunks: tuple[tuple[int, ...], ...], shape: tuple[int, ...], axis: int, name: str) -> None:
    """The class axis must be whole in every chunk: each position's classes meet in one task."""
    along = tuple(chunks[axis])
    if len(along) > 1:
        raise ValueError(
            f"`{name}` must hold its class axis (axis {axis}, {shape[axis]} classes) in one chunk; got "
            f"{len(along)} chunks of sizes {_short(along)} along it: rechunk it, e.g. "
            f"{name}.rechunk({{{axis}: -1}})"
        )
