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
from .data import CharCorpus as CharCorpus
from .data import bits_per_char as bits_per_char
from .data import load_pydoc_corpus as load_pydoc_corpus
from .data import sample_windows as sample_windows
from .surrogate import IndexEnergy as IndexEnergy
from .surrogate import MeanLTI as MeanLTI
from .surrogate import MixerSignals as MixerSignals
from .surrogate import dropped_fraction as dropped_fraction
from .surrogate import exact_energy as exact_energy
from .surrogate import index_energies as index_energies
from .surrogate import mean_lti as mean_lti
from .surrogate import mixer_inputs as mixer_inputs
from .surrogate import mixer_signals as mixer_signals
from .surrogate import select_keep as select_keep

__all__ = [
    "CharCorpus",
    "CutReport",
    "IndexEnergy",
    "MeanLTI",
    "MixerSignals",
    "bits_per_char",
    "cut_mamba_",
    "dropped_fraction",
    "exact_energy",
    "find_mixers",
    "index_energies",
    "load_pydoc_corpus",
    "mean_lti",
    "mixer_inputs",
    "mixer_signals",
    "normalize_keep",
    "sample_windows",
    "select_keep",
    "state_sizes",
]
