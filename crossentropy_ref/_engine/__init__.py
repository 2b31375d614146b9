"""The numeric engine of crossentropy_ref: one place for every function's arithmetic.

The public functions (`crossentropy_ref._losses`, `_softmax`, `_binary`)
check their inputs once and call into this package. Every result comes out
of the same three tiers, and a result moves to the next tier only when a
*derived* error bound (not a tuned tolerance) fails to prove it within
4 ulp of the exact value:

1. **First tier** (`_rows`, `_family`, `_loss`, `_grad`, `_binary`): one pass
   per block of logits. Per position, the exact shift ``z_j - m``
   (TwoSum), ``exp`` as a pair within 2**-58 (`_pexp`; 2**-56 in the compiled
   kernels, `_jit`), the sum ``s`` by a pairwise TwoSum tree, and
   ``log1p(s)`` to about 2**-95; beside each, a bound on its error. The
   results of products and sums of non-negative terms (softmax, log_softmax,
   the loss of non-negative weights, the index-target gradient) are proven
   within 4 ulp by these bounds whatever the input; only results that can
   cancel are checked one by one: logsumexp near 0 (log-probabilities), the
   gradient of soft targets and smoothing (a double-double tier,
   `_softgrad`, whose bound holds while the two terms agree in fewer than
   about 44 bits), losses of mixed-sign weights, and terms in the subnormal
   range lifted by a large weight.
2. **Deep tier** (`_deep`): the positions that failed, recomputed together
   in triple-double (`_td`, about 2**-150), with binary exponents carried
   apart so that ``e**-740`` keeps its relative precision under a weight of
   1e300. Its cost per logit is fixed (a few hundred numpy operations).
3. **Decimal tier** (`_deepest`): only results whose terms agree in more
   than about 95 bits, which no realistic input produces (the tests count
   them), and the exact zeros of the gradient, recognised in rationals.

Reductions (`_reduce`) add the positions' values exactly (`_exactsum`, a
long accumulator) and round once, so ``'sum'`` and ``'mean'`` do not
depend on the order of blocks, threads or chunks. Weights enter scaled by
powers of two (frexp), so no product over- or underflows on the way.

Blocks (`_blocks`) tile the positions so that temporaries stay small, and
run on a thread pool. With numba installed (the ``fast`` extra), the first
tier's loops run as compiled kernels (`_jit`); ``CROSSENTROPY_REF_ENGINE=numpy``
switches them off. `tier_counts` counts the positions each tier computed,
for the tests of the cost bound.
"""

from ._deep import grad_deep, log_softmax_deep, logsumexp_deep, loss_deep, softmax_deep
from ._driver import count, run, tier_counts, view3
from ._eft import two_prod, two_sum
from ._family import log_softmax_block, logsumexp_block, softmax_block
from ._grad import grad
from ._reduce import loss

__all__ = [
    "count",
    "grad",
    "grad_deep",
    "log_softmax_block",
    "log_softmax_deep",
    "logsumexp_block",
    "logsumexp_deep",
    "loss",
    "loss_deep",
    "run",
    "softmax_block",
    "softmax_deep",
    "tier_counts",
    "two_prod",
    "two_sum",
    "view3",
]
