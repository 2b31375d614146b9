"""The last tier: one position at a time in the ``decimal`` module, with Ziv's strategy.

Reached only by the results whose triple-double bound cannot prove 4 ulp
(`_deep`): quantities whose terms cancel to more than about 95 bits, which
no realistic input produces (the tests count them), and the exact zeros of
the gradient (a target equal to the prediction where the prediction is a
rational number: all finite logits equal).

Every float converts to a Decimal exactly. At precision P digits each
operation rounds at ``10**(1 - P)`` of its result, so a value built from
the terms t_i carries an error below ``(C + 10) 10**(1 - P) sum |t_i|``.
When that bound does not prove the result to a quarter of its ulp, the
position is computed again with twice the digits (Ziv's strategy), up to
`MAX_DIGITS`; there, a value still not resolved is within the bound of 0,
and a result that is exactly 0 is recognised exactly first (`_equal_logits`).
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numpy as np

MAX_DIGITS = 800
_START = 40


def _ctx(digits: int) -> decimal.Context:
    return decimal.Context(prec=digits, Emin=-9999999, Emax=9999999)


def _row(z: np.ndarray, digits: int):
    """(m, k, terms e_j = exp(z_j - m), s = sum_{j != k} e_j, L = ln(1 + s)) at `digits`."""
    D = decimal.Decimal
    zs = [D(float(v)) for v in z]
    k = max(range(len(zs)), key=lambda j: (zs[j], -j))  # the first maximum, as argmax
    m = zs[k]
    e = [(v - m).exp() if v.is_finite() else D(0) for v in zs]
    s = sum((e[j] for j in range(len(zs)) if j != k), D(0))
    return m, k, zs, e, s, _log1p(s)


def _log1p(s: decimal.Decimal) -> decimal.Decimal:
    """ln(1 + s) without the cancellation of 1 + s for tiny s: the series below 10**-(P/4)."""
    ctx = decimal.getcontext()
    if s < decimal.Decimal(10) ** (-(ctx.prec // 4)):
        # s - s**2/2 + s**3/3 - s**4/4 + ...: the terms from s**5 on are below 10**-P of s.
        return s - s * s / 2 + s * s * s / 3 - s * s * s * s / 4
    return (1 + s).ln()


def _resolved(value, bound) -> bool:
    """Whether ``value`` is known to 2**-55 of itself (a quarter ulp) given the bound."""
    return bound <= abs(value) * decimal.Decimal(2) ** -55


def _ziv(compute, exact: bool = False):
    """Run ``compute(digits) -> (values, bounds)`` at growing digits until every value is resolved.

    Returns floats, or with `exact` the Decimal values (for the sums that add them later).
    """
    digits = _START
    while True:
        with decimal.localcontext(_ctx(digits)):
            values, bounds = compute(digits)
            if all(_resolved(v, b) or b == 0 for v, b in zip(values, bounds)) or digits >= MAX_DIGITS:
                return values if exact else [float(v) for v in values]
        digits *= 2


def _rel(c: int, digits: int):
    return decimal.Decimal(c + 10) * decimal.Decimal(10) ** (1 - digits)


def logsumexp(z: np.ndarray) -> float:
    def compute(digits):
        m, _, _, _, _, L = _row(z, digits)
        v = m + L
        return [v], [(abs(m) + abs(L)) * _rel(len(z), digits)]

    return _ziv(compute)[0]


def log_softmax(z: np.ndarray) -> list[float]:
    def compute(digits):
        m, _, zs, _, _, L = _row(z, digits)
        vals = [(v - m) - L if v.is_finite() else decimal.Decimal("-Infinity") for v in zs]
        rel = _rel(len(z), digits)
        return vals, [(abs(v - m) + L) * rel if v.is_finite() else 0 for v in zs]

    return _ziv(compute)


def softmax(z: np.ndarray) -> list[float]:
    def compute(digits):
        _, _, _, e, s, _ = _row(z, digits)
        rel = _rel(len(z), digits)
        vals = [ej / (1 + s) for ej in e]
        return vals, [abs(v) * rel for v in vals]

    return _ziv(compute)


def mass(c: int, p, y, w, eps: float):
    """b_c = w_c ((1 - eps) p_c + eps / C) as Decimals (p None: the one-hot of class y)."""
    D = decimal.Decimal
    smooth = D(float(eps)) / c
    keep = 1 - D(float(eps))
    ps = [D(float(v)) for v in p] if p is not None else [D(int(j == y)) for j in range(c)]
    return [(keep * pj + smooth) * (D(float(w[j])) if w is not None else 1) for j, pj in enumerate(ps)]


def loss(z: np.ndarray, p, y, w, eps: float) -> decimal.Decimal:
    """sum_c b_c (d_c + L) for one position, as a Decimal resolved to 2**-55 of itself."""
    c = len(z)

    def compute(digits):
        m, _, zs, _, _, L = _row(z, digits)
        b = mass(c, p, y, w, eps)
        terms = [bc * ((m - v) + L) for bc, v in zip(b, zs) if bc != 0]
        return [sum(terms, decimal.Decimal(0))], [sum((abs(t) for t in terms), decimal.Decimal(0)) * _rel(c, digits)]

    return _ziv(compute, exact=True)[0]


def _equal_logits(z: np.ndarray) -> bool:
    fin = z[np.isfinite(z)]
    return fin.size > 0 and bool(np.all(fin == fin[0])) and not np.isnan(z).any() and not (z == np.inf).any()


def _dec(x: Fraction) -> decimal.Decimal:
    """A dyadic rational (the exact 'mean' denominator) as a Decimal at the context's precision."""
    return decimal.Decimal(x.numerator) / decimal.Decimal(x.denominator)


