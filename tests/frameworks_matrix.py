"""Cross-entropy across frameworks: the cells of the parity matrix and their checks.

One module, three users: the book pages ``docs/reference/parity-matrix.md``
and ``docs/howto/port-frameworks.md`` (which put ``tests/`` on ``sys.path``)
and ``tests/test_frameworks.py``. It imports no test framework, and no
machine-learning framework at import time: :func:`load` imports one when a
check needs it (JAX and Keras take seconds to import).

The matrix has one row per torch feature (:data:`ROWS`) and one column per
framework (:data:`FRAMEWORKS`). Each :class:`Cell` makes one claim:

native
    One call of the framework's loss, with the right arguments (a trailing
    ``.mean()`` or ``.sum()`` included), gives torch's value.
recipe
    The framework's loss (for JAX and SciPy, which ship none, their
    ``log_softmax``, ``logsumexp`` and log-sigmoid) plus a few lines of glue
    gives torch's value. Glue moves the class axis, encodes or gathers
    targets and weights, masks, and reduces; it never changes the logits.
differs
    The framework returns something else on the stated input; the cell says
    what, and :func:`check` measures by how much.
impossible
    No call of the framework's loss can express the feature.

"torch's value" is :mod:`crossentropy_ref`'s, in float64, within
``rtol=RTOL`` (1e-10) on every input of the row; :func:`check` raises an
AssertionError naming the cell when a claim stops holding. JAX runs with
x64 enabled and Keras on the JAX backend with floatx float64.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import textwrap
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Callable

import numpy as np

import crossentropy_ref as ce

RTOL = 1e-10  # native and recipe cells: relative tolerance against crossentropy_ref
IGNORE = -100  # torch's default ignore_index, used by every row that ignores
EPS = 0.1  # the label smoothing of the smoothing rows
N, C = 6, 5  # batch and classes of the 2-D inputs

# Display names, in column order, and the distribution that gives each version.
FRAMEWORKS = {
    "torch": ("PyTorch", "torch"),
    "jax": ("JAX", "jax"),
    "optax": ("optax", "optax"),
    "keras": ("Keras", "keras"),
    "sklearn": ("sklearn", "scikit-learn"),
    "scipy": ("SciPy", "scipy"),
    "onnx": ("ONNX", "onnx"),
}


def versions() -> dict[str, str]:
    """The installed version of every framework, without importing any."""
    return {key: version(dist) for key, (_, dist) in FRAMEWORKS.items()}


# ---------------------------------------------------------------------------
# Lazy imports: load() binds these module globals, which the cells use.
# ---------------------------------------------------------------------------

torch = F = jax = jnp = optax = keras = None
log_loss = special = onnx_helper = ReferenceEvaluator = None
_LOADED: set[str] = set()


def load(*frameworks: str) -> None:
    """Import the given frameworks (all when none given) and configure them.

    JAX gets x64 (float64 arrays); Keras gets the JAX backend, which must be
    chosen before its first import, and floatx float64.
    """
    global torch, F, jax, jnp, optax, keras
    global log_loss, special, onnx_helper, ReferenceEvaluator
    for name in frameworks or tuple(FRAMEWORKS):
        if name in _LOADED:
            continue
        if name == "torch":
            torch = importlib.import_module("torch")
            F = importlib.import_module("torch.nn.functional")
        elif name in ("jax", "optax", "keras"):
            os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no accelerator probe
            jax = importlib.import_module("jax")
            jax.config.update("jax_enable_x64", True)
            jnp = importlib.import_module("jax.numpy")
            if name == "optax":
                optax = importlib.import_module("optax")
            if name == "keras":
                os.environ["KERAS_BACKEND"] = "jax"
                keras = importlib.import_module("keras")
                if keras.backend.backend() != "jax":
                    raise RuntimeError("Keras was imported before with another backend")
                keras.config.set_floatx("float64")
        elif name in ("sklearn", "scipy"):
            special = importlib.import_module("scipy.special")
            if name == "sklearn":
                log_loss = importlib.import_module("sklearn.metrics").log_loss
        elif name == "onnx":
            onnx_helper = importlib.import_module("onnx.helper")
            ReferenceEvaluator = importlib.import_module("onnx.reference").ReferenceEvaluator
        else:
            raise ValueError(f"`framework` must be one of {list(FRAMEWORKS)}; got {name!r}")
        _LOADED.add(name)
    if "jax" in _LOADED:
        _XP["jax"] = _xp_recipes(jnp, jax.nn.log_softmax, jax.nn.log_sigmoid)
    if "scipy" in _LOADED:
        _XP["scipy"] = _xp_recipes(np, special.log_softmax, special.log_expit)


# ---------------------------------------------------------------------------
# Inputs: torch layout (class axis 1), float64, one list per row.
# ---------------------------------------------------------------------------


def _multi(seed, shape=(N, C), ignored=False, all_ignored=False):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=shape)
    c = shape[1]
    y = rng.integers(0, c, size=(shape[0],) + shape[2:])
    if ignored:
        y.reshape(-1)[[0, 3]] = IGNORE
    if all_ignored:
        y[...] = IGNORE
    p = np.moveaxis(rng.dirichlet(np.ones(c), size=(shape[0],) + shape[2:]), -1, 1)
    w = rng.uniform(0.5, 2.0, size=c)
    return dict(z=z, y=y, p=np.ascontiguousarray(p), w=w)


def _binary(seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(size=(N, C))
    t = np.where(rng.random((N, C)) < 0.5, np.round(t), t)  # hard and soft targets
    return dict(
        q=rng.uniform(0.01, 0.99, size=(N, C)),  # probabilities
        x=rng.normal(scale=3.0, size=(N, C)),  # logits
        t=t,
        pw=rng.uniform(0.5, 3.0, size=C),
    )


def _neg_inf(seed):
    """Logits with -inf in about a third of the non-target classes (masked)."""
    d = _multi(seed)
    rng = np.random.default_rng(100 + seed)
    masked = rng.random(d["z"].shape) < 0.35
    masked[np.arange(N), d["y"]] = False
    d["z"] = np.where(masked, -np.inf, d["z"])
    return d


# The accuracy page's huge logits, with right and with wrong targets.
HUGE = np.array([[1e4, -1e4, 0.0], [1e4, 1e4 - 0.5, -1e4], [-1e4, -1e4 + 3.0, -1e4]])
HUGE2 = np.vstack([HUGE, HUGE])  # twice, for right targets, then wrong ones
HUGE2_TARGETS = np.array([0, 1, 1, 1, 2, 0])


@dataclass(frozen=True)
class Row:
    """A torch feature: its label, the torch call, its reference and inputs."""

    key: str
    label: str
    torch_call: str  # shown on the page
    reference: Callable  # crossentropy_ref's value: torch's semantics
    inputs: Callable  # () -> {input name: dict of arrays}


def _seeds(make, *seeds, **kw):
    return lambda: {f"seed {s}": make(s, **kw) for s in seeds}


ROWS = {
    r.key: r
    for r in [
        Row("index", "index targets", "F.cross_entropy(z, y)",
            lambda z, y: ce.cross_entropy(z, y), _seeds(_multi, 0, 1, 2)),
        Row("probs", "prob. targets", "F.cross_entropy(z, p)",
            lambda z, p: ce.cross_entropy(z, p), _seeds(_multi, 0, 1, 2)),
        Row("weight", "class weights", "F.cross_entropy(z, y, w)",
            lambda z, y, w: ce.cross_entropy(z, y, w), _seeds(_multi, 0, 1, 2)),
        Row("ignore", "ignore_index", "F.cross_entropy(z, y)  # y has -100s",
            lambda z, y: ce.cross_entropy(z, y), _seeds(_multi, 0, 1, 2, ignored=True)),
        Row("none", "'none'", 'F.cross_entropy(z, y, w, reduction="none")',
            lambda z, y, w: ce.cross_entropy(z, y, w, reduction="none"),
            _seeds(_multi, 0, 1, 2, ignored=True)),
        Row("sum", "'sum'", 'F.cross_entropy(z, y, w, reduction="sum")',
            lambda z, y, w: ce.cross_entropy(z, y, w, reduction="sum"),
            _seeds(_multi, 0, 1, 2, ignored=True)),
        Row("mean", "'mean'", 'F.cross_entropy(z, y, w, reduction="mean")',
            lambda z, y, w: ce.cross_entropy(z, y, w, reduction="mean"),
            _seeds(_multi, 0, 1, 2, ignored=True)),
        Row("smooth-index", "smoothing, index", "F.cross_entropy(z, y, label_smoothing=0.1)",
            lambda z, y: ce.cross_entropy(z, y, label_smoothing=EPS), _seeds(_multi, 0, 1, 2)),
        Row("smooth-probs", "smoothing, prob.", "F.cross_entropy(z, p, label_smoothing=0.1)",
            lambda z, p: ce.cross_entropy(z, p, label_smoothing=EPS), _seeds(_multi, 0, 1, 2)),
        Row("kdim", "K-dim", "F.cross_entropy(z, y)  # z: (N, C, d1, ...)",
            lambda z, y: ce.cross_entropy(z, y),
            lambda: {"(4, 5, 3)": _multi(0, (4, 5, 3)), "(2, 5, 3, 2)": _multi(1, (2, 5, 3, 2))}),
        Row("bce", "BCE", "F.binary_cross_entropy(q, t)",
            lambda q, t: ce.binary_cross_entropy(q, t), _seeds(_binary, 0, 1)),
        Row("bce-logits", "BCE, logits", "F.binary_cross_entropy_with_logits(x, t)",
            lambda x, t: ce.binary_cross_entropy_with_logits(x, t), _seeds(_binary, 0, 1)),
        Row("pos-weight", "pos_weight",
            "F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)",
            lambda x, t, pw: ce.binary_cross_entropy_with_logits(x, t, pos_weight=pw),
            _seeds(_binary, 0, 1)),
        Row("all-ignored", "all ignored", "F.cross_entropy(z, y)  # every y is -100",
            lambda z, y: ce.cross_entropy(z, y), _seeds(_multi, 0, all_ignored=True)),
        Row("-inf", "−inf logits", "F.cross_entropy(z, y)  # -inf off the target",
            lambda z, y: ce.cross_entropy(z, y), _seeds(_neg_inf, 0, 1)),
        Row("1e4", "logits ±1e4", "F.cross_entropy(z, y)  # |z| up to 1e4",
            lambda z, y: ce.cross_entropy(z, y),
            lambda: {"right targets": dict(z=HUGE2, y=np.array([0, 1, 1, 0, 1, 1])),
                     "right and wrong": dict(z=HUGE2, y=HUGE2_TARGETS)}),
    ]
}


# ---------------------------------------------------------------------------
# The cells. Each function takes the row's arrays by name and returns the
# loss; the page shows its source. Array arguments arrive as the framework's
# own arrays (torch tensors for torch, jax arrays for JAX, optax and Keras,
# numpy arrays otherwise).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Aside:
    """A checked remark on a cell: another call that differs, and how."""

    text: str  # formatted with got=, want= (floats or exception names)
    fn: Callable
    input: str  # the input the difference is stated on
    holds: Callable  # (got, want) -> bool


@dataclass(frozen=True)
class Cell:
    framework: str
    row: str
    verdict: str  # "native", "recipe", "differs" or "impossible"
    fn: Callable | str | None = None  # a str names a recipe of _xp_recipes
    note: str = ""  # differs: what (with {got}, {want}); impossible: why
    input: str = ""  # differs: the stated input
    holds: Callable | None = None  # differs: (got, want) -> bool
    asides: tuple[Aside, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return f"{self.framework} / {self.row}"


# --- PyTorch: the reference semantics; every cell is native. --------------


def torch_ce(z, y):
    return F.cross_entropy(z, y)


def torch_ce_p(z, p):
    return F.cross_entropy(z, p)


def torch_ce_w(z, y, w):
    return F.cross_entropy(z, y, w)


def torch_none(z, y, w):
    return F.cross_entropy(z, y, w, reduction="none")


def torch_sum(z, y, w):
    return F.cross_entropy(z, y, w, reduction="sum")


def torch_mean(z, y, w):
    return F.cross_entropy(z, y, w, reduction="mean")


def torch_smooth(z, y):
    return F.cross_entropy(z, y, label_smoothing=0.1)


def torch_smooth_p(z, p):
    return F.cross_entropy(z, p, label_smoothing=0.1)


def torch_bce(q, t):
    return F.binary_cross_entropy(q, t)


def torch_bce_logits(x, t):
    return F.binary_cross_entropy_with_logits(x, t)


def torch_pos_weight(x, t, pw):
    return F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)


# --- JAX and SciPy: the same recipes on two array libraries. ---------------


def _xp_recipes(xp, log_softmax, log_sigmoid):
    """Recipes from log_softmax: xp is jax.numpy or numpy."""

    def nll(z, y):
        # -log softmax(z)[y] at every position; class axis 1.
        logp = log_softmax(z, axis=1)
        y1 = xp.expand_dims(y, 1)
        return -xp.take_along_axis(logp, y1, axis=1)[:, 0]

    def index(z, y):
        return nll(z, y).mean()

    def probs(z, p):
        return -(p * log_softmax(z, axis=1)).sum(axis=1).mean()

    def weight(z, y, w):
        return (w[y] * nll(z, y)).sum() / w[y].sum()

    def ignore(z, y):
        keep = y != -100
        loss = nll(z, xp.where(keep, y, 0))
        return xp.where(keep, loss, 0.0).sum() / keep.sum()

    def weighted(z, y, w):
        # per-position w[y] * loss and w[y], both 0 where y is ignored
        keep = y != -100
        y0 = xp.where(keep, y, 0)
        wy = xp.where(keep, w[y0], 0.0)
        return wy * nll(z, y0), wy

    def none(z, y, w):
        return weighted(z, y, w)[0]

    def sum_(z, y, w):
        return weighted(z, y, w)[0].sum()

    def mean(z, y, w):
        loss, wy = weighted(z, y, w)
        return loss.sum() / wy.sum()

    def smooth(z, y, eps=0.1):
        uniform = -log_softmax(z, axis=1).mean(axis=1)
        return ((1 - eps) * nll(z, y) + eps * uniform).mean()

    def smooth_p(z, p, eps=0.1):
        c = z.shape[1]
        return probs(z, (1 - eps) * p + eps / c)

    def bce(q, t):
        # torch clamps each log at -100
        log_q = xp.maximum(xp.log(q), -100.0)
        log_1q = xp.maximum(xp.log1p(-q), -100.0)
        return -(t * log_q + (1 - t) * log_1q).mean()

    def bce_logits(x, t):
        return -(t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x)).mean()

    def pos_weight(x, t, pw):
        pos, neg = log_sigmoid(x), log_sigmoid(-x)
        return -(pw * t * pos + (1 - t) * neg).mean()

    return dict(nll=nll, index=index, probs=probs, weight=weight, ignore=ignore,
                weighted=weighted, none=none, sum_=sum_, mean=mean, smooth=smooth,
                smooth_p=smooth_p, bce=bce, bce_logits=bce_logits,
                pos_weight=pos_weight)


_XP: dict[str, dict] = {}


# --- optax -------------------------------------------------------------------


def optax_index(z, y):
    loss = optax.softmax_cross_entropy_with_integer_labels(z, y, axis=1)
    return loss.mean()


def optax_probs(z, p):
    return optax.softmax_cross_entropy(z, p, axis=1).mean()


def optax_weight(z, y, w):
    loss = optax.softmax_cross_entropy_with_integer_labels(z, y, axis=1)
    return (w[y] * loss).sum() / w[y].sum()


def optax_masked(z, y):
    # where= masks whole samples: their loss is 0
    keep = y != -100
    return optax.softmax_cross_entropy_with_integer_labels(
        z, jnp.where(keep, y, 0), axis=1, where=keep)


def optax_ignore(z, y):
    return optax_masked(z, y).sum() / (y != -100).sum()


def optax_ignore_mean0(z, y):
    return optax_masked(z, y).mean()


def optax_weighted(z, y, w):
    keep = y != -100
    wy = jnp.where(keep, w[jnp.where(keep, y, 0)], 0.0)
    return wy * optax_masked(z, y), wy


def optax_none(z, y, w):
    return optax_weighted(z, y, w)[0]


def optax_sum(z, y, w):
    return optax_weighted(z, y, w)[0].sum()


def optax_mean(z, y, w):
    loss, wy = optax_weighted(z, y, w)
    return loss.sum() / wy.sum()


def optax_smooth(z, y):
    onehot = jax.nn.one_hot(y, z.shape[1])
    target = optax.smooth_labels(onehot, 0.1)
    return optax.softmax_cross_entropy(z, target, axis=1).mean()


def optax_smooth_p(z, p):
    target = optax.smooth_labels(p, 0.1, axis=1)
    return optax.softmax_cross_entropy(z, target, axis=1).mean()


def optax_bce(q, t):
    x = jnp.log(q) - jnp.log1p(-q)  # the logits of the probabilities
    return optax.sigmoid_binary_cross_entropy(x, t).mean()


def optax_bce_logits(x, t):
    return optax.sigmoid_binary_cross_entropy(x, t).mean()


def optax_pos_weight(x, t, pw):
    pos = optax.sigmoid_binary_cross_entropy(x, jnp.ones_like(t))
    neg = optax.sigmoid_binary_cross_entropy(x, jnp.zeros_like(t))
    return (pw * t * pos + (1 - t) * neg).mean()


# --- Keras 3 (JAX backend, floatx float64). Note the order: (target, pred).


def keras_index(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return loss(y, z)


def keras_probs(z, p):
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    return loss(p, z)


def keras_weight(z, y, w):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight")
    return loss(y, z, sample_weight=w[y])


def keras_weight_default(z, y, w):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return loss(y, z, sample_weight=w[y])


def keras_ignore(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-100)
    return loss(y, z)


def keras_reduce(z, y, w, reduction):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-100, reduction=reduction)
    keep = y != -100
    wy = jnp.where(keep, w[jnp.where(keep, y, 0)], 0.0)
    return loss(y, z, sample_weight=wy)


def keras_none(z, y, w):
    return keras_reduce(z, y, w, "none")


def keras_sum(z, y, w):
    return keras_reduce(z, y, w, "sum")


def keras_mean(z, y, w):
    return keras_reduce(z, y, w, "mean_with_sample_weight")


def keras_index_jit(z, y):
    return jax.jit(keras_index)(z, y)


def keras_smooth(z, y):
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1)
    return loss(jax.nn.one_hot(y, z.shape[1]), z)


def keras_smooth_p(z, p):
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1)
    return loss(p, z)


def keras_kdim(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return loss(y, jnp.moveaxis(z, 1, -1))  # classes last


def keras_kdim_axis1(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, axis=1)
    return loss(y, z)


def keras_bce_loss(q, t):
    return keras.losses.BinaryCrossentropy()(t, q)


def keras_bce_logits_loss(x, t):
    return keras.losses.BinaryCrossentropy(from_logits=True)(t, x)


def keras_bce(q, t):
    return keras.ops.binary_crossentropy(t, q).mean()


def keras_bce_logits(x, t):
    bce = keras.ops.binary_crossentropy
    return bce(t, x, from_logits=True).mean()


def keras_pos_weight(x, t, pw):
    bce = keras.ops.binary_crossentropy
    pos = bce(jnp.ones_like(t), x, from_logits=True)
    neg = bce(jnp.zeros_like(t), x, from_logits=True)
    return (pw * t * pos + (1 - t) * neg).mean()


# --- scikit-learn: log_loss takes labels and probabilities, and averages.


def sk_index(z, y):
    q = special.softmax(z, axis=1)
    return log_loss(y, q, labels=range(z.shape[1]))


def sk_probs(z, p):
    # one row per (sample, class), weighted by the target probability
    n, c = p.shape
    q = np.repeat(special.softmax(z, axis=1), c, axis=0)
    labels = np.tile(np.arange(c), n)
    return log_loss(labels, q, sample_weight=p.ravel(), labels=range(c))


def sk_weight(z, y, w):
    q = special.softmax(z, axis=1)
    return log_loss(y, q, sample_weight=w[y], labels=range(z.shape[1]))


def sk_ignore(z, y):
    keep = y != -100
    q = special.softmax(z[keep], axis=1)
    return log_loss(y[keep], q, labels=range(z.shape[1]))


def sk_none(z, y, w):
    # log_loss always reduces: one call per sample
    q = special.softmax(z, axis=1)
    c = range(z.shape[1])
    return np.array([0.0 if yi == -100 else
                     w[yi] * log_loss([yi], [qi], labels=c)
                     for yi, qi in zip(y, q)])


def sk_sum(z, y, w):
    keep = y != -100
    q = special.softmax(z[keep], axis=1)
    return log_loss(y[keep], q, sample_weight=w[y[keep]],
                    normalize=False, labels=range(z.shape[1]))


def sk_mean(z, y, w):
    keep = y != -100
    q = special.softmax(z[keep], axis=1)
    return log_loss(y[keep], q, sample_weight=w[y[keep]],
                    labels=range(z.shape[1]))


def sk_smooth(z, y, eps=0.1):
    # weight 1 - eps on y, and eps / C on every class of every sample
    n, c = z.shape
    q = special.softmax(z, axis=1)
    labels = np.concatenate([y, np.tile(np.arange(c), n)])
    weights = np.concatenate(
        [np.full(n, 1 - eps), np.full(n * c, eps / c)])
    q2 = np.concatenate([q, np.repeat(q, c, axis=0)])
    return log_loss(labels, q2, sample_weight=weights, labels=range(c))


def sk_smooth_p(z, p, eps=0.1):
    return sk_probs(z, (1 - eps) * p + eps / p.shape[1])


def sk_kdim(z, y):
    c = z.shape[1]
    # classes last, then one row per position
    z2 = np.moveaxis(z, 1, -1).reshape(-1, c)
    return sk_index(z2, y.ravel())


def sk_bce(q, t):
    # each element twice: label 1 weighted t, label 0 weighted 1 - t
    ones = np.ones(t.size)
    labels = np.concatenate([ones, 0 * ones])
    q2 = np.concatenate([q.ravel(), q.ravel()])
    weights = np.concatenate([t.ravel(), 1 - t.ravel()])
    return log_loss(labels, q2, sample_weight=weights, labels=[0, 1])


def sk_bce_logits(x, t):
    return sk_bce(special.expit(x), t)


def sk_pos_weight(x, t, pw):
    ones = np.ones(t.size)
    labels = np.concatenate([ones, 0 * ones])
    q = special.expit(x).ravel()
    weights = np.concatenate([(pw * t).ravel(), 1 - t.ravel()])
    total = log_loss(labels, np.concatenate([q, q]), labels=[0, 1],
                     sample_weight=weights, normalize=False)
    return total / t.size


# --- ONNX: graphs run by onnx.reference.ReferenceEvaluator (opset 18). ------


def onnx_run(nodes, **feeds):
    """Run nodes (op, inputs, output, attributes); the last output."""
    h = onnx_helper
    graph = h.make_graph(
        [h.make_node(op, ins, [out], **attrs)
         for op, ins, out, attrs in nodes],
        "loss",
        [h.make_tensor_value_info(
            k, h.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
         for k, v in feeds.items()],
        [h.make_tensor_value_info(nodes[-1][2], 0, None)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    return ReferenceEvaluator(model).run(None, feeds)[0]


def sce(z, y, w=None, **attributes):
    """One SoftmaxCrossEntropyLoss node."""
    ins = ["z", "y"] + (["w"] if w is not None else [])
    node = ("SoftmaxCrossEntropyLoss", ins, "loss", attributes)
    feeds = dict(z=z, y=y) | (dict(w=w) if w is not None else {})
    return onnx_run([node], **feeds)


def onnx_index(z, y):
    return sce(z, y)


def onnx_weight(z, y, w):
    return sce(z, y, w)


def onnx_ignore(z, y):
    return sce(z, y, ignore_index=-100)


def onnx_none(z, y, w):
    return sce(z, y, w, ignore_index=-100, reduction="none")


def onnx_sum(z, y, w):
    return sce(z, y, w, ignore_index=-100, reduction="sum")


def onnx_mean(z, y, w):
    return sce(z, y, w, ignore_index=-100, reduction="mean")


def onnx_probs(z, p):
    return onnx_run([
        ("LogSoftmax", ["z"], "logp", dict(axis=1)),
        ("Mul", ["p", "logp"], "m", {}),
        ("ReduceSum", ["m", "axis1"], "s", dict(keepdims=0)),
        ("ReduceMean", ["s"], "mean", dict(keepdims=0)),
        ("Neg", ["mean"], "loss", {}),
    ], z=z, p=p, axis1=[1])


def onnx_smooth(z, y, eps=0.1):
    return onnx_run([
        ("LogSoftmax", ["z"], "logp", dict(axis=1)),
        ("NegativeLogLikelihoodLoss", ["logp", "y"], "nll",
         dict(reduction="none")),
        ("ReduceMean", ["logp", "axis1"], "u", dict(keepdims=0)),
        ("Mul", ["nll", "a"], "l1", {}),
        ("Mul", ["u", "b"], "l2", {}),
        ("Sub", ["l1", "l2"], "l", {}),
        ("ReduceMean", ["l"], "loss", dict(keepdims=0)),
    ], z=z, y=y, axis1=[1], a=1 - eps, b=eps)


def onnx_smooth_p(z, p, eps=0.1):
    return onnx_probs(z, (1 - eps) * p + eps / p.shape[1])


def onnx_bce(q, t):
    return onnx_run([
        ("Log", ["q"], "lq", {}),
        ("Sub", ["one", "q"], "q1", {}),
        ("Log", ["q1"], "lq1", {}),
        ("Max", ["lq", "floor"], "a", {}),  # torch clamps logs at -100
        ("Max", ["lq1", "floor"], "b", {}),
        ("Sub", ["one", "t"], "t1", {}),
        ("Mul", ["t", "a"], "ta", {}),
        ("Mul", ["t1", "b"], "tb", {}),
        ("Add", ["ta", "tb"], "s", {}),
        ("ReduceMean", ["s"], "mean", dict(keepdims=0)),
        ("Neg", ["mean"], "loss", {}),
    ], q=q, t=t, one=1.0, floor=-100.0)


def onnx_bce_logits(x, t):
    # softplus(x) - t x = -t log(sigmoid(x)) - (1 - t) log(sigmoid(-x))
    return onnx_run([
        ("Softplus", ["x"], "sp", {}),
        ("Mul", ["t", "x"], "tx", {}),
        ("Sub", ["sp", "tx"], "l", {}),
        ("ReduceMean", ["l"], "loss", dict(keepdims=0)),
    ], x=x, t=t)


def onnx_pos_weight(x, t, pw):
    # (1 - t) x + (1 + (pw - 1) t) softplus(-x)
    return onnx_run([
        ("Neg", ["x"], "nx", {}),
        ("Softplus", ["nx"], "sp", {}),
        ("Sub", ["one", "t"], "t1", {}),
        ("Mul", ["t1", "x"], "a", {}),
        ("Sub", ["pw", "one"], "pw1", {}),
        ("Mul", ["pw1", "t"], "c", {}),
        ("Add", ["one", "c"], "c1", {}),
        ("Mul", ["c1", "sp"], "b", {}),
        ("Add", ["a", "b"], "l", {}),
        ("ReduceMean", ["l"], "loss", dict(keepdims=0)),
    ], x=x, t=t, pw=pw, one=1.0)


def onnx_stable(z, y):
    # log-softmax as z - max - log(sum(exp(z - max))), then the NLL node
    return onnx_run([
        ("ReduceMax", ["z", "axis1"], "m", dict(keepdims=1)),
        ("Sub", ["z", "m"], "d", {}),
        ("Exp", ["d"], "e", {}),
        ("ReduceSum", ["e", "axis1"], "s", dict(keepdims=1)),
        ("Log", ["s"], "ls", {}),
        ("Sub", ["d", "ls"], "logp", {}),
        ("NegativeLogLikelihoodLoss", ["logp", "y"], "loss", {}),
    ], z=z, y=y, axis1=[1])


# --- the claims --------------------------------------------------------------


def _nan_not_0(got, want):
    return np.isnan(want) and got == 0.0


def _is_nan(got, want):
    return np.isnan(got) and np.isfinite(want)


def _inf(got, want):
    return np.isinf(got) and np.isfinite(want)


def _clipped(got, want):
    return np.isfinite(got) and got < 0.1 * want


def _same(got, want):
    return _close(got, want)


def _differs(got, want):
    return not isinstance(got, str) and not _close(got, want)


def _raises(got, want):
    return isinstance(got, str)  # an exception's name


def _float32(got, want):
    return 1e-12 < _rel(got, want) < 1e-5


def _F32(fn):
    return Aside("the `BinaryCrossentropy` loss averages the last axis in "
                 "float32, even under floatx float64: relative difference "
                 "{rel:.1e}", fn, "seed 0", _float32)


N_, R_, D_, I_ = "native", "recipe", "differs", "impossible"


def _column(framework, spec):
    return [Cell(framework, row, *args) if isinstance(args, tuple) else args
            for row, args in spec.items()]


CELLS: list[Cell] = []
CELLS += _column("torch", {
    "index": (N_, torch_ce), "probs": (N_, torch_ce_p), "weight": (N_, torch_ce_w),
    "ignore": (N_, torch_ce), "none": (N_, torch_none), "sum": (N_, torch_sum),
    "mean": (N_, torch_mean), "smooth-index": (N_, torch_smooth),
    "smooth-probs": (N_, torch_smooth_p), "kdim": (N_, torch_ce),
    "bce": (N_, torch_bce), "bce-logits": (N_, torch_bce_logits),
    "pos-weight": (N_, torch_pos_weight), "all-ignored": (N_, torch_ce),
    "-inf": (N_, torch_ce), "1e4": (N_, torch_ce),
})
for _fw in ("jax", "scipy"):
    CELLS += _column(_fw, {
        "index": (R_, "index"), "probs": (R_, "probs"), "weight": (R_, "weight"),
        "ignore": (R_, "ignore"), "none": (R_, "none"), "sum": (R_, "sum_"),
        "mean": (R_, "mean"), "smooth-index": (R_, "smooth"),
        "smooth-probs": (R_, "smooth_p"), "kdim": (R_, "index"), "bce": (R_, "bce"),
        "bce-logits": (R_, "bce_logits"), "pos-weight": (R_, "pos_weight"),
        "all-ignored": (R_, "ignore"), "-inf": (R_, "index"), "1e4": (R_, "index"),
    })
CELLS += _column("optax", {
    "index": (N_, optax_index), "probs": (N_, optax_probs),
    "weight": (R_, optax_weight), "ignore": (R_, optax_ignore),
    "none": (R_, optax_none), "sum": (R_, optax_sum), "mean": (R_, optax_mean),
    "smooth-index": (R_, optax_smooth), "smooth-probs": (N_, optax_smooth_p),
    "kdim": (N_, optax_index), "bce": (R_, optax_bce),
    "bce-logits": (N_, optax_bce_logits), "pos-weight": (R_, optax_pos_weight),
    "all-ignored": Cell("optax", "all-ignored", R_, optax_ignore, asides=(
        Aside("the masked losses are 0, so `.mean()` of them gives {got:g}, "
              "not NaN", optax_ignore_mean0, "seed 0", _nan_not_0),)),
    "-inf": (N_, optax_index), "1e4": (N_, optax_index),
})
CELLS += _column("keras", {
    "index": (N_, keras_index), "probs": (N_, keras_probs),
    "weight": Cell("keras", "weight", R_, keras_weight, asides=(
        Aside("the default reduction, `sum_over_batch_size`, divides by N "
              "instead: {got:.6g} where torch gives {want:.6g}",
              keras_weight_default, "seed 0", _differs),)),
    "ignore": (N_, keras_ignore),
    "none": (R_, keras_none), "sum": (R_, keras_sum), "mean": (R_, keras_mean),
    "smooth-index": (R_, keras_smooth), "smooth-probs": (N_, keras_smooth_p),
    "kdim": Cell("keras", "kdim", R_, keras_kdim, asides=(
        Aside("`axis=1` is rejected: the loss raises {got}, as it compares "
              "the targets' shape with the logits' shape less the last axis",
              keras_kdim_axis1, "(4, 5, 3)", _raises),)),
    "bce": Cell("keras", "bce", R_, keras_bce, asides=(_F32(keras_bce_loss),)),
    "bce-logits": Cell("keras", "bce-logits", R_, keras_bce_logits,
                       asides=(_F32(keras_bce_logits_loss),)),
    "pos-weight": (R_, keras_pos_weight),
    "all-ignored": (D_, keras_ignore, "{got:g} instead of {want:g}", "seed 0", _nan_not_0),
    "-inf": Cell("keras", "-inf", D_, keras_index, "{got:g} instead of "
                 "{want:.4g} (one-hot × log-prob: 0 × −inf)", "seed 0", _is_nan,
                 asides=(Aside("under `jax.jit`, XLA "
                               "simplifies that product and the loss is right: "
                               "{got:.4g}", keras_index_jit, "seed 0", _same),)),
    "1e4": (N_, keras_index),
})
CELLS += _column("sklearn", {
    "index": (R_, sk_index), "probs": (R_, sk_probs), "weight": (R_, sk_weight),
    "ignore": (R_, sk_ignore), "none": (R_, sk_none), "sum": (R_, sk_sum),
    "mean": (R_, sk_mean), "smooth-index": (R_, sk_smooth),
    "smooth-probs": (R_, sk_smooth_p), "kdim": (R_, sk_kdim), "bce": (R_, sk_bce),
    "bce-logits": (R_, sk_bce_logits), "pos-weight": (R_, sk_pos_weight),
    "all-ignored": (D_, sk_ignore, "raises {got} (no samples left) instead of "
                    "returning {want:g}", "seed 0", _raises),
    "-inf": (R_, sk_index),
    "1e4": (D_, sk_index, "{got:.4g} instead of {want:.4g}: probabilities are "
            "clipped at the float64 eps", "right and wrong", _clipped),
})
CELLS += _column("onnx", {
    "index": (N_, onnx_index), "probs": (R_, onnx_probs), "weight": (N_, onnx_weight),
    "ignore": (N_, onnx_ignore), "none": (N_, onnx_none), "sum": (N_, onnx_sum),
    "mean": (N_, onnx_mean), "smooth-index": (R_, onnx_smooth),
    "smooth-probs": (R_, onnx_smooth_p), "kdim": (N_, onnx_index),
    "bce": (R_, onnx_bce), "bce-logits": (R_, onnx_bce_logits),
    "pos-weight": (R_, onnx_pos_weight), "all-ignored": (N_, onnx_ignore),
    "-inf": (N_, onnx_index),
    "1e4": Cell("onnx", "1e4", R_, onnx_stable, asides=(
        Aside("`SoftmaxCrossEntropyLoss` returns {got:g} instead of {want:.6g}: "
              "it takes the log of the probabilities, after exp(-2e4) "
              "underflowed to 0", onnx_index, "right and wrong", _inf),)),
})
CELLS.sort(key=lambda c: (list(ROWS).index(c.row), list(FRAMEWORKS).index(c.framework)))


# ---------------------------------------------------------------------------
# Running and checking
# ---------------------------------------------------------------------------


def function(cell: Cell | Aside) -> Callable | None:
    """The callable behind a cell (a recipe of _xp_recipes, by name)."""
    fn = cell.fn
    if isinstance(fn, str):
        load(cell.framework)
        return _XP[cell.framework][fn]
    return fn


def source(fn: Callable) -> str:
    """The source of a cell's function, dedented."""
    return textwrap.dedent(inspect.getsource(fn)).strip()


