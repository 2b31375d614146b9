"""crossentropy_ref: a float64 reference for torch.nn.functional's cross-entropy family.

Every function mirrors its torch counterpart option for option, computes in
float64 whatever the input dtype, and keeps full relative precision where
torch rounds to 0. :mod:`crossentropy_ref.textbook` holds the naive formulas
for comparison.
"""

from importlib.metadata import PackageNotFoundError, version

from . import textbook
from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits
from ._config import configure
from ._encoding import one_hot
from ._linear import linear_cross_entropy, linear_cross_entropy_grad
from ._losses import cross_entropy, cross_entropy_grad, nll_loss
from ._softmax import log_softmax, logsumexp, softmax

try:
    __version__ = version("crossentropy_ref")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "configure",
    "cross_entropy",
    "cross_entropy_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "one_hot",
    "softmax",
    "textbook",
]
