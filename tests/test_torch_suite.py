"""Replay PyTorch's own test inputs against the package, in float64.

Sources, all from the installed torch 2.13.0 wheel (``torch.testing._internal``):

- OpInfo ``sample_inputs`` and ``reference_inputs`` (``common_methods_invocations.op_db``)
  of the loss and softmax ops, and their ``error_inputs`` (only linear_cross_entropy's three
  OpInfos define any);
- ModuleInfo ``module_inputs`` and ``module_error_inputs`` (``common_modules.module_db``)
  of the loss and softmax modules;
- the ``common_nn.criterion_tests`` entries of the same losses.

Every floating-point input is cast to float64; torch's result on those float64
inputs is the expected value (torch 2.13.0), compared at ``rtol=1e-10`` and
``atol=1e-12 * max(1, max|input|)`` (both sides compute in float64; the atol
covers torch's absolute error near ``1e-16 |logit|`` on tiny losses, as in
tests/_helpers.py). Shapes must match and NaNs must sit at the same places.
An error input must raise in both. A sample whose difference is deliberate is
listed in ``DELIBERATE`` with the docstring that documents it, and must still
differ (strict), so that the table never goes stale. No sample is skipped.

``python tests/test_torch_suite.py`` prints the counts per op.
"""

from __future__ import annotations

import collections
import re
import sys
import warnings

import numpy as np
import pytest
import torch

import crossentropy_ref as ce

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch's internal test modules warn on import
    from torch.testing._internal import common_nn
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db

RTOL = 1e-10
ATOL = 1e-12

