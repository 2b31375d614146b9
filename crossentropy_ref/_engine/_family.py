"""The softmax family on a block: ``softmax``, ``log_softmax``, ``logsumexp``.

Each function takes a block ``z`` (bn, C, bs) (class axis 1), writes its
result, and returns the mask (bn, 1, bs) of the positions whose first-tier
bound does not prove 4 ulp; the caller hands those to the deep tier.

Bounds, with ``u = 2**-53`` and the first pass's bounds (see `_rows`):

- ``softmax_c = e_c / (1 + s)``: ``e_c`` within ``EPS_EXP`` (plus an absolute
  2**-1074), ``R = 1 / (1 + s)`` within ``s_err / (1 + s) + 2**-102``; their
  product is formed exactly (TwoProd) with its small terms and rounded once:
  relative error below ``u + 2**-55`` for every result above 2**-1000, and
  below ``3u + 2**-55`` just above 2**-1022 where the absolute 2**-1074
  weighs. Always within 4 ulp (3.9u < 4 ulp), on both engines (`_jit`'s
  exp is within 2**-56, `_pexp`'s within 2**-58).
- ``log_softmax_c = (z_c - m) - L``: both terms have the same sign, so the
  result is at least L in magnitude, and its error is at most ``l_err`` plus
  one rounding: 4 ulp when ``l_err <= 2.9 u L``.
- ``logsumexp = m + L`` cancels when ``m < 0`` and ``L`` is close to ``-m``
  (log-probabilities): the bound ``l_err + 2**-103 (|m| + L) + u |r|`` is
  checked against ``3.9 u |r|`` per position.
"""

from __future__ import annotations

import numpy as np

from . import _dd as dd
from . import _jit
from ._eft import split, two_sum
from ._rows import U, rows, rows_scaled

# A result is accepted when its error bound is at most this many units u = 2**-53 of
# its magnitude (a bound in ulps of the exact value would be tighter: ulp(x) > u |x|).
ACCEPT = 3.9


