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

from . import _engine as engine
from ._validation import as_float_dtype, as_real_array, check_bool, normalize_axes, normalize_axis


def _check_nonempty(z: np.ndarray, axis: int, name: str) -> None:
    if z.shape[axis] == 0:
        raise ValueError(f"`{name}` must have at least one entry along axis {axis}; got shape {z.shape}")


# The front layer: torch's 0-d input, several axes, keepdim and dtype= are reduced to one
# call of the single-axis core on an array of at least one dimension.


def _scalar_or_array(out: np.ndarray):
    return out[()] if out.ndim == 0 else out


def _logsumexp_front(x: ArrayLike, axis, keepdim: object) -> NDArray[np.float64]:
    z = as_real_array(x, "x")
    keep = check_bool(keepdim, "keepdim")
    axes = normalize_axes(axis, z.ndim)
    if z.ndim == 0:  # one element, as in torch; the result stays 0-d even with keepdim
        return _scalar_or_array(_logsumexp_core(z.reshape(1), 0).reshape(()))
    if len(axes) == 1:
        out = _logsumexp_core(z, axes[0])
    else:
        sizes = [z.shape[a] for a in axes]
        if 0 in sizes:
            raise ValueError(f"`x` must have at least one entry along axes {axes}; got shape {z.shape}")
        rest = [a for a in range(z.ndim) if a not in axes]
        # Move the reduced axes to the end and merge them into one (a copy), so the core reduces once.
        merged = np.transpose(z, rest + list(axes)).reshape([z.shape[a] for a in rest] + [int(np.prod(sizes))])
        out = _logsumexp_core(merged, -1)
    out = np.asarray(out)
    if keep:
        out = np.expand_dims(out, axes)
    return _scalar_or_array(out)


def _softmax_front(core, x: ArrayLike, axis, dtype) -> NDArray[np.float64]:
    z = as_real_array(x, "x")
    dt = as_float_dtype(dtype)
    if dt is not None and dt != np.float64:
        # Round the input to `dtype` first, as torch casts before the operation; the
        # computation itself stays in float64.
        with np.errstate(over="ignore"):  # values beyond the dtype's range become inf, as in torch
            z = z.astype(dt).astype(np.float64)
    if z.ndim == 0:  # one element, as in torch
        normalize_axes(axis, 0)
        return _scalar_or_array(core(z.reshape(1), 0).reshape(()))
    return core(z, axis)


def logsumexp(x: ArrayLike, axis: int | tuple[int, ...] = -1, *, keepdim: bool = False) -> NDArray[np.float64]:
    r"""Log-sum-exp along an axis, in float64 without overflow.

    .. math::

        \operatorname{logsumexp}(x)
        &= \log \sum_{j} e^{x_j} \\
        &= m + \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big), \\
        &\qquad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...), or ()
        Real numbers (integer or floating point); computed in float64. A
        0-d `x` is one element, as in torch: its logsumexp is itself.
    axis : int or tuple of ints, default=-1
        The axis, or the distinct axes, to reduce (torch's ``dim``).
    keepdim : bool, default=False
        Keep each reduced axis with length 1, as torch's ``keepdim``.

    Returns
    -------
    ndarray of float64, shape of `x` without `axis`
        A reduction of every axis (a 1-D `x`, or a 0-d one) returns a
        float64 scalar.

    Raises
    ------
    TypeError
        If `x` is not real-valued (bool, complex, strings, objects), `axis`
        is not an integer or a tuple of integers, or `keepdim` is not a bool.
    ValueError
        If an axis is out of range or repeated, if `axis` is ``()`` for an
        `x` of one or more dimensions, or if the reduced axes are empty.

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

    *Differences from PyTorch*: none in value; integer input is promoted to
    float64 (``torch.logsumexp`` promotes it to float32); an
    empty `axis` is a ``ValueError`` (torch returns -inf). ``axis=()`` is
    a ``ValueError`` for an input of one or more dimensions (torch raises
    a ``RuntimeError``); for a 0-d input both return the element.
    Slices that are all -inf give -inf and slices containing +inf give inf,
    as in torch. In signature: torch's required ``dim`` is `axis` here,
    default -1; `keepdim` is keyword-only, so ``torch.logsumexp(x, 1,
    True)`` is a ``TypeError`` here (write ``logsumexp(x, 1,
    keepdim=True)``); torch's ``out=`` is not accepted; the first parameter
    is `x` (torch: ``input``).

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

    Several axes at once, keeping them as torch's ``keepdim`` does:

    >>> x = np.zeros((2, 3, 4))
    >>> print(logsumexp(x, axis=(0, 2), keepdim=True).shape)
    (1, 3, 1)
    >>> print(float(logsumexp(np.zeros((2, 4)), axis=(0, 1))))   # log 8
    2.0794415416798357
    """
    return _logsumexp_front(x, axis, keepdim)


def _logsumexp_core(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    z = as_real_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, z.ndim)
    _check_nonempty(z, ax, "x")
    z3 = engine.view3(z, ax)
    out = np.empty((z3.shape[0], 1, z3.shape[2]))
    engine.run(z3, out, engine.logsumexp_block, engine.logsumexp_deep)
    return _scalar_or_array(out.reshape(z.shape[:ax] + z.shape[ax + 1 :]))


