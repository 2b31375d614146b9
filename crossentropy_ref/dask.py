"""Cross-entropy of dask arrays: logits larger than memory, and the same bits as in memory.

``crossentropy_ref.dask.cross_entropy`` and ``nll_loss`` take dask arrays
and return a lazy dask array. Each chunk of positions (whole class slices:
the class axis must lie in one chunk) is computed by the in-memory engine,
in one thread, wherever the scheduler runs it:

- ``reduction='none'`` maps the chunks to their losses, bit for bit the
  in-memory function's;
- ``'sum'`` and ``'mean'`` are a ``dask.array.reduction``. Each chunk returns
  the *exact* totals of its positions' values and of their error bounds
  (a Python integer times a power of two; the denominator's too, for
  ``'mean'``); the tree of ``combine`` tasks adds them exactly, and the last
  task rounds once. The in-memory functions add the same values with the
  same exact accumulator, so the result is the same float64 for every
  chunking, every `split_every` and every scheduler.

When the summed bound does not prove the total within 4 ulp (the losses
cancel: negative class weights), the in-memory function recomputes every
position in its deep tier and sums again. So does the last task here: it
computes a second reduction over the same inputs, every chunk in the deep
tier, as a computation of its own: with the cluster's client when it runs
on a dask.distributed worker, with the default scheduler otherwise. That
pass reads or generates the logits a second time; it is rare, and it spares
the first pass from keeping them.

Needs the ``dask`` extra: ``pip install 'crossentropy_ref[dask]'``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from functools import partial
from typing import NamedTuple

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # the optional extra
    raise ImportError(
        "crossentropy_ref.dask needs dask: install the `dask` extra, pip install 'crossentropy_ref[dask]' "
        f"({exc})"
    ) from exc

from . import _validation as v
from ._config import configure
from ._engine import _blocks, _jit
from ._engine import _exactsum as xs
from ._engine._chunks import chunk_deep_total, chunk_losses, chunk_totals, proven
from ._losses import _check_classes, _check_inputs, _denominator, _is_zero, _nll_inputs, _nll_totals
from ._losses import nll_loss as _nll_in_memory

__all__ = ["cross_entropy", "nll_loss"]


class _Options(NamedTuple):
    """What every task needs besides its chunk: the checked options, the engine, the caller's pid."""

    loss: str  # "cross_entropy" or "nll_loss"
    weight: np.ndarray | None
    ignore_index: int
    reduction: str
    label_smoothing: float
    probabilities: bool
    unbatched: bool
    engine: str  # the engine in force when the graph was built: the workers use it too
    pid: int  # the process that built the graph


class _Part(NamedTuple):
    """A chunk's (or a group of chunks') exact partial sums."""

    total: xs.ExactTotal  # of the losses (first tier)
    bound: xs.ExactTotal | None  # of their error bounds (None for nll_loss: its products are exact)
    den: xs.ExactTotal | None  # of the 'mean' denominator (None for 'sum')


# --- graph construction ----------------------------------------------------------------------


def _as_dask(x, name: str) -> da.Array:
    """A dask array as it is; an in-memory array (numpy, list, torch tensor) as one chunk."""
    if isinstance(x, da.Array):
        return x
    return da.from_array(v._as_array(x, name))


def _in_memory_weight(weight, c: int) -> np.ndarray | None:
    if isinstance(weight, da.Array):
        raise TypeError(
            f"`weight` must be an array in memory ({c} class weights), not a dask array: compute it first, "
            f"weight.compute(); got a dask array of shape {weight.shape}"
        )
    return v.as_weight(weight, c)


def _options(loss: str, z: da.Array, weight, ignore_index: int, reduction: str, eps: float, prob: bool) -> _Options:
    return _Options(loss, weight, ignore_index, reduction, eps, prob, z.ndim == 1, _jit.engine(), os.getpid())


