"""Judge any cross-entropy kernel in its own precision.

A kernel written in float32, float16 or bfloat16 (in Triton, CUDA, JAX, MLX or
numpy) cannot match a float64 result exactly; the question is by how many
units in the last place of *its* format it misses the correctly rounded
answer, and on which inputs. This module answers it:

- :func:`cases` yields named adversarial inputs in families (confident and
  certain-wrong predictions, huge logits, ties, -inf, many classes, K-dim
  inputs, every torch option), exactly representable in float32, float16
  and bfloat16;
- :func:`ulp_error` counts the ulps between a result and the reference
  correctly rounded to a format;
- :func:`check` runs a kernel on every case and reports the worst ulp error
  per family, the worst input, and NaN, inf and crash counts;
- :func:`assert_matches_reference` raises with that report, for pytest.

:mod:`crossentropy_ref.testing.strategies` has Hypothesis strategies for the
same kinds of input. Importing this module needs numpy only; bfloat16 needs
``ml_dtypes`` and the strategies need Hypothesis, both in the ``testing``
extra: ``pip install 'crossentropy_ref[testing]'``.
"""

from ._cases import FAMILIES, cases
from ._check import FamilyResult, Report, assert_matches_reference, check
from ._ulp import DTYPES, ulp_error

__all__ = [
    "DTYPES",
    "FAMILIES",
    "FamilyResult",
    "Report",
    "assert_matches_reference",
    "cases",
    "check",
    "ulp_error",
]
