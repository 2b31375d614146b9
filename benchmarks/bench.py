"""Time and measure crossentropy_ref against torch.nn.functional, on the same float64 inputs.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py             # the benchmark of record (a few minutes)
    .venv/bin/python benchmarks/bench.py --quick     # small shapes, a few seconds, no JSON
    .venv/bin/python benchmarks/bench.py --reps 9 --out /tmp/results.json

What is measured, for every case (a shape, a target kind and the loss options):

* time per call, median over ``--reps`` repetitions after one warm-up call.
  The functions are interleaved (ours, torch, torch on one thread, the
  exp floor, then again), so that a slow spell of the machine hits all of
  them alike. A call that takes less than ``min_sample`` seconds is repeated
  within a sample and the sample divided by the count, as ``timeit`` does.
  "torch" uses torch's default intra-op thread count; "torch 1 thread" runs
  under ``torch.set_num_threads(1)``;
* the floor: one ``np.exp`` over as many elements as the logits hold
  (numpy runs it on one thread), into a preallocated array. Every exact
  method has to compute those N*C exponentials;
* peak extra memory beyond the inputs, as a percentage of the logits' size:
  with ``tracemalloc`` for crossentropy_ref (numpy reports its allocations to
  it; torch does not), and as the peak resident set size (VmHWM) over the
  resident set size before the call, in a fresh subprocess for each library
  (``bench.py --memory-child ours|torch CASE``). The child resets VmHWM to
  the current RSS (``/proc/self/clear_refs``) just before the call;
* agreement: the relative difference of the two losses (for the gradient
  cases, the largest difference of the gradients relative to their largest
  entry).

The results go to a table on stdout and to a JSON file (benchmarks/results.json
by default), with the machine they ran on. The targets at the end are
reported as PASS or FAIL; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import crossentropy_ref as ce
from crossentropy_ref._engine import _jit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results.json"
SCHEMA = 2
MiB = 1 << 20
# A case is "large" (subject to the memory target) from this logits size on.
LARGE_BYTES = 32 * MiB
LOGIT_SCALE = 2.0  # standard deviation of the random logits
BUSY_WARNING = 0.1  # warn when other processes kept more than this share of the CPUs busy

# The targets of issue 16, measured and reported, never asserted.
TARGET_LM_RATIO = 0.5  # LM head, index targets: ours / torch (default threads)
TARGET_ANY_RATIO = 1.5  # every case: ours / torch (default threads)
TARGET_SOFT_GRAD_RATIO = 2.0  # gradients of probability targets and of label smoothing
TARGET_EXP_RATIO = 1.5  # LM head, index targets: ours / single-thread exp floor
TARGET_WORST_NS_PER_LOGIT = 500.0  # the worst input (self-distillation): ns per logit
TARGET_MEMORY_PCT = 10.0  # large cases: peak extra memory, % of the logits
TARGET_GRAD_MEMORY_PCT = 110.0  # per-class outputs (gradient, softmax): the output (100 %) and 10 % more
# Issue 20: linear_cross_entropy against torch's float64 reference path (F.linear, then F.cross_entropy).
TARGET_LINEAR_RATIO = 2.0


@dataclass(frozen=True)
class Case:
    """One benchmark case: the logits' shape, the target kind and the loss options."""

    name: str
    label: str
    shape: tuple[int, ...]
    target: str = "index"  # "index", "probabilities" or "self" (torch.softmax of the logits)
    grad: bool = False  # time cross_entropy_grad against autograd instead of the loss
    ignore_fraction: float = 0.0  # fraction of index targets set to ignore_index
    options: dict = field(default_factory=dict)  # keyword options, passed to both libraries
    family: str = ""  # "softmax" or "log_softmax": that function along axis 1, no target
    in_features: int = 0  # > 0: linear_cross_entropy of x (N, in_features) and W (C, in_features)

    @property
    def function(self) -> str:
        if self.in_features:
            return "linear_cross_entropy"
        return self.family or ("cross_entropy_grad" if self.grad else "cross_entropy")

    @property
    def per_class_output(self) -> bool:
        return self.grad or bool(self.family)

    @property
    def soft_gradient(self) -> bool:
        return self.grad and (self.target != "index" or bool(self.options.get("label_smoothing")))

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def logits_bytes(self) -> int:
        return 8 * self.elements

    @property
    def large(self) -> bool:
        return self.logits_bytes >= LARGE_BYTES