def _convert(framework, value):
    if framework == "torch":
        return torch.from_numpy(np.asarray(value))
    if framework in ("jax", "optax", "keras"):
        return jnp.asarray(value)
    return value


def evaluate(framework: str, fn: Callable, arrays: dict):
    """fn on the arrays it names, as the framework's arrays; float64 numpy out.

    An exception is returned as its class name. Floating-point warnings are
    silenced: an all-ignored mean divides 0 by 0 on purpose.
    """
    load(framework)
    names = [n for n in inspect.signature(fn).parameters if n in arrays]
    args = {n: _convert(framework, arrays[n]) for n in names}
    try:
        with np.errstate(all="ignore"):
            out = fn(**args)
    except Exception as exc:  # a differs claim may be that it raises
        return type(exc).__name__
    return np.asarray(out, dtype=np.float64)


def reference(row: Row, arrays: dict) -> np.ndarray:
    """crossentropy_ref's value for the row on these arrays (torch's semantics)."""
    names = inspect.signature(row.reference).parameters
    with np.errstate(invalid="ignore"):  # the all-ignored mean is 0 / 0
        out = row.reference(**{n: arrays[n] for n in names})
    return np.asarray(out, dtype=np.float64)


def _close(got, want) -> bool:
    if isinstance(got, str) or got.shape != np.shape(want):
        return False
    return bool(np.allclose(got, want, rtol=RTOL, atol=0.0, equal_nan=True)
                and np.array_equal(np.isinf(got), np.isinf(want)))