# The package function replaying each OpInfo.
OPS = {
    "nn.functional.cross_entropy": "cross_entropy",
    "nn.functional.nll_loss": "nll_loss",
    "nn.functional.binary_cross_entropy": "binary_cross_entropy",
    "nn.functional.binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits",
    "log_softmax": "log_softmax",
    "softmax": "softmax",
    "logsumexp": "logsumexp",
    "nn.functional.one_hot": "one_hot",
    # Issue 20; three OpInfos: the reference path, and the chunked path (options=...) with a
    # scalar reduction ("chunked") and with reduction='none' ("chunked_none").
    "nn.functional.linear_cross_entropy": "linear_cross_entropy",
}
# torch warns when it ignores `options` (K-dimensional weights, label smoothing, ...) and
# falls back to its reference path: a warning of torch's, not of the package, so it is let
# through on torch's side only.
TORCH_WARNS = {"linear_cross_entropy"}
MODULES = ("CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "Softmax", "LogSoftmax", "Softmax2d")
CRITERIA = ("BCELoss", "BCEWithLogitsLoss", "NLLLoss")

# Deliberate differences: (function, what) -> the docstring that lists it ("Differences
# from PyTorch" in its Notes). A sample is matched to an entry by `_deliberate` below.
DELIBERATE = {
    ("softmax", "empty-axis"): "softmax: an empty `axis` is a ValueError (torch returns an empty result)",
    ("log_softmax", "empty-axis"): "log_softmax: an empty `axis` is a ValueError (torch returns an empty result)",
    ("logsumexp", "empty-axis"): "logsumexp: an empty `axis` is a ValueError (torch returns -inf)",
    ("cross_entropy", "integer-probabilities"): (
        "cross_entropy: integer probability targets are accepted (torch requires floating point)"
    ),
    ("binary_cross_entropy_with_logits", "target-range"): (
        "binary_cross_entropy_with_logits: a `target` outside [0, 1] is a ValueError "
        "(torch computes a loss from it)"
    ),
}


# ---------------------------------------------------------------------------
# Conversion and comparison
# ---------------------------------------------------------------------------


def to_np(x):
    """A tensor as numpy: floating point in float64, integers as int64; other values unchanged."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():
            return x.to(torch.float64).numpy()
        return x.numpy()
    return x


def to_f64(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.detach().to(torch.float64)
    return x


def scale_of(*arrays) -> float:
    finite = [np.abs(a[np.isfinite(a)]).max() for a in arrays
              if isinstance(a, np.ndarray) and a.dtype.kind == "f" and np.isfinite(a).any()]
    return max([1.0, *finite])


def compare(got, want, scale: float) -> str | None:
    """None if `got` (package) matches `want` (torch), else what differs."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape} != torch {want.shape}"
    if want.dtype.kind in "iub":
        return None if np.array_equal(got, want) else "values differ"
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return "NaN at different places"
    ok = np.isclose(got, want, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
    if not ok.all():
        i = np.argwhere(~ok)[0]
        return f"values differ at {tuple(int(j) for j in i)}: {got[tuple(i)]!r} vs torch {want[tuple(i)]!r}"
    return None


def run(fn):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return fn(), None
    except Exception as exc:  # noqa: BLE001 - an error is an outcome to compare
        return None, exc


# ---------------------------------------------------------------------------
# Calling the package like torch
# ---------------------------------------------------------------------------


def _np_kwargs(kwargs: dict) -> dict:
    out = {}
    for k, v in kwargs.items():
        if k == "dtype":
            v = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}[v]
        elif k == "dim":
            k = "axis"
        out[k] = to_np(v)
    return out


def call_package(name: str, x, args: tuple, kwargs: dict):
    """The package's `name` on a torch op's (input, *args, **kwargs), converted to numpy."""
    x = to_np(x)
    args = [to_np(a) for a in args]
    kw = _np_kwargs(kwargs)
    fn = getattr(ce, name)
    if name in ("softmax", "log_softmax"):
        if args:
            kw["axis"] = args[0]
        if len(args) > 1 and args[1] is not None:
            kw["dtype"] = _np_kwargs({"dtype": args[1]})["dtype"]
        return fn(x, **kw)
    if name == "logsumexp":
        if args:
            kw["axis"] = args[0]
        if len(args) > 1:
            kw["keepdim"] = args[1]
        return fn(x, **kw)
    if name == "one_hot":
        return fn(x, *args, **kw)
    return fn(x, *args, **kw)


def _deliberate(name: str, x, args, kwargs, pkg_exc, torch_exc) -> str | None:
    """The DELIBERATE key a differing sample falls under, if any."""
    x_np = to_np(x)
    if name in ("softmax", "log_softmax", "logsumexp") and pkg_exc is not None and torch_exc is None:
        axes = args[0] if args else kwargs.get("dim", -1)
        axes = axes if isinstance(axes, (tuple, list)) else (axes,)
        if x_np.ndim and any(x_np.shape[a] == 0 for a in axes):
            return "empty-axis"
    if name == "cross_entropy" and torch_exc is not None and pkg_exc is None:
        target = args[0] if args else None
        if isinstance(target, torch.Tensor) and not target.is_floating_point() and target.shape == x.shape:
            return "integer-probabilities"
    if name == "binary_cross_entropy_with_logits" and pkg_exc is not None and torch_exc is None:
        target = to_np(args[0])
        if np.any((target < 0) | (target > 1)):
            return "target-range"
    return None


Record = collections.namedtuple("Record", "source op desc outcome detail")


def judge(source, op, desc, name, x, args, kwargs, torch_fn, *, expect_error=False) -> Record:
    want, torch_exc = run(lambda: to_np(torch_fn()))
    got, pkg_exc = run(lambda: call_package(name, x, args, kwargs))
    if expect_error and torch_exc is None:
        return Record(source, op, desc, "mismatch", "torch did not raise on an error input")
    if torch_exc is not None and pkg_exc is not None:
        return Record(source, op, desc, "both-raise", f"{type(pkg_exc).__name__}: {pkg_exc}")
    problem = None
    if torch_exc is not None:
        problem = f"torch raised {type(torch_exc).__name__}: {torch_exc}; the package did not"
    elif pkg_exc is not None:
        problem = f"the package raised {type(pkg_exc).__name__}: {pkg_exc}; torch did not"
    else:
        problem = compare(got, want, scale_of(to_np(x), *[to_np(a) for a in args]))
    if problem is None:
        return Record(source, op, desc, "match", "")
    key = _deliberate(name, x, args, kwargs, pkg_exc, torch_exc)
    if key is not None:
        return Record(source, op, desc, "deliberate", f"{DELIBERATE[(name, key)]} [{problem}]")
    return Record(source, op, desc, "mismatch", problem)


def _describe(x, args, kwargs) -> str:
    def d(v):
        if isinstance(v, torch.Tensor):
            return f"{str(v.dtype).removeprefix('torch.')}{tuple(v.shape)}"
        return repr(v)

    return ", ".join([d(x)] + [d(a) for a in args] + [f"{k}={d(v)}" for k, v in kwargs.items()])


# ---------------------------------------------------------------------------
# The three sources
# ---------------------------------------------------------------------------


def opinfo_records() -> list[Record]:
    records = []
    for op in op_db:
        if op.name not in OPS:
            continue
        name = OPS[op.name]
        label = op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")
        dtype = torch.int64 if name == "one_hot" else torch.float64
        for kind in ("sample_inputs", "reference_inputs"):
            torch.manual_seed(0)
            for s in getattr(op, kind)("cpu", dtype, requires_grad=False):
                x, args, kwargs = to_f64(s.input), [to_f64(a) for a in s.args], {
                    k: to_f64(v) for k, v in s.kwargs.items()}
                rec = judge(f"OpInfo.{kind}", label, _describe(x, args, kwargs), name, x, args, kwargs,
                            _quiet(name, lambda x=x, args=args, kwargs=kwargs: op(x, *args, **kwargs)))
                records.append(rec)
        if op.error_inputs_func is None:
            continue
        # Error inputs (in torch 2.13.0 only linear_cross_entropy defines any): both must raise.
        torch.manual_seed(0)
        for e in op.error_inputs("cpu"):
            s = e.sample_input
            x, args, kwargs = to_f64(s.input), [to_f64(a) for a in s.args], {k: to_f64(v) for k, v in s.kwargs.items()}
            records.append(judge("OpInfo.error_inputs", label, f"{e.error_regex} {_describe(x, args, kwargs)}", name,
                                 x, args, kwargs,
                                 _quiet(name, lambda x=x, args=args, kwargs=kwargs: op(x, *args, **kwargs)),
                                 expect_error=True))
    return records


def _quiet(name: str, fn):
    """`fn`, with torch's own warnings ignored for the ops in TORCH_WARNS."""
    if name not in TORCH_WARNS:
        return fn

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return call


def _module_call(module: torch.nn.Module, cls: str, inputs: tuple):
    """(package name, x, args, kwargs) replaying `module` on `inputs`."""
    x = inputs[0]
    if cls in ("CrossEntropyLoss", "NLLLoss"):
        kw = {"weight": module.weight, "ignore_index": module.ignore_index, "reduction": module.reduction}
        if cls == "CrossEntropyLoss":
            kw["label_smoothing"] = module.label_smoothing
        return ("cross_entropy" if cls == "CrossEntropyLoss" else "nll_loss"), x, [inputs[1]], kw
    if cls == "BCELoss":
        return "binary_cross_entropy", x, [inputs[1]], {"weight": module.weight, "reduction": module.reduction}
    if cls == "BCEWithLogitsLoss":
        kw = {"weight": module.weight, "pos_weight": module.pos_weight, "reduction": module.reduction}
        return "binary_cross_entropy_with_logits", x, [inputs[1]], kw
    if cls == "Softmax2d":
        return "softmax", x, [-3], {}
    dim = module.dim
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if x.dim() in (0, 1, 3) else 1
    return ("softmax" if cls == "Softmax" else "log_softmax"), x, [dim], {}


def _f64_module(module):
    return module.to(torch.float64)


def module_records() -> list[Record]:
    records = []
    for info in module_db:
        cls = info.module_cls.__name__
        if cls not in MODULES:
            continue
        torch.manual_seed(0)
        for mi in info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=False,
                                          training=False):
            c = mi.constructor_input
            module = _f64_module(info.module_cls(*[to_f64(a) for a in c.args],
                                                 **{k: to_f64(v) for k, v in c.kwargs.items()}))
            inputs = tuple(to_f64(a) for a in mi.forward_input.args)
            name, x, args, kwargs = _module_call(module, cls, inputs)
            desc = f"{getattr(mi, 'desc', '') or ''} {_describe(x, args, kwargs)}"
            records.append(judge("ModuleInfo.module_inputs", cls, desc, name, x, args, kwargs,
                                 lambda module=module, inputs=inputs: module(*inputs)))
        if info.module_error_inputs_func is None:
            continue
        for err in info.module_error_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=False,
                                                 training=False):
            mi = err.module_error_input
            c = mi.constructor_input
            inputs = tuple(mi.forward_input.args)  # dtypes kept: the dtype may be the error
            module, exc = run(lambda c=c: info.module_cls(*c.args, **c.kwargs))
            if module is None:
                records.append(Record("ModuleInfo.module_error_inputs", cls, str(exc), "both-raise",
                                      "construction error"))
                continue
            name, x, args, kwargs = _module_call(module, cls, inputs)
            records.append(judge("ModuleInfo.module_error_inputs", cls, f"{err.error_regex}", name, x, args,
                                 kwargs, lambda module=module, inputs=inputs: module(*inputs), expect_error=True))
    return records


