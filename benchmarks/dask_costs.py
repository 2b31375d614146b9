"""What crossentropy_ref.dask's exactness and its tasks cost, on this machine (one thread).

Run from the repository root (about a minute)::

    .venv/bin/python benchmarks/dask_costs.py

Prints, each the median of several repetitions:

* the exact merge: per million positions, the long accumulation of the
  positions' values and bounds (given the blocks' values), block by block as
  `_reduce.loss` does it and gathered as `_engine._chunks.chunk_totals` does,
  at 10 classes (4096 positions per block) and at 32,000 classes (32
  positions per block, 1024 in the chunk);
* merging partial totals (`merge_all` of two chunks' totals), per merge;
* a chunk's cost per logit at 32,000 classes: 'sum' in the first tier, and
  every position in the deep tier (the rare second pass);
* the task overhead: a 'sum' over many small chunks against one chunk of the
  same logits, on the synchronous scheduler, per extra chunk;
* the processes scheduler against the threaded one on the same logits.

Nothing is asserted; the book's page (docs/howto/larger-than-memory.md) measures
its own figures in an executed cell.
"""

from __future__ import annotations

import statistics
import time

import dask
import dask.array as da
import numpy as np

import crossentropy_ref as ce
import crossentropy_ref.dask as ced
from crossentropy_ref._engine import _exactsum as xs
from crossentropy_ref._engine._chunks import GATHER, _blocks_of, chunk_deep_total, chunk_totals
from crossentropy_ref._engine._reduce import _block_values
from crossentropy_ref._losses import _check_inputs


def median_time(fn, reps: int = 5) -> float:
    fn()  # warm-up (and the compiled kernels' first call)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def merge_cost(c: int, positions: int) -> tuple[float, float]:
    """Seconds per million positions spent in the exact sums of a chunk of `c` classes: block
    by block (as `_reduce.loss` sums), and gathered (as `_engine._chunks.chunk_totals` sums)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((positions, c))
    y = rng.integers(0, c, positions)
    pb = _check_inputs(z, y, None, -100, "sum", 0.0)
    blocks = [_block_values(pb, rows, cols)[:4] for rows, cols in _blocks_of(pb)]

    def per_block():
        return [(xs.exact_total(np.concatenate([hi, lo], axis=1), ex), xs.exact_total(bound, ex))
                for hi, lo, ex, bound in blocks]

    def gathered():
        hi, lo, bound = (np.concatenate([b[i].ravel() for b in blocks]) for i in (0, 1, 3))
        return [(xs.exact_total(np.concatenate([hi[i : i + GATHER], lo[i : i + GATHER]]), 0),
                 xs.exact_total(bound[i : i + GATHER], 0)) for i in range(0, positions, GATHER)]

    return tuple(median_time(f) / positions * 1e6 for f in (per_block, gathered))


def main() -> None:
    ce.configure(threads=1)
    print(f"engine: {ce.configure()['engine']}, one thread")
    for c, positions in ((10, 1 << 16), (32_000, 1024)):
        blockwise, gathered = merge_cost(c, positions)
        print(f"exact merge, {c} classes, per million positions: {blockwise * 1e3:.1f} ms block by block, "
              f"{gathered * 1e3:.1f} ms gathered")

    rng = np.random.default_rng(1)
    a = chunk_totals(_check_inputs(rng.standard_normal((4096, 10)), rng.integers(0, 10, 4096), None, -100, "sum", 0.0))
    b = chunk_totals(_check_inputs(rng.standard_normal((4096, 10)), rng.integers(0, 10, 4096), None, -100, "sum", 0.0))
    per_merge = median_time(lambda: [xs.merge_all([a[0], b[0]]) for _ in range(1000)]) / 1000
    print(f"merge_all of two chunks' totals: {per_merge * 1e6:.1f} us")

    c = 32_000
    z = rng.standard_normal((64, c)) * 4
    y = rng.integers(0, c, 64)
    pb = _check_inputs(z, y, None, -100, "sum", 0.0)
    first = median_time(lambda: chunk_totals(pb)) / z.size
    deep_pb = _check_inputs(z[:4], y[:4], None, -100, "sum", 0.0)
    deep = median_time(lambda: chunk_deep_total(deep_pb), reps=3) / (4 * c)
    print(f"chunk of 32,000 classes: first tier {first * 1e9:.1f} ns per logit, deep tier {deep * 1e9:.0f} ns per logit")

    z = rng.standard_normal((20_000, 50))
    y = rng.integers(0, 50, 20_000)
    one = ced.cross_entropy(da.from_array(z, chunks=(20_000, 50)), da.from_array(y, chunks=20_000), reduction="sum")
    many = ced.cross_entropy(da.from_array(z, chunks=(50, 50)), da.from_array(y, chunks=50), reduction="sum")
    t_one = median_time(lambda: one.compute(scheduler="synchronous"))
    t_many = median_time(lambda: many.compute(scheduler="synchronous"))
    print(f"task overhead (synchronous scheduler): {(t_many - t_one) / (400 - 1) * 1e3:.2f} ms per chunk")

    z = rng.standard_normal((40_000, 500))
    y = rng.integers(0, 500, 40_000)
    loss = ced.cross_entropy(da.from_array(z, chunks=(2_000, 500)), da.from_array(y, chunks=2_000), reduction="sum")
    t_threads = median_time(lambda: loss.compute(scheduler="threads"), reps=3)
    t_processes = median_time(lambda: dask.compute(loss, scheduler="processes", num_workers=2), reps=3)
    print(f"160 MB of logits in 20 chunks: threads {t_threads:.2f} s, processes {t_processes:.2f} s "
          "(the processes scheduler pickles every chunk to a worker and starts its pool per call)")


if __name__ == "__main__":
    main()
