"""Time the default battery of crossentropy_ref.testing.check on a numpy kernel.

Run from the repository root::

    .venv/bin/python benchmarks/bench_testing.py            # 5 repetitions
    .venv/bin/python benchmarks/bench_testing.py --reps 9

The target (issue 10): the whole default battery, every family, runs in at
most 5 s for a numpy kernel. The kernel is the correct one from
tests/test_testing.py (numpy, in the dtype under test, float32 accumulation
for the 16-bit formats), so the time covers building the cases, the
reference in float64, the kernel and the ulp counting. Reported: the median
and the minimum over the repetitions, per dtype, and PASS or FAIL for the
median against 5 s. Nothing is asserted: a loaded machine is slower.
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


def load_kernel():
    spec = importlib.util.spec_from_file_location("_test_testing", ROOT / "tests" / "test_testing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16", "float64"])
    args = parser.parse_args()
    kernel = load_kernel()
    n_cases = sum(1 for _ in cases())
    print(f"default battery: {len(FAMILIES)} families, {n_cases} cases; {args.reps} repetitions")
    t0 = time.perf_counter()
    sum(1 for _ in cases())
    print(f"building the cases alone: {time.perf_counter() - t0:.3f} s")
    print(f"{'dtype':<10}{'median s':>10}{'min s':>8}  verdict")
    for dtype in args.dtypes:
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            report = check(kernel, dtype=dtype)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        verdict = "PASS" if med <= TARGET_SECONDS else "FAIL"
        print(f"{dtype:<10}{med:>10.3f}{min(times):>8.3f}  {verdict} (<= {TARGET_SECONDS:g} s); "
              f"kernel {'passes' if report.passed else 'fails'} with no bound")


if __name__ == "__main__":
    main()
