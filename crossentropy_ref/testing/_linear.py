"""Fused LM-head kernels: cases for ``linear_cross_entropy`` and a forward-error check.

A fused kernel computes the loss of ``x @ W.T + b`` without forming the logits.
Its cases are (hidden states, weight, target, options); every value is on the
grid that float32, float16 and bfloat16 share (`snap`), so each format is
judged on the same numbers, and the reference is
:func:`crossentropy_ref.linear_cross_entropy` of those numbers: the exact
loss of the exact product, which a float64 matmul would not give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .._linear import linear_cross_entropy
from ._cases import check_seed, snap
from ._convert import check_inputs, to_framework, to_numpy
from ._ulp import dtype_name, numpy_dtype, round_to, ulp_error

LINEAR_FAMILIES = ("lm_head", "confident", "cancelling", "bias_kdim", "options")


def _lm(rng, n, k, c):
    """Hidden states N(0, 1) and a weight N(0, 1/4): logits of size about sqrt(K) / 2."""
    return snap(rng.standard_normal((n, k))), snap(0.25 * rng.standard_normal((c, k)))


def linear_cases(families: object = None, seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray,
                                                                           dict]]:
    """Yield ``(name, input, linear_weight, target, kwargs)`` for fused LM-head kernels.

    Families: ``lm_head`` (index targets, a few hundred features and classes);
    ``confident`` (a feature that only the target class reads lifts its logit
    by 32 to 64: losses down to e**-60); ``cancelling`` (pairs of large
    features, 64 to 2048, whose products cancel pairwise, leaving logits of
    size about 4); ``bias_kdim`` (a bias,
    and K-dimensional weights (C, d, K)); ``options`` (class weights, label
    smoothing, ``ignore_index``, probability targets, the three reductions).
    Every value is exactly representable in float32, float16 and bfloat16.

    Parameters
    ----------
    families : str or iterable of str, default=None
        Which families (see ``LINEAR_FAMILIES``); None: all.
    seed : int, default=0
        The random values' seed.
    """
    fams = _check_linear_families(families)
    seed = check_seed(seed)
    for fam in fams:
        rng = np.random.default_rng([seed, LINEAR_FAMILIES.index(fam)])
        if fam == "lm_head":
            for k, c in ((64, 100), (256, 1000)):
                x, w = _lm(rng, 32, k, c)
                yield f"lm_head-K{k}-C{c}", x, w, rng.integers(0, c, size=32), {}
        elif fam == "confident":
            for gap in (32.0, 48.0, 64.0):
                x, w = _lm(rng, 16, 64, 50)
                y = np.full(16, int(rng.integers(0, 50)))
                x[:, 0] = gap
                w[:, 0] = 0.0
                w[y[0], 0] = 1.0
                yield f"confident-gap{gap:g}", x, w, y, {}
        elif fam == "cancelling":
            for big in (64.0, 1024.0):
                x, w = _lm(rng, 16, 128, 40)
                x[:, :32] = snap(big * (1 + rng.random((16, 32))))
                x[:, 32:64] = -x[:, :32]
                w[:, 32:64] = w[:, :32]
                yield f"cancelling-{big:g}", x, w, rng.integers(0, 40, size=16), {}
        elif fam == "bias_kdim":
            x, w = _lm(rng, 16, 64, 30)
            yield "bias", x, w, rng.integers(0, 30, size=16), {"linear_bias": snap(rng.standard_normal(30))}
            w3 = snap(0.25 * rng.standard_normal((10, 3, 64)))
            yield "kdim", x, w3, rng.integers(0, 10, size=(16, 3)), {"linear_bias": snap(rng.standard_normal((10, 3)))}
        else:
            x, w = _lm(rng, 24, 64, 20)
            y = rng.integers(0, 20, size=24)
            y[::4] = -100
            wt = snap(rng.uniform(0.25, 4.0, size=20))
            for red in ("mean", "sum", "none"):
                yield f"weight-ignore-{red}", x, w, y, {"weight": wt, "reduction": red}
            yield "smoothing", x, w, np.where(y == -100, 0, y), {"label_smoothing": 0.25}
            p = snap(rng.dirichlet(np.ones(20), size=24))
            yield "probabilities", x, w, p, {"reduction": "none"}


def _check_linear_families(families: object) -> tuple[str, ...]:
    if families is None:
        return LINEAR_FAMILIES
    names = (families,) if isinstance(families, str) else tuple(families)
    for f in names:
        if f not in LINEAR_FAMILIES:
            raise ValueError(f"`families` must name families among {LINEAR_FAMILIES}; got {f!r}")
    return names


class LinearFamilyResult(NamedTuple):
    """The forward error on one family: the worst ulps of the format, and where."""

    family: str
    cases: int
    worst_ulp: float
    worst_case: str | None
    max_ulp: float
    passed: bool
    error: str | None  # the first exception the kernel raised, as "Type: message"


def check_linear(
    kernel: Callable[..., Any],
    dtype: object,
    *,
    inputs: str = "numpy",
    families: object = None,
    seed: int = 0,
    max_ulp: float = 8.0,
) -> dict[str, LinearFamilyResult]:
    """Run a fused LM-head kernel on every case of :func:`linear_cases` and judge its loss.

    The kernel is called as ``kernel(input, linear_weight, target, **kwargs)``,
    the signature of ``torch.nn.functional.linear_cross_entropy``, with the
    float arrays in `dtype` (class indices as int64). Its result is compared,
    in ulps of `dtype`, with :func:`crossentropy_ref.linear_cross_entropy` of
    the same values correctly rounded to `dtype` (:func:`ulp_error`).

    Only the forward error is judged: the stability verdict of :func:`check`
    needs the loss's condition number in the logits, which for a fused
    kernel would also have to cover the product; it is not computed here.

    Parameters
    ----------
    kernel : callable
        The fused kernel.
    dtype : str or dtype
        'float32', 'float16', 'bfloat16' or 'float64', as for :func:`check`.
    inputs : {'numpy', 'torch'}, default='numpy'
        The array type the kernel takes.
    families, seed
        As for :func:`linear_cases`.
    max_ulp : float, default=8.0
        The bound a family passes with.

    Returns
    -------
    dict of str to LinearFamilyResult
        One result per family, in order.
    """
    name = dtype_name(dtype)
    inputs = check_inputs(inputs)
    if inputs not in ("numpy", "torch"):
        raise ValueError(f"`inputs` must be 'numpy' or 'torch' for a fused kernel; got {inputs!r}")
    dt = numpy_dtype(name)
    out: dict[str, LinearFamilyResult] = {}
    stats: dict[str, dict] = {}
    for case, x, w, t, kw in linear_cases(families, seed):
        fam = _family_of(case)
        st = stats.setdefault(fam, {"cases": 0, "worst": 0.0, "where": None, "error": None})
        st["cases"] += 1
        ref = linear_cross_entropy(x, w, t, **kw)

        def conv(a):
            if not isinstance(a, np.ndarray):
                return a
            if a.dtype.kind in "iu":
                return to_framework(a.astype(np.int64), inputs, name)
            return to_framework(a.astype(dt), inputs, name)

        try:
            got = to_numpy(kernel(conv(x), conv(w), conv(t), **{k: conv(v) for k, v in kw.items()}))
        except Exception as exc:  # noqa: BLE001 - a crash is a verdict
            st["error"] = st["error"] or f"{type(exc).__name__}: {exc}"
            st["worst"] = np.inf
            st["where"] = st["where"] or case
            continue
        err = float(np.max(ulp_error(got if got.dtype == dt else round_to(got, name), ref, name), initial=0.0))
        if st["where"] is None or err > st["worst"]:
            st["worst"], st["where"] = max(err, st["worst"]), case
    for fam, st in stats.items():
        out[fam] = LinearFamilyResult(fam, st["cases"], st["worst"], st["where"], max_ulp,
                                      st["error"] is None and st["worst"] <= max_ulp, st["error"])
    return out


_CASE_FAMILY = {"lm_head": "lm_head", "confident": "confident", "cancelling": "cancelling", "bias": "bias_kdim",
                "kdim": "bias_kdim", "weight": "options", "smoothing": "options", "probabilities": "options"}


def _family_of(case: str) -> str:
    return _CASE_FAMILY[case.split("-")[0]]
