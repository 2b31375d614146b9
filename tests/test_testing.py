"""Tests for crossentropy_ref.testing: cases, ulp_error, check, the strategies.

Expected values: ulp distances built by hand with numpy.nextafter (n steps are
n ulps by definition); representability by round trips through each format;
the verdicts on kernels written here, a correct one and a catalogue of flawed
ones, each flaw stated next to it.
"""

import re
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crossentropy_ref as ce
from crossentropy_ref import testing as cet
from crossentropy_ref.testing import strategies as ces
from crossentropy_ref.testing._ulp import round_to

BF16 = np.dtype(ml_dtypes.bfloat16)
NP = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
      "bfloat16": BF16}


# ---------------------------------------------------------------------------
# Kernels under test: a correct one, and one flaw at a time
# ---------------------------------------------------------------------------


def kernel(flaw=None):
    """A cross-entropy in the logits' own precision (16-bit formats accumulate in float32,
    as torch does), written with the max shift and the cancellation-free
    -log q_y = (m - z_y) + log1p(sum_{j != k} e^{z_j - m}). `flaw` breaks one thing."""

    def fn(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        dt = logits.dtype
        acc = np.float32 if dt.itemsize < 4 else dt.type
        ax = 1 if logits.ndim > 1 else 0
        z = np.moveaxis(logits, ax, -1).astype(acc)  # classes last
        c = z.shape[-1]
        eps = 0.0 if flaw == "drop_smoothing" else label_smoothing
        m = z.max(axis=-1, keepdims=True)
        d = m - z  # >= 0
        if flaw == "sum_in_dtype":
            # Sums exp(z - m) one term after another in the input dtype (no wider accumulator).
            e = np.exp(-d).astype(dt)
            s = np.cumsum(e, axis=-1, dtype=dt)[..., -1].astype(acc)
            lse_rest = np.log(s)  # log(1 + sum_{j != k})
        elif flaw == "no_shift":
            lse_rest = np.log(np.exp(z).sum(axis=-1)) - m[..., 0]  # e^z overflows
        else:
            e = np.exp(-d)
            np.put_along_axis(e, np.argmax(z, axis=-1)[..., None], 0.0, axis=-1)
            lse_rest = np.log1p(e.sum(axis=-1))
        if flaw == "log_after_softmax":
            q = np.exp(-d) / np.exp(-d).sum(axis=-1, keepdims=True)
            nlq = -np.log(q)  # q underflows to 0 for a certain-wrong class: -log 0 = inf
        elif flaw == "cancelling":
            nlq = (m + lse_rest[..., None]) - z  # logsumexp(z) - z: cancels for confident rows
        else:
            nlq = d + lse_rest[..., None]
        w = np.ones(c, acc) if weight is None else weight.astype(acc)
        if target.shape == logits.shape:  # class probabilities
            p = np.moveaxis(target, ax, -1).astype(acc)
            b = w * ((1 - eps) * p + eps / c)
            loss = np.where(b == 0, 0, b * nlq).sum(axis=-1)  # 0 log 0 = 0
            denom = acc(loss.size)
        else:
            valid = np.ones(target.shape, bool) if flaw == "ignore_index_ignored" else target != ignore_index
            y = np.where(valid, target, 0)
            nly = np.take_along_axis(nlq, y[..., None], -1)[..., 0]
            wy = np.where(valid, w[y], 0).astype(acc)
            loss = (1 - eps) * wy * nly
            if eps:
                loss = loss + acc(eps / c) * (w * nlq).sum(axis=-1)
            loss = np.where(valid, loss, 0).astype(acc)
            denom = acc(loss.size) if flaw == "mean_by_n" else wy.sum()
        loss = np.where(np.isfinite(m[..., 0]), loss, np.nan)  # no finite shift: NaN, as torch
        if reduction == "none":
            return loss.astype(dt)
        total = loss.sum(dtype=acc)
        return np.asarray(total if reduction == "sum" else total / denom).astype(dt)

    return fn


# The flaw catalogue: each flaw, the dtype it is judged in, and the family expected to expose it.
CATALOGUE = {
    "log_after_softmax": ("float32", "certain_wrong"),  # -log(softmax): q_y underflows to 0
    "no_shift": ("float32", "large_logits"),  # e^z overflows above 88.7 in float32
    "sum_in_dtype": ("bfloat16", "many_classes"),  # 1e5 terms summed in bfloat16 stagnate
    "drop_smoothing": ("float32", "smoothing"),  # label_smoothing ignored
    "mean_by_n": ("float32", "weights"),  # 'mean' divided by N, not by the target weights
    "ignore_index_ignored": ("float32", "ignore_index"),  # ignored targets counted
    "cancelling": ("float32", "confident"),  # logsumexp(z) - z_y: a tiny loss cancels
}
# Bounds a correct kernel meets (measured margins: the worst seen is 2 ulps in float32,
# 1 in float16 and bfloat16). float64: the reference itself is a few float64 ulps off.
BOUNDS = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


# ---------------------------------------------------------------------------
# check and assert_matches_reference
# ---------------------------------------------------------------------------


class TestVerdicts:
    @pytest.mark.parametrize("dtype", list(BOUNDS))
    def test_correct_kernel_passes(self, dtype):
        report = cet.assert_matches_reference(kernel(), dtype=dtype, max_ulp=BOUNDS[dtype])
        assert report.passed and set(report.families) == set(cet.FAMILIES)
        assert all(r.crashes == r.nan == r.inf == 0 for r in report.families.values())

    def test_reference_rounded_is_zero_ulps(self):
        # The reference itself, rounded to float32, is 0 ulps from itself.
        def exact(logits, target, **kw):
            return np.float32(ce.cross_entropy(logits, target, **kw))

        report = cet.check(exact, dtype="float32", max_ulp=0)
        assert report.passed and max(report.worst_ulp.values()) == 0.0

    @pytest.mark.parametrize("flaw", list(CATALOGUE))
    def test_each_flaw_is_caught(self, flaw):
        dtype, family = CATALOGUE[flaw]
        report = cet.check(kernel(flaw), dtype=dtype, max_ulp=BOUNDS[dtype])
        assert not report.passed
        caught = [f for f, r in report.families.items() if not r.passed]
        assert family in caught, (flaw, caught, str(report))
        with pytest.raises(AssertionError, match="FAILED") as info:
            cet.assert_matches_reference(kernel(flaw), dtype=dtype, max_ulp=BOUNDS[dtype], families=family)
        assert re.search(rf"^{family} .* FAIL ", str(info.value), flags=re.M)

    def test_catalogue_is_complete(self):
        # The six flaws, plus the cancelling logsumexp(z) - z_y.
        assert len(CATALOGUE) >= 6
        assert {"log_after_softmax", "no_shift", "sum_in_dtype", "drop_smoothing", "mean_by_n",
                "ignore_index_ignored"} <= set(CATALOGUE)

    def test_sum_in_dtype_is_also_caught_in_float16(self):
        report = cet.check(kernel("sum_in_dtype"), dtype="float16", families="many_classes", max_ulp=2)
        assert not report.passed

    def test_report_fields(self):
        report = cet.check(kernel("log_after_softmax"), dtype="float32", families=["certain_wrong", "ties"])
        r = report.families["certain_wrong"]
        assert r.inf > 0 and r.worst_ulp == np.inf and r.max_ulp == np.inf and not r.passed
        logits, target, kwargs = r.worst_input
        assert logits.dtype == np.float32 and r.worst_case.startswith("certain_wrong/")
        # The worst input reproduces the failure on its own.
        with np.errstate(divide="ignore"):
            got = kernel("log_after_softmax")(logits, target, **kwargs)
        assert np.isinf(got).any()
        assert report.families["ties"].passed
        table = str(report)
        assert table.splitlines()[0] == "cross-entropy kernel in float32: FAILED"
        assert max(len(line) for line in table.splitlines()) <= 74

    def test_crashes_are_counted(self):
        def crashing(logits, target, **kw):
            raise RuntimeError("not implemented for this shape")

        report = cet.check(crashing, dtype="float16", families=("seed", "ties"))
        assert report.families["seed"].crashes == 4 and report.families["ties"].crashes == 5
        assert not report.passed
        assert "seed: RuntimeError: not implemented for this shape" in str(report)

    def test_nan_is_counted(self):
        def nan_kernel(logits, target, reduction="mean", **kw):
            out = np.full(logits.shape[0], np.nan, np.float32)
            return out if reduction == "none" else out[0]

        report = cet.check(nan_kernel, dtype="float32", families="balanced")
        assert report.families["balanced"].nan == report.families["balanced"].cases

    def test_per_family_bounds(self):
        report = cet.check(kernel("cancelling"), dtype="float32", families=["confident", "ties"],
                           max_ulp={"ties": 4})
        assert report.families["confident"].max_ulp == np.inf and report.families["confident"].passed
        assert report.families["ties"].max_ulp == 4

    def test_torch_tensors_are_accepted(self):
        torch = pytest.importorskip("torch")
        import torch.nn.functional as F

        def torch_kernel(logits, target, weight=None, **kw):
            z = torch.from_numpy(logits.astype(np.float32)).to(torch.bfloat16)
            t = torch.from_numpy(target)
            return F.cross_entropy(z, t, **kw)

        report = cet.check(torch_kernel, dtype="bfloat16", families=("ties", "balanced"))
        assert report.families["ties"].crashes == 0 and report.families["ties"].worst_ulp < np.inf


class TestBadArguments:
    def test_unknown_family(self):
        msg = "`families` must name families among ("
        with pytest.raises(ValueError, match=re.escape(msg)):
            cet.check(kernel(), dtype="float32", families=["confident", "nope"])
        with pytest.raises(ValueError, match=re.escape(msg)):
            list(cet.cases("nope"))

    @pytest.mark.parametrize(("families", "exc"), [(3, TypeError), ([3], TypeError), ([], ValueError)])
    def test_bad_families(self, families, exc):
        with pytest.raises(exc, match="`families` must"):
            cet.check(kernel(), dtype="float32", families=families)

    @pytest.mark.parametrize(("dtype", "exc"), [("float8", ValueError), (np.int32, ValueError), (3, TypeError),
                                                (None, TypeError), ("complex64", ValueError)])
    def test_bad_dtype(self, dtype, exc):
        with pytest.raises(exc, match="`dtype` must be one of"):
            cet.check(kernel(), dtype=dtype)
        with pytest.raises(exc, match="`dtype` must be one of"):
            cet.ulp_error(1.0, 1.0, dtype)

    @pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), "bfloat16", BF16])
    def test_dtype_spellings(self, dtype):
        assert cet.ulp_error(1.0, 1.0, dtype) == 0.0

    def test_torch_dtype(self):
        torch = pytest.importorskip("torch")
        assert cet.ulp_error(1.0, 1.0 + 2.0**-7, torch.bfloat16) == 1.0

    def test_fn_not_callable(self):
        with pytest.raises(TypeError, match=re.escape("`fn` must be a callable fn(logits, target, **kwargs)")):
            cet.check("F.cross_entropy", dtype="float32")

    def test_wrong_shape(self):
        def always_scalar(logits, target, **kw):
            return np.float32(1.0)

        msg = "`fn` must return an array of shape (3,) for case 'seed/reduction=none'"
        with pytest.raises(ValueError, match=re.escape(msg)):
            cet.check(always_scalar, dtype="float32", families="seed")

    @pytest.mark.parametrize(("max_ulp", "exc"), [(-1, ValueError), ("4", TypeError), ({"nope": 1}, ValueError)])
    def test_bad_max_ulp(self, max_ulp, exc):
        with pytest.raises(exc, match="`max_ulp` must"):
            cet.check(kernel(), dtype="float32", families="ties", max_ulp=max_ulp)

    def test_assert_requires_max_ulp(self):
        with pytest.raises(TypeError, match="`max_ulp` must be a number"):
            cet.assert_matches_reference(kernel(), dtype="float32", max_ulp=None)