def log_softmax(x: ArrayLike, axis: int = -1, *, dtype: object = None) -> NDArray[np.float64]:
    r"""Logarithm of the softmax along an axis, accurate to full relative precision.

    .. math::

        \operatorname{log\_softmax}(x)_i
        &= x_i - \log \sum_j e^{x_j} \\
        &= (x_i - m)
           - \operatorname{log1p}\Big(\sum_{j \ne k} e^{x_j - m}\Big), \\
        &\qquad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...), or ()
        Real numbers; computed in float64. A 0-d `x` is one element, as in
        torch (its log-softmax is 0, or NaN if it is not finite).
    axis : int, default=-1
        The class axis.
    dtype : numpy floating dtype, default=None
        If given, `x` is first rounded to it, as torch's ``dtype=`` casts
        the input before the operation. The result is still float64.

    Returns
    -------
    ndarray of float64, same shape as `x`

    Raises
    ------
    TypeError
        If `x` is not real-valued, `axis` is not an integer, or `dtype` is
        not a floating-point dtype.
    ValueError
        If `axis` is out of range, or if the axis is empty.

    See Also
    --------
    softmax, logsumexp

    Notes
    -----
    Both terms of the decomposition are <= 0, so they never cancel: the
    largest entry, ``-log1p(s)``, keeps its relative precision even when it
    is far below machine epsilon, where ``x - logsumexp(x)`` returns 0.

    *Differences from PyTorch*: ``F.log_softmax``'s ``dim`` (default None,
    a deprecated implicit choice) is called `axis` here and defaults to the
    last axis, as in SciPy. Integer
    input is accepted. An empty `axis` is a ``ValueError`` (torch returns
    an empty result). With ``dtype=`` the result is float64, computed from
    the input rounded to `dtype` (torch returns `dtype`, computed in it).
    `dtype` is keyword-only and torch's ``_stacklevel`` is not accepted;
    the first parameter is `x` (torch: ``input``).

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

    ``dtype=`` rounds the input first, as torch does (0.1 in float16 is
    0.0999755859375):

    >>> a = log_softmax([0.1, 0.0], dtype=np.float16)
    >>> print(a - log_softmax([0.0999755859375, 0.0]))
    [0. 0.]
    >>> np.set_printoptions(precision=8)
    """
    return _softmax_front(_log_softmax_core, x, axis, dtype)


def _log_softmax_core(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    return _per_class(engine.log_softmax_block, engine.log_softmax_deep, x, axis)


def _per_class(block, deep, x: ArrayLike, axis: int) -> NDArray[np.float64]:
    z = as_real_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, z.ndim)
    _check_nonempty(z, ax, "x")
    out = np.empty(z.shape)
    engine.run(engine.view3(z, ax), engine.view3(out, ax), block, deep)
    return out


def softmax(x: ArrayLike, axis: int = -1, *, dtype: object = None) -> NDArray[np.float64]:
    r"""Softmax along an axis, in float64 without overflow.

    .. math::

        \operatorname{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}}
        = \frac{e^{x_i - m}}{1 + \sum_{j \ne k} e^{x_j - m}},
        \quad m = x_k = \max_j x_j

    Parameters
    ----------
    x : array_like of shape (..., C, ...), or ()
        Real numbers; computed in float64. A 0-d `x` is one element, as in
        torch (its softmax is 1, or NaN if it is not finite).
    axis : int, default=-1
        The class axis.
    dtype : numpy floating dtype, default=None
        If given, `x` is first rounded to it, as torch's ``dtype=`` casts
        the input before the operation. The result is still float64.

    Returns
    -------
    ndarray of float64, same shape as `x`
        Non-negative, summing to 1 along `axis` up to rounding.

    Raises
    ------
    TypeError
        If `x` is not real-valued, `axis` is not an integer, or `dtype` is
        not a floating-point dtype.
    ValueError
        If `axis` is out of range, or if the axis is empty.

    See Also
    --------
    log_softmax, logsumexp

    Notes
    -----
    Softmax is invariant to shifting `x` by a constant, which is why
    subtracting the maximum changes nothing but the overflow.

    *Differences from PyTorch*: ``F.softmax``'s ``dim`` (default None, a
    deprecated implicit choice) is called `axis` here and defaults to the
    last axis;
    integer input is accepted; an empty `axis` is a ``ValueError`` (torch
    returns an empty result). With ``dtype=`` the result is float64,
    computed from the input rounded to `dtype` (torch returns `dtype`).
    `dtype` is keyword-only and torch's ``_stacklevel`` is not accepted;
    the first parameter is `x` (torch: ``input``).

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import softmax
    >>> np.set_printoptions(precision=6)
    >>> print(softmax([1.0, 2.0, 3.0]))
    [0.090031 0.244728 0.665241]
    >>> # the naive formula gives nan here:
    >>> print(softmax([1000.0, 1001.0, 1002.0]))
    [0.090031 0.244728 0.665241]

    A 0-d input is one element, as in torch:

    >>> print(float(softmax(3.0, axis=0)))
    1.0
    >>> np.set_printoptions(precision=8)
    """
    return _softmax_front(_softmax_core, x, axis, dtype)


def _softmax_core(x: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    return _per_class(engine.softmax_block, engine.softmax_deep, x, axis)
