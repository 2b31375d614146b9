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
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _engine as engine
from . import _validation as v
from ._engine import _exactsum as xs
from ._engine._blocks import as_ncs, positions_shape
from ._engine._loss import Problem


def _check_classes(z: np.ndarray, name: str = "logits") -> int:
    if z.ndim == 0:
        raise ValueError(f"`{name}` must have shape (C,), (N, C) or (N, C, d1, ..., dk); got a 0-d array")
    c = z.shape[0] if z.ndim == 1 else z.shape[1]
    if c == 0:
        axis = 0 if z.ndim == 1 else 1
        raise ValueError(f"`{name}` must have at least one class along axis {axis}; got shape {z.shape}")
    return c


def _scaled_weights(w: np.ndarray | None, c: int):
    """The weights' scalings (see `_engine._loss`): per class frexp, and one power of two."""
    if w is None:
        return dict(wm=None, we=None, ws=None, w_exp=0, w_wide=False, w_total=(float(c), 0.0), w_abs=float(c))
    wm, we = np.frexp(w)
    finite = np.abs(w[np.isfinite(w)])
    top = float(finite.max()) if finite.size else 0.0
    w_exp = math.frexp(top)[1] if top > 0 else 0
    ws = np.ldexp(w, -w_exp)
    # fsum is exact before its one rounding; the rest of the sum, again by fsum, is exact to
    # its own rounding: W = h + l within 2**-106 of |W| (no finite-weight overflow: |ws| < 1).
    vals = ws.tolist()
    try:
        h = math.fsum(vals)
        l = math.fsum([*vals, -h])
        w_abs = math.fsum(abs(x) for x in vals) * (1 + 2.0**-50)
    except (OverflowError, ValueError):  # inf or NaN weights: propagate as numpy does
        h, l, w_abs = float(np.sum(ws)), 0.0, float(np.sum(np.abs(ws)))
    wide = bool(np.any((ws != 0) & (np.abs(ws) < 2.0**-1022)))
    return dict(wm=wm, we=we.astype(np.int64), ws=ws, w_exp=w_exp, w_wide=wide, w_total=(h, l), w_abs=w_abs)


def _check_inputs(logits, target, weight, ignore_index, reduction, label_smoothing) -> Problem:
    """Parse and check every input once; the arrays come back as (N, C, S) views."""
    reduction = v.check_reduction(reduction)
    eps = v.check_label_smoothing(label_smoothing)
    ignore_index = v.check_int(ignore_index, "ignore_index")
    z = v.as_logits(logits)
    c = _check_classes(z)
    w = v.as_weight(weight, c)
    n, s = positions_shape(z.shape)
    common = dict(z=as_ncs(z), shape=z.shape, c=c, w=w, **_scaled_weights(w, c), eps=eps, reduction=reduction,
                  ignore_index=ignore_index)
    t, probabilities = v.as_target(target, z.shape)
    if probabilities:
        v.check_ignore_unused(ignore_index)
        p = as_ncs(v.as_prob_target(t, z.shape))
        return Problem(**common, probabilities=True, p=p, y=None)
    y, marker = v.as_index_target(t, z.shape, ignore_index)
    return Problem(**{**common, "ignore_index": marker}, probabilities=False, p=None, y=y.reshape(n, s))