# ---------------------------------------------------------------------------
# ulp_error
# ---------------------------------------------------------------------------


def _bf16_next(b, up):
    """The bfloat16 neighbour of `b` above (`up`) or below: +-1 on the magnitude of its bits."""
    bits = int(np.array([b]).view(np.uint16)[0])
    mag, neg = bits & 0x7FFF, bool(bits & 0x8000)
    if mag == 0:
        bits = 0x0001 if up else 0x8001  # from +-0 to the smallest subnormal of that side
    elif up != neg:
        bits += 1  # away from zero
    else:
        bits -= 1  # toward zero
    return np.array([bits], np.uint16).view(BF16)[0]


def _steps(x, n, dtype, toward):
    """x moved n representable numbers toward `toward` in `dtype` (nextafter, n times)."""
    if dtype == BF16:
        b = np.array([x]).astype(BF16)[0]
        for _ in range(n):
            b = _bf16_next(b, toward > 0)
        return b
    v = np.asarray(x, dtype=dtype)
    t = np.asarray(toward, dtype=dtype)
    for _ in range(n):
        v = np.nextafter(v, t)
    return v


class TestUlpError:
    @pytest.mark.parametrize("name", ["float64", "float32", "float16", "bfloat16"])
    @pytest.mark.parametrize("x", [1.0, -1.0, 0.75, 3.0e-2, 1000.0, 0.0])
    @pytest.mark.parametrize("n", [0, 1, 2, 7, 300])
    @pytest.mark.parametrize("toward", [np.inf, -np.inf])
    def test_nextafter_steps_are_exact(self, name, x, n, toward):
        dt = NP[name]
        moved = _steps(x, n, dt, toward)
        assert cet.ulp_error(moved, float(x), name) == float(n)
        assert cet.ulp_error(float(x), np.asarray(moved).astype(np.float64), name) == float(n)

    @pytest.mark.parametrize("name", ["float64", "float32", "float16"])
    def test_across_zero_and_subnormals(self, name):
        dt = NP[name]
        tiny = np.nextafter(dt.type(0), dt.type(1))  # the smallest subnormal
        assert cet.ulp_error(tiny, -float(tiny), name) == 2.0  # -tiny, 0, tiny
        assert cet.ulp_error(np.array(0.0, dt), -0.0, name) == 0.0
        normal = np.finfo(dt).tiny
        assert cet.ulp_error(normal, float(np.nextafter(normal, dt.type(0))), name) == 1.0

    def test_across_a_binade(self):
        # 2 - ulp and 2 + 2 ulp(1) are neighbours of 2 on each side: 1 + 1 steps.
        below = np.nextafter(np.float32(2), np.float32(0))
        above = np.nextafter(np.float32(2), np.float32(4))
        assert cet.ulp_error(below, float(above), "float32") == 2.0

    def test_reference_is_correctly_rounded(self):
        # By hand: 1 + 2**-8 + 2**-30 is just above the midpoint of 1 and 1 + 2**-7 in
        # bfloat16, so it rounds up; through float32 (ml_dtypes' cast) it would round to 1.
        x = 1.0 + 2.0**-8 + 2.0**-30
        assert float(round_to(x, "bfloat16").astype(np.float64)) == 1.0 + 2.0**-7
        assert float(np.float64(x).astype(np.float32).astype(BF16)) == 1.0  # the double rounding avoided
        assert cet.ulp_error(np.array(1.0 + 2.0**-7).astype(BF16), x, "bfloat16") == 0.0
        # An exact tie rounds to even: 1 + 2**-8 goes to 1.
        assert cet.ulp_error(np.array(1.0).astype(BF16), 1.0 + 2.0**-8, "bfloat16") == 0.0

    @given(st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(0, 50))
    def test_float64_steps_property(self, x, n):
        moved = np.float64(x)
        for _ in range(n):
            moved = np.nextafter(moved, np.inf)
        if np.isfinite(moved):
            assert cet.ulp_error(moved, x, "float64") == n

    def test_special_values(self):
        got = np.array([np.nan, np.nan, np.inf, -np.inf, 1.0, np.inf], np.float32)
        ref = np.array([np.nan, 1.0, np.inf, np.inf, np.nan, 1e300])
        # 1e300 overflows float32: its correctly rounded value is inf, so inf is exact.
        np.testing.assert_array_equal(cet.ulp_error(got, ref, "float32"), [0, np.inf, 0, np.inf, np.inf, 0])

    def test_wider_got_is_rounded_first(self):
        assert cet.ulp_error(1.0 + 2.0**-30, 1.0, "float32") == 0.0

    def test_broadcasting_and_scalars(self):
        out = cet.ulp_error(np.ones((2, 3), np.float16), 1.0, "float16")
        assert out.shape == (2, 3) and not out.any()
        assert isinstance(cet.ulp_error(1.0, 1.0, "float16"), float)


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


