"""The numeric engine of crossentropy_ref (being assembled; see issue 16)."""

from ._deep import grad_deep, log_softmax_deep, logsumexp_deep, loss_deep, softmax_deep
from ._driver import count, run, tier_counts, view3
from ._eft import two_prod, two_sum
from ._family import log_softmax_block, logsumexp_block, softmax_block
from ._grad import grad
from ._reduce import loss
