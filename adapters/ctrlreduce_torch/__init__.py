"""ctrlreduce_torch: PyTorch adapters for ctrlreduce.

SSM layers (LRU, S5, S4D) with fast scans, their exact LTI form on their
device, batched Hankel singular values, in-place balanced truncation with
optimizer and checkpoint surgery, and the in-training compressor
(CompreSSM).  This package imports the core; the core never imports it.
"""

from ._lti import DiagonalLTI as DiagonalLTI
from .compressor import Compressor as Compressor
from .compressor import find_ssm_layers as find_ssm_layers
from .convert import from_lti as from_lti
from .convert import resize_to_state_dict as resize_to_state_dict
from .convert import to_lti as to_lti
from .hsv import hankel_singular_values as hankel_singular_values
from .lru import LRU as LRU
from .optim import rebind_optimizer_ as rebind_optimizer_
from .reduce import ReductionReport as ReductionReport
from .reduce import reduce_ as reduce_
from .s4d import S4D as S4D
from .s5 import S5 as S5

__all__ = [
    "LRU",
    "S4D",
    "S5",
    "Compressor",
    "DiagonalLTI",
    "ReductionReport",
    "find_ssm_layers",
    "from_lti",
    "hankel_singular_values",
    "rebind_optimizer_",
    "reduce_",
    "resize_to_state_dict",
    "to_lti",
]