class TestCases:
    def test_every_family_has_cases_and_names_are_unique(self):
        names = [name for name, *_ in cet.cases()]
        assert len(names) == len(set(names))
        assert {n.split("/")[0] for n in names} == set(cet.FAMILIES)

    @pytest.mark.parametrize("name", ["float32", "float16", "bfloat16"])
    def test_values_are_representable(self, name):
        # Round trips through each format change nothing, except the seed example's logits.
        for case, logits, target, kwargs in cet.cases():
            arrays = [target] if target.dtype.kind == "f" else []
            arrays += [kwargs["weight"]] if "weight" in kwargs else []
            arrays += [] if case.startswith("seed/") else [logits]
            for a in arrays:
                back = a.astype(NP[name]).astype(np.float64)
                np.testing.assert_array_equal(back, a, err_msg=f"{case} in {name}")

    def test_deterministic_and_independent_of_selection(self):
        one = {n: z for n, z, *_ in cet.cases("many_classes", seed=3)}
        both = {n: z for n, z, *_ in cet.cases(["balanced", "many_classes"], seed=3)}
        for n, z in one.items():
            np.testing.assert_array_equal(z, both[n])
        other = {n: z for n, z, *_ in cet.cases("many_classes", seed=4)}
        assert any(not np.array_equal(z, other[n]) for n, z in one.items())

    def test_families_hold_what_they_say(self):
        by = {}
        for name, logits, target, kwargs in cet.cases():
            by.setdefault(name.split("/")[0], []).append((logits, target, kwargs))
        margins = [np.sort(z, axis=1)[:, -1] - np.sort(z, axis=1)[:, -2] for z, _, _ in by["confident"]]
        assert min(m.min() for m in margins) >= 8 and max(m.max() for m in margins) >= 700
        assert max(z.shape[1] for z, _, _ in by["many_classes"]) == 100_000
        assert any(np.isneginf(z).any() for z, _, _ in by["neg_inf"])
        assert max(np.abs(z).max() for z, _, _ in by["large_logits"]) == 9984.0
        assert any(z.ndim >= 3 for z, _, _ in by["kdim"]) and any(z.ndim == 1 for z, _, _ in by["kdim"])
        assert all("label_smoothing" in kw for _, _, kw in by["smoothing"])
        assert all("weight" in kw for _, _, kw in by["weights"])
        assert all(t.shape == z.shape and (t == 0).any() for z, t, _ in by["prob_targets"])
        assert all(np.any(t == kw.get("ignore_index", -100)) for _, t, kw in by["ignore_index"])

    def test_seed_must_be_an_integer(self):
        with pytest.raises(TypeError, match="`seed` must be an integer"):
            list(cet.cases("ties", seed=1.5))


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


