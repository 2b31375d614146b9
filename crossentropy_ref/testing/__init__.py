"""Judge any cross-entropy kernel, and its gradient, in its own precision.

A kernel written in float32, float16 or bfloat16 (in Triton, CUDA, JAX, MLX or
numpy) cannot match a float64 result exactly. Two questions remain: by how
many units in the last place of *its* format does it miss the correctly
rounded answer, and on which inputs (the forward error); and is that error as
small as its precision allows on those inputs, or is part of it avoidable
(stability). This module answers both:

- :func:`cases` yields named adversarial inputs in families (confident and
  certain-wrong predictions, huge logits, ties, -inf, many classes, K-dim
  inputs, every torch option, shapes that straddle tile edges), exactly
  representable in float32, float16 and bfloat16;
- :func:`ulp_error` counts the ulps between a result and the reference
  correctly rounded to a format;
- :func:`condition_number` is the condition number in the logits of the
  loss, or of each entry of its gradient;
- :func:`check` runs a kernel (numpy, torch or JAX; the loss, a returned
  gradient, or autograd's) on every case and reports per family the worst
  ulp error and the worst error in units of u (1 + kappa), with the worst
  input for each, wrong special values by kind, and crashes;
- :func:`assert_matches_reference` raises with that report, for pytest.

:func:`linear_cases` and :func:`check_linear` do the same for a fused LM-head
kernel (the signature of ``linear_cross_entropy``), by the forward error.

:mod:`crossentropy_ref.testing.strategies` has Hypothesis strategies for the
same kinds of input. Importing this module needs numpy only; bfloat16 needs
``ml_dtypes`` and the strategies need Hypothesis, both in the ``testing``
extra: ``pip install 'crossentropy_ref[testing]'``. Torch and JAX are
imported only for kernels that take their arrays.
"""

from ._cases import FAMILIES, cases
from ._check import STABILITY_C, FamilyResult, Report, assert_matches_reference, check
from ._kappa import condition_number
from ._linear import LINEAR_FAMILIES, LinearFamilyResult, check_linear, linear_cases
from ._ulp import DTYPES, ulp_error

__all__ = [
    "DTYPES",
    "FAMILIES",
    "STABILITY_C",
    "FamilyResult",
    "LINEAR_FAMILIES",
    "LinearFamilyResult",
    "Report",
    "assert_matches_reference",
    "cases",
    "check",
    "check_linear",
    "condition_number",
    "linear_cases",
    "ulp_error",
]
