"""State reduction of Hugging Face ``transformers`` Mamba models (optional extra ``mamba``).

* :mod:`.cut` -- the exact index cut :func:`cut_mamba_` (parameters, config and
  optimizer state);
* :mod:`.surrogate` -- calibration signals of each mixer, the mean LTI
  surrogate and its Hankel singular values, and index energies that rank the
  states for a cut (:func:`index_energies`, :func:`select_keep`);
* :mod:`.data` -- a character-level language-modelling task built from
  CPython's ``pydoc_data.topics`` (no download).

Needs ``transformers>=5`` (``pip install 'ctrlreduce[mamba]'``); ``mambapy``
is optional and only makes training on CPU faster (``use_mambapy=True``).
"""

from .cut import CutReport as CutReport
from .cut import cut_mamba_ as cut_mamba_
from .cut import find_mixers as find_mixers
from .cut import normalize_keep as normalize_keep
from .cut import state_sizes as state_sizes

__all__ = [
    "CutReport",
    "cut_mamba_",
    "find_mixers",
    "normalize_keep",
    "state_sizes",
]
