"""Run a candidate kernel on every case and judge it in its own precision."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .._losses import cross_entropy
from ._cases import cases, check_families
from ._ulp import dtype_name, round_to, ulp_error


class FamilyResult(NamedTuple):
    """The verdict on one family of cases."""

    family: str
    cases: int
    worst_ulp: float  # the largest ulp error over the family's outputs (inf: a wrong NaN or inf)
    worst_case: str | None  # the name of the case where it occurred
    worst_input: tuple | None  # (logits, target, kwargs) of that case, as the candidate got them
    nan: int  # cases with a NaN where the reference is not NaN
    inf: int  # cases with an infinity where the rounded reference is not that infinity
    crashes: int  # cases where the candidate raised
    max_ulp: float  # the bound this family was held to (inf: none)
    passed: bool
    error: str | None  # the first exception raised, as "Type: message"


class Report(NamedTuple):
    """What :func:`check` found, family by family; ``str(report)`` is a table."""

    dtype: str
    families: dict[str, FamilyResult]
    passed: bool

    @property
    def worst_ulp(self) -> dict[str, float]:
        """The worst ulp error of each family."""
        return {f: r.worst_ulp for f, r in self.families.items()}

    def __str__(self) -> str:
        return format_report(self)


def _fmt_ulp(x: float, none: str = "inf") -> str:
    if math.isinf(x):
        return none
    return f"{x:.0f}" if x < 1e6 else f"{x:.1e}"


def format_report(report: Report) -> str:
    """The report as a plain-text table, at most 74 characters wide."""
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        f"cross-entropy kernel in {report.dtype}: {verdict}",
        f"{'family':<13}{'cases':>6}{'ulps':>9}{'bound':>6}{'NaN':>4}{'inf':>4}{'crash':>6}"
        f" {'':<4} worst case",
    ]
    for r in report.families.values():
        worst = (r.worst_case or "").split("/", 1)[-1]
        lines.append(
            f"{r.family:<13}{r.cases:>6}{_fmt_ulp(r.worst_ulp):>9}{_fmt_ulp(r.max_ulp, '-'):>6}{r.nan:>4}"
            f"{r.inf:>4}{r.crashes:>6} {'ok' if r.passed else 'FAIL':<4} {worst[:20]}"
        )
    errors = [f"  {r.family}: {r.error}"[:74] for r in report.families.values() if r.error]
    if errors:
        lines += ["first exception per family:"] + errors
    return "\n".join(lines)


def _bounds(max_ulp: object, families: tuple[str, ...]) -> dict[str, float]:
    def one(value: object, where: str) -> float:
        if value is None:
            return math.inf
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"`max_ulp` must be a number, a dict of numbers or None; got {where}{value!r}")
        if not value >= 0:
            raise ValueError(f"`max_ulp` must be >= 0; got {where}{value!r}")
        return float(value)

    if isinstance(max_ulp, Mapping):
        unknown = [k for k in max_ulp if k not in families]
        if unknown:
            raise ValueError(f"`max_ulp` must have keys among the checked families {families}; got {unknown[0]!r}")
        return {f: one(max_ulp.get(f), f"{f!r}: ") for f in families}
    bound = one(max_ulp, "")
    return {f: bound for f in families}


def _to_numpy(out: Any) -> np.ndarray:
    # Torch tensors (any device, any dtype, bfloat16 included) convert exactly through float64.
    if hasattr(out, "detach") and hasattr(out, "double"):
        out = out.detach().cpu().double().numpy()
    return np.asarray(out)


def _copied(kwargs: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}


def _cast_case(logits, target, kwargs, name):
    """The case as the candidate gets it (in dtype `name`), and as the reference gets it (float64)."""
    z = round_to(logits, name)
    t = target if target.dtype.kind in "iu" else round_to(target, name)
    kw = dict(kwargs)
    if kw.get("weight") is not None:
        kw["weight"] = round_to(kw["weight"], name)
    kw64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    t64 = t if t.dtype.kind in "iu" else t.astype(np.float64)
    return (z, t, kw), (z.astype(np.float64), t64, kw64)


def check(
    fn: Callable[..., Any],
    *,
    dtype: object,
    families: object = None,
    max_ulp: float | Mapping[str, float] | None = None,
    seed: int = 0,
) -> Report:
    r"""Judge a cross-entropy kernel on every adversarial case, in ulps of its dtype.

    Each case of :func:`cases` is cast to `dtype` and passed to
    ``fn(logits, target, **kwargs)``. The result is compared with
    :func:`crossentropy_ref.cross_entropy` computed in float64 on the same
    (cast) values and correctly rounded to `dtype`:

    .. math::

        e = \max_{\text{outputs}} \operatorname{ulp\_error}\big(
        \text{fn}(x),\ \operatorname{fl}_{\text{dtype}}(\ell_{\text{ref}}(x))\big).

    Parameters
    ----------
    fn : callable
        ``fn(logits, target, **kwargs)`` with the signature of
        ``cross_entropy`` in ``torch.nn.functional``. It receives numpy
        arrays: the logits, probability targets and ``weight`` in `dtype`
        (bfloat16 as ``ml_dtypes.bfloat16``), index targets as int64. It
        returns anything ``numpy.asarray`` takes, in any float dtype, or a
        torch tensor.
    dtype : {'float64', 'float32', 'float16', 'bfloat16'} or dtype
        The precision the kernel works in.
    families : str or iterable of str, default=None
        The families to run (all by default); see :func:`cases`.
    max_ulp : float or dict of str to float, default=None
        The largest ulp error allowed, for every family or per family (a
        family left out of the dict, or None, has no bound). A family also
        fails on an unexpected NaN or infinity, or a crash.
    seed : int, default=0
        Passed to :func:`cases`.

    Returns
    -------
    Report
        A named tuple ``(dtype, families, passed)``; ``str(report)`` is the
        table and ``report.worst_ulp`` maps each family to its worst ulp
        error. ``families`` maps each family to a ``FamilyResult``, a named
        tuple with the fields ``family``, ``cases``, ``worst_ulp``,
        ``worst_case`` (the case's name), ``worst_input`` (its ``(logits,
        target, kwargs)`` as `fn` received them), ``nan``, ``inf`` and
        ``crashes`` (counts of cases with an unexpected NaN, an unexpected
        infinity, an exception), ``max_ulp`` (the bound applied),
        ``passed`` and ``error`` (the first exception, as text).

    Raises
    ------
    TypeError
        If `fn` is not callable, `dtype` is not a dtype, or `families` or
        `max_ulp` is of the wrong kind.
    ValueError
        If `dtype` or a family is unknown, or `fn` returns an array of the
        wrong shape.
    ImportError
        For bfloat16 without ml_dtypes (install ``crossentropy_ref[testing]``).

    See Also
    --------
    assert_matches_reference : The same, raising with the table.
    ulp_error : The distance used.

    Notes
    -----
    The reference is the package's float64 result, accurate to a few float64
    ulps. For float32, float16 and bfloat16 that error disappears when the
    reference is rounded; for ``dtype='float64'`` it bounds what a verdict
    means: a few ulps of difference may be the reference's own.

    Exceptions raised by `fn` are counted as crashes, not propagated; the
    first message of each family is in the table. A result of the wrong shape
    is an error in the harness, not a verdict, so it raises.

    Examples
    --------
    The textbook float32 kernel, ``logsumexp(z) - z_y`` with the max shift,
    judged on exact ties. Where the logits are near 1e4, the loss log 2 is
    the difference of two numbers near 1e4, and float32 keeps too few of its
    digits:

    >>> import numpy as np
    >>> from crossentropy_ref.testing import check
    >>> def kernel(logits, target, weight=None, reduction="mean", **kw):
    ...     z = logits.astype(np.float32)
    ...     m = z.max(axis=1, keepdims=True)
    ...     lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    ...     loss = lse - z[np.arange(len(target)), target]
    ...     if reduction == "none":
    ...         return loss
    ...     return loss.sum() if reduction == "sum" else loss.mean()
    >>> report = check(kernel, dtype="float32", families="ties", max_ulp=4)
    >>> print(report)
    cross-entropy kernel in float32: FAILED
    family        cases     ulps bound NaN inf crash      worst case
    ties              5     3560     4   0   0     0 FAIL at-large
    >>> logits, target, kwargs = report.families["ties"].worst_input
    >>> print(logits.tolist(), target.tolist(), kwargs)
    [[9984.0, 9984.0], [-9984.0, -9984.0]] [0, 1] {'reduction': 'none'}
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable fn(logits, target, **kwargs); got {type(fn).__name__}")
    name = dtype_name(dtype)
    chosen = check_families(families)
    bounds = _bounds(max_ulp, chosen)
    stats = {f: {"cases": 0, "worst": -1.0, "case": None, "input": None, "nan": 0, "inf": 0, "crash": 0, "error": None}
             for f in chosen}
    for case_name, logits, target, kwargs in cases(chosen, seed=seed):
        family = case_name.split("/", 1)[0]
        st = stats[family]
        st["cases"] += 1
        given, ref_args = _cast_case(logits, target, kwargs, name)
        ref = np.asarray(cross_entropy(ref_args[0], ref_args[1], **ref_args[2]))
        try:
            # Overflow and invalid operations inside the candidate are findings (counted
            # below as inf and NaN), not warnings for the caller's output.
            with np.errstate(all="ignore"):
                    out = fn(given[0].copy(), given[1].copy(), **_copied(given[2]))
            got = _to_numpy(out)
        except Exception as exc:  # a crash is a verdict on the candidate, counted per family
            st["crash"] += 1
            if st["error"] is None:
                st["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        if got.shape != ref.shape:
            raise ValueError(
                f"`fn` must return an array of shape {ref.shape} for case {case_name!r} "
                f"(logits of shape {logits.shape}, {kwargs}); got shape {got.shape}"
            )
        if got.dtype.kind not in "fiuV":
            raise TypeError(f"`fn` must return real numbers; got {got.dtype} for case {case_name!r}")
        if got.dtype.kind != "f" and got.dtype.kind != "V":
            got = got.astype(np.float64)
        err = np.asarray(ulp_error(got, ref, name))
        g64 = round_to(got, name).astype(np.float64)
        r64 = round_to(ref, name).astype(np.float64)
        st["nan"] += bool(np.any(np.isnan(g64) & ~np.isnan(r64)))
        st["inf"] += bool(np.any(np.isinf(g64) & (g64 != r64)))
        worst = float(np.max(err)) if err.size else 0.0
        if worst > st["worst"]:
            st["worst"], st["case"] = worst, case_name
            st["input"] = (given[0].copy(), given[1].copy(), dict(given[2]))
    results = {}
    for f in chosen:
        st = stats[f]
        worst = max(st["worst"], 0.0)
        ok = st["crash"] == 0 and st["nan"] == 0 and st["inf"] == 0 and worst <= bounds[f]
        results[f] = FamilyResult(
            family=f, cases=st["cases"], worst_ulp=worst, worst_case=st["case"], worst_input=st["input"],
            nan=st["nan"], inf=st["inf"], crashes=st["crash"], max_ulp=bounds[f], passed=ok, error=st["error"],
        )
    return Report(dtype=name, families=results, passed=all(r.passed for r in results.values()))


def assert_matches_reference(
    fn: Callable[..., Any],
    *,
    dtype: object,
    max_ulp: float | Mapping[str, float],
    families: object = None,
    seed: int = 0,
) -> Report:
    """Assert that a kernel is within `max_ulp` ulps of the reference on every case.

    Runs :func:`check` and raises an ``AssertionError`` whose message is the
    report's table if any family fails; returns the report otherwise. Use it
    in a test suite.

    Parameters
    ----------
    fn, dtype, families, seed
        As for :func:`check`.
    max_ulp : float or dict of str to float
        As for :func:`check`; required here.

    Returns
    -------
    Report

    Raises
    ------
    AssertionError
        If a family fails; the message is the table.
    TypeError, ValueError, ImportError
        As for :func:`check`.

    See Also
    --------
    check

    Examples
    --------
    >>> import numpy as np
    >>> import crossentropy_ref as ce
    >>> from crossentropy_ref.testing import assert_matches_reference
    >>> def exact(logits, target, **kw):   # the reference, in float32
    ...     return np.float32(ce.cross_entropy(logits, target, **kw))
    >>> _ = assert_matches_reference(exact, dtype="float32", max_ulp=0)
    >>> def no_shift(logits, target, reduction="mean", **kw):   # overflows
    ...     z = logits.astype(np.float32)
    ...     z_y = z[np.arange(len(target)), target]
    ...     loss = np.log(np.exp(z).sum(axis=1)) - z_y
    ...     return loss if reduction == "none" else np.mean(loss)
    >>> try:
    ...     assert_matches_reference(no_shift, dtype="float32", max_ulp=4,
    ...                              families="large_logits")
    ... except AssertionError as e:
    ...     print(str(e).splitlines()[0])
    cross-entropy kernel in float32: FAILED
    """
    if max_ulp is None:
        raise TypeError("`max_ulp` must be a number or a dict of numbers; got None")
    report = check(fn, dtype=dtype, families=families, max_ulp=max_ulp, seed=seed)
    if not report.passed:
        raise AssertionError(str(report))
    return report
