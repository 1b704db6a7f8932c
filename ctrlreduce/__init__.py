"""ctrlreduce: balanced truncation and certified model-order reduction.

The core depends on NumPy and SciPy only (slycot optionally); it never
imports PyTorch.  Modules, each importing only those above it:
``_validation`` -> ``_schur`` -> ``_stability`` -> ``_system`` -> ``_scaling``
-> ``_hammarling`` -> ``_lyapunov`` -> ``_split`` -> ``_gramians`` ->
``_norms`` -> ``_reduction`` -> ``_balance`` -> ``_minreal`` -> ``_io`` ->
``plot``, ``cli``.
"""

from ._balance import balanced_realization as balanced_realization
from ._balance import balanced_truncation as balanced_truncation
from ._gramians import gramians as gramians
from ._gramians import hankel_singular_values as hankel_singular_values
from ._io import load as load
from ._io import save as save
from ._lyapunov import lyapunov_cholesky as lyapunov_cholesky
from ._lyapunov import solve_lyapunov as solve_lyapunov
from ._minreal import minimal_realization as minimal_realization
from ._norms import h2_norm as h2_norm
from ._norms import hinf_norm as hinf_norm
from ._norms import reduction_error as reduction_error
from ._reduction import Certificate as Certificate
from ._reduction import Reduction as Reduction
from ._reduction import tail_bound as tail_bound
from ._split import Split as Split
from ._split import stable_error_system as stable_error_system
from ._split import stable_unstable_split as stable_unstable_split
from ._system import StateSpace as StateSpace

__version__ = "0.1.0"

__all__ = [
    "Certificate",
    "Reduction",
    "Split",
    "StateSpace",
    "balanced_realization",
    "balanced_truncation",
    "gramians",
    "h2_norm",
    "hinf_norm",
    "hankel_singular_values",
    "load",
    "lyapunov_cholesky",
    "minimal_realization",
    "reduction_error",
    "save",
    "solve_lyapunov",
    "stable_error_system",
    "stable_unstable_split",
    "tail_bound",
]
