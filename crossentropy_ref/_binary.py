"""Binary losses: ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._engine import _binary as eb


def _binary_inputs(x, target, weight, reduction, x_name):
    red = v.check_reduction(reduction)
    x = v.as_real_array(x, x_name)
    t = v.as_real_array(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"`target` must have shape {x.shape} to match `{x_name}` of shape {x.shape}; got {t.shape}")
    v.check_unit_interval(t, "target")
    w = None
    if weight is not None:
        w = v.as_real_array(weight, "weight")
        v.check_broadcastable(w, x.shape, "weight", x_name)
        v.check_finite(w, "weight", "weights")
    return x, t, w, red


@v.torch_signature_guard
def binary_cross_entropy(
    probs: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: str = "mean",
) -> NDArray[np.float64]:
    r"""Binary cross-entropy between predicted probabilities and targets, aka log loss.

    Mirrors ``torch.nn.functional.binary_cross_entropy`` in float64:

    .. math::

        \ell_i = -w_i \big[\, t_i \max(\log x_i, -100)
                 + (1 - t_i) \max(\log(1 - x_i), -100) \,\big]

    Parameters
    ----------
    probs : array_like of any shape
        Predicted probabilities :math:`x_i`, each in [0, 1].
    target : array_like of the same shape as `probs`
        Target probabilities :math:`t_i` in [0, 1] (0/1 labels or soft).
    weight : array_like broadcastable to the shape of `probs`, default=None
        A weight per element.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        ``'mean'`` divides by the number of elements, never by the weights.

    Returns
    -------
    float64 or ndarray of float64
        A scalar for ``'mean'`` and ``'sum'``; the shape of `probs` for
        ``'none'``.

    Raises
    ------
    TypeError
        Non-real `probs`, `target` or `weight`; a non-string `reduction`.
    ValueError
        `probs` or `target` outside [0, 1]; a `target` of another shape; a
        `weight` that does not broadcast; an unknown `reduction`.

    See Also
    --------
    binary_cross_entropy_with_logits : The same loss from logits, more accurate.

    Notes
    -----
    Natural logarithms. Each log is clamped at -100, as in torch, so that a
    prediction of exactly 0 or 1 gives a finite loss (at most 100 per
    element) and :math:`0 \log 0` counts as 0. :math:`\log(1 - x)` is
    computed as ``log1p(-x)``, exact for tiny :math:`x` (torch 2.13.0 does
    the same).

    *Differences from PyTorch*: a `target` outside [0, 1] is a
    ``ValueError`` (torch computes a meaningless, possibly negative loss);
    a NaN in `probs` propagates to the loss, where torch raises; the result
    is float64. `reduction` is keyword-only, so torch's positional
    ``F.binary_cross_entropy(x, t, w, None, None, 'sum')`` is a
    ``TypeError`` here; write ``binary_cross_entropy(x, t, w,
    reduction='sum')``. Torch's deprecated `size_average` and `reduce` are
    not accepted; pass the `reduction` they stand for (``reduce=False`` is
    ``'none'``, else ``size_average=False`` is ``'sum'``, else ``'mean'``).
    The first parameter is named `probs` (torch: `input`).

    Examples
    --------
    >>> from crossentropy_ref import binary_cross_entropy
    >>> print(float(binary_cross_entropy([0.9, 0.2], [1.0, 0.0])))
    0.16425203348601802
    >>> print(float(binary_cross_entropy([0.0], [1.0])))   # clamped at -100
    100.0
    """
    x, t, w, red = _binary_inputs(probs, target, weight, reduction, "probs")
    v.check_unit_interval(x, "probs")
    with np.errstate(invalid="ignore"):  # NaN probabilities propagate
        hi, lo, e, bound = eb.bce_probs(x, t, w)
    return eb.reduce(hi, lo, e, bound, red)


@v.torch_signature_guard
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> NDArray[np.float64]:
    r"""Binary cross-entropy from logits, aka sigmoid cross-entropy or logistic loss.

    Mirrors ``torch.nn.functional.binary_cross_entropy_with_logits`` in
    float64. With :math:`\sigma` the logistic sigmoid and
    :math:`\operatorname{softplus}(x) = \log(1 + e^x)`:

    .. math::

        \ell_i &= -w_i \big[\, \rho_i t_i \log \sigma(x_i)
                  + (1 - t_i) \log(1 - \sigma(x_i)) \,\big] \\
               &= w_i \big[\, \rho_i t_i \operatorname{softplus}(-x_i)
                  + (1 - t_i) \operatorname{softplus}(x_i) \,\big]

    Parameters
    ----------
    logits : array_like of any shape
        Scores :math:`x_i`; any real dtype, computed in float64.
    target : array_like of the same shape as `logits`
        Target probabilities :math:`t_i` in [0, 1].
    weight : array_like broadcastable to the shape of `logits`, default=None
        A weight per element, :math:`w_i`.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        ``'mean'`` divides by the number of elements.
    pos_weight : array_like broadcastable to the shape of `logits`, default=None
        :math:`\rho_i`, the weight of the positive term. Broadcast as in numpy,
        so a shape (C,) array applies along the last axis, one weight per
        class of a multi-label problem.

    Returns
    -------
    float64 or ndarray of float64
        A scalar for ``'mean'`` and ``'sum'``; the shape of `logits` for
        ``'none'``.

    Raises
    ------
    TypeError
        Non-real `logits`, `target`, `weight` or `pos_weight`; a non-string
        `reduction`.
    ValueError
        `target` outside [0, 1] or of another shape; `weight` or
        `pos_weight` that does not broadcast to the shape of `logits`; an
        unknown `reduction`.

    See Also
    --------
    binary_cross_entropy : The same loss from probabilities.
    cross_entropy : Two-class softmax cross-entropy with logits ``[0, x]`` equals this loss with logit ``x``.

    Notes
    -----
    Natural logarithms. Both softplus terms are non-negative, so they never
    cancel, and :math:`\operatorname{softplus}(x) = \max(x, 0) +
    \operatorname{log1p}(e^{-|x|})` neither overflows nor loses the tiny
    loss of a confident, correct prediction.

    *Differences from PyTorch*: a `target` outside [0, 1] is a
    ``ValueError``. Torch computes ``(1 - t) x + (1 + (pos_weight - 1) t)
    softplus(-x)``, which cancels for large negative ``x`` with ``t = 0``
    and returns 0 where the loss is about :math:`e^{x}`; the result here
    keeps its relative precision. The result is float64. `reduction` and
    `pos_weight` are keyword-only, so torch's positional
    ``F.binary_cross_entropy_with_logits(x, t, w, None, None, 'sum')`` is a
    ``TypeError`` here; write ``binary_cross_entropy_with_logits(x, t, w,
    reduction='sum')``. Torch's deprecated `size_average` and `reduce` are
    not accepted; pass the `reduction` they stand for (``reduce=False`` is
    ``'none'``, else ``size_average=False`` is ``'sum'``, else ``'mean'``).
    The first parameter is named `logits` (torch: `input`).

    Examples
    --------
    >>> from crossentropy_ref import binary_cross_entropy_with_logits
    >>> bce = binary_cross_entropy_with_logits
    >>> print(float(bce([2.0, -1.0], [1.0, 0.0])))
    0.22009484928059767
    >>> print(float(bce([-40.0], [0.0])))
    4.248354255291589e-18
    >>> x, t = [[0.0, 0.0]], [[1.0, 1.0]]
    >>> print(float(bce(x, t, pos_weight=[1.0, 3.0])))
    1.3862943611198906
    """
    x, t, w, red = _binary_inputs(logits, target, weight, reduction, "logits")
    pw = None
    if pos_weight is not None:
        pw = v.as_real_array(pos_weight, "pos_weight")
        v.check_broadcastable(pw, x.shape, "pos_weight", "logits")
        v.check_finite(pw, "pos_weight", "weights")
    hi, lo, e, bound = eb.bce_with_logits(x, t, w, pw)
    shape = hi.shape
    flat = [np.broadcast_to(a, shape).reshape(-1) for a in (x, t, 1.0 if w is None else w, 1.0 if pw is None else pw)]

    def deep_one(i: int) -> float:
        return eb._decimal_bce_with_logits(*(float(a[i]) for a in flat))

    return eb.reduce(hi, lo, e, bound, red, deep_one)