def _on_grid(a):
    a = np.asarray(a, dtype=np.float64)
    return all(np.array_equal(a.astype(NP[n]).astype(np.float64), a) for n in ("float32", "float16", "bfloat16"))


class TestStrategies:
    @given(ces.cross_entropy_inputs(max_kdim=2))
    def test_inputs_are_valid_and_representable(self, args):
        logits, target, kwargs = args
        out = ce.cross_entropy(logits, target, **kwargs)  # valid for the reference: no exception
        assert np.all((out >= 0) | np.isnan(out))
        assert _on_grid(logits) and (target.dtype.kind != "f" or _on_grid(target))
        assert "weight" not in kwargs or _on_grid(kwargs["weight"])

    @given(ces.logits(ces.shapes(max_kdim=1, min_classes=2, unbatched=False), margin=(10.0, 100.0)))
    def test_margin(self, z):
        s = np.sort(z, axis=1)
        assert np.all(s[:, -1] - s[:, -2] >= 9.5)  # margins snapped to 8 bits stay near 10

    @given(ces.shapes(max_kdim=2, min_classes=2, max_classes=5).flatmap(ces.probability_targets))
    def test_probability_targets_sum_to_one(self, p):
        ax = 0 if p.ndim == 1 else 1
        np.testing.assert_array_equal(p.sum(axis=ax), 1.0)
        assert np.all(p >= 0)

    @given(ces.shapes(max_kdim=2))
    def test_shapes(self, shape):
        assert len(shape) in (1, 2, 3, 4) and all(n >= 1 for n in shape)

    @given(ces.options(5, probabilities=True))
    def test_options_for_probabilities_keep_ignore_index(self, kw):
        assert "ignore_index" not in kw

    @given(ces.cross_entropy_inputs(probabilities=False, margin=(10.0, 40.0), max_classes=6))
    def test_correct_kernel_on_drawn_inputs(self, args):
        # The strategies feed the same check: the correct float32 kernel is within 4 ulps.
        logits, target, kwargs = args
        got = kernel()(logits.astype(np.float32), target, **{k: (v.astype(np.float32) if isinstance(v, np.ndarray)
                                                                   else v) for k, v in kwargs.items()})
        ref = ce.cross_entropy(logits, target, **kwargs)
        assert np.nanmax(np.atleast_1d(cet.ulp_error(got, ref, "float32"))) <= BOUNDS["float32"]


# ---------------------------------------------------------------------------
# Optional dependencies
# ---------------------------------------------------------------------------


def test_imports_with_numpy_only():
    # A fresh interpreter where hypothesis and ml_dtypes cannot be imported: the module
    # imports; bfloat16 and the strategies raise an ImportError that names the extra.
    code = """
import sys
sys.modules["hypothesis"] = None
sys.modules["ml_dtypes"] = None
import crossentropy_ref.testing as t
assert t.ulp_error(1.0, 1.0, "float32") == 0.0
try:
    t.ulp_error(1.0, 1.0, "bfloat16")
except ImportError as e:
    assert "crossentropy_ref[testing]" in str(e), e
else:
    raise SystemExit("no ImportError for bfloat16")
try:
    import crossentropy_ref.testing.strategies
except ImportError as e:
    assert "crossentropy_ref[testing]" in str(e), e
else:
    raise SystemExit("no ImportError for the strategies")
assert "torch" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
