"""Tests for crossentropy_ref.dask: the losses of dask arrays, the same bits as in memory.

Expected values: the in-memory functions (crossentropy_ref.cross_entropy and
nll_loss) on the same arrays, compared bit for bit (the float64 bytes, so
-0.0, NaN and infinities count too). Those are tested against torch 2.13.0
and mpmath in tests/test_losses.py and tests/test_accuracy.py.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpmath import mp

import crossentropy_ref as ce
import crossentropy_ref.dask as ced
from crossentropy_ref._engine import _exactsum as xs
from crossentropy_ref._engine import tier_counts
from crossentropy_ref._engine._chunks import chunk_totals
from crossentropy_ref._losses import _check_inputs

from _helpers import ENGINES, using_engine

SCHEDULERS = ("synchronous", "threads")
REDUCTIONS = ("none", "mean", "sum")


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------
# Problems and chunkings
# ---------------------------------------------------------------------------


@st.composite
def partitions(draw, n: int) -> tuple[int, ...]:
    """Chunk sizes that add up to n (one empty chunk for n = 0)."""
    if n <= 1:
        return (n,)
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=min(n - 1, 6)))))
    bounds = [0, *cuts, n]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


@st.composite
def weights(draw, c: int, rng: np.random.Generator):
    kind = draw(st.sampled_from(("none", "positive", "mixed-sign", "wide")))
    if kind == "none":
        return None
    if kind == "positive":
        return rng.uniform(0, 3, c)
    if kind == "mixed-sign":  # negative class weights: the losses can cancel
        return rng.uniform(-1, 2, c)
    return np.ldexp(rng.uniform(0.5, 1, c), rng.integers(-600, 600, c))  # weights spanning 2**1200


@st.composite
def problems(draw, loss: str = "cross_entropy"):
    """``(logits, target, kwargs)`` drawn from a seed: random values of several scales, with
    confident and -inf logits, every target kind and option of `loss`."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ndim = draw(st.sampled_from((1, 2, 2, 3, 4)))
    c = draw(st.integers(1, 6))
    shape = (c,) if ndim == 1 else (draw(st.integers(0, 40)), c, *(draw(st.integers(1, 4)) for _ in range(ndim - 2)))
    z = rng.standard_normal(shape) * draw(st.sampled_from((1.0, 30.0, 800.0)))
    if z.size and draw(st.booleans()):
        z.flat[rng.integers(0, z.size, 1 + z.size // 8)] += 60.0  # confident predictions: losses near e**-60
    if z.size and draw(st.booleans()):
        z.flat[rng.integers(0, z.size, 1 + z.size // 20)] = -np.inf
    if draw(st.booleans()):
        z = z.astype(np.float32)
    kw = {"reduction": draw(st.sampled_from(REDUCTIONS)), "weight": draw(weights(c, rng))}
    prob = loss == "cross_entropy" and draw(st.booleans())
    tshape = shape if prob else (() if ndim == 1 else (shape[0], *shape[2:]))
    if prob:
        target = rng.dirichlet(np.ones(c), size=tshape[:1] + tshape[2:]) if ndim > 1 else rng.dirichlet(np.ones(c))
        target = np.moveaxis(target, -1, 1) if ndim > 1 else target
    else:
        ignore = draw(st.sampled_from((-100, 0)))
        target = rng.integers(0, c, tshape)
        target = np.where(rng.random(tshape) < 0.2, ignore, target).astype(draw(st.sampled_from((np.int64, np.int32))))
        if ignore != -100:
            kw["ignore_index"] = ignore
    if loss == "cross_entropy" and draw(st.booleans()):
        kw["label_smoothing"] = draw(st.sampled_from((0.1, 1.0)))
    return z, np.array(target), kw


@st.composite
def chunked(draw, z: np.ndarray, target: np.ndarray):
    """The logits and target as dask arrays, each in chunks of its own (the class axis whole in
    the logits; the target's chunks need not match them)."""
    if z.ndim == 1:
        return da.from_array(z, chunks=-1), da.from_array(target, chunks=-1)
    zc = tuple((z.shape[1],) if i == 1 else draw(partitions(n)) for i, n in enumerate(z.shape))
    tc = tuple(draw(partitions(n)) for n in target.shape)
    return da.from_array(z, chunks=zc), da.from_array(target, chunks=tc)


def check_same_as_in_memory(fn, in_memory, z, target, kw, data, scheduler):
    dz, dt = data.draw(chunked(z, target))
    split_every = data.draw(st.none() | st.integers(2, 5))
    expected = in_memory(z, target, **kw)
    got = fn(dz, dt, **kw, split_every=split_every)
    assert isinstance(got, da.Array)
    result = got.compute(scheduler=scheduler)
    assert same_bits(result, expected), (result, expected, dz.chunks, split_every)


# ---------------------------------------------------------------------------
# The same bits as in memory
# ---------------------------------------------------------------------------


class TestSameBitsAsInMemory:
    @pytest.mark.parametrize("scheduler", SCHEDULERS)
    @settings(max_examples=40)
    @given(problem=problems(), data=st.data())
    def test_cross_entropy(self, scheduler, problem, data):
        z, target, kw = problem
        check_same_as_in_memory(ced.cross_entropy, ce.cross_entropy, z, target, kw, data, scheduler)

    @pytest.mark.parametrize("scheduler", SCHEDULERS)
    @settings(max_examples=25)
    @given(problem=problems("nll_loss"), data=st.data())
    def test_nll_loss(self, scheduler, problem, data):
        z, target, kw = problem
        check_same_as_in_memory(ced.nll_loss, ce.nll_loss, z, target, kw, data, scheduler)

    @pytest.mark.parametrize("engine", ENGINES)
    @settings(max_examples=15)
    @given(problem=problems(), data=st.data())
    def test_each_engine(self, engine, problem, data):
        z, target, kw = problem
        with using_engine(engine):
            check_same_as_in_memory(ced.cross_entropy, ce.cross_entropy, z, target, kw, data, "synchronous")

    def test_unbatched_input_is_one_position(self):
        z, y = np.array([2.0, -1.0, 0.5]), np.array(2)
        for red in REDUCTIONS:
            got = ced.cross_entropy(da.from_array(z), da.from_array(y), reduction=red)
            assert got.shape == () and same_bits(got.compute(), ce.cross_entropy(z, y, reduction=red))

    def test_none_keeps_the_chunks_of_the_positions(self):
        z = da.zeros((10, 3, 4), chunks=(3, 3, 2))
        got = ced.cross_entropy(z, da.zeros((10, 4), dtype=int, chunks=(5, 4)), reduction="none")
        assert got.chunks == ((3, 3, 3, 1), (2, 2)) and got.dtype == np.float64

    def test_an_empty_batch(self):
        z, y = da.zeros((0, 3), chunks=(1, 3)), da.zeros(0, dtype=int)
        assert np.isnan(ced.cross_entropy(z, y).compute())  # 'mean' of nothing: NaN, as in memory and torch
        assert same_bits(ced.cross_entropy(z, y, reduction="sum").compute(), 0.0)


def mixed_sign_case(probabilities: bool = False):
    """Losses that cancel. Each position with target 0 (weight 1) has a mirror with target 1
    (weight -1) whose logits are its own with classes 0 and 1 swapped and 2..4 reversed: the
    two losses have the same size and opposite signs, but are computed in another order, so
    their first-tier values (within about 2**-100) do not cancel exactly. One more position,
    logits (40, 0, 0, 0, 0) and target 0, adds the loss log(1 + 4 e**-40), about 1.7e-17, the
    exact total. The first tier's summed error bounds are far above it, so the in-memory
    function recomputes every position in its deep tier (checked below)."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 5)) * 3
    z = np.concatenate([a, a[:, [1, 0, 4, 3, 2]], [[40.0, 0.0, 0.0, 0.0, 0.0]]])
    y = np.concatenate([np.zeros(200, int), np.ones(200, int), [0]])
    perm = rng.permutation(len(y))
    z, y = z[perm], y[perm]
    target = np.eye(5)[y] if probabilities else y
    return z, target, np.array([1.0, -1.0, 1.0, 1.0, 1.0])


class TestSecondPass:
    """When the summed bound fails, every chunk is recomputed deep: the same bits again."""

    @pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probabilities"])
    @pytest.mark.parametrize("reduction", ["sum", "mean"])
    def test_the_case_needs_the_deep_tier_in_memory(self, reduction, probabilities):
        z, target, w = mixed_sign_case(probabilities)
        with tier_counts() as counts:
            ce.cross_entropy(z, target, w, reduction=reduction)
        assert counts["deep"] == len(z)

    @pytest.mark.parametrize("scheduler", SCHEDULERS)
    @pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probabilities"])
    @settings(max_examples=10)
    @given(data=st.data())
    def test_every_chunking(self, scheduler, probabilities, data):
        z, target, w = mixed_sign_case(probabilities)
        reduction = data.draw(st.sampled_from(("sum", "mean")))
        kw = {"weight": w, "reduction": reduction}
        check_same_as_in_memory(ced.cross_entropy, ce.cross_entropy, z, target, kw, data, scheduler)

    @pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probabilities"])
    def test_the_second_pass_changes_the_bits(self, probabilities):
        """Rounded without the deep tier, the total would be another float, 7% off: the second
        pass is what makes the result, not a formality."""
        z, target, w = mixed_sign_case(probabilities)
        result = ce.cross_entropy(z, target, w, reduction="sum")
        first_tier, _ = chunk_totals(_check_inputs(z, target, w, -100, "sum", 0.0))
        assert abs(xs.to_float(first_tier) / result - 1) > 0.05
        # The exact total: the mirrored losses cancel exactly, leaving log1p(4 e**-40)
        # (mpmath at 50 digits), which the result is, rounded to nearest.
        mp.dps = 50
        assert result == float(mp.log1p(4 * mp.exp(-40)))

    def test_each_chunk_goes_deep_once(self):
        z, y, w = mixed_sign_case()
        loss = ced.cross_entropy(da.from_array(z, chunks=(50, 5)), da.from_array(y, chunks=50), w, reduction="sum")
        with tier_counts() as counts:
            loss.compute(scheduler="synchronous")
        assert counts == {"first": len(z), "deep": len(z)}

    def test_a_naive_sum_of_the_losses_drifts(self):
        z, y, w = mixed_sign_case()
        exact = ce.cross_entropy(z, y, w, reduction="sum")
        naive = float(ce.cross_entropy(z, y, w, reduction="none").sum())
        assert abs(naive - exact) > 100 * abs(exact)  # the case is one where that matters


# ---------------------------------------------------------------------------
# Lazy, and in the caller's settings
# ---------------------------------------------------------------------------


def test_nothing_is_computed_until_compute():
    def refuse(block_id=None):
        raise AssertionError("a chunk was computed while the graph was built")

    z = da.map_blocks(refuse, chunks=((4, 4), (3,)), dtype=np.float64, meta=np.empty((0, 0)))
    y = da.map_blocks(refuse, chunks=((4, 4),), dtype=np.int64, meta=np.empty((0,), dtype=np.int64))
    for red in REDUCTIONS:
        assert isinstance(ced.cross_entropy(z, y, reduction=red), da.Array)
        assert isinstance(ced.nll_loss(z, y, reduction=red), da.Array)


@pytest.mark.skipif(len(ENGINES) < 2, reason="needs both engines (numba installed)")
def test_an_engine_changed_since_the_graph_was_built_is_refused():
    z, y = da.zeros((4, 3), chunks=(2, 3)), da.zeros(4, dtype=int, chunks=2)
    with using_engine("compiled"):
        loss = ced.cross_entropy(z, y)
    with using_engine("numpy"), pytest.raises(ValueError, match=re.escape(
            "this loss was built with the 'compiled' engine, and the 'numpy' engine is in force now: the engines "
            "agree within 4 ulp, not bit for bit; build it again, or crossentropy_ref.configure(engine='compiled')")):
        loss.compute(scheduler="synchronous")


def test_the_callers_thread_setting_is_left_alone():
    old = ce.configure(threads=2)
    try:
        ced.cross_entropy(da.zeros((40, 3), chunks=(10, 3)), da.zeros(40, dtype=int)).compute(scheduler="threads")
        assert ce.configure()["threads"] == 2
    finally:
        ce.configure(**old)


# ---------------------------------------------------------------------------
# Refusals: the in-memory messages, from the metadata; values when computed
# ---------------------------------------------------------------------------

Z = da.zeros((6, 4), chunks=(3, 4))
Y = da.zeros(6, dtype=np.int64, chunks=3)


@pytest.mark.parametrize(("call", "exc", "msg"), [
    pytest.param(lambda: ced.cross_entropy(da.zeros((6, 4), chunks=(3, 2)), Y), ValueError,
                 "`logits` must hold its class axis (axis 1, 4 classes) in one chunk; got 2 chunks of sizes (2, 2) "
                 "along it: rechunk it, e.g. logits.rechunk({1: -1})", id="class-axis-chunked"),
    pytest.param(lambda: ced.cross_entropy(da.zeros((2, 100), chunks=(2, 10)), da.zeros(2, dtype=int)), ValueError,
                 "`logits` must hold its class axis (axis 1, 100 classes) in one chunk; got 10 chunks of sizes "
                 "(10, 10, 10, ..., 10) along it", id="class-axis-in-many-chunks"),
    pytest.param(lambda: ced.nll_loss(da.zeros(4, chunks=2), da.zeros((), dtype=int)), ValueError,
                 "`log_probs` must hold its class axis (axis 0, 4 classes) in one chunk", id="unbatched-chunked"),
    pytest.param(lambda: ced.cross_entropy(Z, Y, da.ones(4)), TypeError,
                 "`weight` must be an array in memory (4 class weights), not a dask array: compute it first, "
                 "weight.compute(); got a dask array of shape (4,)", id="dask-weight"),
    pytest.param(lambda: ced.cross_entropy(Z, Y, np.ones(3)), ValueError,
                 "`weight` must have shape (4,), one per class; got (3,)", id="weight-shape"),
    pytest.param(lambda: ced.cross_entropy(Z.astype(complex), Y), TypeError,
                 "`logits` must hold real numbers (integer or floating point); got a dask array of dtype complex128 "
                 "and shape (6, 4)", id="complex-logits"),
    pytest.param(lambda: ced.cross_entropy(Z, Y.astype(float)), TypeError,
                 "`target` must hold integer class indices; got a dask array of dtype float64 and shape (6,)",
                 id="float-indices"),
    pytest.param(lambda: ced.cross_entropy(Z, Z.astype(bool)), TypeError,
                 "`target` must hold class probabilities (real numbers); got a dask array of dtype bool and shape "
                 "(6, 4)", id="bool-probabilities"),
    pytest.param(lambda: ced.cross_entropy(Z, Z, ignore_index=0), ValueError,
                 "`ignore_index` must be negative (unused) with class-probability targets, as in torch; got 0",
                 id="probabilities-ignore-index"),
    pytest.param(lambda: ced.cross_entropy(Z, Y[:5]), ValueError,
                 "`target` must have shape (6,) (class indices) or (6, 4) (class probabilities) to match `logits` "
                 "of shape (6, 4); got (5,)", id="target-shape"),
    pytest.param(lambda: ced.nll_loss(Z, Z), ValueError,
                 "`target` must have shape (6,) to match `log_probs` of shape (6, 4); got (6, 4)",
                 id="nll-target-shape"),
    pytest.param(lambda: ced.cross_entropy(Z[Z[:, 0] > 0], Y), ValueError,
                 "`logits` must have known chunk sizes; got a dask array of shape (nan, 4): call "
                 "logits.compute_chunk_sizes() first", id="unknown-chunk-sizes"),
    pytest.param(lambda: ced.cross_entropy(da.ma.masked_equal(Z, 1.0), Y), TypeError,
                 "`logits` must not be a masked array", id="masked"),
    pytest.param(lambda: ced.cross_entropy(da.zeros(()), Y), ValueError,
                 "`logits` must have shape (C,), (N, C) or (N, C, d1, ..., dk); got a 0-d array", id="0-d"),
    pytest.param(lambda: ced.cross_entropy(Z, Y, reduction="avg"), ValueError,
                 "`reduction` must be one of ('none', 'mean', 'sum'); got 'avg'", id="reduction"),
    pytest.param(lambda: ced.cross_entropy(Z, Y, label_smoothing=2.0), ValueError,
                 "`label_smoothing` must be in [0, 1]; got 2.0", id="smoothing"),
    pytest.param(lambda: ced.cross_entropy(Z, Y, None, -100, "sum"), TypeError,
                 "cross_entropy() takes `logits`, `target`, `weight` positionally and its options", id="positional"),
])
def test_refused_when_the_graph_is_built(call, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        call()


def test_values_are_checked_when_computed_with_the_whole_arrays_position():
    y = np.zeros((9, 2), dtype=np.int64)
    y[7, 1] = 4
    loss = ced.cross_entropy(da.zeros((9, 4, 2), chunks=(3, 4, 1)), da.from_array(y, chunks=(2, 1)))
    with pytest.raises(ValueError, match=re.escape(
            "`target` must hold class indices in [0, 4) or `ignore_index`=-100; got 4 at position (7, 1)")):
        loss.compute(scheduler="synchronous")
    p = np.full((9, 4), 0.25)
    p[8, 2] = -0.5
    loss = ced.cross_entropy(da.zeros((9, 4), chunks=(4, 4)), da.from_array(p, chunks=(3, 2)), reduction="none")
    with pytest.raises(ValueError, match=re.escape(
            "`target` must hold non-negative class probabilities; got -0.5 at position (8, 2)")):
        loss.compute(scheduler="synchronous")
    loss = ced.nll_loss(da.zeros(3), da.from_array(np.array(5)))
    with pytest.raises(ValueError, match=re.escape(
            "`target` must hold class indices in [0, 3) or `ignore_index`=-100; got 5 at position ()")):
        loss.compute(scheduler="synchronous")


def test_the_in_memory_functions_refuse_dask_arrays():
    with pytest.raises(TypeError, match=re.escape("`logits` is a dask array, which would be computed whole into "
                                                  "memory here")):
        ce.cross_entropy(Z, np.zeros(6, dtype=int))


def test_importing_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    monkeypatch.delitem(sys.modules, "crossentropy_ref.dask")
    with pytest.raises(ImportError, match=re.escape(
            "crossentropy_ref.dask needs dask: install the `dask` extra, pip install 'crossentropy_ref[dask]'")):
        importlib.import_module("crossentropy_ref.dask")


# ---------------------------------------------------------------------------
# Other processes: the processes scheduler and a dask.distributed cluster
# ---------------------------------------------------------------------------


def _cases():
    """A few problems, and their losses in memory, for the schedulers that start processes."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(300, 5, 2)) * 10
    y = rng.integers(0, 5, (300, 2))
    w = rng.uniform(0, 2, 5)
    mz, my, mw = mixed_sign_case()
    dz, dy = da.from_array(z, chunks=(70, 5, 1)), da.from_array(y, chunks=(50, 2))
    dmz, dmy = da.from_array(mz, chunks=(100, 5)), da.from_array(my, chunks=100)
    return [
        (ced.cross_entropy(dz, dy, w, label_smoothing=0.1), ce.cross_entropy(z, y, w, label_smoothing=0.1)),
        (ced.cross_entropy(dz, dy, reduction="none"), ce.cross_entropy(z, y, reduction="none")),
        (ced.nll_loss(dz, dy, w, reduction="sum"), ce.nll_loss(z, y, w, reduction="sum")),
        (ced.cross_entropy(dmz, dmy, mw, reduction="sum", split_every=2), ce.cross_entropy(mz, my, mw, reduction="sum")),
    ]


@pytest.mark.slow
def test_processes_scheduler():
    cases = _cases()
    results = dask.compute(*(lazy for lazy, _ in cases), scheduler="processes", num_workers=2)
    for got, (_, expected) in zip(results, cases):
        assert same_bits(got, expected)


# The cluster test: 80,000,000 float64 logits (640 MB) made chunk by chunk on two workers of
# 300 MB each, so that they never exist whole. Each chunk is 250 rows (5 MB).
N, C, ROWS = 32_000, 2_500, 250


def _generators():
    """The chunk makers, as local functions: dask sends them to the workers by value, so that
    the workers need not import this module (and torch, through _helpers)."""

    def logits_block(block_id=None):
        return np.random.default_rng([21, block_id[0]]).standard_normal((ROWS, C)) * 4

    def target_block(block_id=None):
        return np.random.default_rng([22, block_id[0]]).integers(0, C, ROWS)

    return logits_block, target_block


@pytest.mark.slow
def test_local_cluster_smaller_than_the_logits():
    distributed = pytest.importorskip("distributed")
    logits_block, target_block = _generators()
    blocks = ((ROWS,) * (N // ROWS),)
    z = da.map_blocks(logits_block, chunks=blocks + ((C,),), dtype=np.float64, meta=np.empty((0, 0)))
    y = da.map_blocks(target_block, chunks=blocks, dtype=np.int64, meta=np.empty((0,), dtype=np.int64))
    limit = 300e6
    assert z.nbytes > 2 * limit
    loss = ced.cross_entropy(z, y, reduction="sum")
    cases = _cases()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=limit, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        got = client.compute(loss, sync=True)
        small = client.compute([lazy for lazy, _ in cases], sync=True)
        # No worker was restarted for lack of memory, and each ran the package in one thread,
        # with the caller's engine.
        assert client.run(os.getpid) == pids
        assert set(client.run(lambda: tuple(ce.configure().values())).values()) == {(1, ce.configure()["engine"])}
    for value, (_, expected) in zip(small, cases):  # the last needs the second pass, through the cluster
        assert same_bits(value, expected)
    # The same graph in this process, chunk by chunk: the same bits. (The in-memory function
    # would need the logits whole; the tests above hold the chunked result to it.)
    assert same_bits(got, loss.compute(scheduler="synchronous"))
    # An independent check of the value: every position's loss in float64 by logsumexp,
    # summed per chunk by math.fsum (good to about 1e-15 of each loss; rtol 1e-12 here).
    approx = 0.0
    for i in range(N // ROWS):
        zb, yb = logits_block((i, 0)), target_block((i,))
        m = zb.max(axis=1)
        approx += math.fsum(m + np.log(np.exp(zb - m[:, None]).sum(axis=1)) - zb[np.arange(ROWS), yb])
    assert got == pytest.approx(approx, rel=1e-12)