def grad(z: np.ndarray, p, y, w, eps: float, denom: Fraction | None) -> list[float]:
    """(a q_c - b_c) / denom for one position, each entry resolved or exactly 0."""
    c = len(z)
    if _equal_logits(z):
        return _grad_rational(z, p, y, w, eps, denom)

    def compute(digits):
        _, k, _, e, s, _ = _row(z, digits)
        b = mass(c, p, y, w, eps)
        a = sum(b, decimal.Decimal(0))
        one_s = 1 + s
        rel = _rel(c, digits)
        vals, bounds = [], []
        for j in range(c):
            if j == k and one_s < 2:  # q_k > 1/2: (a - b_k) - a s / (1 + s)
                t1, t2 = sum((b[i] for i in range(c) if i != k), decimal.Decimal(0)), a * s / one_s
            else:
                t1, t2 = a * e[j] / one_s, b[j]
            v = t1 - t2
            bound = (abs(t1) + abs(t2)) * rel
            if denom is not None:
                v, bound = v / _dec(denom), bound / abs(_dec(denom))
            vals.append(v)
            bounds.append(bound)
        return vals, bounds

    return _ziv(compute)


def _grad_rational(z, p, y, w, eps, denom) -> list[float]:
    """All finite logits equal: q_c = 1/n for the n finite ones, 0 for -inf; exact in rationals."""
    c = len(z)
    fin = np.isfinite(z)
    n = int(np.count_nonzero(fin))
    F = Fraction
    keep, smooth = 1 - F(float(eps)), F(float(eps)) / c
    ps = [F(float(v)) for v in p] if p is not None else [F(int(j == y)) for j in range(c)]
    b = [(keep * pj + smooth) * (F(float(w[j])) if w is not None else 1) for j, pj in enumerate(ps)]
    a = sum(b, F(0))
    out = []
    for j in range(c):
        v = (a / n if fin[j] else F(0)) - b[j]
        if denom is not None:
            v = v / denom
        out.append(_round_fraction(v))
    return out


def _round_fraction(v: Fraction) -> float:
    """A rational correctly rounded to float64 (Python's int division rounds correctly)."""
    try:
        return v.numerator / v.denominator
    except OverflowError:
        return math.copysign(math.inf, v)