@dataclass
class Result:
    cell: Cell
    worst_rel: float = 0.0  # native / recipe: worst relative difference
    text: str = ""  # differs: the statement, with its numbers
    asides: list[str] = field(default_factory=list)


def _rel(got, want) -> float:
    got, want = np.asarray(got), np.asarray(want)
    ok = np.isfinite(want) & (want != 0)
    d = np.abs(got[ok] - want[ok]) / np.abs(want[ok])
    return float(d.max(initial=0.0))


def _state(text, got, want):
    fmt = {k: (v if isinstance(v, str) else float(v)) for k, v in
           (("got", got), ("want", want))}
    rel = np.nan if isinstance(got, str) else _rel(got, want)
    return re.sub(r"\bnan\b", "NaN", text.format(rel=rel, **fmt))


def check(cell: Cell) -> Result:
    """Check one cell's claim; raise AssertionError naming the cell if it fails."""
    row = ROWS[cell.row]
    inputs = row.inputs()
    result = Result(cell)
    if cell.verdict in ("native", "recipe"):
        fn = function(cell)
        for name, arrays in inputs.items():
            want = reference(row, arrays)
            got = evaluate(cell.framework, fn, arrays)
            assert _close(got, want), (
                f"cell {cell.name} ({cell.verdict}) on input {name!r}: got {got}, "
                f"crossentropy_ref gives {want} (rtol {RTOL:g})")
            result.worst_rel = max(result.worst_rel, _rel(got, want))
    elif cell.verdict == "differs":
        arrays = inputs[cell.input]
        want = reference(row, arrays)
        got = evaluate(cell.framework, function(cell), arrays)
        assert cell.holds(got, want), (
            f"cell {cell.name} no longer differs as stated on input "
            f"{cell.input!r}: got {got}, crossentropy_ref gives {want}")
        result.text = _state(cell.note, got, want) + f" (input: {cell.input})"
    elif cell.verdict != "impossible":
        raise ValueError(f"cell {cell.name}: unknown verdict {cell.verdict!r}")
    for aside in cell.asides:
        arrays = inputs[aside.input]
        want = reference(row, arrays)
        got = evaluate(cell.framework, aside.fn, arrays)
        assert aside.holds(got, want), (
            f"cell {cell.name}: the remark {aside.text!r} no longer holds on "
            f"input {aside.input!r}: got {got}, crossentropy_ref gives {want}")
        result.asides.append(_state(aside.text, got, want) + f" (input: {aside.input})")
    return result


