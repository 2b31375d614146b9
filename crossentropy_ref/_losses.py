"""Multi-class losses: ``cross_entropy``, its gradient, and ``nll_loss``.

For one position with logits ``z`` (C classes), let ``m = max(z) = z_k``,
``d_c = m - z_c >= 0`` and ``s = sum_{j != k} exp(-d_j)``. Then

    -log softmax(z)_c = d_c + log1p(s)                         (1)

with both terms >= 0. Every target (class index, label-smoothed index,
class probabilities, class weights) reduces to a non-negative mass vector
``b`` over classes, and the loss and its gradient are

    loss = sum_c b_c (-log q_c) = sum_c b_c d_c + a log1p(s),  a = sum_c b_c
    grad = a q - b                                              (2)

(1) keeps the loss free of cancellation; in (2) the entry at ``k``, where
``q_k`` is close to 1 and ``a q_k - b_k`` would cancel, is computed instead
as ``(a - b_k) - a s / (1 + s)`` with ``a - b_k`` summed over the other
classes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from . import _dd as dd
from . import _exact as ex
from . import _grad_exact as ge
from ._blocks import BLOCK_ELEMENTS, as_ncs, block_elements, iter_blocks, positions_shape, run_blocks, scratch


def _check_classes(z: np.ndarray, name: str = "logits") -> int:
    if z.ndim == 0:
        raise ValueError(f"`{name}` must have shape (C,), (N, C) or (N, C, d1, ..., dk); got a 0-d array")
    c = z.shape[0] if z.ndim == 1 else z.shape[1]
    if c == 0:
        axis = 0 if z.ndim == 1 else 1
        raise ValueError(f"`{name}` must have at least one class along axis {axis}; got shape {z.shape}")
    return c


class _Inputs(NamedTuple):
    """Checked inputs of cross_entropy / cross_entropy_grad; arrays as (N, C, S) views."""

    z: np.ndarray  # logits, (N, C, S)
    shape: tuple[int, ...]  # the logits' original shape
    c: int
    w: np.ndarray | None  # (C,)
    w_total: float  # sum of the class weights (C without weights)
    w_total_lo: float  # the rest of that sum: w_total + w_total_lo is exact to about 2**-106
    eps: float
    reduction: str
    probabilities: bool
    p: np.ndarray | None  # probability targets, (N, C, S)
    y: np.ndarray | None  # class-index targets, (N, S)
    ignore_index: int
    denom: float  # the 'mean' denominator


def _check_inputs(logits, target, weight, ignore_index, reduction, label_smoothing) -> _Inputs:
    reduction = v.check_reduction(reduction)
    eps = v.check_label_smoothing(label_smoothing)
    ignore_index = v.check_int(ignore_index, "ignore_index")
    z = v.as_logits(logits)
    c = _check_classes(z)
    w = v.as_weight(weight, c)
    w_total = float(c) if w is None else ex.accurate_sum(w)
    # fsum of the weights and -w_total is exact before its one rounding.
    w_total_lo = 0.0
    if w is not None and eps and math.isfinite(w_total):
        w_total_lo = math.fsum([*w.tolist(), -w_total])
    n, s = positions_shape(z.shape)
    common = dict(z=as_ncs(z), shape=z.shape, c=c, w=w, w_total=w_total, w_total_lo=w_total_lo, eps=eps,
                  reduction=reduction)
    if v.target_is_probabilities(target, z.shape):
        if ignore_index >= 0:
            raise ValueError(
                "`ignore_index` must be negative (unused) with class-probability targets, as in torch; "
                f"got {ignore_index}"
            )
        p = as_ncs(v.as_prob_target(target, z.shape))
        return _Inputs(**common, probabilities=True, p=p, y=None, ignore_index=ignore_index, denom=float(n * s))
    y = v.as_index_target(target, z.shape, ignore_index).reshape(n, s)
    # The denominator is summed in chunks so that no weight array of the targets' size is made.
    flat = y.reshape(-1)
    denom = math.fsum(
        ex.accurate_sum(_index_parts(flat[i : i + BLOCK_ELEMENTS], ignore_index, w)[2])
        for i in range(0, flat.size, BLOCK_ELEMENTS)
    )
    return _Inputs(**common, probabilities=False, p=None, y=y, ignore_index=ignore_index, denom=denom)


def _index_parts(y: np.ndarray, ignore_index: int, w: np.ndarray | None):
    """(valid, yc, w_y) for index targets `y`: not ignored; the index with ignored entries
    clamped to class 0 so that it can be gathered (masked out later); the target's weight, 0 where ignored."""
    valid = y != ignore_index
    yc = np.where(valid, y, 0)
    w_y = valid.astype(np.float64) if w is None else np.where(valid, w[yc], 0.0)
    return valid, yc, w_y