def _denominator(pb: Problem) -> xs.ExactTotal:
    """The 'mean' denominator, exactly: the number of positions (probabilities), or the sum of
    the target classes' weights over the positions that are not ignored."""
    if pb.probabilities:
        return xs.exact_total(np.array([float(pb.z.shape[0] * pb.z.shape[2])]))
    valid = pb.y != pb.ignore_index
    if pb.w is None:
        return xs.exact_total(np.array([float(np.count_nonzero(valid))]))
    yc = np.where(valid, pb.y, 0)
    return xs.exact_total(np.where(valid, np.take(pb.wm, yc), 0.0), np.take(pb.we, yc))


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
        Any real dtype (bfloat16 and float8 from ml_dtypes included), as a
        numpy array, a nested list or a torch tensor (read detached, and
        copied to the host from a GPU); computed in float64.
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

    The work is done in blocks of positions, so the extra memory is a few
    blocks, not a copy of `logits`. Each position's loss carries an error
    bound; positions the bound cannot prove within 4 ulp (terms in the
    subnormal range, mixed-sign weights) are recomputed in triple-double.
    ``'sum'`` and ``'mean'`` add the positions' losses exactly and round
    once, so they do not depend on the order of the blocks.

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
      an infinity;
    - NaN or infinite class weights, and NaN, infinite or negative
      probability targets, are a ``ValueError`` that names the first
      position; torch returns a meaningless loss (teacher logits passed as
      the target give negative losses). Probability rows that do not sum to
      1 are accepted, as in torch: the loss is then the weighted sum of the
      :math:`-\log q_c`;
    - masked arrays (their mask would be lost) and dask arrays (they would
      be computed whole into memory) are a ``TypeError``.

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
    0.3659485156893104

    One-hot probabilities give the same loss as the indices:

    >>> onehot = [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    >>> print(float(cross_entropy(logits, onehot)))
    0.3659485156893104

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
    den = _denominator(pb) if pb.reduction == "mean" else None
    if den is not None and _is_zero(den):
        return np.float64(np.nan)  # empty batch, all ignored, or zero target weights: NaN, as in torch
    out = engine.loss(pb, den, engine.loss_deep)
    if pb.reduction == "none":
        out = out.reshape(v.index_target_shape(pb.shape))
        return out[()] if out.ndim == 0 else out
    return out


def _is_zero(t: xs.ExactTotal) -> bool:
    return t.mant == 0 and not (t.nan or t.pos_inf or t.neg_inf)


def _pair_with_exponent(t: xs.ExactTotal) -> tuple[float, float, int]:
    """A finite nonzero exact total as ``(h + l) 2**e`` with h + l within 2**-106 of it and |h| in [1/2, 1]."""
    e = t.mant.bit_length() + t.scale
    scaled = xs.ExactTotal(t.mant, t.scale - e)
    h = xs.to_float(scaled)
    l = xs.to_float(xs.merge(scaled, xs.exact_total(np.array([-h]))))
    return h, l, e


def _inverse(t: xs.ExactTotal) -> tuple[float, float, int]:
    """1 / t as ``(h + l) 2**e`` (a double-double Newton step from 1 / h), for a finite nonzero t."""
    h, l, e = _pair_with_exponent(t)
    q = 1.0 / h
    p, pe = engine.two_prod(h, q)
    d = ((1.0 - p) - pe) - l * q  # 1 - (h + l) q, exactly up to l q's rounding
    return q, q * d, -e


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

    Every entry whose exact value is a normal float64 is within 4 ulp of it
    (tested against mpmath, on both engines). With soft targets or label
    smoothing, :math:`a q_c` and :math:`b_c` can be close, and their
    difference magnifies their rounding errors by
    :math:`\kappa_c = (|a q_c| + |b_c|) / |a q_c - b_c|`. Those gradients are
    computed in double-double arithmetic (about 106 bits), and a position
    holding an entry whose error bound does not prove 4 ulp (:math:`\kappa_c`
    beyond about :math:`2^{44}`: a target that copies the prediction, such as
    ``softmax(logits)`` itself) again in triple-double (about 150 bits), at
    a fixed cost of a few hundred nanoseconds per logit. Only entries whose
    terms agree in more than about 95 bits, and exact zeros, reach Python's
    ``decimal`` module.

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
    inv_d, den_eff = (1.0, 0.0, 0), None
    if pb.reduction == "mean":
        den = _denominator(pb)
        if _is_zero(den) or den.nan or den.pos_inf or den.neg_inf:
            # As torch: a zero (or non-finite) denominator makes every entry NaN but the ignored ones.
            out = np.full(pb.shape, np.nan)
            if not pb.probabilities:
                np.copyto(as_ncs(out), 0.0, where=(pb.y == pb.ignore_index)[:, None, :])
            return out
        inv_d = _inverse(den)
        # The soft path works in weights scaled by 2**-w_exp: it divides by D 2**-w_exp.
        h, l, e = _pair_with_exponent(den)
        den_eff = math.ldexp(h + l, e - pb.w_exp)
    elif pb.w_exp:
        den_eff = math.ldexp(1.0, -pb.w_exp)
    denom = None
    if pb.reduction == "mean":
        denom = Fraction(den.mant) * Fraction(2) ** den.scale  # the exact denominator

    def deep(pb_, idx, g3):
        engine.grad_deep(pb_, idx, g3, denom)

    return engine.grad(pb, inv_d, den_eff, deep)


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
    0.3659485156893104
    >>> print(float(nll_loss([[-0.5, -1.0]], [1], reduction="sum")))
    1.0
    """
    red = v.check_reduction(reduction)
    picked, valid, yc, w, shape = _nll_inputs(log_probs, target, weight, ignore_index)
    if red == "none":
        with np.errstate(invalid="ignore", over="ignore"):
            lw = -picked if w is None else -(np.take(w, yc) * picked)
        lw = np.where(valid, lw, 0.0)  # where(), not a product: a NaN or inf at an ignored position stays out
        out = lw.reshape(shape)
        return out[()] if out.ndim == 0 else out
    total, den = _nll_totals(picked, valid, yc, w)
    if red == "sum":
        return np.float64(xs.to_float(total))
    if _is_zero(den):
        return np.float64(np.nan)
    return np.float64(xs.ratio(total, den))


def _nll_inputs(log_probs, target, weight, ignore_index):
    """nll_loss's checked inputs: the target classes' log-probabilities (N, S), which positions
    count, their classes (0 where ignored), the weights, and the shape of the target."""
    ignore = v.check_int(ignore_index, "ignore_index")
    x = v.as_real_array(log_probs, "log_probs", min_ndim=1)
    c = _check_classes(x, "log_probs")
    w = v.as_weight(weight, c)
    t, ignore = v.as_index_target(target, x.shape, ignore, logits_name="log_probs")
    n, s = positions_shape(x.shape)
    y = t.reshape(n, s)
    valid = y != ignore
    yc = np.where(valid, y, 0)
    picked = np.take_along_axis(as_ncs(x), yc[:, None, :], axis=1)[:, 0, :]
    return picked, valid, yc, w, t.shape


def _nll_totals(picked, valid, yc, w) -> tuple[xs.ExactTotal, xs.ExactTotal]:
    """The exact sum of the losses -w_y x_y over the valid positions, and of their weights."""
    # The products are formed exactly, as (wm xm + e) 2**(we + xe) with wm, xm in [1/2, 1)
    # (frexp): TwoProd cannot overflow or underflow there, and the long accumulator adds
    # them without a rounding.
    with np.errstate(invalid="ignore", over="ignore"):
        xm, xe = np.frexp(np.where(valid, -picked, 0.0))
        if w is None:
            wm, we = np.ones(yc.shape), np.zeros(yc.shape, dtype=np.int64)
            den = xs.exact_total(np.array([float(np.count_nonzero(valid))]))
        else:
            wm_c, we_c = np.frexp(w)
            wm, we = np.where(valid, np.take(wm_c, yc), 0.0), np.take(we_c, yc).astype(np.int64)
            den = xs.exact_total(wm, we)
        ph, pl = engine.two_prod(wm, xm)
        pl = np.where(np.isfinite(ph), pl, 0.0)
        ex = we + xe
        total = xs.merge(xs.exact_total(ph, ex), xs.exact_total(pl, ex))
    return total, den