_SEG_OPTIONS = {"ignore_index": 255, "label_smoothing": 0.1}

FULL_CASES: tuple[Case, ...] = (
    Case("lm-head", "language-model head, index targets", (2048, 32000)),
    Case("lm-head-prob", "language-model head, probability targets", (2048, 32000), target="probabilities"),
    Case("small-class", "many samples, 10 classes", (65536, 10)),
    Case("segmentation", "segmentation, index targets", (4, 21, 256, 256)),
    Case(
        "segmentation-ignore-smooth",
        "segmentation, 10 % ignored (255), label smoothing 0.1",
        (4, 21, 256, 256),
        ignore_fraction=0.1,
        options=_SEG_OPTIONS,
    ),
    Case("lm-head-grad", "gradient: language-model head, index targets", (2048, 32000), grad=True),
    Case("segmentation-grad", "gradient: segmentation, index targets", (4, 21, 256, 256), grad=True),
    # Soft targets and label smoothing take the gradient's double-double tier (issue 9):
    # these two cases measure its cost.
    Case(
        "lm-rows-grad-smooth",
        "gradient: 256 language-model rows, label smoothing 0.1",
        (256, 32000),
        grad=True,
        options={"label_smoothing": 0.1},
    ),
    Case(
        "small-class-grad-prob",
        "gradient: many samples, 10 classes, probability targets",
        (65536, 10),
        target="probabilities",
        grad=True,
    ),
    # Issue 16: the worst input (every entry cancels, kappa ~ 2**53: the triple-double
    # tier for every position), and the softmax family's memory.
    Case(
        "self-distillation-grad",
        "gradient: 256 language-model rows, the target torch.softmax(logits)",
        (256, 32000),
        target="self",
        grad=True,
    ),
    Case("lm-head-softmax", "softmax of the language-model head", (2048, 32000), family="softmax"),
    Case("lm-head-log-softmax", "log_softmax of the language-model head", (2048, 32000), family="log_softmax"),
    # Issue 20: the LM head from its hidden states, never forming the logits: the issue's shape,
    # N = 4096 tokens, in_features 1024, C = 32000 (torch's reference path holds 2 GB of
    # float64 logits and log-probabilities: it fits). "torch" is torch's float64 reference path,
    # F.linear then F.cross_entropy; torch's chunked path, F.linear_cross_entropy with
    # LinearCrossEntropyOptions(), is timed too.
    Case("lm-head-linear", "language-model head from hidden states (linear_cross_entropy)", (4096, 32000),
         in_features=1024),
)

# The same cases on small shapes, for the book's build-time run (seconds, not minutes).
_QUICK_SHAPES = {
    (4096, 32000): (256, 8000),
    (2048, 32000): (256, 8000),
    (256, 32000): (32, 8000),
    (65536, 10): (8192, 10),
    (4, 21, 256, 256): (2, 21, 64, 64),
}
_QUICK_SHAPES_BY_NAME = {"self-distillation-grad": (8, 8000)}
_QUICK_IN_FEATURES = {1024: 256}
QUICK_CASES: tuple[Case, ...] = tuple(
    replace(c, shape=_QUICK_SHAPES_BY_NAME.get(c.name, _QUICK_SHAPES.get(c.shape)),
            in_features=_QUICK_IN_FEATURES.get(c.in_features, c.in_features))
    for c in FULL_CASES
)

FULL_SETTINGS = {"reps": 7, "min_sample": 0.1}
NUMPY_REPS = 3  # repetitions of the numpy engine (timed after the others)
QUICK_SETTINGS = {"reps": 3, "min_sample": 0.02}


def find_case(name: str, quick: bool = False) -> Case:
    for case in QUICK_CASES if quick else FULL_CASES:
        if case.name == name:
            return case
    raise ValueError(f"unknown case {name!r}")


# --- inputs ------------------------------------------------------------------


