"""The softmax family: ``logsumexp``, ``log_softmax`` and ``softmax``.

All three rest on one decomposition of a slice ``z`` along the class axis.
With ``m = max(z)`` at position ``k`` and

    s = sum over j != k of exp(z_j - m)          (0 <= s <= C - 1)

we have ``sum_j exp(z_j - m) = 1 + s`` and therefore

    logsumexp(z)     = m + log1p(s)
    -log_softmax(z)_i = (m - z_i) + log1p(s)

Every exponent is <= 0, so nothing overflows, and both terms of
``-log_softmax`` are >= 0, so their sum never cancels: a confident
prediction's tiny loss keeps its full relative precision.  ``s`` is summed
without the 1 contributed by the maximum itself, otherwise ``1 + s`` would
round to 1 and ``log1p`` would return 0 (this is exactly what makes
``logsumexp(z) - z_k`` return 0 in torch).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_real_array, normalize_axis


def shifted_exp(z: np.ndarray, axis: int, *, finite_shift: bool = False, out: np.ndarray | None = None):
    """Return ``(m, e, s, k)`` for the slices of `z` along `axis`.

    ``m`` is the maximum (keepdims), ``k`` its index (keepdims), ``e`` is
    ``exp(z - m)`` with the entry at ``k`` set to 0, and ``s`` is ``sum(e)``
    (keepdims). With `finite_shift`, a non-finite maximum is replaced by 0
    for the shift so that all -inf or +inf slices give -inf or inf
    instead of NaN (used by ``logsumexp``, matching torch). ``e`` is
    written into `out` when given (a scratch buffer of the shape of `z`).
    """
    k = np.argmax(z, axis=axis, keepdims=True)
    # The maximum is gathered at its index rather than found by a second pass over z;
    # argmax stops at the first NaN, so a NaN slice still gets m = NaN.
    m = np.take_along_axis(z, k, axis=axis)
    shift = np.where(np.isfinite(m), m, 0.0) if finite_shift else m
    e = np.subtract(z, shift, out=out)
    np.exp(e, out=e)
    # Drop the maximum's own exp(0) = 1 so that s keeps its relative precision.
    np.put_along_axis(e, k, 0.0, axis=axis)
    s = np.sum(e, axis=axis, keepdims=True)
    return m, e, s, k


def exp_rest_sum(z: np.ndarray, axis: int, *, out: np.ndarray | None = None):
    """Return ``(m, s)`` as :func:`shifted_exp` does, without locating the maximum.

    Every entry equal to the maximum has ``exp(0) = 1`` exactly; they are all
    left out of the sum and all but one added back as whole ones. This avoids
    ``argmax``, which copies when `axis` is not the last contiguous axis (the
    class axis of (N, C, d1, ...) inputs). A NaN slice gives ``m = NaN``.
    """
    m = np.max(z, axis=axis, keepdims=True)
    e = np.subtract(z, m, out=out)
    ties = e == 0.0
    np.exp(e, out=e)
    np.copyto(e, 0.0, where=ties)
    s = np.sum(e, axis=axis, keepdims=True)
    s += np.count_nonzero(ties, axis=axis, keepdims=True) - 1
    return m, s


def _check_nonempty(z: np.ndarray, axis: int, name: str) -> None:
    if z.shape[axis] == 0:
        raise ValueError(f"`{name}` must have at least one entry along axis {axis}; got shape {z.shape}")


def logsumexp(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    r"""Log-sum-exp along an axis, in float64 without overflow.

    .. math::

        \operatorname{logsumexp}(x) = \log \sum_{j} e^{x_j}
        = m + \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big),
        \quad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...)
        Real numbers (integer or floating point); computed in float64.
    axis : int, default=-1
        The axis to reduce.

    Returns
    -------
    ndarray of float64, shape of `x` without `axis`
        A 0-d input axis reduction of a 1-D `x` returns a float64 scalar.

    Raises
    ------
    TypeError
        If `x` is not real-valued (bool, complex, strings, objects) or `axis`
        is not an integer.
    ValueError
        If `x` is 0-d, if `axis` is out of range, or if the axis is empty.

    See Also
    --------
    log_softmax : ``x - logsumexp(x)``, computed without cancellation.
    softmax : ``exp(x - logsumexp(x))``.

    Notes
    -----
    The natural logarithm. Shifting `x` by a constant ``b`` shifts the
    result by exactly ``b``. Terms are summed after subtracting the
    maximum, so no exponential overflows, and the maximum's own term (which
    is exactly 1) is kept out of the sum and added back through ``log1p``.

    *Differences from PyTorch*: none in value; integer input is accepted and
    promoted to float64 (``torch.logsumexp`` rejects integer tensors); an
    empty `axis` is a ``ValueError`` (torch returns -inf).
    Slices that are all -inf give -inf and slices containing +inf give inf,
    as in torch.

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing
       the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021),
       doi:10.1093/imanum/draa038.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import logsumexp
    >>> print(float(logsumexp([0.0, 0.0])))   # log 2
    0.6931471805599453

    The naive formula overflows; the shifted one does not:

    >>> x = np.array([1000.0, 1000.0])
    >>> with np.errstate(over="ignore"):
    ...     print(float(np.log(np.sum(np.exp(x)))))
    inf
    >>> print(float(logsumexp(x)))
    1000.6931471805599
    """
    z = as_real_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, z.ndim)
    _check_nonempty(z, ax, "x")
    with np.errstate(invalid="ignore", over="ignore"):
        m, _, s, _ = shifted_exp(z, ax, finite_shift=True)
        out = np.squeeze(m + np.log1p(s), axis=ax)
    return out[()] if out.ndim == 0 else out


def log_softmax(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    r"""Logarithm of the softmax along an axis, accurate to full relative precision.

    .. math::

        \operatorname{log\_softmax}(x)_i = x_i - \log \sum_j e^{x_j}
        = (x_i - m) - \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big),
        \quad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...)
        Real numbers; computed in float64.
    axis : int, default=-1
        The class axis.

    Returns
    -------
    ndarray of float64, same shape as `x`

    Raises
    ------
    TypeError
        If `x` is not real-valued or `axis` is not an integer.
    ValueError
        If `x` is 0-d, if `axis` is out of range, or if the axis is empty.

    See Also
    --------
    softmax, logsumexp

    Notes
    -----
    Both terms of the decomposition are <= 0, so they never cancel: the
    largest entry, ``-log1p(s)``, keeps its relative precision even when it
    is far below machine epsilon, where ``x - logsumexp(x)`` returns 0.

    *Differences from PyTorch*: ``F.log_softmax`` requires ``dim``; here it
    is called ``axis`` and defaults to the last axis, as in SciPy. Integer
    input is accepted. An empty `axis` is a ``ValueError`` (torch returns
    an empty result).

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing
       the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021),
       doi:10.1093/imanum/draa038.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import log_softmax
    >>> np.set_printoptions(precision=6)
    >>> print(log_softmax([1.0, 2.0, 3.0]))
    [-2.407606 -1.407606 -0.407606]

    For a confident prediction the subtraction ``x - logsumexp(x)`` cancels
    to 0, while the largest log-probability is really about -4.2e-18:

    >>> x = np.array([40.0, 0.0])
    >>> print(float(x[0] - np.log(np.sum(np.exp(x)))))
    0.0
    >>> print(float(log_softmax(x)[0]))
    -4.248354255291589e-18
    >>> np.set_printoptions(precision=8)
    """
    z = as_real_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, z.ndim)
    _check_nonempty(z, ax, "x")
    with np.errstate(invalid="ignore"):
        m, _, s, _ = shifted_exp(z, ax)
        out = np.subtract(z, m)
        out -= np.log1p(s)
    # A slice holding +inf or NaN, or only -inf, is NaN throughout, as in torch.
    np.copyto(out, np.nan, where=~np.isfinite(m))
    return out


def softmax(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    r"""Softmax along an axis, in float64 without overflow.

    .. math::

        \operatorname{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}}
        = \frac{e^{x_i - m}}{1 + \sum_{j \ne k} e^{x_j - m}},
        \quad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...)
        Real numbers; computed in float64.
    axis : int, default=-1
        The class axis.

    Returns
    -------
    ndarray of float64, same shape as `x`
        Non-negative, summing to 1 along `axis` up to rounding.

    Raises
    ------
    TypeError
        If `x` is not real-valued or `axis` is not an integer.
    ValueError
        If `x` is 0-d, if `axis` is out of range, or if the axis is empty.

    See Also
    --------
    log_softmax, logsumexp

    Notes
    -----
    Softmax is invariant to shifting `x` by a constant, which is why
    subtracting the maximum changes nothing but the overflow.

    *Differences from PyTorch*: ``axis`` defaults to the last axis;
    integer input is accepted; an empty `axis` is a ``ValueError`` (torch
    returns an empty result).

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import softmax
    >>> np.set_printoptions(precision=6)
    >>> print(softmax([1.0, 2.0, 3.0]))
    [0.090031 0.244728 0.665241]
    >>> print(softmax([1000.0, 1001.0, 1002.0]))   # the naive formula gives nan here
    [0.090031 0.244728 0.665241]
    >>> np.set_printoptions(precision=8)
    """
    z = as_real_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, z.ndim)
    _check_nonempty(z, ax, "x")
    with np.errstate(invalid="ignore"):
        m, e, s, k = shifted_exp(z, ax)
        np.put_along_axis(e, k, 1.0, axis=ax)  # restore the maximum's exp(0)
        e /= 1.0 + s
    # A slice holding +inf or NaN, or only -inf, is NaN throughout, as in torch.
    np.copyto(e, np.nan, where=~np.isfinite(m))
    return e