def _graph(z: da.Array, t: da.Array, opts: _Options, split_every, name: str) -> da.Array:
    """The lazy loss of logits `z` and target `t` (both checked): mapped blocks, or a reduction."""
    v.check_one_chunk(z.chunks, z.shape, 0 if z.ndim == 1 else 1, name)
    if opts.unbatched:  # (C,) is one position: as (1, C), and the result back to 0-d
        z = z.reshape(1, -1)
        t = t.reshape(1, -1) if opts.probabilities else t.reshape(1)
    # The target in the logits' chunks; index targets get a length-1 class axis, so that
    # map_blocks lines the two up axis by axis.
    t = t.rechunk(z.chunks) if opts.probabilities else t.rechunk(z.chunks[:1] + z.chunks[2:])[:, None]
    # The outputs keep the class axis, at length 1: a map_blocks that dropped it would
    # concatenate its inputs along it, and dask does not fuse such a task with the tasks that
    # make its inputs, so each chunk of logits would be stored between two tasks rather than
    # made and used in one.
    per_position = z.chunks[:1] + ((1,),) + z.chunks[2:]
    if opts.reduction == "none":
        out = da.map_blocks(_chunk_none, z, t, opts=opts, chunks=per_position, dtype=np.float64,
                            meta=np.empty((0,) * z.ndim), token=f"{opts.loss}-none")[:, 0]
        return out.reshape(()) if opts.unbatched else out
    ones = tuple((1,) * len(c) for c in per_position)
    parts = da.map_blocks(_chunk_part, z, t, opts=opts, chunks=ones, dtype=object,
                          meta=np.empty((0,) * z.ndim, dtype=object), token=f"{opts.loss}-partial")
    # The second pass, only for cross_entropy (nll_loss's sums are exact): computed by the last
    # task when the first pass's bound fails, over the same inputs.
    second = partial(_second_pass, z, t, opts, split_every) if opts.loss == "cross_entropy" else None
    return da.reduction(parts, chunk=_unwrap, combine=_combine, aggregate=partial(_aggregate, opts=opts, second=second),
                        axis=None, keepdims=False, dtype=np.float64, split_every=split_every, concatenate=False,
                        meta=np.empty((), dtype=np.float64), name=f"{opts.loss}-{opts.reduction}")


# --- the tasks ---------------------------------------------------------------------------------

_settings_lock = threading.Lock()


def _settle(opts: _Options) -> None:
    """One thread per task, and the caller's engine.

    In a process of its own (a dask.distributed worker, the processes
    scheduler) the package is set to one thread and to the engine the graph
    was built with. In the caller's process (the synchronous and threaded
    schedulers) its settings are left alone: the tasks run in one thread
    anyway, and an engine changed since the graph was built is refused.
    """
    if os.getpid() == opts.pid:
        if _jit.engine() != opts.engine:
            raise ValueError(
                f"this loss was built with the '{opts.engine}' engine, and the '{_jit.engine()}' engine is in force "
                "now: the engines agree within 4 ulp, not bit for bit; build it again, or "
                f"crossentropy_ref.configure(engine='{opts.engine}')"
            )
        return
    with _settings_lock:
        if _blocks.thread_count() != 1 or _jit.engine() != opts.engine:
            configure(threads=1, engine=opts.engine)


_POSITION = re.compile(r"at position \(([0-9, ]*)\)")


def _whole_array_position(exc: ValueError, block_info, unbatched: bool) -> ValueError:
    """A value error raised on a chunk, with its position counted in the whole array."""
    msg = str(exc)
    m = _POSITION.search(msg)
    if m is None or not block_info:
        return exc
    starts = [s for s, _ in block_info[0]["array-location"]]  # the logits chunk's first element
    local = [int(i) for i in m.group(1).split(",") if i.strip()]
    offsets = starts if len(local) == len(starts) else starts[:1] + starts[2:]  # index targets: no class axis
    where = tuple(i + o for i, o in zip(local, offsets))[1 if unbatched else 0 :]
    return type(exc)(f"{msg[: m.start()]}at position {where}{msg[m.end() :]}")


def _checked(fn):
    """Run a chunk function: settings first, then positions in errors counted in the whole array."""

    def run(z, t, *, opts: _Options, block_info=None):
        _settle(opts)
        try:
            return fn(z, t if opts.probabilities else t[:, 0], opts)
        except ValueError as exc:
            raise _whole_array_position(exc, block_info, opts.unbatched) from None

    run.__name__ = run.__qualname__ = fn.__name__
    return run