def make_inputs(case: Case) -> tuple[np.ndarray, np.ndarray, dict]:
    """The float64 logits, the target and the keyword options of `case` (deterministic).

    For a linear case the "logits" are the pair ``(x, W)``: hidden states N(0, 1) and a
    weight N(0, 1/in_features), so that the logits are of unit scale, as in an LM head.
    """
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    if case.in_features:
        n, c = case.shape
        x = rng.standard_normal((n, case.in_features))
        w = rng.standard_normal((c, case.in_features)) / math.sqrt(case.in_features)
        t = rng.integers(0, c, size=n, dtype=np.int64)
        return (x, w), t, dict(case.options)
    z = rng.standard_normal(case.shape)
    z *= LOGIT_SCALE
    c = case.shape[1]
    if case.family:
        t = np.zeros(0)
    elif case.target == "self":
        t = torch.softmax(torch.from_numpy(z), 1).numpy()
    elif case.target == "probabilities":
        t = rng.random(case.shape)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, c, size=(case.shape[0], *case.shape[2:]), dtype=np.int64)
        if case.ignore_fraction:
            t[rng.random(t.shape) < case.ignore_fraction] = case.options["ignore_index"]
    return z, t, dict(case.options)


def _warmup_slice(z: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous copies of the first samples, about 2**20 logits: enough to start every thread pool."""
    if isinstance(z, tuple):  # a linear case: (x, W); a few rows of x
        return (np.ascontiguousarray(z[0][:8]), z[1]), np.ascontiguousarray(t[:8])
    per_sample = math.prod(z.shape[1:])
    k = max(1, min(z.shape[0], (1 << 20) // max(per_sample, 1)))
    return np.ascontiguousarray(z[:k]), np.ascontiguousarray(t[:k])


def make_functions(case: Case, z: np.ndarray, t: np.ndarray, kw: dict) -> dict[str, Callable[[], object]]:
    """``{"ours": ..., "torch": ...}``: zero-argument calls on the same memory.

    The loss cases return the loss (a float64 scalar for ours, a 0-d tensor
    for torch); the gradient cases return the gradient (an ndarray for ours,
    the leaf's ``.grad`` tensor for torch).
    """
    tt = torch.from_numpy(t)
    if case.in_features:
        x, w = z
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        options = torch.nn.LinearCrossEntropyOptions()

        def ours_linear():
            return ce.linear_cross_entropy(x, w, t, **kw)

        def torch_reference():
            return F.cross_entropy(F.linear(xt, wt), tt, **kw)

        def torch_chunked():
            return F.linear_cross_entropy(xt, wt, tt, options=options, **kw)

        return {"ours": ours_linear, "torch": torch_reference, "torch_chunked": torch_chunked}
    zt = torch.from_numpy(z)  # shares memory with z: no copy
    if case.family:
        ours_fn, torch_fn = getattr(ce, case.family), getattr(torch, case.family)

        def ours_family():
            return ours_fn(z, axis=1)

        def torch_family():
            return torch_fn(zt, 1)

        return {"ours": ours_family, "torch": torch_family}
    if not case.grad:

        def ours():
            return ce.cross_entropy(z, t, **kw)

        def theirs():
            return F.cross_entropy(zt, tt, **kw)

        return {"ours": ours, "torch": theirs}

    leaf = zt.requires_grad_(True)

    def ours_grad():
        return ce.cross_entropy_grad(z, t, **kw)

    def torch_grad():
        leaf.grad = None  # a fresh gradient each call, as ours allocates its output
        F.cross_entropy(leaf, tt, **kw).backward()
        return leaf.grad

    return {"ours": ours_grad, "torch": torch_grad}


# --- timing ------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on `n` intra-op threads (None: leave the default)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sample(fn: Callable[[], object], number: int) -> float:
    """Seconds per call over `number` back-to-back calls, with the garbage collector off."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    finally:
        gc.enable()


def time_interleaved(
    fns: dict[str, tuple[Callable[[], object], int | None]], reps: int, min_sample: float
) -> dict[str, dict]:
    """Time each ``name: (fn, torch_threads)`` `reps` times, interleaved, after one warm-up call each.

    Returns, per name, the median, minimum and all samples (seconds per call)
    and the number of calls per sample.
    """
    gc.collect()  # once: a full collection takes about 0.1 s once torch is imported
    number = {}
    for name, (fn, threads) in fns.items():
        with torch_threads(threads):
            first = _sample(fn, 1)  # the warm-up call, also used to calibrate
        number[name] = max(1, math.ceil(min_sample / max(first, 1e-9))) if first < min_sample else 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, (fn, threads) in fns.items():
            with torch_threads(threads):
                samples[name].append(_sample(fn, number[name]))
    return {
        name: {
            "median_s": float(np.median(s)),
            "min_s": float(np.min(s)),
            "samples_s": [float(x) for x in s],
            "calls_per_sample": number[name],
        }
        for name, s in samples.items()
    }


# --- agreement ---------------------------------------------------------------


def agreement(case: Case, fns: dict[str, Callable[[], object]]) -> dict:
    """How far ours is from torch on this case (both computed in float64)."""
    a, b = fns["ours"](), fns["torch"]()
    if not case.per_class_output:
        ours, theirs = float(a), float(b)
        return {
            "loss_ours": ours,
            "loss_torch": theirs,
            "rel_diff": abs(ours - theirs) / abs(theirs) if theirs else abs(ours - theirs),
            "finite": bool(math.isfinite(ours) and math.isfinite(theirs)),
        }
    g = b.detach().numpy()
    finite = np.isfinite(g)
    scale = float(np.max(np.abs(g[finite]))) if finite.any() else 0.0
    diff = float(np.max(np.abs(np.where(finite, a - g, 0.0))))
    return {
        "grad_max_abs": scale,
        "max_abs_diff": diff,
        "rel_diff": diff / scale if scale else diff,
        "finite": bool(np.isfinite(a).all() and np.isfinite(g).all()),
    }


# --- memory ------------------------------------------------------------------


def tracemalloc_peak(fn: Callable[[], object]) -> int:
    """Peak bytes that numpy (and Python) allocate during one call of `fn`, result included."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak - base


def _status_kib() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(which: str, case: Case) -> dict:
    """In a fresh process: peak RSS over the RSS before one call, in bytes."""
    z, t, kw = make_inputs(case)
    # Warm up on a small copy, so that thread pools, lazily loaded code and
    # allocator state are in place before the baseline is read.
    zw, tw = _warmup_slice(z, t)
    make_functions(case, zw, tw, kw)[which]()
    del zw, tw
    fn = make_functions(case, z, t, kw)[which]
    gc.collect()
    reset = _reset_hwm()
    before = _status_kib()
    out = fn()
    after = _status_kib()
    del out
    return {
        "extra_bytes": 1024 * (after["VmHWM"] - before["VmRSS"]),
        "rss_before_bytes": 1024 * before["VmRSS"],
        "hwm_reset": reset,
        "hwm_before_equals_rss": before["VmHWM"] == before["VmRSS"],
    }


def rss_extra(which: str, case: Case, quick: bool) -> dict:
    """Run :func:`memory_child` in a subprocess and return its result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", which, case.name]
    if quick:
        cmd.append("--quick")
    # Fixed malloc thresholds: blocks of 128 KiB and more are mapped and returned
    # to the system when freed, so the RSS follows the live memory.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {which} {case.name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- machine -----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _physical_cores() -> int | None:
    try:
        cores, phys = set(), None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    cores.add((phys, value.strip()))
        return len(cores) or None
    except OSError:
        return None


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return 1024 * int(line.split()[1])
    except OSError:
        pass
    return None


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _own_cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the memory subprocesses)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def machine_info() -> dict:
    """The machine and the software the benchmark ran on."""
    dirty = _git("status", "--porcelain", "--", "crossentropy_ref")
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_total_bytes": _memory_total(),
        "load_average_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "crossentropy_ref": ce.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "package_modified": None if dirty is None else bool(dirty),
        "torch_threads": torch.get_num_threads(),
        "CROSSENTROPY_REF_THREADS": os.environ.get("CROSSENTROPY_REF_THREADS"),
    }