def run_matrix(frameworks=None) -> list[Result]:
    """Check every cell (of the given frameworks); the results, row by row."""
    return [check(c) for c in CELLS if frameworks is None or c.framework in frameworks]


def counts(results) -> dict[str, int]:
    verdicts = [r.cell.verdict for r in results]
    return {v: verdicts.count(v) for v in ("native", "recipe", "differs", "impossible")}


# ---------------------------------------------------------------------------
# Accuracy against mpmath: per-sample losses (reduction "none") of each
# framework's index-target path, on the accuracy page's hard inputs.
# ---------------------------------------------------------------------------

MP_DPS = 50  # mpmath's significant digits for the ground truth

DOMINANCE = (30.0, 36.0, 37.0, 38.0, 40.0, 50.0, 100.0, 300.0, 700.0)
ACCURACY_INPUTS = {
    # the true class ahead by 30 to 700: losses from 9e-14 down to 1e-304
    "confident": (np.array([[d, 0.0] for d in DOMINANCE]), np.zeros(9, int)),
    "±1e4": (HUGE2, HUGE2_TARGETS),
    # the accuracy page's wrong predictions: losses 40, 40, 700 and 5.5
    "certain wrong": (np.array([[40.0, 0.0], [0.0, 40.0], [700.0, 0.0], [3.0, -2.5]]),
                      np.array([1, 0, 1, 1])),
}


