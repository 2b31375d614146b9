"""The textbook formulas, deliberately naive: kept to show why the reference exists.

Nothing here shifts by the maximum or guards ``log(0)``: large logits
overflow to ``inf`` and then ``nan``, a zero probability gives ``inf``, and
numpy emits its ``RuntimeWarning`` for each. Use :mod:`crossentropy_ref`'s
top-level functions for real work; the book puts the two side by side.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["cross_entropy", "softmax"]


def softmax(logits: ArrayLike) -> NDArray[np.float64]:
    r"""Softmax along the last axis, straight from the definition.

    .. math::

        \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}}

    Parameters
    ----------
    logits : array_like of shape (..., C)
        Computed in float64.

    Returns
    -------
    ndarray of float64, same shape as `logits`

    See Also
    --------
    crossentropy_ref.softmax : The version that cannot overflow.

    Notes
    -----
    Unprotected on purpose: :math:`e^{z}` overflows to ``inf`` for
    :math:`z > 709.78`, and ``inf / inf`` is ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import textbook
    >>> np.set_printoptions(precision=6)
    >>> print(textbook.softmax([1.0, 2.0, 3.0]))
    [0.090031 0.244728 0.665241]
    >>> with np.errstate(over="ignore", invalid="ignore"):
    ...     print(textbook.softmax([1000.0, 1001.0, 1002.0]))
    [nan nan nan]
    >>> np.set_printoptions(precision=8)
    """
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def cross_entropy(p: ArrayLike, q: ArrayLike) -> np.float64:
    r"""Mean cross-entropy of predicted probabilities `q` against targets `p`, as in the blog posts.

    .. math::

        H = -\frac{1}{N} \sum_{i=1}^{N} \sum_{c=1}^{C} p_{ic} \log q_{ic}

    Parameters
    ----------
    p : array_like of shape (N, C)
        Target probabilities (one-hot rows for class labels).
    q : array_like of shape (N, C)
        Predicted probabilities, e.g. from :func:`softmax`.

    Returns
    -------
    float64

    See Also
    --------
    crossentropy_ref.cross_entropy : Takes logits and never evaluates ``log(0)``.

    Notes
    -----
    Unprotected on purpose: a predicted probability of 0 gives
    :math:`\log 0 = -\infty`, and where the target is also 0 the product
    :math:`0 \cdot (-\infty)` is ``nan`` instead of the conventional 0. Going
    through probabilities also loses the precision of a confident
    prediction: once :math:`q_y` rounds to 1, the loss is exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import textbook
    >>> logits = [[9.7785, 0.9195, 2.10],
    ...           [3.133, -3.05, 1.02],
    ...           [0.12, 0.432518, 0.470]]
    >>> onehot = [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    >>> q = textbook.softmax(logits)
    >>> print(float(textbook.cross_entropy(onehot, q)))
    0.36594851568931036
    >>> with np.errstate(divide="ignore", invalid="ignore"):
    ...     print(float(textbook.cross_entropy([[1, 0]], [[1.0, 0.0]])))
    nan
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return -np.sum(p * np.log(q)) / len(p)
