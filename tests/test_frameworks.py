"""The parity matrix across frameworks (docs/reference/parity-matrix.md), as tests.

Every cell of frameworks_matrix.CELLS is checked as the book checks it: a
native or recipe cell must match crossentropy_ref (torch's semantics, float64)
within rtol 1e-10 on every input of its row; a differs cell must still differ
as it says. A new framework version that changes behaviour fails here with the
cell's name ("keras / -inf", ...) in the test id and in the message.

These tests import PyTorch, JAX, optax, Keras (JAX backend), scikit-learn,
SciPy and ONNX; they are skipped when one of them is missing.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest

# find_spec, not importorskip: Keras must not be imported before
# frameworks_matrix.load() has chosen its JAX backend.
_MISSING = [m for m in ("torch", "jax", "optax", "keras", "sklearn", "scipy", "onnx")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip(f"frameworks not installed: {_MISSING}", allow_module_level=True)

import frameworks_matrix as fm  # noqa: E402


@pytest.mark.parametrize("cell", fm.CELLS, ids=lambda c: c.name)
def test_cell(cell):
    fm.check(cell)  # raises AssertionError naming the cell


def test_every_row_has_every_framework():
    pairs = {(c.row, c.framework) for c in fm.CELLS}
    assert len(pairs) == len(fm.CELLS) == len(fm.ROWS) * len(fm.FRAMEWORKS)


def test_torch_column_is_native():
    # torch defines the semantics: crossentropy_ref mirrors it on every row.
    assert {c.verdict for c in fm.CELLS if c.framework == "torch"} == {"native"}


@functools.cache
def _accuracy():
    return fm.accuracy()


# Expected behaviours: observed with the pinned versions (torch 2.13.0, jax
# 0.10.2, optax 0.2.8, keras 3.15.1, scikit-learn 1.9.1, scipy 1.17.1, onnx
# 1.23.2), against mpmath at 50 digits; the floors and caps by hand:
# -log(1 - 1e-7) = 1.0000000494736474e-07 (rounded), -log(1e-7) = 16.118...,
# -log(2**-52) = 36.04... and -log(1 - 2**-52) = 2.22e-16.
EXPECTED = {
    "crossentropy_ref": "accurate",
    "PyTorch": "rounds to 0",
    "JAX": "rounds to 0",
    "optax": "rounds to 0",
    "Keras, logits": "rounds to 0",
    "Keras, probabilities": "floors at 1e-07, caps at 16.12",
    "sklearn": "floors at 2.2e-16, caps at 36.04",
    "SciPy": "rounds to 0",
    "ONNX": "rounds to 0, inf after an underflow",
}


@pytest.mark.parametrize("label", list(fm.ACCURACY_FUNCS))
def test_accuracy_behaviour(label):
    got = fm.behaviour(label, _accuracy()[label])
    assert got == EXPECTED[label], f"accuracy / {label}: now {got!r}"


def test_reference_is_accurate_everywhere():
    # mpmath at 50 digits: crossentropy_ref within a few ulps on every input.
    worst = max(e["worst"] for e in _accuracy()["crossentropy_ref"].values())
    assert worst < 1e-15


def test_relative_error_conventions():
    # By hand: a truth below the normal range returned as 0 is exact; inf is inf.
    exact = fm.mp_losses(fm.HUGE, np.array([0, 1, 1]))
    assert list(fm.relative_errors([0.0], exact[:1])) == [0.0]
    assert list(fm.relative_errors([np.inf], exact[1:2])) == [np.inf]