def acc_ref(z, y):
    return ce.cross_entropy(z, y, reduction="none")


def acc_torch(z, y):
    return F.cross_entropy(z, y, reduction="none")


def acc_optax(z, y):
    return optax.softmax_cross_entropy_with_integer_labels(z, y)


def acc_keras(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)
    return loss(y, z)


def acc_keras_probs(z, y):
    loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    return loss(y, jax.nn.softmax(z, axis=1))


def acc_sklearn(z, y):
    q = special.softmax(z, axis=1)
    c = range(z.shape[1])
    return np.array([log_loss([yi], [qi], labels=c) for yi, qi in zip(y, q)])


def acc_onnx(z, y):
    return sce(z, y, reduction="none")


def _acc_xp(framework):
    def nll(z, y):
        return _XP[framework]["nll"](z, y)
    return nll


ACCURACY_FUNCS = {
    # label: (framework, function)
    "crossentropy_ref": ("scipy", acc_ref),
    "PyTorch": ("torch", acc_torch),
    "JAX": ("jax", _acc_xp("jax")),
    "optax": ("optax", acc_optax),
    "Keras, logits": ("keras", acc_keras),
    "Keras, probabilities": ("keras", acc_keras_probs),
    "sklearn": ("sklearn", acc_sklearn),
    "SciPy": ("scipy", _acc_xp("scipy")),
    "ONNX": ("onnx", acc_onnx),
}