def _problem(z, t, opts: _Options):
    return _check_inputs(z, t, opts.weight, opts.ignore_index, opts.reduction, opts.label_smoothing)


@_checked
def _chunk_none(z, t, opts: _Options) -> np.ndarray:
    if opts.loss == "nll_loss":
        out = _nll_in_memory(z, t, opts.weight, ignore_index=opts.ignore_index, reduction="none")
    else:
        out = chunk_losses(_problem(z, t, opts))
    return out.reshape(z.shape[:1] + (1,) + z.shape[2:])  # the class axis at length 1


def _wrap(value, ndim: int) -> np.ndarray:
    """`value` as the one element of an object array of `ndim` length-1 axes."""
    out = np.empty((1,) * ndim, dtype=object)
    out[(0,) * ndim] = value
    return out


@_checked
def _chunk_part(z, t, opts: _Options) -> np.ndarray:
    if opts.loss == "nll_loss":
        picked, valid, yc, w, _ = _nll_inputs(z, t, opts.weight, opts.ignore_index)
        total, den = _nll_totals(picked, valid, yc, w)
        bound = None
    else:
        pb = _problem(z, t, opts)
        total, bound = chunk_totals(pb)
        den = _denominator(pb)
    return _wrap(_Part(total, bound, den if opts.reduction == "mean" else None), z.ndim)


@_checked
def _chunk_deep(z, t, opts: _Options) -> np.ndarray:
    return _wrap(chunk_deep_total(_problem(z, t, opts)), z.ndim)


def _unwrap(x, axis=None, keepdims=None, computing_meta=False):
    """The reduction's chunk step: a block of the partials array holds one partial."""
    # dask.array.reduction may call it on an empty array to infer the result's type.
    return x if computing_meta or x.size != 1 else x.flat[0]


def _flat(x) -> list:
    return [p for y in x for p in _flat(y)] if isinstance(x, list) else [x]


def _merge(parts: list, field: str):
    values = [getattr(p, field) for p in parts]
    return None if values[0] is None else xs.merge_all(values)


def _combine(x, axis=None, keepdims=None) -> _Part:
    """Exact partial sums merged exactly (associative and commutative bit for bit)."""
    parts = _flat(x)
    return _Part(*(_merge(parts, f) for f in _Part._fields))


def _aggregate(x, axis=None, keepdims=None, *, opts: _Options, second) -> np.float64:
    """The one rounding: the merged total (or the deep tier's, when its bound fails) as float64."""
    part = _combine(x)
    if opts.reduction == "mean" and _is_zero(part.den):
        return np.float64(np.nan)  # empty batch, all ignored, or zero target weights: NaN, as in torch
    total = part.total
    if part.bound is not None and not proven(total, part.bound):
        total = second()  # the losses cancel: every position again, in the deep tier
    if opts.reduction == "sum":
        return np.float64(xs.to_float(total))
    return np.float64(xs.ratio(total, part.den))


def _merge_totals(x, axis=None, keepdims=None) -> xs.ExactTotal:
    return xs.merge_all(_flat(x))


def _wrapped_total(x, axis=None, keepdims=None) -> np.ndarray:
    return _wrap(_merge_totals(x), 0)


def _second_pass(z: da.Array, t: da.Array, opts: _Options, split_every) -> xs.ExactTotal:
    """The exact total of every position in the deep tier, as a dask computation of its own."""
    ones = tuple((1,) * len(c) for c in z.chunks)
    parts = da.map_blocks(_chunk_deep, z, t, opts=opts, chunks=ones, dtype=object,
                          meta=np.empty((0,) * z.ndim, dtype=object), token=f"{opts.loss}-deep")
    total = da.reduction(parts, chunk=_unwrap, combine=_merge_totals, aggregate=_wrapped_total, axis=None,
                         dtype=object, split_every=split_every, concatenate=False, meta=np.empty((), dtype=object),
                         name=f"{opts.loss}-deep-total")
    return _compute_here(total)[()]