def criterion_records() -> list[Record]:
    records = []
    for test in common_nn.criterion_tests:
        cls = test["fullname"].split("_", 1)[0]
        if cls not in CRITERIA:
            continue
        torch.manual_seed(0)
        module = _f64_module(test["constructor"]())
        if "input_fn" in test:
            inputs = (test["input_fn"](), test["target_fn"]())
        else:
            inputs = (torch.randn(test["input_size"]), torch.randn(test["target_size"]))
        inputs = tuple(to_f64(a) for a in inputs)
        name, x, args, kwargs = _module_call(module, cls, inputs)
        records.append(judge("common_nn.criterion_tests", cls, test["fullname"], name, x, args, kwargs,
                             lambda module=module, inputs=inputs: module(*inputs)))
    return records


_RECORDS: list[Record] | None = None


def all_records() -> list[Record]:
    global _RECORDS
    if _RECORDS is None:
        _RECORDS = opinfo_records() + module_records() + criterion_records()
    return _RECORDS


def counts(records: list[Record]) -> dict:
    table = collections.defaultdict(collections.Counter)
    for r in records:
        table[r.op][r.outcome] += 1
    return table


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


SOURCES = ("OpInfo.sample_inputs", "OpInfo.reference_inputs", "OpInfo.error_inputs", "ModuleInfo.module_inputs",
           "ModuleInfo.module_error_inputs", "common_nn.criterion_tests")