def mp_losses(z, y) -> list:
    """-log softmax(z)[y] per row, in mpmath at MP_DPS digits, from the exact floats."""
    import mpmath

    with mpmath.workdps(MP_DPS):
        out = []
        for row, k in zip(z, y):
            r = [mpmath.mpf(float(v)) for v in row]
            # log(1 + s), s = sum over c != y of exp(z_c - z_y): log1p keeps
            # the relative precision of a tiny loss (e.g. exp(-1e4))
            s = mpmath.fsum(mpmath.exp(v - r[k]) for i, v in enumerate(r) if i != k)
            out.append(mpmath.log1p(s))
        return out


def relative_errors(got, exact) -> np.ndarray:
    """|got - exact| / exact; a truth below the smallest normal double counts
    as exact when returned as 0; NaN or inf gives inf."""
    tiny = np.finfo(np.float64).tiny
    errs = []
    for g, e in zip(np.asarray(got, dtype=np.float64), exact):
        if not np.isfinite(g):
            errs.append(np.inf)
        elif e < tiny and g == 0.0:
            errs.append(0.0)
        else:
            errs.append(float(abs(g - e) / e))
    return np.array(errs)


def accuracy() -> dict:
    """For each framework: the values and worst relative error per input."""
    truth = {k: mp_losses(z, y) for k, (z, y) in ACCURACY_INPUTS.items()}
    # One call per number of classes (fewer shapes for JAX to compile).
    by_c: dict[int, list[str]] = {}
    for key, (z, _) in ACCURACY_INPUTS.items():
        by_c.setdefault(z.shape[1], []).append(key)
    table = {}
    for label, (framework, fn) in ACCURACY_FUNCS.items():
        table[label] = {}
        for keys in by_c.values():
            z = np.vstack([ACCURACY_INPUTS[k][0] for k in keys])
            y = np.concatenate([ACCURACY_INPUTS[k][1] for k in keys])
            got = evaluate(framework, fn, dict(z=z, y=y))
            start = 0
            for key in keys:
                part = got[start:start + len(ACCURACY_INPUTS[key][1])]
                start += len(part)
                errs = relative_errors(part, truth[key])
                table[label][key] = dict(values=part, worst=float(errs.max()))
    return table


def behaviour(label: str, entry: dict) -> str:
    """What a framework does at the edges, in a few words, from its values."""
    conf = entry["confident"]["values"]  # rows ordered by DOMINANCE
    wrong = entry["certain wrong"]["values"]  # row 2: logits (700, 0), target 1
    words = []
    if conf[DOMINANCE.index(40.0)] == 0.0:
        words.append("rounds to 0")
    elif conf[-1] > 1e-300:  # the truth is 9.9e-305
        words.append(f"floors at {conf[-1]:.2g}")
    if wrong[2] < 350.0:  # the truth is 700
        words.append(f"caps at {wrong[2]:.4g}")
    if not np.all(np.isfinite(entry["±1e4"]["values"])):
        # The loss is inf because a probability underflowed to 0 before its log.
        words.append("inf after an underflow")
    return ", ".join(words) or "accurate"
