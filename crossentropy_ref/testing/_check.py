"""Run a candidate kernel on every case and judge it in its own precision, by two verdicts."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .._losses import cross_entropy, cross_entropy_grad
from ._cases import cases, check_families, check_seed
from ._convert import check_grad, check_inputs, framework_dtype, make_runner, to_numpy
from ._kappa import grad_scale, loss_scale
from ._ulp import distance, dtype_name, round_to, smallest_normal, unit_roundoff

# The constant c of the stability verdict, error <= c u (1 + kappa) |f| (see check's Notes).
STABILITY_C = 16.0

# The special values a result can have where the exact value has another kind, by name.
SPECIAL = (
    "NaN where finite",
    "NaN where inf",
    "inf where finite",
    "finite where inf",
    "wrong-signed inf",
    "number where NaN",
)


class FamilyResult(NamedTuple):
    """Both verdicts on one family of cases."""

    family: str
    cases: int
    # The forward error: ulps of the format from the correctly rounded exact value.
    worst_ulp: float  # the largest over the family's outputs (inf: a special value)
    worst_case: str | None  # the name of the case where it occurred
    worst_input: tuple | None  # (logits, target, kwargs) of that case, as the candidate got them
    worst_at: tuple | None  # the index of the worst output in that case's result (() for a scalar)
    max_ulp: float  # the bound this family was held to (inf: none)
    passed: bool  # the forward verdict: no crash, no special value, worst_ulp <= max_ulp
    # Stability: the error in units of u (1 + kappa) |exact| (see check).
    worst_ratio: float
    ratio_case: str | None
    ratio_input: tuple | None
    ratio_at: tuple | None
    kappa: float  # the condition number of the output where the worst ratio occurred
    max_ratio: float  # the constant c
    stable: bool  # the stability verdict: no crash, worst_ratio <= max_ratio
    special: dict[str, tuple[str, ...]]  # each kind of wrong special value: the cases with one
    crashes: int  # cases where the candidate raised
    error: str | None  # the first exception raised, as "Type: message"

    @property
    def nan(self) -> int:
        """Cases with a NaN where the exact value is a number (finite or infinite)."""
        return len(set(self.special.get("NaN where finite", ()) + self.special.get("NaN where inf", ())))

    @property
    def inf(self) -> int:
        """Cases with an infinity where the exact value (rounded) is finite or the other infinity."""
        return len(set(self.special.get("inf where finite", ()) + self.special.get("wrong-signed inf", ())))


class Report(NamedTuple):
    """What :func:`check` found, family by family; ``str(report)`` is a table."""

    dtype: str
    quantity: str  # "loss" or "gradient"
    families: dict[str, FamilyResult]
    passed: bool  # the forward verdict, every family
    stable: bool  # the stability verdict, every family

    @property
    def worst_ulp(self) -> dict[str, float]:
        """The worst forward error of each family, in ulps."""
        return {f: r.worst_ulp for f, r in self.families.items()}

    @property
    def worst_ratio(self) -> dict[str, float]:
        """The worst error of each family in units of u (1 + kappa) |exact|."""
        return {f: r.worst_ratio for f, r in self.families.items()}

    def __str__(self) -> str:
        return format_report(self)


def _fmt_ulp(x: float, none: str = "inf") -> str:
    if math.isinf(x):
        return none
    return f"{x:.0f}" if x < 1e6 else f"{x:.1e}"


def _fmt_ratio(x: float, none: str = "inf") -> str:
    if math.isinf(x):
        return none
    return f"{x:.2g}" if x < 10 else (f"{x:.0f}" if x < 1e5 else f"{x:.1e}")


def _verdict(ok: bool) -> str:
    return "PASSED" if ok else "FAILED"


def format_report(report: Report) -> str:
    """The report as a plain-text table, at most 74 characters wide."""
    u_bits = -int(math.log2(unit_roundoff(report.dtype)))
    lines = [
        f"{report.quantity} in {report.dtype}: forward error {_verdict(report.passed)}, "
        f"stability {_verdict(report.stable)}",
        f"{'':<19}{'-- forward error --':^21}{'--- stability ---':^19}",
        f"{'family':<13}{'cases':>6}{'ulps':>9}{'bound':>7}{'':<5}{'ratio':>9}{'c':>5}{'':<5}"
        f"{'special':>8}{'crash':>6}",
    ]
    for r in report.families.values():
        odd = len({n for names in r.special.values() for n in names})  # cases with a wrong special value
        lines.append(
            f"{r.family:<13}{r.cases:>6}{_fmt_ulp(r.worst_ulp):>9}{_fmt_ulp(r.max_ulp, '-'):>7}"
            f" {'ok' if r.passed else 'FAIL':<4}{_fmt_ratio(r.worst_ratio):>9}{_fmt_ratio(r.max_ratio, '-'):>5}"
            f" {'ok' if r.stable else 'FAIL':<4}{odd:>8}{r.crashes:>6}"
        )
    lines.append(f"ratio: error / (u (1 + kappa) |exact|), u = 2**-{u_bits}; c: its bound")
    failing = [r for r in report.families.values() if not (r.passed and r.stable)]
    worst = []
    for r in failing:
        fwd = (r.worst_case or "").split("/", 1)[-1]
        stab = (r.ratio_case or "").split("/", 1)[-1]
        text = fwd if fwd == stab else f"{fwd} (ulps); {stab} (ratio)"
        if text:
            worst.append(f"  {r.family:<13} {text}"[:74])
    if worst:
        lines += ["worst case of each failing family:"] + worst
    special = []
    for r in report.families.values():
        for kind, names in r.special.items():
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            special.append(f"  {r.family:<13} {kind}: {names[0].split('/', 1)[-1]}{more}"[:74])
    if special:
        lines += ["special values where the exact value has another kind:"] + special
    errors = [f"  {r.family}: {r.error}"[:74] for r in report.families.values() if r.error]
    if errors:
        lines += ["first exception per family:"] + errors
    return "\n".join(line.rstrip() for line in lines)


def _bounds(value: object, families: tuple[str, ...], param: str) -> dict[str, float]:
    def one(v: object, where: str) -> float:
        if v is None:
            return math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"`{param}` must be a number, a dict of numbers or None; got {where}{v!r}")
        if not v >= 0:
            raise ValueError(f"`{param}` must be >= 0; got {where}{v!r}")
        return float(v)

    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in families]
        if unknown:
            raise ValueError(f"`{param}` must have keys among the checked families {families}; got {unknown[0]!r}")
        return {f: one(value.get(f), f"{f!r}: ") for f in families}
    bound = one(value, "")
    return {f: bound for f in families}


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


def _specials(g: np.ndarray, ref: np.ndarray, r_round: np.ndarray) -> list[str]:
    """The kinds of wrong special value in `g` (the result, in float64) against `ref` (exact) and
    `r_round` (its rounding to the format, in float64)."""
    g_nan, r_nan = np.isnan(g), np.isnan(ref)
    g_inf, r_inf = np.isinf(g), np.isinf(ref)
    g_fin, r_fin = np.isfinite(g), np.isfinite(ref)
    found = {
        "NaN where finite": g_nan & r_fin,
        "NaN where inf": g_nan & r_inf,
        # An exact value beyond the format's range rounds to inf: returning inf there is right.
        "inf where finite": g_inf & r_fin & np.isfinite(r_round),
        "finite where inf": g_fin & r_inf,
        "wrong-signed inf": g_inf & r_inf & (g != ref),
        "number where NaN": ~g_nan & r_nan,
    }
    return [kind for kind in SPECIAL if np.any(found[kind])]


def _ratios(g: np.ndarray, ref: np.ndarray, r_round: np.ndarray, scale: np.ndarray, name: str) -> np.ndarray:
    """|g - ref| / (u (|ref| + scale + lambda)), 0 where they agree, inf at a wrong special value."""
    u, lam = unit_roundoff(name), smallest_normal(name)
    with np.errstate(all="ignore"):
        ratio = np.abs(g - ref) / (u * (np.abs(ref) + scale + lam))
    same = (g == ref) | (np.isnan(g) & np.isnan(ref)) | (np.isinf(r_round) & (g == r_round))
    ratio = np.where(same, 0.0, ratio)
    return np.where(np.isnan(ratio), np.inf, ratio)


def _prepare(name: str, seed: int, family: str, grad: bool) -> tuple:
    """Every case of `family` cast to format `name`, with its exact result (the loss, or with
    `grad` the gradient) and the stability scale sum_j (|z_j| + 1) |df/dz_j| of each output."""
    out = []
    for case_name, logits, target, kwargs in cases(family, seed=seed):
        given, (z64, t64, kw64) = _cast_case(logits, target, kwargs, name)
        with np.errstate(all="ignore"):
            if grad:
                ref = np.asarray(cross_entropy_grad(z64, t64, **kw64))
                scale = grad_scale(z64, t64, kw64, ref)
            else:
                ref = np.asarray(cross_entropy(z64, t64, **kw64))
                scale = loss_scale(z64, t64, kw64)
        for a in (given[0], given[1], ref, scale, *(v for v in given[2].values() if isinstance(v, np.ndarray))):
            a.flags.writeable = False  # shared between calls: never handed out, only copies
        out.append((case_name, logits.shape, kwargs, given, ref, scale))
    return tuple(out)


# The exact losses cost a float64 loss and gradient per case (the gradient for kappa) but are
# small: keep them, with the cast inputs, for repeated checks in one format. The exact
# gradients are the size of the logits and are recomputed each time.
_prepared_loss = functools.lru_cache(maxsize=64)(functools.partial(_prepare, grad=False))


def _index(at) -> tuple | None:
    return None if at is None else tuple(int(i) for i in at)


def _new_stats() -> dict:
    return {"cases": 0, "ulp": -1.0, "case": None, "input": None, "at": None, "ratio": -1.0, "rcase": None,
            "rinput": None, "rat": None, "kappa": math.nan, "special": {}, "crash": 0, "error": None}


def check(
    fn: Callable[..., Any],
    *,
    dtype: object,
    families: object = None,
    max_ulp: float | Mapping[str, float] | None = None,
    max_ratio: float | Mapping[str, float] | None = STABILITY_C,
    grad: bool | str = False,
    inputs: str = "numpy",
    seed: int = 0,
) -> Report:
    r"""Judge a cross-entropy kernel, or its gradient, on every adversarial case, in its own dtype.

    Each case of :func:`cases` is cast to `dtype` and passed to
    ``fn(logits, target, **kwargs)``. Its result (the loss, or with `grad`
    the gradient with respect to the logits) is compared, entry by entry,
    with :func:`~crossentropy_ref.cross_entropy` or
    :func:`~crossentropy_ref.cross_entropy_grad` computed in float64 on the
    same (cast) values. Two verdicts are returned side by side.

    The *forward error* counts the ulps of `dtype` between the result
    :math:`\hat f` and the exact :math:`f` correctly rounded to `dtype`:

    .. math::

        e_{\text{ulp}} = \max_{\text{outputs}}
        \operatorname{ulp\_error}\big(\hat f,\ \operatorname{fl}(f)\big)
        \le \texttt{max\_ulp}.

    The *stability* verdict asks whether the error is as small as the
    kernel's precision allows on that input:

    .. math::

        e_{\text{ratio}} = \max_{\text{outputs}}
        \frac{|\hat f - f|}{u\,\big((1 + \kappa)\,|f| + \lambda\big)}
        \le c = \texttt{max\_ratio},

    with :math:`u` the unit roundoff of `dtype` (:math:`2^{-24}` for
    float32, :math:`2^{-11}` for float16, :math:`2^{-8}` for bfloat16),
    :math:`\lambda` its smallest normal number, and :math:`\kappa` the
    condition number of :math:`f` in the logits
    (:func:`condition_number`).

    Parameters
    ----------
    fn : callable
        ``fn(logits, target, **kwargs)`` with the signature of
        ``cross_entropy`` in ``torch.nn.functional``. It receives the
        logits, probability targets and ``weight`` in `dtype`, index targets
        as integers, as numpy arrays (bfloat16 as ``ml_dtypes.bfloat16``),
        torch tensors or JAX arrays (see `inputs`). It returns the loss
        (default) or the gradient (``grad=True``) as anything
        ``numpy.asarray`` takes, a torch tensor or a JAX array, in any
        float dtype.
    dtype : {'float64', 'float32', 'float16', 'bfloat16'} or dtype
        The precision the kernel works in.
    families : str or iterable of str, default=None
        The families to run (all by default); see :func:`cases`.
    max_ulp : float or dict of str to float, default=None
        The largest forward error allowed, in ulps, for every family or per
        family (a family left out of the dict, or None, has no bound). A
        family also fails on a wrong special value (a NaN or infinity where
        the exact value has another kind, or a number where it is NaN) or a
        crash.
    max_ratio : float or dict of str to float, default=16
        The constant :math:`c` of the stability verdict, for every family or
        per family (None: no bound). The default is justified in the Notes.
        A family also fails it on a crash or a wrong special value (whose
        ratio is inf).
    grad : {False, True, 'autograd'}, default=False
        What is judged. False: the loss `fn` returns. True: `fn` returns
        the gradient of the loss with respect to the logits, of their shape
        (for ``reduction='none'``, the gradient of the sum of the losses).
        'autograd': `fn` returns the loss and its gradient is taken with the
        autograd of `inputs` (torch's ``backward``, or ``jax.vjp``), with a
        cotangent of ones. A JAX `fn` compiled with ``jax.jit`` is
        differentiated under ``jax.jit`` too, as a training step would.
    inputs : {'numpy', 'torch', 'jax'}, default='numpy'
        The array type `fn` receives. Torch tensors have torch's dtype of
        the same name and int64 indices; JAX arrays, JAX's dtype and int32
        indices (JAX's default). Every conversion is exact.
    seed : int, default=0
        Passed to :func:`cases`.

    Returns
    -------
    Report
        A named tuple ``(dtype, quantity, families, passed, stable)``:
        ``quantity`` is ``'loss'`` or ``'gradient'``, ``passed`` and
        ``stable`` the two verdicts over every family, and ``str(report)``
        the table. ``report.worst_ulp`` and ``report.worst_ratio`` map each
        family to its worst error. ``families`` maps each family to a
        ``FamilyResult``, a named tuple with the fields ``family``,
        ``cases``; ``worst_ulp``, ``worst_case`` (the case's name),
        ``worst_input`` (its ``(logits, target, kwargs)`` as numpy arrays
        in `dtype`), ``worst_at`` (the index of the worst output in the
        case's result, ``()`` for a scalar), ``max_ulp``, ``passed`` for
        the forward error; ``worst_ratio``, ``ratio_case``,
        ``ratio_input``, ``ratio_at``, ``kappa`` (the condition number of
        that output), ``max_ratio``, ``stable`` for stability; ``special`` (each kind of wrong special
        value found, such as ``'NaN where finite'`` or ``'finite where
        inf'``, with the names of the cases), ``crashes`` and ``error``
        (the first exception, as text). Its properties ``nan`` and ``inf``
        count the cases with a wrong NaN or infinity.

    Raises
    ------
    TypeError
        If `fn` is not callable, `dtype` is not a dtype, or `families`,
        `max_ulp`, `max_ratio`, `grad` or `inputs` is of the wrong kind.
    ValueError
        If `dtype`, a family, `grad` or `inputs` is unknown,
        ``grad='autograd'`` is asked of numpy inputs, JAX is asked for
        float64 without ``jax_enable_x64``, or `fn` returns an array of the
        wrong shape.
    ImportError
        For bfloat16 without ml_dtypes (install ``crossentropy_ref[testing]``),
        or `inputs` of a framework that is not installed.

    See Also
    --------
    assert_matches_reference : The same, raising with the table.
    ulp_error : The distance of the forward error.
    condition_number : The :math:`\kappa` of the stability verdict.

    Notes
    -----
    **Forward error.** The reference is the package's float64 result,
    accurate to a few float64 ulps. For float32, float16 and bfloat16 that
    error disappears when the reference is rounded; for ``dtype='float64'``
    it bounds what a verdict means: a few ulps of difference may be the
    reference's own.

    **Stability.** A kernel in precision :math:`u` gets logits known to
    their last bit and rounds each exponential it takes, so its result can
    be off by :math:`u\,(1 + \kappa)\,|f|` to first order even if it does
    nothing else wrong (:func:`condition_number` derives this). A careful
    kernel then adds a few roundings of its own, each at most :math:`u`
    relative: the gap :math:`z_j - m`, ``log1p``, the final addition, the
    class weight and smoothing factors, the division of a mean, and the
    sums over classes and positions, which cost :math:`u \lceil \log_2 n
    \rceil` in the worst case when summed pairwise or in blocks. On the
    battery's largest input (:math:`2^{17} + 1` classes) that worst case
    is about 4 + 18 roundings all erring the same way. In practice they
    partly cancel: careful numpy kernels in float32, float16 and bfloat16
    (:repo-file:`tests/test_testing.py`) stay below 3.1 on every family, loss and
    gradient. :math:`c = 16` is five times that, and leaves room for a
    library ``exp`` or ``log`` within one ulp rather than half. A kernel
    that computes in a wider format and rounds once has a ratio of at most
    1.

    What fails it is error that no perturbation of the inputs explains: an
    avoidable cancellation (``logsumexp(z) - z_y``, or ``log`` of a rounded
    ``1 + s``, when the loss is small but its condition number is not
    large), a sum in a format too narrow for the number of its terms, or an
    overflow. The forward verdict alone cannot tell these from the errors
    of an ill-conditioned input, such as logits near :math:`10^4` whose
    loss is :math:`\log 2`.

    The result is compared in float64 with :math:`f`, the exact value
    rather than its rounding, so a correctly rounded result has a ratio of
    at most :math:`1 / (1 + \kappa)`.

    Exceptions raised by `fn` are counted as crashes, not propagated; the
    first message of each family is in the table. A result of the wrong shape
    is an error in the harness, not a verdict, so it raises.

    Examples
    --------
    The textbook float32 kernel, ``logsumexp(z) - z_y`` with the max shift,
    judged on exact ties. Where the logits are near 1e4, the loss log 2 is
    the difference of two numbers near 1e4, and float32 keeps too few of its
    digits. Thousands of ulps, but not unstable: those logits, known to
    their last bit, do not determine log 2 better than that.

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
    loss in float32: forward error FAILED, stability PASSED
                        -- forward error --  --- stability ---
    family        cases     ulps  bound         ratio    c      special crash
    ties              5     3560      4 FAIL     0.44   16 ok         0     0
    ratio: error / (u (1 + kappa) |exact|), u = 2**-24; c: its bound
    worst case of each failing family:
      ties          at-large (ulps); two-way (ratio)
    >>> logits, target, kwargs = report.families["ties"].worst_input
    >>> print(logits.tolist(), target.tolist(), kwargs)
    [[9984.0, 9984.0], [-9984.0, -9984.0]] [0, 1] {'reduction': 'none'}

    On a confident prediction the same subtraction loses a small loss
    that the logits do determine: unstable.

    >>> report = check(kernel, dtype="float32", families="confident")
    >>> r = report.families["confident"]
    >>> print(r.stable, r.ratio_case)
    False confident/margin=16,C=2
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable fn(logits, target, **kwargs); got {type(fn).__name__}")
    name = dtype_name(dtype)
    chosen = check_families(families)
    seed = check_seed(seed)
    ulp_bounds = _bounds(max_ulp, chosen, "max_ulp")
    ratio_bounds = _bounds(max_ratio, chosen, "max_ratio")
    inputs = check_inputs(inputs)
    grad = check_grad(grad, inputs)
    if inputs != "numpy":
        framework_dtype(inputs, name)  # ImportError now, rather than a crash in every case
        if inputs == "jax" and name == "float64":
            import jax

            if not jax.config.jax_enable_x64:
                raise ValueError(
                    "`inputs='jax'` with dtype float64 needs jax.config.update('jax_enable_x64', True); "
                    "without it JAX would round the inputs to float32"
                )
    stats = {f: _new_stats() for f in chosen}
    runner = make_runner(fn, inputs, name, grad)
    prepared = (case for f in chosen for case in (_prepared_loss(name, seed, f) if not grad
                                                   else _prepare(name, seed, f, True)))
    for case_name, logits_shape, kwargs, given, ref, scale in prepared:
        family = case_name.split("/", 1)[0]
        st = stats[family]
        st["cases"] += 1
        try:
            # Overflow and invalid operations inside the candidate are findings (counted
            # below as special values), not warnings for the caller's output.
            with np.errstate(all="ignore"):
                out = runner(given[0], given[1].copy(), _copied(given[2]))
                got = to_numpy(out)
        except Exception as exc:  # a crash is a verdict on the candidate, counted per family
            st["crash"] += 1
            if st["error"] is None:
                st["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        if got.shape != ref.shape:
            what = "gradient, the shape of the logits" if grad else "loss"
            raise ValueError(
                f"`fn` must return the {what}, an array of shape {ref.shape}, for case {case_name!r} "
                f"(logits of shape {logits_shape}, {kwargs}); got shape {got.shape}"
            )
        if got.dtype.kind not in "fiuV":
            raise TypeError(f"`fn` must return real numbers; got {got.dtype} for case {case_name!r}")
        if got.dtype.kind != "f" and got.dtype.kind != "V":
            got = got.astype(np.float64)
        g_dt, r_dt = round_to(got, name), round_to(ref, name)
        g64, r64 = g_dt.astype(np.float64), r_dt.astype(np.float64)
        err = distance(g_dt, r_dt, name, g64, r64)
        for kind in _specials(g64, ref, r64):
            st["special"].setdefault(kind, []).append(case_name)
        ratio = _ratios(g64, ref, r64, scale, name)
        at = int(np.argmax(err)) if err.size else 0
        worst = float(err.flat[at]) if err.size else 0.0
        if worst > st["ulp"]:
            st["ulp"], st["case"], st["at"] = worst, case_name, np.unravel_index(at, err.shape)
            st["input"] = (given[0].copy(), given[1].copy(), _copied(given[2]))
        at = int(np.argmax(ratio)) if ratio.size else 0
        worst_r = float(ratio.flat[at]) if ratio.size else 0.0
        if worst_r > st["ratio"]:
            st["ratio"], st["rcase"], st["rat"] = worst_r, case_name, np.unravel_index(at, ratio.shape)
            st["rinput"] = (given[0].copy(), given[1].copy(), _copied(given[2]))
            f_at, s_at = abs(float(ref.flat[at])), float(scale.flat[at])
            with np.errstate(all="ignore"):
                st["kappa"] = 0.0 if s_at == 0 else s_at / f_at
    results = {}
    for f in chosen:
        st = stats[f]
        worst, ratio = max(st["ulp"], 0.0), max(st["ratio"], 0.0)
        special = {k: tuple(v) for k, v in st["special"].items()}
        passed = st["crash"] == 0 and not special and worst <= ulp_bounds[f]
        stable = st["crash"] == 0 and ratio <= ratio_bounds[f]
        results[f] = FamilyResult(
            family=f, cases=st["cases"], worst_ulp=worst, worst_case=st["case"], worst_input=st["input"],
            worst_at=_index(st["at"]), max_ulp=ulp_bounds[f], passed=passed, worst_ratio=ratio,
            ratio_case=st["rcase"], ratio_input=st["rinput"], ratio_at=_index(st["rat"]), kappa=st["kappa"],
            max_ratio=ratio_bounds[f], stable=stable,
            special=special, crashes=st["crash"], error=st["error"],
        )
    return Report(
        dtype=name, quantity="gradient" if grad else "loss", families=results,
        passed=all(r.passed for r in results.values()), stable=all(r.stable for r in results.values()),
    )


def assert_matches_reference(
    fn: Callable[..., Any],
    *,
    dtype: object,
    max_ulp: float | Mapping[str, float] | None = None,
    max_ratio: float | Mapping[str, float] | None = None,
    families: object = None,
    grad: bool | str = False,
    inputs: str = "numpy",
    seed: int = 0,
) -> Report:
    """Assert that a kernel meets a forward-error bound, a stability bound, or both, on every case.

    Runs :func:`check` and raises an ``AssertionError`` whose message is the
    report's table if a family fails a verdict that was asked for; returns
    the report otherwise. Use it in a test suite.

    Parameters
    ----------
    fn, dtype, families, grad, inputs, seed
        As for :func:`check`.
    max_ulp : float or dict of str to float, default=None
        As for :func:`check`: the forward-error bound. When given, the
        forward verdict is asserted.
    max_ratio : float or dict of str to float, default=None
        As for :func:`check`: the constant :math:`c` of the stability bound
        (``16`` is check's default). When given, the stability verdict is
        asserted. At least one of `max_ulp` and `max_ratio` is required.

    Returns
    -------
    Report

    Raises
    ------
    AssertionError
        If a family fails an asserted verdict; the message is the table.
    TypeError
        If neither `max_ulp` nor `max_ratio` is given, or as for
        :func:`check`.
    ValueError, ImportError
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
    >>> _ = assert_matches_reference(exact, dtype="float32", max_ulp=0,
    ...                              max_ratio=1)
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
    loss in float32: forward error FAILED, stability FAILED
    """
    if max_ulp is None and max_ratio is None:
        raise TypeError(
            "`max_ulp` must be a number or a dict of numbers, or `max_ratio` given; got neither "
            "(pass max_ulp=... for the forward error, max_ratio=16 for stability, or both)"
        )
    report = check(fn, dtype=dtype, families=families, max_ulp=max_ulp,
                   max_ratio=STABILITY_C if max_ratio is None else max_ratio, grad=grad, inputs=inputs, seed=seed)
    failed = (max_ulp is not None and not report.passed) or (max_ratio is not None and not report.stable)
    if failed:
        raise AssertionError(str(report))
    return report
