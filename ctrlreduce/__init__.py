"""ctrlreduce: balanced truncation and certified model-order reduction.

The core depends on NumPy and SciPy only (slycot optionally); it never
imports PyTorch.
"""

from ._balance import Certificate as Certificate
from ._balance import Reduction as Reduction
from ._balance import balanced_realization as balanced_realization
from ._balance import balanced_truncation as balanced_truncation
from ._balance import tail_bound as tail_bound
from ._gramians import gramians as gramians
from ._gramians import hankel_singular_values as hankel_singular_values
from ._io import load as load
from ._io import save as save
from ._lyapunov import lyapunov_cholesky as lyapunov_cholesky
from ._lyapunov import solve_lyapunov as solve_lyapunov
from ._minreal import minimal_realization as minimal_realization
from ._norms import h2_norm as h2_norm
from ._norms import hinf_norm as hinf_norm
from ._system import StateSpace as StateSpace
from ._unstable import stable_unstable_split as stable_unstable_split

__version__ = "0.1.0"

__all__ = [
    "Certificate",
    "Reduction",
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
    "save",
    "solve_lyapunov",
    "stable_unstable_split",
    "tail_bound",
]
