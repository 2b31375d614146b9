"""Tests for crossentropy_ref.textbook: the deliberately naive formulas.

Sources: the blog post that started the project (Clay, "[Machine Learning]
Cross Entropy Loss 筆記", 2024; /work/shared/seed) printed, for its cat / dog /
turtle example, "My Cross Entropy Loss: 0.36594851568931036" (numpy float64)
and "Torch Cross Entropy Loss: 0.36594846844673157" (torch float32, the
default dtype of torch.tensor on a list of Python floats). Everything else is
torch 2.13.0, numpy float64 or by hand, as stated per test.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import crossentropy_ref as ce
from crossentropy_ref import textbook

# The seed post's example: three samples (cat, cat, turtle), three classes.
LOGITS = [[9.7785, 0.9195, 2.10], [3.133, -3.05, 1.02], [0.12, 0.432518, 0.470]]
ONEHOT = [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
LABELS = [0, 0, 2]
SEED_NUMPY = 0.36594851568931036  # printed by the seed post (numpy float64)
REFERENCE = 0.3659485156893104  # the exact value correctly rounded (mpmath, 40 digits; see below)
SEED_TORCH32 = 0.36594846844673157  # printed by the seed post (torch float32)


class TestSeedExample:
    def test_textbook_reproduces_the_seed_number(self):
        assert float(textbook.cross_entropy(ONEHOT, textbook.softmax(LOGITS))) == SEED_NUMPY

    def test_it_is_what_float64_numpy_gives(self):
        # The formula written out in numpy float64, as in the post.
        z = np.array(LOGITS)
        q = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
        assert float(-np.sum(np.array(ONEHOT) * np.log(q)) / 3) == SEED_NUMPY

    def test_torch_float32_gives_the_seed_torch_number(self):
        assert F.cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS)).item() == SEED_TORCH32

    def test_reference_rounds_the_exact_value_where_the_seed_is_one_ulp_off(self):
        # mpmath at 40 digits: the exact loss is 0.36594851568931039116..., whose nearest
        # float64 is 0.3659485156893104; the seed's 0.36594851568931036 is the float64 one
        # below it (0.55 ulp from the exact value). The reference rounds once; torch float64
        # agrees with both to 1e-15.
        assert float(ce.cross_entropy(LOGITS, LABELS)) == REFERENCE
        assert float(ce.cross_entropy(LOGITS, ONEHOT)) == REFERENCE
        assert np.nextafter(REFERENCE, 0.0) == SEED_NUMPY
        torch64 = F.cross_entropy(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS)).item()
        assert torch64 == pytest.approx(SEED_NUMPY, rel=1e-15)


class TestNaiveFailures:
    def test_softmax_overflows_to_nan_at_logit_1000(self):
        # exp(1000) overflows to inf (exp overflows above 709.78) and inf / inf is NaN.
        with pytest.warns(RuntimeWarning, match="overflow encountered in exp"):
            with np.errstate(invalid="ignore"):
                q = textbook.softmax([1000.0, 0.0])
        assert np.isnan(q[0]) and q[1] == 0.0
        np.testing.assert_array_equal(ce.softmax([1000.0, 0.0]), [1.0, 0.0])  # exp(-1000) = 0 in float64

    def test_cross_entropy_is_nan_after_the_overflow(self):
        # softmax gives [nan, 0], so log warns about log(0) too.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss = textbook.cross_entropy([[1, 0]], textbook.softmax([[1000.0, 0.0]]))
        assert np.isnan(loss)
        assert float(ce.cross_entropy([[1000.0, 0.0]], [0])) == 0.0  # log1p(e^-1000) underflows: exact to float64

    def test_log_of_zero(self):
        # q_y = 0 gives log 0 = -inf, a loss of inf; a zero target times log 0 gives NaN
        # where the convention 0 log 0 = 0 wants 0.
        with pytest.warns(RuntimeWarning, match="divide by zero encountered in log"):
            assert textbook.cross_entropy([[1, 0]], [[0.0, 1.0]]) == np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            assert np.isnan(textbook.cross_entropy([[1, 0]], [[1.0, 0.0]]))

    def test_confident_prediction_rounds_to_zero(self):
        # softmax([40, 0])_0 = 1 - 4.2e-18 rounds to 1, so log gives exactly 0; the
        # reference keeps the value (checked against mpmath in test_accuracy.py).
        assert textbook.cross_entropy([[1, 0]], textbook.softmax([[40.0, 0.0]])) == 0.0
        assert ce.cross_entropy([[40.0, 0.0]], [0]) > 0.0

    def test_agrees_with_the_reference_on_moderate_logits(self):
        z = np.random.default_rng(4).normal(scale=3.0, size=(6, 5))
        p = np.random.default_rng(5).dirichlet(np.ones(5), size=6)
        np.testing.assert_allclose(textbook.softmax(z), ce.softmax(z), rtol=1e-13)
        np.testing.assert_allclose(textbook.cross_entropy(p, textbook.softmax(z)), ce.cross_entropy(z, p), rtol=1e-13)