# --- running -----------------------------------------------------------------


def run_case(case: Case, reps: int, min_sample: float, memory: str = "all", quick: bool = False) -> dict:
    """Time, check and measure one case. `memory` is "all", "tracemalloc" or "none"."""
    z, t, kw = make_inputs(case)
    fns = make_functions(case, z, t, kw)
    # The floor: exp over as many elements as the logits hold (for a linear case, of the
    # logits x W^T, computed here once for it).
    zf = z[0] @ z[1].T if case.in_features else z
    buf = np.empty_like(zf)
    buf.fill(0.0)  # touch the pages, so the floor does not time page faults

    def exp_floor():
        return np.exp(zf, out=buf)

    timed = {
        "ours": (fns["ours"], None),
        "torch": (fns["torch"], None),
        "torch_1thread": (fns["torch"], 1),
        "exp_floor": (exp_floor, None),
    }
    if "torch_chunked" in fns:
        timed["torch_chunked"] = (fns["torch_chunked"], None)
    times = time_interleaved(timed, reps, min_sample)
    del buf, zf
    # The numpy engine (no numba), on the same inputs: fewer repetitions (it is the slower
    # path), timed after the interleaved ones, not interleaved with them.
    if _jit.AVAILABLE:
        old = ce.configure(engine="numpy")
        try:
            times["ours_numpy"] = time_interleaved({"ours_numpy": (fns["ours"], None)}, NUMPY_REPS, min_sample)[
                "ours_numpy"]
        finally:
            ce.configure(**old)
    med = {name: r["median_s"] for name, r in times.items()}
    result = {
        "case": {**asdict(case), "shape": list(case.shape)},
        "function": case.function,
        "elements": case.elements,
        "logits_bytes": case.logits_bytes,
        "large": case.large,
        "time": times,
        "ratio": {
            "ours/torch": med["ours"] / med["torch"],
            "ours/torch_1thread": med["ours"] / med["torch_1thread"],
            "ours/exp_floor": med["ours"] / med["exp_floor"],
            "torch/exp_floor": med["torch"] / med["exp_floor"],
            **({"ours_numpy/torch": med["ours_numpy"] / med["torch"]} if "ours_numpy" in med else {}),
            **({"ours/torch_chunked": med["ours"] / med["torch_chunked"]} if "torch_chunked" in med else {}),
        },
        "ns_per_logit": {name: 1e9 * t / case.elements for name, t in med.items()},
        "engine": "compiled (numba)" if _jit.enabled() else "numpy",
        "agreement": agreement(case, fns),
        "memory": {},
    }
    mem = result["memory"]
    if memory in ("all", "tracemalloc"):
        peak = tracemalloc_peak(fns["ours"])
        mem["ours_tracemalloc_bytes"] = peak
        mem["ours_tracemalloc_pct"] = 100.0 * peak / case.logits_bytes
    del fns, z, t
    gc.collect()
    if memory == "all":
        for which in ("ours", "torch", *(["torch_chunked"] if case.in_features else [])):
            child = rss_extra(which, case, quick)
            mem[f"{which}_rss_bytes"] = child["extra_bytes"]
            mem[f"{which}_rss_pct"] = 100.0 * child["extra_bytes"] / case.logits_bytes
            mem[f"{which}_rss_hwm_reset"] = child["hwm_reset"] and child["hwm_before_equals_rss"]
    return result


