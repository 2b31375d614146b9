"""The adversarial inputs: named cases grouped in families.

Every value (logits, probability targets, class weights) is on the grid that
float32, float16 and bfloat16 share: at most 8 significant bits (bfloat16's
precision), magnitudes in [2**-6, 9984] or 0 (inside float16's range, above
its subnormals), and ±inf. Casting a case to any of the three formats is then
exact, so every format is judged on the same numbers. The seed example is the
one exception: its logits are kept as the seed wrote them and are rounded
by the cast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

# Family names in the order of the report.
FAMILIES = (
    "seed",
    "balanced",
    "confident",
    "certain_wrong",
    "large_logits",
    "ties",
    "neg_inf",
    "many_classes",
    "kdim",
    "ignore_index",
    "weights",
    "smoothing",
    "prob_targets",
    "tiles",
)

# The largest logit used: 9984 = 156 * 64 is the float16 and bfloat16 number nearest 1e4.
BIG = 9984.0
MARGINS = (10.0, 16.0, 24.0, 40.0, 88.0, 100.0, 200.0, 400.0, 700.0)


def snap(x) -> np.ndarray:
    """Round float64 values to 8 significant bits; |x| < 2**-6 becomes 0 (infinities kept).

    The result is exactly representable in bfloat16, float16 and float32 for
    |x| <= 65280 (the largest 8-bit number below float16's maximum).
    """
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(np.where(np.isfinite(x), x, 0.0))
    out = np.ldexp(np.round(m * 256.0) / 256.0, e)  # np.round: to nearest, ties to even
    out = np.where(np.abs(out) < 2.0**-6, 0.0, out)
    return np.where(np.isfinite(x), out, x)


def check_families(families: object) -> tuple[str, ...]:
    """None (every family), one family name, or an iterable of names, checked."""
    if families is None:
        return FAMILIES
    if isinstance(families, str):
        families = (families,)
    if not isinstance(families, Iterable):
        raise TypeError(
            f"`families` must be None, a family name or a list of names; got {type(families).__name__} {families!r}"
        )
    names = tuple(families)
    for f in names:
        if not isinstance(f, str):
            raise TypeError(f"`families` must hold family names (str); got {type(f).__name__} {f!r}")
        if f not in FAMILIES:
            raise ValueError(f"`families` must name families among {FAMILIES}; got {f!r}")
    if not names:
        raise ValueError(f"`families` must name at least one family among {FAMILIES}; got {families!r}")
    return tuple(f for f in FAMILIES if f in names)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an integer; got {type(seed).__name__} {seed!r}")
    return int(seed)


def _uniform(rng, lo, hi, shape):
    return snap(rng.uniform(lo, hi, size=shape))


def _targets(rng, n, c):
    return rng.integers(0, c, size=n).astype(np.int64)


def _seed(rng):
    # The seed blog post's cat / dog / turtle example, as written there.
    z = np.array([[9.7785, 0.9195, 2.10], [3.133, -3.05, 1.02], [0.12, 0.432518, 0.470]])
    y = np.array([0, 0, 2])
    for reduction in ("mean", "sum", "none"):
        yield f"reduction={reduction}", z, y, {"reduction": reduction}
    yield "one-hot", z, np.eye(3)[y], {}


def _balanced(rng):
    for c in (2, 3, 10, 100, 1000):
        yield f"C={c}", _uniform(rng, -1.0, 1.0, (16, c)), _targets(rng, 16, c), {"reduction": "none"}
    for value in (0.0, 3.5, -40.0):  # equal logits: the loss is exactly log C
        yield f"equal={value:g}", np.full((4, 7), value), _targets(rng, 4, 7), {"reduction": "none"}


def _margin_rows(rng, margin, c, n, *, wrong):
    """Rows of C logits near a base, the target `margin` above (or below, when `wrong`) the rest."""
    base = rng.choice([0.0, 8.0, -8.0], size=(n, 1))
    z = base + rng.uniform(-2.0, 0.0, size=(n, c))
    y = _targets(rng, n, c)
    rows = np.arange(n)
    z[rows, y] = base[:, 0] + (-margin - 2.0 if wrong else margin)
    return snap(z), y


def _confident(rng):
    for margin in MARGINS:
        for c in (2, 10):
            z, y = _margin_rows(rng, margin, c, 8, wrong=False)
            yield f"margin={margin:g},C={c}", z, y, {"reduction": "none"}


def _certain_wrong(rng):
    for margin in MARGINS:
        for c in (2, 10):
            z, y = _margin_rows(rng, margin, c, 8, wrong=True)
            yield f"margin={margin:g},C={c}", z, y, {"reduction": "none"}


def _large_logits(rng):
    grid = np.array([BIG, BIG - 64, BIG - 128, BIG - 192, 0.0, -BIG + 64, -BIG])
    z = rng.choice(grid, size=(16, 4))
    y = _targets(rng, 16, 4)
    yield "mixed", z, y, {"reduction": "none"}
    yield "mixed,mean", z, y, {}
    yield "all-positive", rng.choice(grid[:4], size=(8, 4)), _targets(rng, 8, 4), {"reduction": "none"}
    yield "all-negative", rng.choice(-grid[:4], size=(8, 4)), _targets(rng, 8, 4), {"reduction": "none"}


def _ties(rng):
    yield "three-way", np.array([[1.0, 1.0, 1.0]]), np.array([0]), {"reduction": "none"}
    yield "two-way", np.array([[5.0, 5.0, 0.0], [-3.0, -3.0, 7.0]]), np.array([1, 0]), {"reduction": "none"}
    yield "at-large", np.array([[BIG, BIG], [-BIG, -BIG]]), np.array([0, 1]), {"reduction": "none"}
    yield "C=1000", np.zeros((2, 1000)), np.array([0, 999]), {"reduction": "none"}
    z = np.array([[-3.0, -3.0, -3.0, 7.0, 7.0]])
    yield "max-pair", z, np.array([3]), {"reduction": "none"}


def _neg_inf(rng):
    ninf = -np.inf
    z = np.array([[0.0, ninf, 1.0], [ninf, 2.0, 2.0], [3.0, ninf, ninf], [ninf, ninf, 5.0]])
    yield "some", z, np.array([0, 1, 0, 2]), {"reduction": "none"}
    yield "some,mean", z, np.array([0, 1, 0, 2]), {}
    z = np.array([[1.0, ninf, 0.5], [ninf, 0.0, ninf]])
    yield "target-at-neg-inf", z, np.array([1, 0]), {"reduction": "none"}


def _many_classes(rng):
    for c, n in ((1000, 8), (10_000, 4), (100_000, 2)):
        yield f"C={c}", _uniform(rng, -4.0, 4.0, (n, c)), _targets(rng, n, c), {"reduction": "none"}
    z = _uniform(rng, -4.0, 0.0, (2, 100_000))
    z[:, 7] = 24.0  # confident among many: the rest sum to about 1e5 * e**-26
    yield "C=100000,confident", z, np.array([7, 7]), {"reduction": "none"}
    yield "C=10000,mean", _uniform(rng, -4.0, 4.0, (4, 10_000)), _targets(rng, 4, 10_000), {}


def _kdim(rng):
    for shape in ((2, 5, 3), (2, 4, 3, 2), (1, 3, 1, 1, 2)):
        z = _uniform(rng, -8.0, 8.0, shape)
        y = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        yield f"{shape},none", z, y, {"reduction": "none"}
        yield f"{shape},mean", z, y, {}
    yield "unbatched", _uniform(rng, -8.0, 8.0, (6,)), np.array(4), {"reduction": "none"}
    w = np.array([0.5, 2.0, 1.0, 0.25])
    z, y = _uniform(rng, -8.0, 8.0, (2, 4, 3)), rng.integers(0, 4, size=(2, 3))
    yield "(2,4,3),weights,mean", z, y, {"weight": w}


def _ignore_index(rng):
    z = _uniform(rng, -6.0, 6.0, (12, 5))
    y = _targets(rng, 12, 5)
    y[[1, 4, 5, 9]] = -100
    yield "-100,none", z, y, {"reduction": "none"}
    yield "-100,mean", z, y, {}
    yield "-100,sum", z, y, {"reduction": "sum"}
    y0 = _targets(rng, 12, 5)
    y0[[0, 3, 7]] = 0  # a valid class that is ignored
    y0[5] = 2
    yield "class-0,none", z, y0, {"ignore_index": 0, "reduction": "none"}
    yield "class-0,mean", z, y0, {"ignore_index": 0}
    w = np.array([0.5, 2.0, 1.0, 0.25, 4.0])
    yield "class-2,weights,mean", z, y0, {"ignore_index": 2, "weight": w}
    zk, yk = _uniform(rng, -6.0, 6.0, (2, 5, 4)), rng.integers(0, 5, size=(2, 4))
    yk[0, 1] = yk[1, 3] = -100
    yield "kdim,mean", zk, yk, {}
    yield "all-ignored,mean", z[:3], np.full(3, -100), {}


def _weights(rng):
    w = np.array([0.5, 2.0, 1.0, 0.25, 4.0])
    z = _uniform(rng, -6.0, 6.0, (16, 5))
    y = _targets(rng, 16, 5)
    yield "mean", z, y, {"weight": w}
    yield "none", z, y, {"weight": w, "reduction": "none"}
    yield "sum", z, y, {"weight": w, "reduction": "sum"}
    yield "zero-weight,mean", z, y, {"weight": np.array([0.0, 2.0, 1.0, 0.0, 0.5])}
    c = 100
    wc = snap(rng.uniform(0.1, 4.0, size=c))
    yield "C=100,mean", _uniform(rng, -6.0, 6.0, (32, c)), _targets(rng, 32, c), {"weight": wc}


def _smoothing(rng):
    z = _uniform(rng, -6.0, 6.0, (12, 5))
    y = _targets(rng, 12, 5)
    for eps in (0.125, 0.5, 1.0):
        yield f"eps={eps:g},none", z, y, {"label_smoothing": eps, "reduction": "none"}
    yield "eps=0.25,mean", z, y, {"label_smoothing": 0.25}
    zc, yc = _margin_rows(rng, 40.0, 10, 8, wrong=False)
    yield "eps=0.125,confident", zc, yc, {"label_smoothing": 0.125, "reduction": "none"}
    w = np.array([0.5, 2.0, 1.0, 0.25, 4.0])
    yield "eps,weights,mean", z, y, {"label_smoothing": 0.25, "weight": w}
    y2 = y.copy()
    y2[[2, 6]] = -100
    yield "eps,ignored,mean", z, y2, {"label_smoothing": 0.25}


def _prob_rows(rng, n, c):
    """Dyadic probability rows with zeros: k/16, summing to exactly 1."""
    counts = rng.integers(0, 4, size=(n, c)) * rng.integers(0, 2, size=(n, c))
    counts[np.arange(n), rng.integers(0, c, size=n)] += 1
    scale = 2.0 ** np.ceil(np.log2(counts.sum(axis=1, keepdims=True)))
    p = counts / scale
    p[np.arange(n), np.argmax(counts, axis=1)] += 1.0 - p.sum(axis=1)  # exact: all are k / 2**j
    return p


def _prob_targets(rng):
    z = _uniform(rng, -6.0, 6.0, (12, 6))
    p = _prob_rows(rng, 12, 6)
    yield "none", z, p, {"reduction": "none"}
    yield "mean", z, p, {}
    yield "one-hot,none", z, np.eye(6)[_targets(rng, 12, 6)], {"reduction": "none"}
    yield "weights,mean", z, p, {"weight": np.array([0.5, 2.0, 1.0, 0.25, 4.0, 1.0])}
    yield "smoothing,none", z, p, {"label_smoothing": 0.25, "reduction": "none"}
    zc, yc = _margin_rows(rng, 88.0, 6, 12, wrong=False)
    yield "confident,none", zc, np.eye(6)[yc], {"reduction": "none"}
    zi = np.array([[0.0, -np.inf, 1.0], [2.0, 2.0, -np.inf]])
    pi = np.array([[0.5, 0.0, 0.5], [0.25, 0.75, 0.0]])
    yield "zero-mass-at-neg-inf", zi, pi, {"reduction": "none"}


def _edges(n: int) -> list[int]:
    """Indices in range(n) on either side of every power-of-two boundary: 0, 2**j - 1, 2**j, n - 1."""
    points = {0, n - 1}
    j = 1
    while 2**j < n:
        points |= {2**j - 1, 2**j}
        j += 1
    return sorted(points)


def _tile_rows(rng, n, c, *, max_at_edge=True):
    """(n, c) logits in [-4, 4]; targets cycle through the class edges; in every other row the
    target's logit is raised 8 above the rest, and in the others the maximum sits at a class edge."""
    z = _uniform(rng, -4.0, 4.0, (n, c))
    cls = _edges(c)
    y = np.array([cls[i % len(cls)] for i in range(n)], dtype=np.int64)
    rows = np.arange(n)
    confident = rows % 2 == 0
    z[rows[confident], y[confident]] = 12.0  # 8 above every other logit: a small loss
    if max_at_edge and c > 1:
        other = rows[~confident]
        z[other, np.array([cls[(i + 1) % len(cls)] for i in other], dtype=np.int64)] = 8.0
    return z, y


def _tiles(rng):
    # Rows: N of 2**k - 1, 2**k, 2**k + 1 for k = 1..12, the classes also at an edge (C = 2..17).
    # Each N is one case: 'none' for 2**k - 1; 'sum' and 'mean' for 2**k and 2**k + 1, with the
    # positions at row edges ignored (the last row kept, so a dropped last tile shows).
    for k in range(1, 13):
        for delta, reduction in ((-1, "none"), (0, "sum"), (1, "mean")):
            n = 2**k + delta
            c = 2 ** (k % 4 + 1) + (delta + k) % 3 - 1
            z, y = _tile_rows(rng, n, c)
            if reduction != "none":
                ignored = [i for i in _edges(n) if i not in (0, n - 1) and (i + delta) % 2 == 0]
                y[ignored] = -100
            yield f"N={n},C={c},{reduction}", z, y, {"reduction": reduction}
    # Classes: C of 2**k - 1, 2**k, 2**k + 1 for k = 1..12, and for k = 13, 15, 17 (vocabulary
    # tiling; every other k would double the battery's size for little), per-row losses.
    ks = (*range(1, 13), 13, 15, 17)
    for c in sorted({2**k + delta for k in ks for delta in (-1, 0, 1)} - {1}):
        n = 3 if c <= 2**12 + 1 else 2
        z, y = _tile_rows(rng, n, c)
        z[0] = np.minimum(z[0], 4.0)
        z[0, c - 1], y[0] = 12.0, c - 1  # the target is the maximum, alone in the last tile
        yield f"N={n},C={c}", z, y, {"reduction": "none"}
    # Weighted means with both N and C at edges.
    for n, c in ((63, 65), (65, 63), (129, 127), (257, 255)):
        z, y = _tile_rows(rng, n, c)
        w = snap(rng.uniform(0.25, 4.0, size=c))
        y[n // 2] = -100
        yield f"N={n},C={c},weights,mean", z, y, {"weight": w}
    # K-dim positions at edges: (2, 5, 2**6 + delta).
    for d in (63, 64, 65):
        zk, yk = _tile_rows(rng, 2 * d, 5)
        z = np.moveaxis(zk.reshape(2, d, 5), -1, 1).copy()
        y = yk.reshape(2, d)
        y[1, d - 1] = -100
        yield f"(2,5,{d}),mean", z, y, {}


_BUILDERS = {
    "seed": _seed,
    "balanced": _balanced,
    "confident": _confident,
    "certain_wrong": _certain_wrong,
    "large_logits": _large_logits,
    "ties": _ties,
    "neg_inf": _neg_inf,
    "many_classes": _many_classes,
    "kdim": _kdim,
    "ignore_index": _ignore_index,
    "weights": _weights,
    "smoothing": _smoothing,
    "prob_targets": _prob_targets,
    "tiles": _tiles,
}


def cases(families: object = None, seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """Named adversarial inputs for a cross-entropy kernel, family by family.

    Parameters
    ----------
    families : str or iterable of str, default=None
        Family names from ``FAMILIES`` (all of them by default):

        ``seed``
            the seed blog post's three-sample example;
        ``balanced``
            logits within ±1, and equal logits (loss exactly log C);
        ``confident``
            the target ``margin`` above the rest, margins 10 to 700;
        ``certain_wrong``
            the target ``margin`` below the rest, margins 10 to 700;
        ``large_logits``
            logits of ±9984 (the float16 and bfloat16 number nearest 1e4);
        ``ties``
            exact ties for the maximum;
        ``neg_inf``
            -inf logits, also at the target (loss inf);
        ``many_classes``
            C up to 10**5;
        ``kdim``
            (N, C, d1, ..., dk) and unbatched (C,) inputs;
        ``ignore_index``
            ignored targets, -100 and a valid class, also all ignored;
        ``weights``
            class weights, with each reduction, and zero weights;
        ``smoothing``
            label smoothing, with weights and ignored targets;
        ``prob_targets``
            class-probability targets with zeros, also at a -inf logit;
        ``tiles``
            shapes that straddle tile edges: N of :math:`2^k - 1`, :math:`2^k`
            and :math:`2^k + 1` for k up to 12, C the same for k up to 12 and for k = 13, 15
            and 17 (vocabulary tiling), both at once, and K-dim positions;
            targets, maxima and ignored positions at the edges of
            power-of-two tiles.
    seed : int, default=0
        Seed of the random parts. Each family has its own generator, so a
        family's cases do not depend on which other families are chosen.

    Yields
    ------
    name : str
        ``"family/detail"``, e.g. ``"confident/margin=700,C=2"``.
    logits : ndarray of float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
    target : ndarray, int64 class indices or float64 probabilities
    kwargs : dict
        Keyword arguments of ``cross_entropy`` in ``torch.nn.functional``:
        ``weight`` (a float64 array), ``ignore_index``, ``reduction``,
        ``label_smoothing``.

    Raises
    ------
    TypeError, ValueError
        If `families` is not a family name or a list of them.

    Notes
    -----
    Every logit, probability and weight, except the seed example's logits, is
    exactly representable in float32, float16 and bfloat16: a cast to any of
    them changes nothing.

    Examples
    --------
    >>> from crossentropy_ref.testing import cases
    >>> for name, logits, target, kwargs in cases("ties"):
    ...     print(name, logits.shape, kwargs)
    ties/three-way (1, 3) {'reduction': 'none'}
    ties/two-way (2, 3) {'reduction': 'none'}
    ties/at-large (2, 2) {'reduction': 'none'}
    ties/C=1000 (2, 1000) {'reduction': 'none'}
    ties/max-pair (1, 5) {'reduction': 'none'}
    """
    chosen = check_families(families)
    check_seed(seed)
    for index, family in enumerate(FAMILIES):
        if family not in chosen:
            continue
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, index])
        for detail, logits, target, kwargs in _BUILDERS[family](rng):
            yield f"{family}/{detail}", np.asarray(logits, dtype=np.float64), np.asarray(target), dict(kwargs)
