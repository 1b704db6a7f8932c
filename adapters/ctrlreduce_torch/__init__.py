"""ctrlreduce_torch: PyTorch adapters for ctrlreduce.

SSM layers (LRU, S5, S4D) with fast scans, their exact LTI form on their
device (and the layer's input-output map as a real ``StateSpace`` that
simulates to the layer), batched Hankel singular values, in-place balanced
truncation planned once per cut (``plan_cut``/``apply_plan``, ``reduce_``),
modal (index) selection (``modal_truncate_``), optimizer and checkpoint
surgery, and the in-training compressor (CompreSSM).  Every layer class is
described to the adapters by a *layer family* in one registry
(``register_family``): a user's own diagonal SSM layer is registered in a
few lines and then handled like the built-in ones.  This package imports the
core; the core never imports it.  The demo (``ctrlreduce-train``) lives in
``ctrlreduce_torch.demo``.
"""

from ._layer import BalancedFamily as BalancedFamily
from ._layer import LayerFamily as LayerFamily
from ._layer import family_of as family_of
from ._layer import layer_class as layer_class
from ._layer import register_family as register_family
from ._layer import registered_families as registered_families
from ._lti import DiagonalLTI as DiagonalLTI
from ._policy import cut_steps as cut_steps
from .compressor import Compressor as Compressor
from .compressor import find_ssm_layers as find_ssm_layers
from .convert import from_lti as from_lti
from .convert import resize_to_state_dict as resize_to_state_dict
from .convert import to_lti as to_lti
from .hsv import hankel_singular_values as hankel_singular_values
from .lru import LRU as LRU
from .modal import modal_scores as modal_scores
from .modal import modal_truncate_ as modal_truncate_
from .optim import rebind_optimizer_ as rebind_optimizer_
from .reduce import CutPlan as CutPlan
from .reduce import ReductionReport as ReductionReport
from .reduce import apply_plan as apply_plan
from .reduce import plan_cut as plan_cut
from .reduce import reduce_ as reduce_
from .s4d import S4D as S4D
from .s5 import S5 as S5

__all__ = [
    "LRU",
    "S4D",
    "S5",
    "BalancedFamily",
    "Compressor",
    "CutPlan",
    "DiagonalLTI",
    "LayerFamily",
    "ReductionReport",
    "apply_plan",
    "cut_steps",
    "family_of",
    "find_ssm_layers",
    "from_lti",
    "hankel_singular_values",
    "layer_class",
    "modal_scores",
    "modal_truncate_",
    "plan_cut",
    "rebind_optimizer_",
    "reduce_",
    "register_family",
    "registered_families",
    "resize_to_state_dict",
    "to_lti",
]