def run(
    cases: tuple[Case, ...] | list[Case],
    reps: int,
    min_sample: float,
    memory: str = "all",
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run every case and return the whole report (machine, settings, cases, targets)."""
    report = {
        "schema": SCHEMA,
        "mode": "quick" if quick else "full",
        "machine": machine_info(),
        "settings": {
            "reps": reps,
            "warmup_calls": 1,
            "min_sample_s": min_sample,
            "dtype": "float64",
            "order": ["ours", "torch", "torch_1thread", "exp_floor"],
            "memory": memory,
            "large_bytes": LARGE_BYTES,
            "rss_method": "VmHWM after the call minus VmRSS before it, VmHWM reset via /proc/self/clear_refs, "
            "in a fresh subprocess per library with MALLOC_MMAP_THRESHOLD_=MALLOC_TRIM_THRESHOLD_=131072",
        },
        "cases": [],
    }
    t0 = time.perf_counter()
    jiffies0, own0 = _cpu_jiffies(), _own_cpu_seconds()
    for case in cases:
        if progress:
            progress(f"{case.name} {case.function} {case.shape} ...")
        report["cases"].append(run_case(case, reps, min_sample, memory, quick))
    wall = time.perf_counter() - t0
    jiffies1, own1 = _cpu_jiffies(), _own_cpu_seconds()
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["settings"]["wall_time_s"] = wall
    if jiffies0 and jiffies1 and jiffies1[1] > jiffies0[1]:
        # Share of all CPUs that other processes kept busy while the benchmark ran.
        busy = (jiffies1[0] - jiffies0[0]) / (jiffies1[1] - jiffies0[1])
        own = (own1 - own0) / (wall * (os.cpu_count() or 1))
        report["machine"]["other_cpu_busy_fraction"] = max(0.0, busy - own)
    report["targets"] = check_targets(report)
    return report


def run_quick(memory: str = "tracemalloc") -> dict:
    """The ``--quick`` run: small shapes, a few seconds, no subprocesses unless `memory` is "all"."""
    return run(QUICK_CASES, QUICK_SETTINGS["reps"], QUICK_SETTINGS["min_sample"], memory, quick=True)


def load_report(path: str | Path = DEFAULT_OUT) -> dict:
    """Read a report written by this script, checking its schema."""
    report = json.loads(Path(path).read_text())
    if report.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {report.get('schema')!r}, this script writes schema {SCHEMA}")
    return report


# --- targets and tables ------------------------------------------------------


def check_targets(report: dict) -> list[dict]:
    """Each target as ``{"name", "value", "limit", "pass"}``; a missing measurement is ``pass: None``."""
    cases = {c["case"]["name"]: c for c in report["cases"]}
    out = []

    def add(name, value, limit):
        out.append({"name": name, "value": value, "limit": limit, "pass": None if value is None else value <= limit})

    lm = cases.get("lm-head")
    add("lm-head: ours/torch", lm and lm["ratio"]["ours/torch"], TARGET_LM_RATIO)
    for name, c in cases.items():
        case = Case(**{**c["case"], "shape": tuple(c["case"]["shape"])})
        if case.in_features:
            add(f"{name}: ours / torch's linear + cross_entropy", c["ratio"]["ours/torch"], TARGET_LINEAR_RATIO)
        elif case.target == "self":
            # The worst input: every position in the triple-double tier; its bound is in ns per logit.
            add(f"{name}: ours ns per logit", c["ns_per_logit"]["ours"], TARGET_WORST_NS_PER_LOGIT)
        elif case.soft_gradient:
            add(f"{name}: ours/torch", c["ratio"]["ours/torch"], TARGET_SOFT_GRAD_RATIO)
        else:
            add(f"{name}: ours/torch", c["ratio"]["ours/torch"], TARGET_ANY_RATIO)
    add("lm-head: ours/exp floor", lm and lm["ratio"]["ours/exp_floor"], TARGET_EXP_RATIO)
    for name, c in cases.items():
        mem = c["memory"]
        keys = [k for k in ("ours_tracemalloc_pct", "ours_rss_pct") if k in mem]
        value = max((mem[k] for k in keys), default=None)
        if c["case"]["grad"] or c["case"].get("family"):
            add(f"{name}: ours peak extra memory, % of logits (both measures)", value, TARGET_GRAD_MEMORY_PCT)
        elif c["large"]:
            add(f"{name}: ours peak extra memory, % of logits (both measures)", value, TARGET_MEMORY_PCT)
    return out


def _fmt_shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def _ms(x: float) -> str:
    return f"{1e3 * x:9.2f}" if x < 10 else f"{1e3 * x:9.0f}"


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    m = report["machine"]
    s = report["settings"]
    lines = [
        f"crossentropy_ref {m['crossentropy_ref']} vs torch {m['torch']} (numpy {m['numpy']}, "
        f"python {m['python']}), float64",
        f"{m['processor']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}; {m['date']}",
        f"median of {s['reps']} interleaved repetitions after a warm-up; times in ms per call",
        f"other processes kept {100 * m.get('other_cpu_busy_fraction', float('nan')):.0f} % of the CPUs busy "
        "during the run",
    ]
    if m.get("other_cpu_busy_fraction", 0.0) > BUSY_WARNING:
        lines.append("WARNING: the machine was busy with other work; times are inflated and noisy. Re-run when idle.")
    lines.append("")
    head = (
        f"{'case':<27}{'shape':>16}{'ours':>10}{'torch':>10}{'ratio':>7}{'torch 1T':>10}{'ratio':>7}"
        f"{'exp':>10}{'ours/exp':>9}{'numpy':>10}{'ratio':>7}{'rel diff':>10}"
    )
    lines += [head, "-" * len(head)]
    for c in report["cases"]:
        t, r = c["time"], c["ratio"]
        lines.append(
            f"{c['case']['name']:<27}{_fmt_shape(c['case']['shape']):>16}"
            f"{_ms(t['ours']['median_s']):>10}{_ms(t['torch']['median_s']):>10}{r['ours/torch']:7.2f}"
            f"{_ms(t['torch_1thread']['median_s']):>10}{r['ours/torch_1thread']:7.2f}"
            f"{_ms(t['exp_floor']['median_s']):>10}{r['ours/exp_floor']:9.2f}"
            + (f"{_ms(t['ours_numpy']['median_s']):>10}{r['ours_numpy/torch']:7.2f}" if "ours_numpy" in t
               else f"{'-':>10}{'-':>7}")
            + f"{c['agreement']['rel_diff']:10.1e}"
        )
    lines += ["", "ratio = ours / torch; torch 1T = torch.set_num_threads(1); exp = one np.exp over N*C (1 thread)",
              f"ours = the engine `pip install crossentropy_ref[fast]` gives (numba); numpy = the numpy engine "
              f"(no numba), median of {NUMPY_REPS} calls timed after the others"]
    lines += ["rel diff = |ours - torch| / |torch| (loss), max |difference| / max |torch grad| (gradient)"]
    for c in report["cases"]:
        if "torch_chunked" in c["time"]:
            lines.append(
                f"{c['case']['name']}: torch = F.linear then F.cross_entropy; torch's chunked path "
                f"(LinearCrossEntropyOptions()) took {_ms(c['time']['torch_chunked']['median_s']).strip()} ms, "
                f"ours / chunked = {c['ratio']['ours/torch_chunked']:.2f}"
                + (f", its peak extra RSS {c['memory']['torch_chunked_rss_pct']:.1f} % of the logits"
                   if "torch_chunked_rss_pct" in c["memory"] else ""))
    lines.append("")
    head = f"{'peak extra memory, % of logits':<37}{'logits MB':>10}{'ours tracemalloc':>18}{'ours RSS':>10}{'torch RSS':>11}"
    lines += [head, "-" * len(head)]

    def pct(mem, key):
        return f"{mem[key]:.1f}" if key in mem else "-"

    for c in report["cases"]:
        mem = c["memory"]
        lines.append(
            f"{c['case']['name']:<37}{c['logits_bytes'] / 1e6:10.1f}{pct(mem, 'ours_tracemalloc_pct'):>18}"
            f"{pct(mem, 'ours_rss_pct'):>10}{pct(mem, 'torch_rss_pct'):>11}"
        )
    lines += ["", "targets (measured, not asserted):"]
    for tgt in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[tgt["pass"]]
        value = "not measured" if tgt["value"] is None else f"{tgt['value']:.3g}"
        lines.append(f"  {verdict}  {tgt['name']} <= {tgt['limit']:g}: {value}")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repetitions (seconds)")
    parser.add_argument("--reps", type=int, help="timed repetitions per function (default 7, 3 with --quick)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)} for the full run; "
        "with --quick or --cases, only written when given)",
    )
    parser.add_argument(
        "--memory",
        choices=("all", "tracemalloc", "none"),
        help="memory measures (default: all; tracemalloc with --quick)",
    )
    parser.add_argument("--cases", nargs="+", metavar="NAME", help="run only these cases")
    parser.add_argument("--memory-child", nargs=2, metavar=("WHICH", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        which, name = args.memory_child
        if which not in ("ours", "torch", "torch_chunked"):
            parser.error("--memory-child takes 'ours', 'torch' or 'torch_chunked'")
        print(json.dumps(memory_child(which, find_case(name, args.quick))))
        return 0

    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    reps = args.reps or settings["reps"]
    if reps < 1:
        parser.error("--reps must be at least 1")
    memory = args.memory or ("tracemalloc" if args.quick else "all")
    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.cases:
        cases = tuple(find_case(name, args.quick) for name in args.cases)
    report = run(cases, reps, settings["min_sample"], memory, args.quick, lambda msg: print(msg, file=sys.stderr))
    print(format_report(report))
    # Only the full run replaces the committed results.
    out = args.out or (None if args.quick or args.cases else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
