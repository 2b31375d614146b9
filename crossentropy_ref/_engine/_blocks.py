"""Walking a (N, C, S) array in cache-sized blocks.

The multi-class losses view their logits as ``(N, C, S)``: N samples, C
classes and S spatial positions (S = 1 without spatial axes). A block is
``z[n0:n1, :, s0:s1]``, always holding whole class slices, so every
reduction over classes finishes inside one block. Each block's temporaries
are a few arrays of at most ``BLOCK_ELEMENTS`` float64, so the extra memory
stays constant however large the input is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# 2**16 float64 = 512 KiB per temporary: small enough for the L2 cache.
BLOCK_ELEMENTS = 1 << 16

# numpy (and the compiled kernels) release the GIL inside their loops, so blocks run on
# several cores: one thread per core, unless CROSSENTROPY_REF_THREADS or
# crossentropy_ref.configure(threads=...) says otherwise. The variable is read at the
# first call, not at import, so that a bad value is an error there, with its name.
_SETTINGS: dict = {"threads": None}


def thread_count() -> int:
    """The number of threads blocks run on (the configured one, or one per core)."""
    n = _SETTINGS["threads"]
    if n is None:
        n = _SETTINGS["threads"] = _threads_from_environment()
    return n


def _threads_from_environment() -> int:
    raw = os.environ.get("CROSSENTROPY_REF_THREADS", "").strip()
    if raw in ("", "0"):
        return os.cpu_count() or 1
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 1:
        raise ValueError(
            "CROSSENTROPY_REF_THREADS must be a positive integer (or 0 or unset: one thread per core); "
            f"got {raw!r}"
        )
    return n


def set_threads(n: int | None) -> None:
    """Use `n` threads (None: one per core, as when the variable is unset or 0)."""
    global _pool
    _SETTINGS["threads"] = (os.cpu_count() or 1) if n is None else n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def scratch(shape: tuple[int, ...], slot: int = 0, dtype=np.float64) -> np.ndarray:
    """A work array of `shape` and `dtype`, reused by the calling thread across blocks.

    Reusing it avoids allocating and first-touching fresh pages for every
    block (a fresh 256 KiB array costs about 3 ns per element in page faults
    here, more than most operations on it). It never escapes: callers reduce
    it or copy out of it. Each (`slot`, `dtype`) is a distinct buffer.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (slot, dtype)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(max(size, BLOCK_ELEMENTS), dtype=dtype)
    return buf[:size].reshape(shape)


def workspace(shape: tuple[int, ...]):
    """``ws(slot, dtype=float64)``: the calling thread's `scratch` arrays of `shape`."""

    def ws(slot: int, dtype=np.float64) -> np.ndarray:
        return scratch(shape, slot, dtype)

    return ws


def as_ncs(z: np.ndarray) -> np.ndarray:
    """View (C,), (N, C) or (N, C, d1, ..., dk) as (N, C, S)."""
    if z.ndim == 1:
        return z.reshape(1, z.shape[0], 1)
    s = int(np.prod(z.shape[2:], dtype=np.int64))  # not -1: reshape cannot infer it for an empty batch
    return z.reshape(z.shape[0], z.shape[1], s)


def iter_blocks(n: int, c: int, s: int, elements: int | None = None) -> Iterator[tuple[slice, slice]]:
    """Yield ``(rows, positions)`` slices that tile ``range(n) x range(s)``.

    A block holds about `elements` logits (default: BLOCK_ELEMENTS).
    """
    per_row = max(c * s, 1)
    size = BLOCK_ELEMENTS if elements is None else elements
    if per_row <= size:
        step = max(1, size // per_row)
        for n0 in range(0, n, step):
            yield slice(n0, min(n0 + step, n)), slice(None)
    else:
        step = max(1, size // max(c, 1))
        for n0 in range(n):
            for s0 in range(0, s, step):
                yield slice(n0, n0 + 1), slice(s0, min(s0 + step, s))


def positions_shape(logits_shape: tuple[int, ...]) -> tuple[int, int]:
    """(N, S) for logits of `logits_shape`."""
    if len(logits_shape) == 1:
        return 1, 1
    return logits_shape[0], int(np.prod(logits_shape[2:], dtype=np.int64))


def run_blocks(
    fn: Callable[[slice, slice], None], blocks: Iterable[tuple[slice, slice]], *, parallel: bool = True
) -> None:
    """Call ``fn(rows, cols)`` for every block; blocks must write to disjoint outputs.

    Small inputs (a few blocks), and every input unless `parallel`, run in
    the calling thread; larger ones are spread over a thread pool, each
    worker taking every k-th block. The
    result does not depend on the number of threads: each block is computed
    the same way and written to its own slice.
    """
    blocks = list(blocks)
    k = min(thread_count(), len(blocks) // 4) if parallel else 1
    if k <= 1:
        for rows, cols in blocks:
            fn(rows, cols)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=thread_count(), thread_name_prefix="crossentropy_ref")

    def work(start: int) -> None:
        for rows, cols in blocks[start::k]:
            fn(rows, cols)

    for f in [_pool.submit(work, i) for i in range(k)]:
        f.result()
