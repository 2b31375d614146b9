"""``one_hot``: class indices to one-hot vectors."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v


def one_hot(target: ArrayLike, num_classes: int = -1) -> NDArray[np.int64]:
    r"""One-hot encoding of class indices, along a new last axis.

    Mirrors ``torch.nn.functional.one_hot``:

    .. math::

        \operatorname{one\_hot}(y)_{\ldots, c} = [\, y_{\ldots} = c \,],
        \qquad c = 0, \ldots, C - 1

    Parameters
    ----------
    target : array_like of integers, any shape
        Class indices, each in ``[0, num_classes)``.
    num_classes : int, default=-1
        C. With -1 it is ``max(target) + 1``, as in torch.

    Returns
    -------
    ndarray of int64, shape ``target.shape + (C,)``
        Integer, like torch's. :func:`cross_entropy` accepts it directly as
        a probability target; convert with ``.astype(float)`` for torch.

    Raises
    ------
    TypeError
        If `target` is not an integer array or `num_classes` not an integer.
    ValueError
        If an index is negative or not below `num_classes`, if
        `num_classes` is below -1, or if it is -1 and `target` is empty.

    See Also
    --------
    cross_entropy : Index targets and their one-hot probabilities give the same loss.

    Notes
    -----
    For a batch of (N, d1, ..., dk) indices the class axis of the result
    is last; move it to axis 1 (``np.moveaxis(h, -1, 1)``) to use it as a
    probability target for K-dimensional logits.

    *Differences from PyTorch*: integer indices of any width are accepted.

    Examples
    --------
    >>> from crossentropy_ref import one_hot
    >>> print(one_hot([0, 2, 1], 3))
    [[1 0 0]
     [0 0 1]
     [0 1 0]]
    >>> print(one_hot([1, 0]).shape)
    (2, 2)
    """
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices; got {t.dtype} array of shape {t.shape}")
    c = v.check_int(num_classes, "num_classes")
    if c < -1:
        raise ValueError(f"`num_classes` must be -1 (infer) or a non-negative integer; got {c}")
    if t.size and t.min() < 0:
        raise ValueError(f"`target` must hold non-negative class indices; got {int(t.min())}")
    if c == -1:
        if t.size == 0:
            raise ValueError("`num_classes` must be given for an empty `target`; got -1")
        c = int(t.max()) + 1
    elif t.size and t.max() >= c:
        raise ValueError(f"`target` must hold class indices below `num_classes`={c}; got {int(t.max())}")
    return (t[..., None] == np.arange(c)).astype(np.int64)
