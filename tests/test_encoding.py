"""Tests for crossentropy_ref._encoding: one_hot.

Expected values: torch 2.13.0's F.one_hot (exact, integer results). Its use as
a cross_entropy target is tested in test_losses.py; bad input in
test_validation.py.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import crossentropy_ref as ce


def torch_one_hot(target, num_classes=-1):
    return F.one_hot(torch.tensor(np.asarray(target, dtype=np.int64)), num_classes).numpy()


def assert_same(ours, theirs):
    assert ours.dtype == np.int64
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("num_classes", [-1, 5, 8])
@pytest.mark.parametrize(
    "target",
    [np.array(3), np.array([0, 4, 2]), np.array([[1, 0], [4, 4]]), np.array([[[2], [0]], [[1], [3]]])],
    ids=["0-d", "N", "N-d1", "N-d1-d2"],
)
def test_matches_torch(target, num_classes):
    assert_same(ce.one_hot(target, num_classes), torch_one_hot(target, num_classes))


@given(
    target=hnp.arrays(
        np.int64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4), elements=st.integers(0, 6)
    ),
    extra=st.none() | st.integers(0, 3),
)
def test_matches_torch_property(target, extra):
    # extra=None: num_classes inferred (-1); otherwise max(target) + 1 + extra classes.
    num_classes = -1 if extra is None else int(target.max()) + 1 + extra
    assert_same(ce.one_hot(target, num_classes), torch_one_hot(target, num_classes))


def test_empty_target_with_num_classes():
    # torch: an empty index tensor with num_classes=3 gives shape (0, 3).
    assert_same(ce.one_hot(np.zeros(0, dtype=np.int64), 3), torch_one_hot(np.zeros(0), 3))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.uint64])
def test_any_integer_dtype(dtype):
    # Documented difference: any integer width is accepted (torch needs int64).
    target = np.array([[0, 3], [2, 1]])
    assert_same(ce.one_hot(target.astype(dtype), 4), ce.one_hot(target, 4))


def test_lists_are_accepted():
    assert_same(ce.one_hot([0, 2, 1], 3), torch_one_hot([0, 2, 1], 3))