@pytest.mark.parametrize("source", SOURCES)
def test_replay(source):
    records = [r for r in all_records() if r.source == source]
    assert records, f"no samples from {source}"
    bad = [f"{r.op} [{r.desc}]: {r.detail}" for r in records if r.outcome == "mismatch"]
    assert not bad, "\n".join(bad)


def test_every_op_and_module_is_replayed():
    ops = {r.op.split(".variant")[0] for r in all_records()}
    for name in OPS:
        assert any(o == name or o.startswith(name + ".") for o in ops), name
    for cls in MODULES:
        assert cls in ops, cls


def test_deliberate_differences_are_all_used():
    # Strict: every listed difference still occurs, so the table never outlives the code.
    used = [r.detail for r in all_records() if r.outcome == "deliberate"]
    for key, reason in DELIBERATE.items():
        assert any(d.startswith(reason + " [") for d in used), f"unused deliberate difference {key}"


def test_front_options_are_replayed_not_skipped():
    # 0-d inputs, keepdim, several axes and dtype= come up in torch's samples and match.
    descs = [r for r in all_records() if r.op.split(".")[0] in ("softmax", "log_softmax", "logsumexp")]
    matched = [r for r in descs if r.outcome == "match"]
    assert any("float64()" in r.desc.split(",")[0] for r in matched)  # a 0-d input
    assert any("True" in r.desc for r in matched if r.op == "logsumexp")  # keepdim
    assert any(re.search(r"\(0, 1\)", r.desc) for r in matched if r.op == "logsumexp")  # several axes
    assert any("dtype=torch.float64" in r.desc for r in matched)


if __name__ == "__main__":
    table = counts(all_records())
    outcomes = ("match", "both-raise", "deliberate", "mismatch")
    print(f"{'op':<50}" + "".join(f"{o:>11}" for o in outcomes) + f"{'total':>7}")
    total = collections.Counter()
    for op in sorted(table):
        total.update(table[op])
        print(f"{op:<50}" + "".join(f"{table[op][o]:>11}" for o in outcomes) + f"{sum(table[op].values()):>7}")
    print(f"{'all':<50}" + "".join(f"{total[o]:>11}" for o in outcomes) + f"{sum(total.values()):>7}")
    by_source = collections.defaultdict(collections.Counter)
    for r in all_records():
        by_source[r.source][r.outcome] += 1
    for source, c in by_source.items():
        print(f"{source:<50}" + "".join(f"{c[o]:>11}" for o in outcomes) + f"{sum(c.values()):>7}")
    for r in all_records():
        if r.outcome in ("deliberate", "mismatch"):
            print(r.outcome, r.source, r.op, r.desc[:80], "->", r.detail[:200])
    sys.exit(0)
