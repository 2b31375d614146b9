"""Time crossentropy_ref.testing.check, and give the verdicts on torch and JAX over every family.

Run from the repository root::

    .venv/bin/python benchmarks/bench_testing.py              # 5 repetitions
    .venv/bin/python benchmarks/bench_testing.py --reps 9
    .venv/bin/python benchmarks/bench_testing.py --frameworks # + torch and JAX

The targets: the whole default battery, every family, runs in at most 5 s
per format for a numpy kernel (issue 10), and its `tiles` family alone in at
most 2 s (issue 19: "seconds per dtype"), for the loss and for the gradient.
The kernels are the correct ones of tests/test_testing.py (numpy, in the
format under test, float32 accumulation for the 16-bit formats), so the time
covers building the cases, the float64 reference and its condition numbers,
the kernel and both verdicts. Reported: the median and the minimum over the
repetitions, per format, the time of the first repetition, and PASS or
FAIL for the larger of the first and the median against its target. The
exact losses of a format are cached after the first check, as in a test
session: the first repetition pays for them and for the cases' tiles. Nothing is asserted:
a loaded machine is slower.

With --frameworks, torch's F.cross_entropy (float32, float16, bfloat16) and
optax's losses under jax.jit (float32, bfloat16; the wrapper of
docs/howto/judge-kernel.md) are judged once on every family, loss and
autograd gradient, and the families failing each verdict are printed: the
page judges JAX on two families only, because XLA compiles each new shape.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

from crossentropy_ref.testing import FAMILIES, cases, check

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0
TILES_SECONDS = 2.0


def load_kernels():
    spec = importlib.util.spec_from_file_location("_test_testing", ROOT / "tests" / "test_testing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel(), module.grad_kernel()


def timed(reps, run):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        report = run()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times), min(times), report


def torch_loss():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)

    def loss(logits, target, weight=None, **kwargs):
        return F.cross_entropy(logits, target, weight, **kwargs)

    return loss


def optax_loss():
    """The wrapper of docs/howto/judge-kernel.md: torch's signature on optax's losses, jitted."""
    import jax
    import jax.numpy as jnp
    import optax

    def loss(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        z = jnp.moveaxis(logits, 1, -1) if logits.ndim > 1 else logits
        c = z.shape[-1]
        w = jnp.ones(c, z.dtype) if weight is None else weight
        if target.shape == logits.shape:
            p = jnp.moveaxis(target, 1, -1) if target.ndim > 1 else target
            p = optax.smooth_labels(p, label_smoothing)
            out = optax.softmax_cross_entropy(z, w * p)
            denom = out.size
        else:
            valid = target != ignore_index
            y = jnp.where(valid, target, 0)
            if label_smoothing:
                p = optax.smooth_labels(jax.nn.one_hot(y, c, dtype=z.dtype), label_smoothing)
                out = optax.softmax_cross_entropy(z, w * p)
            else:
                out = w[y] * optax.softmax_cross_entropy_with_integer_labels(z, y)
            out = jnp.where(valid, out, 0)
            denom = jnp.where(valid, w[y], 0).sum()
        if reduction == "none":
            return out
        return out.sum() if reduction == "sum" else out.sum() / denom

    return jax.jit(loss, static_argnames=("ignore_index", "reduction", "label_smoothing"))


def frameworks() -> None:
    print("\nverdicts on every family (no ulp bound; stability at c = 16)")
    print(f"{'kernel':<7}{'dtype':<10}{'of':<9}{'s':>6}  failing forward | failing stability")
    runs = [("torch", torch_loss(), "torch", dt) for dt in ("float32", "float16", "bfloat16")]
    runs += [("optax", optax_loss(), "jax", dt) for dt in ("float32", "bfloat16")]
    for name, fn, inputs, dt in runs:
        for grad in (False, "autograd"):
            t0 = time.perf_counter()
            report = check(fn, dtype=dt, inputs=inputs, grad=grad)
            seconds = time.perf_counter() - t0
            fwd = [f for f, r in report.families.items() if not r.passed]
            stab = [f for f, r in report.families.items() if not r.stable]
            what = "gradient" if grad else "loss"
            print(f"{name:<7}{dt:<10}{what:<9}{seconds:>6.1f}  {', '.join(fwd) or '-'} | {', '.join(stab) or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument("--frameworks", action="store_true", help="judge torch and JAX on every family")
    args = parser.parse_args()
    loss_kernel, grad_kernel = load_kernels()
    n_cases = sum(1 for _ in cases())
    n_tiles = sum(1 for _ in cases("tiles"))
    print(f"default battery: {len(FAMILIES)} families, {n_cases} cases ({n_tiles} in tiles); "
          f"{args.reps} repetitions")
    t0 = time.perf_counter()
    sum(1 for _ in cases())
    print(f"building the cases alone: {time.perf_counter() - t0:.3f} s")
    print(f"{'dtype':<10}{'judged':<10}{'families':<10}{'first s':>9}{'median s':>10}{'min s':>8}  verdict")
    for dtype in args.dtypes:
        for what, fn, grad in (("loss", loss_kernel, False), ("gradient", grad_kernel, True)):
            for families, target in ((None, TARGET_SECONDS), ("tiles", TILES_SECONDS)):
                first, med, best, report = timed(
                    args.reps, lambda: check(fn, dtype=dtype, grad=grad, families=families))
                verdict = "PASS" if max(first, med) <= target else "FAIL"
                ok = "passes" if report.stable else "fails"
                print(f"{dtype:<10}{what:<10}{families or 'all':<10}{first:>9.3f}{med:>10.3f}{best:>8.3f}  "
                      f"{verdict} (<= {target:g} s); kernel {ok} stability")
    if args.frameworks:
        frameworks()


if __name__ == "__main__":
    main()