def _compute_here(x: da.Array):
    """Compute `x` from inside a task: through the cluster on a dask.distributed worker (the
    task leaves the worker's thread pool while it waits), else with the default scheduler."""
    if "distributed" in sys.modules:
        from distributed import get_worker, worker_client

        try:
            get_worker()
        except ValueError:  # not in a worker
            pass
        else:
            with worker_client() as client:
                return client.compute(x).result()
    return x.compute()


# --- the public functions ----------------------------------------------------------------------


@v.torch_signature_guard
def cross_entropy(
    logits,
    target,
    weight=None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    split_every=None,
) -> da.Array:
    r"""Cross-entropy loss of dask arrays, aka log loss or softmax loss, chunk by chunk.

    The in-memory :func:`~crossentropy_ref.cross_entropy`, for logits that
    need not fit in memory: the same definition,

    .. math::

        \ell = -\sum_{c=1}^{C} w_c\, \tilde p_c \log q_c,
        \qquad q = \operatorname{softmax}(z),
        \quad \tilde p = (1 - \varepsilon)\, p + \frac{\varepsilon}{C},

    the same options, and the same float64 results, bit for bit, whatever
    the chunks, `split_every` and the scheduler.

    Parameters
    ----------
    logits : dask array of shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalised scores, with the class axis (1; 0 for unbatched input)
        in one chunk. Any real dtype. An in-memory array is taken as one
        chunk.
    target : dask array of shape (), (N,) or (N, d1, ..., dk), or the shape of `logits`
        Class indices (integer dtype) or class probabilities, as for
        :func:`~crossentropy_ref.cross_entropy`; rechunked to the logits'
        chunks.
    weight : array_like of shape (C,), default=None
        A weight per class, in memory (numpy).
    ignore_index : int, default=-100
    reduction : {'mean', 'sum', 'none'}, default='mean'
    label_smoothing : float in [0, 1], default=0.0
        As for :func:`~crossentropy_ref.cross_entropy`.
    split_every : int or dict, default=None
        How many partial sums each task of the reduction tree merges, as
        for ``dask.array.reduction``; None: dask's default. It changes
        the graph's shape, never the result.

    Returns
    -------
    dask array of float64
        Lazy: 0-d for ``'mean'`` and ``'sum'``; of the target's index shape
        for ``'none'``, in the logits' chunks. ``.compute()`` gives what
        the in-memory function returns.

    Raises
    ------
    TypeError, ValueError
        As the in-memory function, for what its metadata shows (shapes,
        dtypes, options), when the graph is built; for the values (class
        indices out of range, negative probabilities), when the chunk that
        holds them is computed, with the position counted in the whole
        array. ValueError if the class axis spans several chunks, or a
        chunk size is unknown.

    See Also
    --------
    crossentropy_ref.cross_entropy : The in-memory function.
    nll_loss : From log-probabilities.

    Notes
    -----
    Natural logarithms; :math:`0 \log 0 = 0`; each position's loss is
    computed as in memory (shifted by its maximum, the true class's term
    kept free of cancellation), and a chunk's memory is a few of its copies
    at most.

    Each chunk's task returns exact partial sums: of the losses, of their
    error bounds and, for ``'mean'``, of the denominator. They merge
    exactly, and the last task rounds once. If the summed bound does not
    prove the result within 4 ulp (losses of mixed sign that cancel), that
    task runs a second pass over the inputs, every position in the deep
    tier, as the in-memory function does.

    Tasks run the package in one thread. In processes other than the
    caller's (the processes scheduler, dask.distributed workers) it is set
    to one thread and to the engine in force when the graph was built; the
    result is defined by that engine.

    *Differences from PyTorch*: those of
    :func:`~crossentropy_ref.cross_entropy`, and `split_every`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import crossentropy_ref as ce
    >>> import crossentropy_ref.dask as ced
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(1000, 5))
    >>> y = rng.integers(0, 5, size=1000)
    >>> dz = da.from_array(z, chunks=(300, 5))  # 4 chunks of rows
    >>> loss = ced.cross_entropy(dz, da.from_array(y, chunks=300))
    >>> loss.shape, loss.dtype  # lazy: nothing is computed yet
    ((), dtype('float64'))
    >>> exact = loss.compute(scheduler="synchronous")
    >>> bool(exact == ce.cross_entropy(z, y))  # the same bits
    True
    """
    reduction = v.check_reduction(reduction)
    eps = v.check_label_smoothing(label_smoothing)
    ignore_index = v.check_int(ignore_index, "ignore_index")
    z = _as_dask(logits, "logits")
    v.check_dask_array(z, "logits", what="real numbers (integer or floating point)", kinds="iuf")
    c = _check_classes(z)
    w = _in_memory_weight(weight, c)
    t = _as_dask(target, "target")
    prob = v.target_kind(t.shape, z.shape)
    if prob:
        v.check_dask_array(t, "target", what="class probabilities (real numbers)", kinds="iuf")
        v.check_ignore_unused(ignore_index)
    else:
        v.check_dask_array(t, "target", what="integer class indices", kinds="iu")
    opts = _options("cross_entropy", z, w, ignore_index, reduction, eps, prob)
    return _graph(z, t, opts, split_every, "logits")


