"""Run-time settings: threads and engine (``configure``)."""

from __future__ import annotations

import numbers

from ._engine import _blocks, _jit


def configure(*, threads: int | None = None, engine: str | None = None) -> dict:
    """Set how many threads the functions use and which engine computes, for this process.

    Both settings start from environment variables, read at the first call:
    ``CROSSENTROPY_REF_THREADS`` (a positive integer; 0 or unset: one thread
    per core) and ``CROSSENTROPY_REF_ENGINE`` (``'auto'``, ``'compiled'`` or
    ``'numpy'``). A bad value is a ``ValueError`` at the first call that
    computes, naming the variable.

    Parameters
    ----------
    threads : int, optional
        Threads the blocks of an input run on. ``1`` runs everything in the
        calling thread (for example inside dask workers, whose own threads
        already fill the cores); ``0``: one per core. Left as it is when not
        given (None).
    engine : {'auto', 'compiled', 'numpy'}, optional
        ``'compiled'``: the numba kernels (``pip install
        crossentropy_ref[fast]``); ``'numpy'``: numpy alone; ``'auto'``: the
        compiled kernels where numba is installed. Every engine returns
        results within 4 ulp of the exact values; they differ in speed.
        Left as it is when not given.

    Returns
    -------
    dict
        The settings before the call, ``{'threads': int, 'engine': str}``, so
        that they can be restored with ``configure(**old)``.

    Raises
    ------
    TypeError
        `threads` not an integer; `engine` not a string.
    ValueError
        A negative `threads`; an unknown `engine`, or ``'compiled'`` without
        numba.

    Examples
    --------
    >>> import crossentropy_ref as ce
    >>> old = ce.configure(threads=1)
    >>> ce.configure()["threads"]
    1
    >>> _ = ce.configure(**old)
    """
    old = {"threads": _blocks.thread_count(), "engine": _jit.engine()}
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
            raise TypeError(f"`threads` must be a non-negative integer; got {type(threads).__name__} {threads!r}")
        if threads < 0:
            raise ValueError(f"`threads` must be 0 (one per core) or more; got {threads!r}")
        _blocks.set_threads(None if threads == 0 else int(threads))
    if engine is not None:
        if not isinstance(engine, str):
            raise TypeError(f"`engine` must be one of {_jit.ENGINES}; got {type(engine).__name__} {engine!r}")
        if engine not in _jit.ENGINES:
            raise ValueError(f"`engine` must be one of {_jit.ENGINES}; got {engine!r}")
        _jit.set_engine(engine)
    return old