def _mass(pb: _Inputs, rows, cols) -> np.ndarray:
    """Target mass b (bn, C, bs) of a probability-target block: w * ((1 - eps) p + eps / C)."""
    b = pb.p[rows, :, cols] * (1.0 - pb.eps)
    if pb.eps:
        b += pb.eps / pb.c
    if pb.w is not None:
        b *= pb.w[None, :, None]
    return b


def _gather_target(z: np.ndarray, rows: slice, cols: slice, yc: np.ndarray) -> np.ndarray:
    """z[n, yc[n, s], s] for the positions of a block, shape (bn, bs)."""
    n, c, s = z.shape
    if not z.flags.c_contiguous:
        return np.take_along_axis(z[rows, :, cols], yc[:, None, :], axis=1)[:, 0, :]
    # A flat take on the contiguous logits is several times faster than take_along_axis,
    # which builds broadcast index arrays for every axis.
    base = np.arange(n)[rows, None] * (c * s) + np.arange(s)[None, cols]
    return np.take(z.reshape(-1), base + yc * s)


def _weighted_gaps(v, sigma: np.ndarray, err: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """sum_c v_c (m - z_c) per position (bn, bs), from m - z_c = (x0 - sigma_c) - err_c.

    `v` is None (all ones), class weights (C,) or masses (bn, C, bs). Each
    x0 - sigma_c >= 0 is split exactly by TwoSum, so the sum has only
    non-negative main terms (no cancellation, even when the loss is 1e-30 of
    x0) and the low parts, with the shift errors err_c, are summed beside it.
    """
    with np.errstate(invalid="ignore"):
        # Into scratch buffers, so that it makes no temporaries the size of the block
        # (segmentation with smoothing: the peak fell from 14.9 % to 4.0 % of the logits).
        d_hi, d_lo = ex.two_diff(x0, sigma, *(scratch(sigma.shape, i) for i in (2, 3, 4)))
        d_lo -= err
        inf = ~np.isfinite(d_hi)
        if inf.any():
            # A -inf logit: d = inf, no low part; and 0 * log 0 = 0: a class with no
            # target mass and a -inf logit contributes nothing.
            d_lo[inf] = 0.0
            if v is not None:
                vb = np.broadcast_to(v[None, :, None] if v.ndim == 1 else v, sigma.shape)
                d_hi[inf & (vb == 0)] = 0.0
    if v is not None:
        # Products first, then a pairwise sum: einsum's dot accumulates along the row, whose
        # error grows with C (several ulp at C = 10**4).
        vb = v[None, :, None] if v.ndim == 1 else v
        d_hi *= vb
        d_lo *= vb
    return (ex.class_sum(d_hi, 1, overwrite=True) + ex.class_sum(d_lo, 1, overwrite=True))[:, 0, :]


def _loss_block(pb: _Inputs, rows, cols) -> np.ndarray:
    zb = pb.z[rows, :, cols]
    middle = zb.shape[2] > 1  # class axis in the middle: skip argmax, which would copy the block
    # z - m = sigma + err - x0 exactly: the shift's rounding error is kept (see _exact.shift).
    m, k, x0, sigma, err = ex.shift(zb, 1, locate=not middle, out=scratch(zb.shape), err_out=scratch(zb.shape, 1))
    ties = (zb == m) if middle else None
    m2 = m[:, 0, :]
    smooth = pb.eps / pb.c
    if pb.probabilities or pb.eps:
        ex.clean_errors(err)  # inf logits: NaN errors to 0 (their terms are 0 or the slice is NaN)
        # Both need sum_c v_c d_c, taken from sigma before it is exponentiated.
        if pb.probabilities:
            wp = pb.p[rows, :, cols] if pb.w is None else pb.p[rows, :, cols] * pb.w[None, :, None]
            gaps_p, mass_p = _weighted_gaps(wp, sigma, err, x0), ex.class_sum(wp, 1)[:, 0, :]
        if pb.eps:
            gaps_w = _weighted_gaps(pb.w, sigma, err, x0)
    s_hi, s_lo, _ = ex.exp_and_sum(sigma, err, 1, x0, k=k, ties=ties, overwrite_sum=True)
    l_hi, l_lo = ex.log1p_dd(s_hi[:, 0, :], s_lo[:, 0, :])
    one_m_eps, eps_c = ex.smoothing_pairs(pb.eps, pb.c)  # 1 - eps and eps / C without their rounding
    with np.errstate(invalid="ignore", over="ignore"):
        if pb.probabilities:
            # (1 - eps) (sum_c w_c p_c d_c + a log1p(s)) + eps/C (sum_c w_c d_c + W log1p(s)), all >= 0.
            inner = gaps_p + (mass_p * l_hi + mass_p * l_lo)
            loss = inner if not pb.eps else ex.dd_mul_scalar(inner, 0.0, *one_m_eps)
            if pb.eps:
                loss = loss + ex.dd_mul_scalar(gaps_w + (pb.w_total * l_hi + pb.w_total * l_lo), 0.0, *eps_c)
            return _nan_where_nonfinite(loss, m2)
        valid, yc, w_y = _index_parts(pb.y[rows, cols], pb.ignore_index, pb.w)
        # d_y = m - z_y is gathered directly (no full-size array) and kept exactly as a pair.
        d_hi, d_lo = ex.two_sum(m2, -_gather_target(pb.z, rows, cols, yc))
        d_lo = np.where(np.isfinite(d_hi), d_lo, 0.0)  # a -inf target logit: d_y = inf, no low part
        # -log q_y = d_y + log1p(s), rounded once below; d_y is inf for a -inf target logit.
        x_hi, x_lo = dd.add(d_hi, d_lo, l_hi, l_lo, nonfinite=True)
        loss = w_y * x_hi + w_y * x_lo
        if pb.eps:
            # Smoothing term eps/C * sum_c w_c (-log q_c) = eps/C * (sum_c w_c d_c + W log1p(s)), all terms >= 0.
            loss = ex.dd_mul_scalar(w_y * x_hi, w_y * x_lo, *one_m_eps)
            loss += ex.dd_mul_scalar(gaps_w + (pb.w_total * l_hi + pb.w_total * l_lo), 0.0, *eps_c)
    return np.where(valid, _nan_where_nonfinite(loss, m2), 0.0)


def _nan_where_nonfinite(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """NaN wherever the slice maximum `m` (broadcast against `x`) is not finite.

    A slice holding +inf or NaN, or only -inf, has no finite shift; torch's
    ``z - max`` is NaN there and so is everything computed from it.
    """
    np.copyto(x, np.nan, where=~np.isfinite(m))
    return x


def _grad_block_soft(pb: _Inputs, rows, cols, out: np.ndarray) -> bool:
    """The gradient of soft targets or label smoothing in double-double (see _grad_exact).

    Returns False, having written nothing, where that tier does not apply
    (masses beyond _grad_exact.DD_MAX); the float64 path then computes the
    block. A zero 'mean' denominator is handled before, by _grad_block.
    """
    zb = pb.z[rows, :, cols]
    g = out[rows, :, cols]
    den = pb.denom if pb.reduction == "mean" else None
    k = np.argmax(zb, axis=1, keepdims=True)
    m = np.take_along_axis(zb, k, axis=1)
    if pb.probabilities:
        valid = yc = None
        pblock = pb.p[rows, :, cols]
        mass = ge.prob_mass(pblock, pb.w, pb.eps)
    else:
        valid, yc, w_y = (x[:, None, :] for x in _index_parts(pb.y[rows, cols], pb.ignore_index, pb.w))
        mass = ge.index_mass(zb.shape, yc, w_y, pb.w, (pb.w_total, pb.w_total_lo), pb.eps)
    if not ge.usable(mass):
        return False
    hard, kappa = ge.grad_block(zb, m, k, mass, den, g)
    if valid is not None:
        hard &= valid
    for i, j in np.argwhere(hard[:, 0, :]):
        g[i, :, j] = ge.grad_position_decimal(
            zb[i, :, j],
            pblock[i, :, j] if pb.probabilities else None,
            None if yc is None else int(yc[i, 0, j]),
            pb.w,
            pb.eps,
            den,
            float(kappa[i, 0, j]),
        )
    _nan_where_nonfinite(g, m)
    if valid is not None:
        np.copyto(g, 0.0, where=~valid)
    return True


def _grad_block(pb: _Inputs, rows, cols, out: np.ndarray) -> None:
    if pb.reduction == "mean" and pb.denom == 0:
        # As torch: a zero denominator makes every entry NaN but the ignored ones.
        g = out[rows, :, cols]
        g.fill(np.nan)
        if not pb.probabilities:
            np.copyto(g, 0.0, where=pb.y[rows, None, cols] == pb.ignore_index)
        return
    if (pb.probabilities or pb.eps) and _grad_block_soft(pb, rows, cols, out):
        return
    # Index targets without smoothing (and, as a fallback, masses too large for _grad_exact):
    # b is 0 but at the target, so no entry cancels by more than a factor 3 and float64
    # suffices, with the per-position factors and the two special entries in double-double.
    zb = pb.z[rows, :, cols]
    g = out[rows, :, cols]  # a view: the gradient is built in place in the output
    den = pb.denom if pb.reduction == "mean" else 1.0
    # z - m = sigma + err - x0 exactly (see _exact.shift); sigma is exponentiated in place.
    m, k, x0, e, err = ex.shift(zb, 1, out=g, err_out=scratch(zb.shape, 1))
    s_hi, s_lo, gx = ex.exp_and_sum(e, err, 1, x0, k=k)
    if pb.probabilities:
        b = _mass(pb, rows, cols)
        b_k = np.take_along_axis(b, k, axis=1)
        np.put_along_axis(b, k, 0.0, axis=1)
        rest = ex.class_sum(b, 1)  # sum of b over classes other than k
        a = rest + b_k
    else:
        valid, yc, w_y = (x[:, None, :] for x in _index_parts(pb.y[rows, cols], pb.ignore_index, pb.w))
        # 1 - eps and eps / C as unevaluated pairs, so that a and b are rounded about once.
        (oh, ol), (eh, el) = ex.smoothing_pairs(pb.eps, pb.c)
        b_y = oh * w_y + ol * w_y
        a = (oh * w_y + eh * pb.w_total) + (ol * w_y + el * pb.w_total)
        w_k = 1.0 if pb.w is None else pb.w[k]
        b_k = b_y * (yc == k) + (eh * w_k + el * w_k)
        rest = b_y * (yc != k) + (eh * (pb.w_total - w_k) + el * (pb.w_total - w_k))
        e_y, err_y = np.take_along_axis(e, yc, axis=1), np.take_along_axis(err, yc, axis=1)
    # F = a (1 + gx) / (1 + s) in double-double: a q_c = e_c (1 + err_c) F, with e_c = exp(sigma_c).
    rh, rl = dd.recip_one_plus(s_hi, s_lo)  # q_k = 1 / (1 + s)
    fh, fl = dd.mul_float(*dd.add(rh, rl, rh * gx, 0.0), a)
    # One rounding for F / den, the factor of every entry; then two more per entry.
    f = dd.round_div(fh, fl, den)
    err *= e
    e += err  # exp(sigma_c)(1 + err_c): the shift's rounding error restored
    e *= f
    if pb.probabilities:
        g -= b / den
    else:
        if pb.eps:
            w = 1.0 if pb.w is None else pb.w[None, :, None]
            g -= (eh * w + el * w) / den
        # The target's entry a q_y - b_y in double-double, rounded once (it may cancel by a factor 3).
        ph, pl = dd.mul(e_y, e_y * err_y, fh, fl)
        g_y = dd.round_div(*dd.add(ph, pl, -b_y, 0.0), den)
        np.put_along_axis(g, yc, g_y, axis=1)
    # Entry k: a q_k - b_k. When q_k > 1/2 it is computed as (a - b_k) - a (1 - q_k), with
    # no cancellation as q_k -> 1; below 1/2, directly (then a - b_k and a (1 - q_k) could cancel).
    near = dd.add(rest, 0.0, *dd.mul_float(*dd.mul(s_hi, s_lo, rh, rl), -a))
    far = dd.add(*dd.mul_float(rh, rl, a), -b_k, 0.0)  # a q_k - b_k, q_k = 1 / (1 + s)
    g_k = dd.round_div(np.where(rh > 0.5, near[0], far[0]), np.where(rh > 0.5, near[1], far[1]), den)
    np.put_along_axis(g, k, g_k, axis=1)
    _nan_where_nonfinite(g, m)
    if not pb.probabilities:
        # copyto, not a product: the gradient at an ignored position is exactly 0, whatever else is NaN.
        np.copyto(g, 0.0, where=~valid)


@v.torch_signature_guard
def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> NDArray[np.float64]:
    r"""Cross-entropy loss between logits and a target, aka log loss or softmax loss.

    Mirrors ``torch.nn.functional.cross_entropy`` in float64. For one
    position with logits :math:`z`, predicted probabilities
    :math:`q = \operatorname{softmax}(z)` and target distribution :math:`p`,

    .. math::

        \ell = -\sum_{c=1}^{C} w_c\, \tilde p_c \log q_c,
        \qquad \tilde p = (1 - \varepsilon)\, p + \frac{\varepsilon}{C},

    where :math:`p` is the one-hot vector of the class index :math:`y` for
    index targets (then :math:`\ell = -w_y \log q_y` when
    :math:`\varepsilon = 0`), :math:`w` the class weights (all 1 by default)
    and :math:`\varepsilon` the label smoothing. With index targets ``mean``
    is :math:`\sum_i \ell_i / \sum_i w_{y_i}` over the positions that are not
    ignored; with probability targets it is :math:`\sum_i \ell_i / M` over
    all :math:`M` positions.

    Parameters
    ----------
    logits : array_like of shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalised scores; the class axis is 1 (0 for unbatched input).
        Any real dtype; computed in float64.
    target : array_like of shape (), (N,) or (N, d1, ..., dk), or the shape of `logits`
        Class indices (integer dtype) in ``[0, C)`` or equal to
        `ignore_index`; or, when it has the shape of `logits`, class
        probabilities.
    weight : array_like of shape (C,), default=None
        A weight per class. May be passed as the third positional argument,
        as in torch.
    ignore_index : int, default=-100
        Index targets equal to it contribute neither to the loss nor to the
        ``mean`` denominator. It may be a valid class. Must be negative
        with probability targets.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        ``'none'`` returns one loss per position (0 where ignored).
    label_smoothing : float in [0, 1], default=0.0
        The :math:`\varepsilon` above: mixes :math:`\varepsilon / C` of
        every class into the target.

    Returns
    -------
    float64 or ndarray of float64
        A float64 scalar for ``'mean'`` and ``'sum'``; for ``'none'`` an
        array of shape (N,) or (N, d1, ..., dk) (a scalar for unbatched
        input). ``'mean'`` is NaN when its denominator is 0: an empty batch,
        all targets ignored, or target classes whose weights are all 0.

    Raises
    ------
    TypeError
        Non-real `logits` (bool, complex, strings); index targets that are
        not integers; a non-string `reduction`; a non-real
        `label_smoothing`; a non-integer `ignore_index`.
    ValueError
        0-d or class-less `logits`; a `target` whose shape fits neither
        target kind; a class index out of range; a `weight` that is not of
        shape (C,); an unknown `reduction`; `label_smoothing` outside
        [0, 1]; a non-negative `ignore_index` with probability targets.

    See Also
    --------
    cross_entropy_grad : Its gradient with respect to `logits`.
    nll_loss : The same loss from log-probabilities.
    log_softmax : The log-probabilities this loss is built on.

    Notes
    -----
    Logarithms are natural, so the loss is in nats. Classes with no target
    mass contribute 0 even where :math:`q_c = 0`, by the convention
    :math:`0 \log 0 = 0`.

    The per-class loss is written as :math:`-\log q_c = (m - z_c) +
    \operatorname{log1p}(\sum_{j \ne k} e^{z_j - m})` with
    :math:`m = z_k = \max_j z_j`: no exponential overflows, and both terms
    are non-negative, so a confident prediction's tiny loss keeps its full
    relative precision (torch computes ``logsumexp(z) - z_y``, which rounds
    to 0 once :math:`q_y > 1 - 2^{-53}`).

    The work is done in cache-sized blocks of positions, so the extra memory
    is a few blocks, not a copy of `logits`.

    *Differences from PyTorch*:

    - the options after `weight` (`ignore_index`, `reduction`,
      `label_smoothing`) are keyword-only, so torch's positional
      ``F.cross_entropy(x, y, w, None, 255)`` is a ``TypeError`` here,
      whose message names the options to pass by keyword; write
      ``cross_entropy(x, y, w, ignore_index=255)``;
    - torch's deprecated `size_average` and `reduce` are not accepted
      (``TypeError``); pass the `reduction` they stand for:
      ``reduce=False`` is ``'none'``, else ``size_average=False`` is
      ``'sum'``, else ``'mean'``;
    - the first parameter is named `logits` (torch: `input`);
    - the result is float64 whatever the input dtype, and more accurate;
    - integer index targets of any width (int32, uint8, ...) are accepted,
      and so are integer probability targets (e.g. from :func:`one_hot`);
      torch requires int64 indices and floating-point probabilities;
    - integer logits are accepted;
    - a negative `label_smoothing` is a ``ValueError``; torch silently
      treats it as 0;
    - with probability targets, a class with no target mass and a -inf
      logit contributes 0 (:math:`0 \log 0 = 0`); torch returns NaN;
    - a class axis of length 0 is a ``ValueError``;
    - ``'mean'`` with a zero denominator is always NaN; torch gives NaN too,
      except with negative class weights that sum to 0, where it can give
      an infinity.

    References
    ----------
    .. [1] P. Blanchard, D. J. Higham and N. J. Higham, "Accurately computing
       the log-sum-exp and softmax functions", IMA J. Numer. Anal. 41 (2021),
       doi:10.1093/imanum/draa038.
    .. [2] C. Szegedy et al., "Rethinking the Inception Architecture for
       Computer Vision", CVPR 2016 (label smoothing).

    Examples
    --------
    The cat/dog/turtle example: three samples, three classes.

    >>> from crossentropy_ref import cross_entropy
    >>> logits = [[9.7785, 0.9195, 2.10],
    ...           [3.133, -3.05, 1.02],
    ...           [0.12, 0.432518, 0.470]]
    >>> print(float(cross_entropy(logits, [0, 0, 2])))
    0.36594851568931036

    One-hot probabilities give the same loss as the indices:

    >>> onehot = [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    >>> print(float(cross_entropy(logits, onehot)))
    0.36594851568931036

    Per-sample losses, class weights and ignored targets:

    >>> import numpy as np
    >>> np.set_printoptions(precision=6, suppress=True)
    >>> print(cross_entropy(logits, [0, 0, 2], reduction="none"))
    [0.000605 0.115949 0.981292]
    >>> w = [1.0, 1.0, 2.0]
    >>> print(float(cross_entropy(logits, [0, -100, 2], w)))
    0.6543959195775186
    >>> np.set_printoptions(precision=8, suppress=False)

    A confident prediction: the naive ``logsumexp(z) - z_y`` cancels to 0,
    the reference keeps the true value:

    >>> z = np.array([[40.0, 0.0]])
    >>> print(float(np.log(np.sum(np.exp(z))) - z[0, 0]))
    0.0
    >>> print(float(cross_entropy(z, [0])))
    4.248354255291589e-18
    """
    pb = _check_inputs(logits, target, weight, ignore_index, reduction, label_smoothing)
    n, _, s = pb.z.shape
    # 'none' fills one loss per position; 'mean' and 'sum' keep only one partial sum per block.
    loss = np.empty((n, s)) if pb.reduction == "none" else None
    partial = {}

    def fill(rows, cols):
        # errstate is thread-local: set it in the worker. inf - inf in a row holding
        # +inf is NaN, as in torch; NaN logits propagate.
        with np.errstate(invalid="ignore"):
            block = _loss_block(pb, rows, cols)
        if loss is None:
            partial[rows.start, cols.start] = ex.accurate_sum(block)
        else:
            loss[rows, cols] = block

    # Larger blocks for index targets without smoothing on large inputs (see
    # _blocks.block_elements). Probabilities and smoothing make more temporaries per
    # block and ran slower with larger ones (segmentation with smoothing: 0.157 s and
    # 15 % of the logits at 2**16 elements, 0.228 s and 30 % at 2**17).
    size = BLOCK_ELEMENTS if pb.probabilities or pb.eps else block_elements(pb.z.size)
    run_blocks(fill, iter_blocks(n, pb.c, s, elements=size))
    if loss is not None:
        out = loss.reshape(v.index_target_shape(pb.shape))
        return out[()] if out.ndim == 0 else out
    # fsum makes the total exact over the blocks, and independent of their order.
    total = np.float64(math.fsum(partial.values()))
    if pb.reduction == "sum":
        return total
    if pb.denom == 0:  # empty batch, all ignored, or zero target weights: NaN, as in torch
        return np.float64(np.nan)
    with np.errstate(over="ignore"):  # a subnormal denominator may overflow to inf, as in torch
        return total / np.float64(pb.denom)


@v.torch_signature_guard
def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> NDArray[np.float64]:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    For one position with target mass :math:`b_c = w_c \tilde p_c` (see
    :func:`cross_entropy`) and :math:`a = \sum_c b_c`,

    .. math::

        \frac{\partial \ell}{\partial z_c} = a\, q_c - b_c,
        \qquad q = \operatorname{softmax}(z),

    which is :math:`q - p` for an unweighted, unsmoothed target. Under
    ``'mean'`` the result is divided by the same denominator as the loss.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.

    Returns
    -------
    ndarray of float64, same shape as `logits`
        For ``reduction='none'``, the gradient of the sum of the per-position
        losses. Ignored positions get exactly 0; under ``'mean'`` with a zero
        denominator every other entry is NaN, as in torch.

    Raises
    ------
    TypeError, ValueError
        As for :func:`cross_entropy`.

    See Also
    --------
    cross_entropy

    Notes
    -----
    The entry at the largest logit, where :math:`q_k \to 1` and
    :math:`a q_k - b_k` would cancel, is computed as
    :math:`(\sum_{c \ne k} b_c) - a\,(1 - q_k)`, with :math:`1 - q_k` taken
    as :math:`s / (1 + s)`, :math:`s = \sum_{j \ne k} e^{z_j - m}`. The
    gradient is computed directly into its output, one block of positions at
    a time, so the only array the size of `logits` is the result.

    Every entry whose exact value is a normal float64 is within a few ulp of
    it. With soft targets or label smoothing, :math:`a q_c` and :math:`b_c`
    can be close, and their difference magnifies their rounding errors by
    :math:`\kappa_c = (a q_c + b_c) / |a q_c - b_c|`. Those gradients are
    therefore computed in double-double arithmetic (about 106 bits), and
    the rare positions with :math:`\kappa_c` beyond about :math:`2^{44}`
    again with Python's ``decimal`` module. This makes them several times
    slower than the gradient of class indices without smoothing, whose
    entries never cancel by more than a factor 3; a target that copies the
    prediction to 13 digits or more, such as ``softmax(logits)`` itself,
    costs tens of microseconds per logit.

    *Differences from PyTorch*: torch has no such function; it is what
    ``torch.autograd`` returns for ``F.cross_entropy(logits, target, ...)``
    (``.sum()`` of it for ``reduction='none'``), here in closed form. The
    entry at the largest logit is accurate where autograd's
    ``softmax - 1`` rounds to 0. An ignored position's gradient is exactly 0
    even when its logits hold NaN, where autograd gives NaN. Its signature
    is that of :func:`cross_entropy`, with the same departures from
    ``F.cross_entropy``: the options after `weight` are keyword-only, and
    `size_average` and `reduce` are not accepted.

    Examples
    --------
    >>> import numpy as np
    >>> from crossentropy_ref import cross_entropy_grad, softmax
    >>> np.set_printoptions(precision=6)
    >>> z = np.array([[1.0, 2.0, 3.0]])
    >>> print(cross_entropy_grad(z, [2]))
    [[ 0.090031  0.244728 -0.334759]]
    >>> print(softmax(z) - [0.0, 0.0, 1.0])
    [[ 0.090031  0.244728 -0.334759]]

    For a confident prediction ``softmax - 1`` rounds to 0:

    >>> z = np.array([[40.0, 0.0]])
    >>> print(float(softmax(z)[0, 0] - 1.0))
    0.0
    >>> print(float(cross_entropy_grad(z, [0])[0, 0]))
    -4.248354255291589e-18
    >>> np.set_printoptions(precision=8)
    """
    pb = _check_inputs(logits, target, weight, ignore_index, reduction, label_smoothing)
    out = np.empty(pb.shape)
    out3 = as_ncs(out)

    def fill(rows, cols):
        with np.errstate(invalid="ignore", over="ignore"):  # thread-local, see cross_entropy
            _grad_block(pb, rows, cols, out3)

    # The double-double tier of soft targets makes dozens of temporaries per block: smaller
    # blocks bound their memory. It runs on one thread: its many short numpy calls keep
    # taking the GIL, and a second thread made it no faster (measured on (256, 32000)).
    soft = pb.probabilities or pb.eps
    size = ge.BLOCK_ELEMENTS if soft else block_elements(pb.z.size)
    run_blocks(fill, iter_blocks(*pb.z.shape, elements=size), parallel=not soft)
    return out


@v.torch_signature_guard
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> NDArray[np.float64]:
    r"""Negative log-likelihood loss, from log-probabilities and class indices.

    Mirrors ``torch.nn.functional.nll_loss`` in float64:

    .. math::

        \ell_i = -w_{y_i}\, x_{i, y_i},
        \qquad \text{mean} = \frac{\sum_i \ell_i}{\sum_i w_{y_i}},

    both sums over the positions whose target is not `ignore_index`.

    Parameters
    ----------
    log_probs : array_like of shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities, usually from :func:`log_softmax`; the class axis
        is 1 (0 for unbatched input). They are not checked to be
        log-probabilities, as in torch.
    target : array_like of shape (), (N,) or (N, d1, ..., dk)
        Class indices (integer dtype) in ``[0, C)`` or equal to
        `ignore_index`.
    weight : array_like of shape (C,), default=None
        A weight per class; may be positional.
    ignore_index : int, default=-100
        Targets equal to it are skipped. It may be a valid class.
    reduction : {'mean', 'sum', 'none'}, default='mean'

    Returns
    -------
    float64 or ndarray of float64
        As for :func:`cross_entropy` with index targets.

    Raises
    ------
    TypeError
        Non-real `log_probs`; non-integer `target`; a non-string
        `reduction`; a non-integer `ignore_index`.
    ValueError
        0-d or class-less `log_probs`; a `target` of the wrong shape; a
        class index out of range; a `weight` not of shape (C,); an unknown
        `reduction`.

    See Also
    --------
    cross_entropy : ``nll_loss(log_softmax(logits, axis=1), target)``, computed accurately.

    Notes
    -----
    ``cross_entropy(z, y)`` equals ``nll_loss(log_softmax(z, axis=1), y)``;
    both are exact to rounding here because :func:`log_softmax` keeps its
    relative precision.

    *Differences from PyTorch*: integer targets of any width are accepted;
    probability targets are not (as in torch); the result is float64.
    `ignore_index` and `reduction` are keyword-only, so torch's positional
    ``F.nll_loss(x, y, w, None, 255)`` is a ``TypeError`` here; write
    ``nll_loss(x, y, w, ignore_index=255)``. Torch's deprecated
    `size_average` and `reduce` are not accepted; pass the `reduction` they
    stand for (``reduce=False`` is ``'none'``, else ``size_average=False``
    is ``'sum'``, else ``'mean'``). The first parameter is named
    `log_probs` (torch: `input`).

    Examples
    --------
    >>> from crossentropy_ref import log_softmax, nll_loss
    >>> logits = [[9.7785, 0.9195, 2.10],
    ...           [3.133, -3.05, 1.02],
    ...           [0.12, 0.432518, 0.470]]
    >>> print(float(nll_loss(log_softmax(logits, axis=1), [0, 0, 2])))
    0.36594851568931036
    >>> print(float(nll_loss([[-0.5, -1.0]], [1], reduction="sum")))
    1.0
    """
    red = v.check_reduction(reduction)
    ignore = v.check_int(ignore_index, "ignore_index")
    x = v.as_real_array(log_probs, "log_probs", min_ndim=1)
    c = _check_classes(x, "log_probs")
    w = v.as_weight(weight, c)
    t = v.as_index_target(target, x.shape, ignore, logits_name="log_probs")
    n, s = positions_shape(x.shape)
    x3 = as_ncs(x)
    valid, yc, w_y = _index_parts(t.reshape(n, s), ignore, w)
    picked = np.take_along_axis(x3, yc[:, None, :], axis=1)[:, 0, :]
    # inf * 0 and inf - inf are NaN, as in torch, without a warning.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # where(), not a product, so that a NaN or inf at an ignored position does not leak in.
        loss = np.where(valid, -w_y * picked, 0.0)
        if red == "none":
            out = loss.reshape(t.shape)
            return out[()] if out.ndim == 0 else out
        # accurate_sum: exact before its final rounding (a pairwise sum of 10**6 terms is not).
        if red == "sum":
            return np.float64(ex.accurate_sum(loss))
        return np.float64(ex.accurate_sum(loss)) / np.float64(ex.accurate_sum(w_y))