@v.torch_signature_guard
def nll_loss(
    log_probs,
    target,
    weight=None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    split_every=None,
) -> da.Array:
    r"""Negative log-likelihood loss of dask arrays, chunk by chunk.

    The in-memory :func:`~crossentropy_ref.nll_loss`, for log-probabilities
    that need not fit in memory:

    .. math::

        \ell_i = -w_{y_i}\, x_{i, y_i},
        \qquad \text{mean} = \frac{\sum_i \ell_i}{\sum_i w_{y_i}},

    with the same float64 results, bit for bit, whatever the chunks,
    `split_every` and the scheduler.

    Parameters
    ----------
    log_probs : dask array of shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities, the class axis (1; 0 for unbatched input) in one
        chunk.
    target : dask array of shape (), (N,) or (N, d1, ..., dk)
        Class indices (integer dtype); rechunked to the log-probabilities'
        chunks.
    weight : array_like of shape (C,), default=None
        A weight per class, in memory (numpy).
    ignore_index : int, default=-100
    reduction : {'mean', 'sum', 'none'}, default='mean'
        As for :func:`~crossentropy_ref.nll_loss`.
    split_every : int or dict, default=None
        As for :func:`cross_entropy`.

    Returns
    -------
    dask array of float64
        Lazy, as for :func:`cross_entropy`.

    Raises
    ------
    TypeError, ValueError
        As for :func:`cross_entropy`.

    See Also
    --------
    crossentropy_ref.nll_loss : The in-memory function.
    cross_entropy : From logits.

    Notes
    -----
    The products :math:`w_y x_y` are formed exactly and summed exactly
    chunk by chunk, so no second pass is ever needed. *Differences from
    PyTorch*: those of :func:`~crossentropy_ref.nll_loss`, and `split_every`.

    Examples
    --------
    >>> import dask.array as da
    >>> import crossentropy_ref.dask as ced
    >>> x = da.log(da.full((6, 3), 1 / 3, chunks=(2, 3)))
    >>> y = da.zeros(6, dtype=int, chunks=3)
    >>> loss = ced.nll_loss(x, y, reduction="sum")
    >>> print(float(loss.compute()))  # 6 log 3
    6.591673732008658
    """
    reduction = v.check_reduction(reduction)
    ignore_index = v.check_int(ignore_index, "ignore_index")
    x = _as_dask(log_probs, "log_probs")
    v.check_dask_array(x, "log_probs", what="real numbers (integer or floating point)", kinds="iuf")
    if x.ndim == 0:
        raise ValueError("`log_probs` must have at least 1 dimension(s); got shape ()")
    c = _check_classes(x, "log_probs")
    w = _in_memory_weight(weight, c)
    t = _as_dask(target, "target")
    v.check_index_target_shape(t.shape, x.shape, logits_name="log_probs")
    v.check_dask_array(t, "target", what="integer class indices", kinds="iu")
    opts = _options("nll_loss", x, w, ignore_index, reduction, 0.0, False)
    return _graph(x, t, opts, split_every, "log_probs")
