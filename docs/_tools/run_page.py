"""Execute book pages outside Sphinx and report each cell's time (authors' tool).

    .venv/bin/python docs/_tools/run_page.py docs/explanation/accuracy.md [more.md ...]

Runs each page's code cells in a fresh kernel, in the page's folder, as the book
build does, and fails on the first error (an AssertionError in a cell means a
claim of the page no longer holds). It also fails, as the build does, when a
cell writes to stderr. Use it while writing a page: it executes one page in
seconds, where a full ``make html`` executes every page whose cache entry is
stale. It checks execution only; ``make html`` still checks glue references,
links and directives.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbclient
from myst_nb.core.read import read_myst_markdown_notebook

# The book's kernelspec (see conf.py): the usual one, with the kernel's own log quiet.
ROOT = Path(__file__).resolve().parents[2]
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(ROOT / "docs" / "_jupyter")] + [p for p in [os.environ.get("JUPYTER_PATH")] if p]
)


def run(path: Path, timeout: int) -> float:
    nb = read_myst_markdown_notebook(path.read_text(encoding="utf-8"), path=path)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0 = time.perf_counter()
            client.execute_cell(cell, index)  # raises CellExecutionError on an error
            stderr = [o.get("text", "") for o in cell.outputs if o.get("name") == "stderr"]
            dt = time.perf_counter() - t0
            first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
            print(f"  cell {index:3d} {dt:7.2f} s  {first}")
            if stderr:
                raise SystemExit(f"{path}: cell {index} wrote to stderr:\n{''.join(stderr)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args()
    for page in args.pages:
        print(f"{page}:")
        total = run(page.resolve(), args.timeout)
        print(f"{page}: {total:.1f} s (kernel start not included)")


if __name__ == "__main__":
    sys.exit(main())
