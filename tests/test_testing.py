"""Tests for crossentropy_ref.testing: cases, ulp_error, condition_number, check, the strategies.

Expected values: ulp distances built by hand with numpy.nextafter (n steps are
n ulps by definition); representability by round trips through each format;
condition numbers against mpmath at mp.dps = 60 and by hand; the verdicts on
kernels written here (a correct loss and a correct gradient, and a catalogue
of flawed ones, each flaw stated next to it) and on torch 2.13.0.
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
        if flaw == "dropped_tile" and logits.ndim == 2 and target.ndim == 1 and len(target) > TILE:
            # Rows in tiles of TILE; the last, partial tile is never launched: its losses stay 0
            # and are left out of a reduction (numerator and denominator alike).
            kept = len(target) - len(target) % TILE
            kw = {"weight": weight, "ignore_index": ignore_index, "label_smoothing": label_smoothing}
            if reduction == "none":
                out = np.zeros(len(target), dt)
                out[:kept] = kernel()(logits[:kept], target[:kept], reduction="none", **kw)
                return out
            return kernel()(logits[:kept], target[:kept], reduction=reduction, **kw)
        z = np.moveaxis(logits, ax, -1).astype(acc)  # classes last
        c = z.shape[-1]
        eps = 0.0 if flaw == "drop_smoothing" else label_smoothing
        m = z.max(axis=-1, keepdims=True)
        d = m - z  # >= 0
        if flaw == "log_of_sum":
            # log of the sum 1 + s, rounded to the input format, its log rounded again (torch's
            # CPU log_softmax, float32 and 16-bit alike): a small loss cancels.
            e = np.exp(-d)
            total = e.sum(axis=-1).astype(dt).astype(acc)
            lse_rest = np.log(total).astype(dt).astype(acc)
        elif flaw == "sum_in_dtype":
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
        with np.errstate(invalid="ignore"):  # 'mean' of no target: 0 / 0 = NaN, as torch
            return np.asarray(total if reduction == "sum" else total / denom).astype(dt)

    return fn


TILE = 64  # the row tile of the "dropped_tile" flaw


def grad_kernel(flaw=None):
    """The gradient of kernel()'s loss in the logits, in the logits' precision (float32 for the
    16-bit formats): a q - b per position. At the largest logit k, where q_k may be near 1,
    a q_k - b_k is also (sum_{c != k} b_c) - a (1 - q_k) with 1 - q_k = s / (1 + s); each
    form cancels where the other does not, so the one with the smaller terms is taken.
    `flaw` breaks one thing."""

    def fn(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        dt = logits.dtype
        acc = np.float32 if dt.itemsize < 4 else dt.type
        ax = 1 if logits.ndim > 1 else 0
        z = np.moveaxis(logits, ax, -1).astype(acc)  # classes last
        c = z.shape[-1]
        eps = 0.0 if flaw == "drops_smoothing" else label_smoothing
        m = z.max(axis=-1, keepdims=True)
        k = np.argmax(z, axis=-1)[..., None]
        e = np.exp(z - m)
        np.put_along_axis(e, k, 0.0, axis=-1)
        s = e.sum(axis=-1, keepdims=True)
        q = e / (1 + s)
        np.put_along_axis(q, k, 1 / (1 + s), axis=-1)
        w = np.ones(c, acc) if weight is None else weight.astype(acc)
        if target.shape == logits.shape:  # class probabilities
            b = w * ((1 - eps) * np.moveaxis(target, ax, -1).astype(acc) + acc(eps / c))
            valid = np.ones(b.shape[:-1], bool)
            denom = acc(valid.size)
        else:
            valid = target != ignore_index
            y = np.where(valid, target, 0)[..., None]
            b = np.where(valid[..., None], acc(eps / c) * w, 0).astype(acc)
            np.put_along_axis(b, y, np.take_along_axis(b, y, -1) + np.where(valid[..., None], (1 - eps) * w[y], 0), -1)
            denom = np.where(valid, w[y[..., 0]], 0).sum(dtype=acc)
        a = b.sum(axis=-1, keepdims=True)
        g = a * q - b
        b_k, aq_k = np.take_along_axis(b, k, -1), a / (1 + s)
        others = np.arange(c) != k
        rest_b, a_rest_q = np.where(others, b, 0).sum(axis=-1, keepdims=True), a * (s / (1 + s))
        g_k = np.where(rest_b + a_rest_q < b_k + aq_k, rest_b - a_rest_q, aq_k - b_k)
        np.put_along_axis(g, k, g_k, axis=-1)
        if reduction == "mean":
            g = g / denom
        g = np.where(valid[..., None], g, 0)  # an ignored position: exactly 0
        g = np.where(np.isfinite(m), g, np.nan)  # no finite shift: NaN, as torch
        return np.moveaxis(g, -1, ax).astype(dt)

    return fn


# The flaw catalogue: each flaw, the dtype it is judged in, and the family expected to expose it.
CATALOGUE = {
    "dropped_tile": ("float32", "tiles"),  # the last partial 64-row tile is never computed
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
        report = cet.assert_matches_reference(kernel(), dtype=dtype, max_ulp=BOUNDS[dtype],
                                              max_ratio=cet.STABILITY_C)
        assert report.passed and report.stable and set(report.families) == set(cet.FAMILIES)
        assert all(r.crashes == r.nan == r.inf == 0 and not r.special for r in report.families.values())
        # Measured worst: 3 u (1 + kappa) in float32; the bound c = 16 is 5 times that.
        assert max(report.worst_ratio.values()) <= cet.STABILITY_C / 4

    def test_reference_rounded_is_zero_ulps(self):
        # The reference itself, rounded to float32, is 0 ulps from itself.
        def exact(logits, target, **kw):
            return np.float32(ce.cross_entropy(logits, target, **kw))

        report = cet.check(exact, dtype="float32", max_ulp=0)
        assert report.passed and max(report.worst_ulp.values()) == 0.0
        # A correctly rounded result is within u |f| of f: a ratio of at most 1 / (1 + kappa).
        assert report.stable and max(report.worst_ratio.values()) <= 1.0

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
        # The six flaws, plus the cancelling logsumexp(z) - z_y and the dropped tile.
        assert len(CATALOGUE) >= 8
        assert {"log_after_softmax", "no_shift", "sum_in_dtype", "drop_smoothing", "mean_by_n",
                "ignore_index_ignored", "dropped_tile"} <= set(CATALOGUE)

    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    def test_dropped_tile_is_caught_only_by_the_tiles(self, dtype):
        # No other family has more than 64 positions in a row: all pass, the tiles fail.
        report = cet.check(kernel("dropped_tile"), dtype=dtype, max_ulp=BOUNDS[dtype])
        failing = {f for f, r in report.families.items() if not (r.passed and r.stable)}
        assert failing == {"tiles"}, str(report)
        tiles = report.families["tiles"]
        n = tiles.worst_input[0].shape[0]
        assert n > TILE and n % TILE != 0

    def test_sum_in_dtype_is_also_caught_in_float16(self):
        report = cet.check(kernel("sum_in_dtype"), dtype="float16", families="many_classes", max_ulp=2)
        assert not report.passed

    def test_report_fields(self):
        report = cet.check(kernel("log_after_softmax"), dtype="float32", families=["certain_wrong", "ties"])
        r = report.families["certain_wrong"]
        assert r.inf > 0 and r.worst_ulp == np.inf and r.max_ulp == np.inf and not r.passed
        logits, target, kwargs = r.worst_input
        assert logits.dtype == np.float32 and r.worst_case.startswith("certain_wrong/")
        # The worst input reproduces the failure on its own, at the index reported.
        with np.errstate(divide="ignore"):
            got = kernel("log_after_softmax")(logits, target, **kwargs)
        assert np.isinf(got[r.worst_at])
        assert report.families["ties"].passed
        assert r.special == {"inf where finite": r.special["inf where finite"]}
        table = str(report)
        assert table.splitlines()[0] == "loss in float32: forward error FAILED, stability FAILED"
        assert re.search(r"^  certain_wrong +inf where finite: margin=", table, flags=re.M)
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
        r = report.families["balanced"]
        assert r.nan == r.cases and len(r.special["NaN where finite"]) == r.cases
        assert r.worst_ratio == np.inf and not r.stable and not r.passed

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


# ---------------------------------------------------------------------------
# Special values, named by kind
# ---------------------------------------------------------------------------


def _post(fn, change):
    """`fn` with its result passed through change(out, logits, target, kwargs)."""

    def wrapped(logits, target, **kw):
        return change(np.asarray(fn(logits, target, **kw)), logits, target, kw)

    return wrapped


class TestSpecialValues:
    def _special(self, fn, family, dtype="float32"):
        report = cet.check(fn, dtype=dtype, families=family)
        r = report.families[family]
        assert not r.passed and not r.stable and r.worst_ratio == np.inf
        return r.special, str(report)

    def test_nan_where_finite(self):
        # 0 * log 0 taken as 0 * (-inf), as torch does: NaN where the reference has 0 log 0 = 0.
        def zero_times_inf(out, z, t, kw):
            if t.shape != z.shape or out.ndim != 1:
                return out
            return np.where(np.any((t == 0) & np.isneginf(z), axis=1), np.nan, out).astype(out.dtype)

        special, table = self._special(_post(kernel(), zero_times_inf), "prob_targets")
        assert special == {"NaN where finite": ("prob_targets/zero-mass-at-neg-inf",)}
        assert "  prob_targets  NaN where finite: zero-mass-at-neg-inf" in table

    @pytest.mark.parametrize(("change", "kind"), [
        (lambda out: np.minimum(out, np.finfo(out.dtype).max), "finite where inf"),  # inf clamped
        (lambda out: np.where(np.isposinf(out), np.nan, out), "NaN where inf"),
        (lambda out: np.where(np.isposinf(out), -np.inf, out), "wrong-signed inf"),
    ])
    def test_where_the_loss_is_inf(self, change, kind):
        # The target's logit is -inf: the exact loss is +inf.
        special, table = self._special(_post(kernel(), lambda out, *_: change(out)), "neg_inf")
        assert special == {kind: ("neg_inf/target-at-neg-inf",)}
        assert f"neg_inf       {kind}: target-at-neg-inf" in table

    def test_inf_where_finite(self):
        # e^z overflows without the max shift: inf where the loss is a few thousand.
        special, _ = self._special(kernel("no_shift"), "large_logits")
        assert "inf where finite" in special

    def test_number_where_nan(self):
        # 'mean' over no target at all is 0 / 0 = NaN in the reference and in torch.
        def zero_if_nan(out, *_):
            return np.where(np.isnan(out), 0, out).astype(out.dtype)

        special, _ = self._special(_post(kernel(), zero_if_nan), "ignore_index")
        assert special == {"number where NaN": ("ignore_index/all-ignored,mean",)}


# ---------------------------------------------------------------------------
# The stability verdict
# ---------------------------------------------------------------------------


class TestStability:
    def test_ill_conditioned_input_fails_forward_but_is_stable(self):
        # logsumexp(z) - z_y in float32, on logits of 9984: 3560 ulps from log 2 (by the
        # forward verdict a failure at 4), but logits known to their last bit (2**-10 here)
        # do not determine log 2 better than that. kappa = 9985 / log 2 (by hand).
        report = cet.check(kernel("cancelling"), dtype="float32", families="ties", max_ulp=4)
        r = report.families["ties"]
        assert not report.passed and report.stable
        assert r.worst_case == "ties/at-large" and r.worst_ulp > 1000 and r.worst_ratio < 1

    def test_avoidable_cancellation_passes_a_loose_forward_bound(self):
        # torch's log of the rounded sum 1 + s, in float32 (flaw "log_of_sum"): on the seed
        # example and the class weights it is a few hundred ulps off, within a loose bound of
        # 512 ulps (a relative error below 512 * 2**-23 = 6.1e-5), yet 20 to 30 times
        # u (1 + kappa): the small losses of confident rows lose digits their logits determine.
        report = cet.check(kernel("log_of_sum"), dtype="float32", families=("seed", "weights"), max_ulp=512)
        assert report.passed and not report.stable, str(report)
        assert all(r.worst_ratio > 1.2 * cet.STABILITY_C for r in report.families.values())
        # The same kernel without the flaw passes both at once.
        assert cet.check(kernel(), dtype="float32", families=("seed", "weights"), max_ulp=4).stable

    def test_avoidable_cancellation_hides_in_16_bit_ulps(self):
        # In float16, ulps count binades: from 0 to 5e-4 is over 4000 of them, so the same flaw
        # stays within 2**13 ulps on every family while stability fails where losses are small.
        report = cet.check(kernel("log_of_sum"), dtype="float16", max_ulp=2**13)
        failing = {f for f, r in report.families.items() if not r.stable}
        assert report.passed and {"seed", "confident", "weights", "kdim", "tiles"} <= failing, str(report)
        z, t, _ = report.families["seed"].worst_input
        assert ce.cross_entropy(z.astype(float), t, reduction="none").min() < 1e-3

    def test_bad_reduction_is_unstable(self):
        # 1e5 terms summed one by one in bfloat16 stagnate: no perturbation of the logits explains it.
        report = cet.check(kernel("sum_in_dtype"), dtype="bfloat16", families="many_classes")
        assert not report.stable and report.families["many_classes"].worst_ratio > 2 * cet.STABILITY_C

    def test_kappa_of_the_worst_case(self):
        # The report's kappa is condition_number's at the output with the worst ratio.
        report = cet.check(kernel("log_of_sum"), dtype="float32", families="seed")
        r = report.families["seed"]
        z, t, kw = r.ratio_input
        assert r.ratio_case == "seed/reduction=none"
        kappa = cet.condition_number(z.astype(float), t, **kw)
        assert kappa[r.ratio_at] == r.kappa

    def test_max_ratio_per_family_and_none(self):
        report = cet.check(kernel("log_of_sum"), dtype="float32", families=("seed", "ties"),
                           max_ratio={"ties": 4})
        assert report.families["seed"].max_ratio == np.inf and report.families["seed"].stable
        assert report.families["ties"].max_ratio == 4
        assert cet.check(kernel("log_of_sum"), dtype="float32", families="seed", max_ratio=None).stable

    def test_assert_with_max_ratio_only(self):
        cet.assert_matches_reference(kernel(), dtype="bfloat16", max_ratio=cet.STABILITY_C, families="seed")
        with pytest.raises(AssertionError, match="stability FAILED"):
            cet.assert_matches_reference(kernel("log_of_sum"), dtype="float16", max_ratio=cet.STABILITY_C,
                                         families="seed")
        # The forward bound alone is not failed by an unstable kernel that meets it.
        cet.assert_matches_reference(kernel("log_of_sum"), dtype="float16", max_ulp=2**13, families="seed")


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------

# Forward bounds a correct gradient meets (measured worst: 75 ulps in float32 and 90 in float64,
# both on label smoothing, where a q_c - b_c cancels and kappa is large; 1 ulp in 16 bits).
GRAD_BOUNDS = {"float64": 128, "float32": 128, "float16": 2, "bfloat16": 2}


class TestGradient:
    @pytest.mark.parametrize("dtype", list(GRAD_BOUNDS))
    def test_correct_gradient_passes(self, dtype):
        report = cet.assert_matches_reference(grad_kernel(), dtype=dtype, grad=True, max_ulp=GRAD_BOUNDS[dtype],
                                              max_ratio=cet.STABILITY_C)
        assert report.quantity == "gradient" and report.passed and report.stable
        assert str(report).startswith(f"gradient in {dtype}: forward error PASSED, stability PASSED")
        # Measured worst: 3.1 u (1 + kappa); the bound c = 16 is 5 times that.
        assert max(report.worst_ratio.values()) <= cet.STABILITY_C / 4

    def test_gradient_bug_is_caught_only_by_the_gradient(self):
        # The backward pass forgets label smoothing (q - onehot); the loss is right.
        loss = cet.check(kernel(), dtype="float32", max_ulp=BOUNDS["float32"])
        grad = cet.check(grad_kernel("drops_smoothing"), dtype="float32", grad=True, max_ulp=GRAD_BOUNDS["float32"])
        assert loss.passed and loss.stable
        failing = {f for f, r in grad.families.items() if not (r.passed or r.stable)}
        assert failing == {"smoothing", "prob_targets"}, str(grad)  # prob_targets has a smoothing case
        assert grad.families["prob_targets"].worst_case == "prob_targets/smoothing,none"

    def test_wrong_shape(self):
        def loss_not_gradient(logits, target, **kw):
            return kernel()(logits, target, **kw)

        msg = "`fn` must return the gradient, the shape of the logits, an array of shape (3, 3), for case"
        with pytest.raises(ValueError, match=re.escape(msg)):
            cet.check(loss_not_gradient, dtype="float32", families="seed", grad=True)


# ---------------------------------------------------------------------------
# Kernels that take torch tensors or JAX arrays
# ---------------------------------------------------------------------------


class TestTorch:
    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
    def test_inputs_are_exact_tensors(self, dtype):
        torch = self.torch

        def exact(logits, target, weight=None, **kw):
            assert isinstance(logits, torch.Tensor) and logits.dtype == getattr(torch, dtype)
            assert target.dtype in (torch.int64, getattr(torch, dtype))
            assert weight is None or weight.dtype == logits.dtype
            w = None if weight is None else weight.double().numpy()
            t = target.numpy() if target.dtype == torch.int64 else target.double().numpy()
            # A float64 tensor: the judge rounds it correctly (torch's own float64 -> float16
            # and -> bfloat16 conversions go through float32 and can be 1 ulp off).
            return torch.tensor(ce.cross_entropy(logits.double().numpy(), t, w, **kw))

        report = cet.check(exact, dtype=dtype, inputs="torch", max_ulp=0, max_ratio=1)
        assert report.passed and report.stable, str(report)

    def test_autograd_of_torch(self):
        # torch 2.13.0's own loss and autograd: the verdicts of the "Judge your kernel" page.
        import torch.nn.functional as F

        def loss(logits, target, weight=None, **kw):
            return F.cross_entropy(logits, target, weight, **kw)

        report = cet.check(loss, dtype="float32", inputs="torch", grad="autograd", families=("confident", "ties"))
        assert report.quantity == "gradient"
        # softmax - 1 rounds to 0 on a confident prediction: unstable; ties are fine.
        assert not report.families["confident"].stable and report.families["ties"].stable

    def test_autograd_catches_a_backward_bug(self):
        torch = self.torch
        import torch.nn.functional as F

        class WeightlessBackward(torch.autograd.Function):
            """The right loss; its backward forgets the class weights."""

            @staticmethod
            def forward(ctx, z, t, weight, kw):
                ctx.save_for_backward(z, t)
                ctx.kw = kw
                return F.cross_entropy(z, t, weight, **dict(kw))

            @staticmethod
            def backward(ctx, out_grad):
                z, t = ctx.saved_tensors
                with torch.enable_grad():
                    z = z.detach().requires_grad_(True)
                    (g,) = torch.autograd.grad(F.cross_entropy(z, t, **dict(ctx.kw)), z, out_grad)
                return g, None, None, None

        def loss(logits, target, weight=None, **kw):
            return WeightlessBackward.apply(logits, target, weight, tuple(kw.items()))

        def torch_loss(logits, target, weight=None, **kw):
            return F.cross_entropy(logits, target, weight, **kw)

        families = ("balanced", "weights")
        fwd = cet.check(loss, dtype="float32", inputs="torch", families=families)
        back = cet.check(loss, dtype="float32", inputs="torch", grad="autograd", families=families)
        fwd_torch = cet.check(torch_loss, dtype="float32", inputs="torch", families=families)
        back_torch = cet.check(torch_loss, dtype="float32", inputs="torch", grad="autograd", families=families)
        # The loss is torch's own; so is the gradient without weights. With weights, torch's
        # own gradient is 386 ulps off (measured), the flawed one a relative error of order 1.
        assert fwd.worst_ulp == fwd_torch.worst_ulp and fwd.worst_ratio == fwd_torch.worst_ratio
        assert back.worst_ulp["balanced"] == back_torch.worst_ulp["balanced"]
        assert back_torch.worst_ulp["weights"] < 1000 and back.worst_ulp["weights"] > 1e6

    def test_result_on_another_device_or_dtype(self):
        torch = self.torch

        def wider(logits, target, **kw):  # computes in float64: rounded to bfloat16 by the judge
            return torch.tensor(ce.cross_entropy(logits.double().numpy(), target.numpy(), **kw))

        report = cet.check(wider, dtype="bfloat16", inputs="torch", families="ties", max_ulp=0)
        assert report.passed


class TestJax:
    jax = pytest.importorskip("jax")

    def _optax_loss(self):
        import jax.numpy as jnp
        import optax

        @self.jax.jit
        def loss(logits, target):
            return optax.softmax_cross_entropy_with_integer_labels(logits, target)

        def fn(logits, target, reduction="none", **kw):
            assert isinstance(logits, self.jax.Array) and target.dtype == jnp.int32
            assert reduction == "none" and not kw
            return loss(logits, target)

        return fn

    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    def test_optax_loss_and_autograd(self, dtype):
        # optax 0.2.8 computes logsumexp(z) - z_y: a confident prediction's loss cancels, a
        # certain-wrong one's does not (measured: 1 ulp, ratio 0.43; the gradient 3 ulps).
        fn = self._optax_loss()
        for grad in (False, "autograd"):
            report = cet.check(fn, dtype=dtype, inputs="jax", grad=grad, families=("confident", "certain_wrong"))
            assert not report.families["confident"].stable, str(report)
            assert report.families["certain_wrong"].stable and report.families["certain_wrong"].worst_ulp <= 4

    def test_float64_needs_x64(self):
        # Other tests of the session may have turned x64 on (tests/frameworks_matrix.py does).
        was = self.jax.config.jax_enable_x64
        self.jax.config.update("jax_enable_x64", False)
        try:
            with pytest.raises(ValueError, match=re.escape("`inputs='jax'` with dtype float64 needs")):
                cet.check(self._optax_loss(), dtype="float64", inputs="jax", families="confident")
        finally:
            self.jax.config.update("jax_enable_x64", was)


# ---------------------------------------------------------------------------
# condition_number
# ---------------------------------------------------------------------------


class TestConditionNumber:
    def test_by_hand(self):
        # Logits [40, 0], target 0: the gradient is (-s, s) / (1 + s) with s = e^-40, the loss
        # log1p(s), so kappa = (41 + 1) (s / (1 + s)) / log1p(s) = 42 to 1e-15.
        assert float(cet.condition_number(np.array([[40.0, 0.0]]), [0])) == pytest.approx(42.0, rel=1e-15)
        # Logits [9984, 9984]: gradient (-1/2, 1/2), loss log 2: kappa = 9985 / log 2.
        k = cet.condition_number(np.array([[9984.0, 9984.0]]), [0])
        assert float(k) == pytest.approx(9985.0 / np.log(2.0), rel=1e-14)
        # Gradient of [40, 0]: each entry a q_0 q_1 (t_0 + t_1) / |g| = 42 q_0.
        kg = cet.condition_number(np.array([[40.0, 0.0]]), [0], grad=True)
        np.testing.assert_allclose(kg, [[42.0, 42.0]], rtol=1e-15)

    def test_against_mpmath(self):
        # Expected values: mpmath at mp.dps = 60, written without cancellation (1 - q_k as
        # rest / (1 + rest), -log q_j as (m - z_j) + log1p(rest)) so that margins of 700 keep
        # their digits.
        mp = pytest.importorskip("mpmath")
        mp.mp.dps = 60
        rng = np.random.default_rng(7)
        checked = 0
        for name, z, t, kw in cet.cases(["confident", "certain_wrong", "smoothing", "weights", "balanced"]):
            if kw.get("reduction") != "none" or z.ndim != 2 or z.shape[1] > 100:
                continue
            eps = mp.mpf(kw.get("label_smoothing", 0.0))
            w = kw.get("weight", np.ones(z.shape[1]))
            kl = cet.condition_number(z, t, **kw)
            kg = cet.condition_number(z, t, grad=True, **kw)
            c = z.shape[1]
            for i in rng.choice(len(z), size=2, replace=False):
                row = [mp.mpf(float(v)) for v in z[i]]
                k = int(np.argmax(z[i]))
                e = [mp.exp(v - row[k]) for v in row]
                rest = mp.fsum(e[j] for j in range(c) if j != k)
                q = [e[j] / (1 + rest) for j in range(c)]
                tw = [abs(v) + 1 for v in row]
                b = [mp.mpf(float(w[j])) * ((1 - eps) * (j == t[i]) + eps / c) for j in range(c)]
                a = mp.fsum(b)
                g = [a * q[j] - b[j] for j in range(c)]
                g[k] = mp.fsum(b[j] for j in range(c) if j != k) - a * rest / (1 + rest)
                loss = mp.fsum(b[j] * ((row[k] - row[j]) + mp.log1p(rest)) for j in range(c))
                want = mp.fsum(tw[j] * abs(g[j]) for j in range(c)) / loss
                assert float(kl[i]) == pytest.approx(float(want), rel=1e-12), name
                for j in range(c):
                    others = [q[l] if l != j else 0 for l in range(c)]
                    if j == k:
                        others[k] = 0
                    hj = a * q[j] * mp.fsum((tw[j] + tw[l]) * others[l] for l in range(c))
                    assert float(kg[i, j]) == pytest.approx(float(hj / abs(g[j])), rel=1e-12), (name, j)
                checked += 1
        assert checked >= 40

    def test_check_takes_q_from_the_gradient(self):
        # check's stability scale takes the softmax from the exact gradient, q = (g + b) / a,
        # instead of computing it: the denominators |g| + scale agree to 1e-13 relative
        # (measured: 7e-15) on every gradient entry of the battery.
        from crossentropy_ref.testing._kappa import grad_scale

        for name, z, t, kw in cet.cases():
            with np.errstate(all="ignore"):
                g = ce.cross_entropy_grad(z, t, **kw)
            exact, cheap = grad_scale(z, t, kw), grad_scale(z, t, kw, g)
            ok = np.isfinite(g)
            denom = np.maximum(np.abs(g) + exact, 1e-300)[ok]
            assert np.all(np.abs(exact - cheap)[ok] <= 1e-13 * denom), name

    def test_shapes_and_zeros(self):
        z = np.array([[1.0, -np.inf, 0.5], [2.0, 0.0, 1.0]])
        y = np.array([0, -100])
        k = cet.condition_number(z, y, reduction="none")
        assert k.shape == (2,) and k[1] == 0.0  # an ignored position: nothing moves it
        kg = cet.condition_number(z, y, reduction="none", grad=True)
        assert kg.shape == z.shape and kg[0, 1] == 0.0 and np.all(kg[1] == 0.0)
        assert np.ndim(cet.condition_number(z, y)) == 0

    def test_bad_input_is_refused_as_by_cross_entropy(self):
        with pytest.raises(ValueError, match="target"):
            cet.condition_number(np.zeros((2, 3)), np.array([0, 1, 2]))
        with pytest.raises(TypeError, match=re.escape("`grad` must be True or False; got str 'yes'")):
            cet.condition_number(np.zeros((2, 3)), np.array([0, 1]), grad="yes")


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

        msg = "`fn` must return the loss, an array of shape (3,), for case 'seed/reduction=none'"
        with pytest.raises(ValueError, match=re.escape(msg)):
            cet.check(always_scalar, dtype="float32", families="seed")

    @pytest.mark.parametrize(("max_ulp", "exc"), [(-1, ValueError), ("4", TypeError), ({"nope": 1}, ValueError)])
    def test_bad_max_ulp(self, max_ulp, exc):
        with pytest.raises(exc, match="`max_ulp` must"):
            cet.check(kernel(), dtype="float32", families="ties", max_ulp=max_ulp)

    def test_assert_requires_max_ulp(self):
        with pytest.raises(TypeError, match=re.escape("`max_ulp` must be a number or a dict of numbers, "
                                                      "or `max_ratio` given; got neither")):
            cet.assert_matches_reference(kernel(), dtype="float32", max_ulp=None)

    @pytest.mark.parametrize(("max_ratio", "exc"), [(-1, ValueError), ("16", TypeError), ({"nope": 1}, ValueError)])
    def test_bad_max_ratio(self, max_ratio, exc):
        with pytest.raises(exc, match="`max_ratio` must"):
            cet.check(kernel(), dtype="float32", families="ties", max_ratio=max_ratio)

    @pytest.mark.parametrize(("inputs", "exc"), [("tensorflow", ValueError), (None, TypeError)])
    def test_bad_inputs(self, inputs, exc):
        with pytest.raises(exc, match=re.escape("`inputs` must be one of ('numpy', 'torch', 'jax')")):
            cet.check(kernel(), dtype="float32", families="ties", inputs=inputs)

    @pytest.mark.parametrize(("grad", "exc"), [("backward", ValueError), (1, TypeError), (None, TypeError)])
    def test_bad_grad(self, grad, exc):
        with pytest.raises(exc, match=re.escape("`grad` must be False (judge the loss fn returns)")):
            cet.check(kernel(), dtype="float32", families="ties", grad=grad)

    def test_autograd_needs_a_framework(self):
        msg = "`grad='autograd'` needs `inputs='torch'` or `inputs='jax'`"
        with pytest.raises(ValueError, match=re.escape(msg)):
            cet.check(kernel(), dtype="float32", families="ties", grad="autograd")


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

    def test_tiles_straddle_tile_edges(self):
        def edges(n):  # 0, n - 1 and both sides of every power of two below n
            return {0, n - 1} | {i for j in range(1, 18) if 2**j < n for i in (2**j - 1, 2**j)}

        tiles = [case for case in cet.cases("tiles") if case[1].ndim == 2]
        rows = {z.shape[0] for _, z, _, _ in tiles}
        classes = {z.shape[1] for _, z, _, _ in tiles}
        for k in range(1, 13):
            assert {2**k - 1, 2**k, 2**k + 1} <= rows, k
        for k in (*range(1, 13), 13, 15, 17):
            assert {2**k - 1, 2**k, 2**k + 1} - {1} <= classes, k
        assert max(classes) == 2**17 + 1
        ignored_somewhere = False
        for name, z, t, kw in tiles:
            n, c = z.shape
            assert t[0] != -100 and t[-1] != -100, name  # a dropped first or last row shows
            assert set(t[t != -100].tolist()) <= edges(c), name  # targets on class edges
            ignored = set(np.flatnonzero(t == -100).tolist())
            assert ignored <= edges(n) | {n // 2}, name  # ignored rows on row edges
            ignored_somewhere |= bool(ignored)
            if re.fullmatch(r"tiles/N=\d+,C=\d+", name):  # class tiling: the last class holds
                # row 0's target and maximum
                assert t[0] == c - 1 and np.argmax(z[0]) == c - 1, name
        assert ignored_somewhere
        assert any(z.ndim == 3 and z.shape[2] == 65 for _, z, _, _ in cet.cases("tiles"))

    def test_seed_must_be_an_integer(self):
        with pytest.raises(TypeError, match="`seed` must be an integer"):
            list(cet.cases("ties", seed=1.5))
        with pytest.raises(TypeError, match="`seed` must be an integer"):
            cet.check(kernel(), dtype="float32", families="ties", seed=1.5)


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


# ---------------------------------------------------------------------------
# Fused LM-head kernels (issue 20): linear_cases and check_linear
# ---------------------------------------------------------------------------


def test_linear_cases_are_exact_in_every_format():
    # Every float of every case survives a round trip through float16, bfloat16 and float32.
    import ml_dtypes

    seen = set()
    for name, x, w, t, kw in cet.linear_cases():
        seen.add(name)
        arrays = [x, w] + [v for v in kw.values() if isinstance(v, np.ndarray)]
        if t.dtype.kind == "f":
            arrays.append(t)
        for a in arrays:
            for dt in (np.float16, ml_dtypes.bfloat16, np.float32):
                np.testing.assert_array_equal(a.astype(dt).astype(np.float64), a)
    assert {"confident-gap64", "cancelling-1024", "kdim", "probabilities"} <= seen


def test_check_linear_passes_the_reference_and_catches_torch_on_confident_rows():
    # The reference against itself: 0 ulp in every family. torch 2.13.0's chunked path in
    # float64 computes logsumexp(z) - z_y, which cancels to 0 on the 'confident' family's rows
    # (exact losses near e**-32 and below): millions of ulps there, and the family fails.
    import warnings

    import torch
    import torch.nn.functional as F

    report = cet.check_linear(ce.linear_cross_entropy, "float64")
    assert list(report) == list(cet.LINEAR_FAMILIES)
    assert all(r.passed and r.worst_ulp == 0 for r in report.values()), report
    opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=8, chunking_method=None)

    def chunked(x, w, t, **kw):
        return F.linear_cross_entropy(x, w, t, options=opts, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns where it ignores `options` (K-dim, smoothing)
        report = cet.check_linear(chunked, "float64", inputs="torch")
    assert not report["confident"].passed and report["confident"].worst_ulp > 1e6, report["confident"]
    assert report["lm_head"].passed, report["lm_head"]


def test_check_linear_reports_crashes_and_refuses_unknown_families():
    def broken(x, w, t, **kw):
        raise RuntimeError("no kernel here")

    r = cet.check_linear(broken, "float32", families="lm_head")["lm_head"]
    assert not r.passed and r.worst_ulp == np.inf and r.error == "RuntimeError: no kernel here"
    with pytest.raises(ValueError, match=re.escape(
            "`families` must name families among ('lm_head', 'confident', 'cancelling', 'bias_kdim', 'options'); "
            "got 'seed'")):
        cet.check_linear(broken, "float32", families="seed")