def accepted(value: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Whether a bound proves `value` within 4 ulp of the exact value (elementwise).

    True when ``bound <= ACCEPT u (|value| - bound)``; also true for an exact 0
    with a 0 bound, and for infinities and NaN (they are exact or propagated).
    """
    with np.errstate(invalid="ignore"):
        a = np.abs(value)
        return (bound <= ACCEPT * U * (a - bound)) | ((a == 0) & (bound == 0)) | ~np.isfinite(value)


def mul_round(eh: np.ndarray, el: np.ndarray, fh: np.ndarray, fl: np.ndarray, out: np.ndarray, ws) -> np.ndarray:
    """``(eh + el)(fh + fl)`` rounded once into `out`; `fh`, `fl` broadcast along axis 1.

    ``eh fh`` is formed exactly by TwoProd (Dekker's split of eh here, of fh
    once per position); the small terms ``eh fl + el fh`` and the product's
    error are added before the one rounding. Relative error below
    ``u / 2 + 3 u |el / eh| + 2**-104`` of the product (no underflow).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bh, bl = split(fh)
        t = np.multiply(eh, 134217729.0, out=ws(4))  # Dekker's split of eh, into ws(4) and ws(5)
        ah = np.subtract(t, eh, out=ws(5))
        np.subtract(t, ah, out=ah)
        al = np.subtract(eh, ah, out=t)
        p = np.multiply(eh, fh, out=out)
        e = np.multiply(ah, bh, out=ws(6))
        e -= p
        tmp = np.multiply(ah, bl, out=ws(7))
        e += tmp
        np.multiply(al, bh, out=tmp)
        e += tmp
        np.multiply(al, bl, out=tmp)
        e += tmp  # eh fh = p + e exactly
        np.multiply(eh, fl, out=tmp)
        e += tmp
        np.multiply(el, fh, out=tmp)
        e += tmp
        out += e
    return out


_FILL_SLICE = 1 << 15  # elements per contiguous copy in _fill (256 KiB)


def _fill(z, m, fh, fl, out) -> None:
    """out = exp(z - m) F rounded once, by the compiled kernel for the block's layout."""
    if _jit.contiguous_rows(z) and _jit.contiguous_rows(out):
        bn, c = z.shape[:2]
        _jit.grad_fill2d(z.reshape(bn, c), np.ascontiguousarray(m).reshape(bn), np.ascontiguousarray(fh).reshape(bn),
                         np.ascontiguousarray(fl).reshape(bn), out.reshape(bn, c), _jit.constants()[0])
    else:
        # C-contiguous operands (copies of the block's views, a slice of positions at a time so
        # that they stay small): the kernel's inner loop then runs over unit-stride rows of
        # positions and vectorises, about twice as fast as on the strided views.
        bn, c, bs = z.shape
        fh, fl = (np.broadcast_to(a, z[:, :1].shape) for a in (fh, fl))
        step = max(1, _FILL_SLICE // (bn * c))
        for a in range(0, bs, step):
            sl = np.s_[:, :, a:a + step]
            dst = np.empty(z[sl].shape)
            _jit.grad_fill3d(np.ascontiguousarray(z[sl]), np.ascontiguousarray(m[sl]), np.ascontiguousarray(fh[sl]),
                             np.ascontiguousarray(fl[sl]), dst, _jit.constants()[0])
            out[sl] = dst


def softmax_block(z: np.ndarray, out: np.ndarray, ws) -> np.ndarray:
    if _jit.enabled() and _jit.contiguous_rows(z) and _jit.contiguous_rows(out):
        ones = np.ones(z.shape[0])
        r = rows_scaled(z, ones, np.zeros(z.shape[0]), out)  # e_c R, one rounding, one exp per logit
    elif _jit.enabled():
        r = rows(z, ws)
        rh, rl = dd.recip_one_plus(r.sh, r.sl)  # 1 / (1 + s), 2**-102
        _fill(z, r.m, rh, rl, out)  # e_c R, one rounding
    else:
        r, (_, _, eh, el) = rows(z, ws, keep_terms=True)
        rh, rl = dd.recip_one_plus(r.sh, r.sl)  # 1 / (1 + s), 2**-102
        mul_round(eh, el, rh, rl, out, ws)
    # A position holding +inf or NaN, or only -inf, is NaN throughout, as in torch.
    np.copyto(out, np.nan, where=~r.ok)
    # R's relative error is s_err / (1 + s); with e_c's (at most 2**-56, or 2u just above
    # 2**-1022) and one rounding, 2**-55 keeps the result below 3.9u. Both engines' bounds
    # (EPS_S <= 2**-56, a few times 2**-1074 for subnormal terms) always pass: a safeguard.
    return r.ok & ~(r.s_err <= 2.0**-55 * (1.0 + r.sh))


def log_softmax_block(z: np.ndarray, out: np.ndarray, ws) -> np.ndarray:
    if _jit.enabled():
        r = rows(z, ws)
        if _jit.contiguous_rows(z) and _jit.contiguous_rows(out):
            bn, c = z.shape[:2]
            _jit.log_softmax_fill2d(z.reshape(bn, c), r.m.reshape(bn), r.lh.reshape(bn), r.ll.reshape(bn),
                                    out.reshape(bn, c))
        else:
            _jit.log_softmax_fill(z, np.ascontiguousarray(r.m), r.lh, r.ll, out)
        np.copyto(out, np.nan, where=~r.ok)
        with np.errstate(invalid="ignore"):
            return r.ok & ~(r.l_err <= 2.9 * U * r.lh)
    r, (xh, xl, _, _) = rows(z, ws, keep_terms=True)
    with np.errstate(invalid="ignore"):
        # (xh + xl) - (lh + ll), rounded once: both terms are <= 0 after the sign change.
        s, e = two_sum(xh, -r.lh)
        e -= r.ll
        e += xl
        np.add(s, e, out=out)
        np.copyto(out, -np.inf, where=xh == -np.inf)  # a -inf logit: log q = -inf
    np.copyto(out, np.nan, where=~r.ok)
    with np.errstate(invalid="ignore"):
        return r.ok & ~(r.l_err <= 2.9 * U * r.lh)


def logsumexp_block(z: np.ndarray, out: np.ndarray, ws) -> np.ndarray:
    """``out`` (bn, 1, bs): logsumexp along axis 1."""
    r = rows(z, ws)
    with np.errstate(invalid="ignore", over="ignore"):
        hi, lo = dd.add(r.m, 0.0, r.lh, r.ll, nonfinite=True)
        np.add(hi, lo, out=out)
        bound = r.l_err + 2.0**-103 * (np.abs(r.m) + r.lh) + U * np.abs(out)
        bad = r.ok & ~accepted(out, bound)
    _logsumexp_nonfinite(z, r, out)
    return bad


def _logsumexp_nonfinite(z: np.ndarray, r, out: np.ndarray) -> None:
    """Positions without a finite maximum: +inf if any +inf (and no NaN), -inf if all -inf, else NaN."""
    if r.ok.all():
        return
    m = r.m
    np.copyto(out, m, where=~r.ok & ~np.isnan(m))  # +inf, or -inf when every entry is -inf
    nan = ~r.ok & np.isnan(m)
    if nan.any():
        np.copyto(out, np.nan, where=nan)
