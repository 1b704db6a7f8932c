"""Linear Recurrent Unit (Orvieto et al., 2023, "Resurrecting recurrent neural networks").

Glossary (H = ``d_model`` inputs/outputs, N = ``d_state`` complex states)
------------------------------------------------------------------------
=============  ========  ==============================================================
``nu_log``     (N,)      ``lam = exp(-exp(nu_log) + i exp(theta_log))``
``theta_log``  (N,)      phase of ``lam`` is ``exp(theta_log)``
``gamma_log``  (N,)      input normalisation ``gamma = exp(gamma_log)``
``B_re/B_im``  (N, H)    complex input matrix ``B``
``C_re/C_im``  (H, N)    complex output matrix ``C``
``D``          (H,)      real diagonal feedthrough
=============  ========  ==============================================================

Recurrence (state updated before the output is read)::

    x[k] = lam * x[k-1] + (gamma[:, None] * B) u[k],   y[k] = Re(C x[k]) + D * u[k].

Ring initialisation (``u1, u2 ~ U(0, 1)``): ``|lam|^2`` uniform on
``[r_min^2, r_max^2]``, i.e. ``nu_log = log(-log(u1 (r_max^2 - r_min^2) + r_min^2) / 2)``;
phase ``max_phase * u2``, i.e. ``theta_log = log(max_phase u2)``;
``gamma_log = log(sqrt(1 - |lam|^2))``; ``B_re, B_im ~ N(0, 1/(2H))``,
``C_re, C_im ~ N(0, 1/N)``, ``D ~ N(0, 1)``.  ``u1, u2`` are kept away from 0
by the smallest normal float64 so that every parameter is finite.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_real, check_size
from ._scan import MIMOLayer

__all__ = ["LRU"]


def lru_discrete(
    nu_log: torch.Tensor,
    theta_log: torch.Tensor,
    gamma_log: torch.Tensor,
    B_re: torch.Tensor,
    B_im: torch.Tensor,
    C_re: torch.Tensor,
    C_im: torch.Tensor,
    D: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The LRU's recurrence ``(log_lam (N,), gamma*B (N, H), C (H, N), D (H,))``."""
    log_lam = torch.complex(-torch.exp(nu_log), torch.exp(theta_log))
    B = torch.complex(B_re, B_im) * torch.exp(gamma_log)[:, None]
    C = torch.complex(C_re, C_im)
    return log_lam, B, C, D


class LRU(MIMOLayer):
    """Linear Recurrent Unit layer, input and output ``(batch, length, d_model)``.

    Parameters
    ----------
    d_model : int
        Input and output width ``H``.
    d_state : int
        Number of complex states ``N`` (the real map has order ``2N``).
    r_min, r_max : float, optional
        Ring of the initial eigenvalue moduli, ``0 <= r_min < r_max <= 1``.
    max_phase : float, optional
        Initial phases are uniform on ``[0, max_phase]``, ``max_phase > 0``.

    Notes
    -----
    Parameters are created in ``torch.get_default_dtype()``; ``layer.double()``
    runs everything in float64/complex128.  See the module docstring for the
    equations.
    """

    _param_names = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        H = check_size(d_model, "d_model")
        N = check_size(d_state, "d_state")
        r_min = check_real(r_min, "r_min", lo=0.0, hi=1.0, hi_open=True)
        r_max = check_real(r_max, "r_max", lo=0.0, hi=1.0, lo_open=True)
        if not r_min < r_max:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        max_phase = check_real(max_phase, "max_phase", lo=0.0, lo_open=True)
        self.d_model = H
        tiny = torch.finfo(torch.float64).tiny
        u1 = torch.rand(N, dtype=torch.float64).clamp(min=tiny)
        u2 = torch.rand(N, dtype=torch.float64).clamp(min=tiny)
        # log |lam|^2 = 2 log r_max + log(u1 (1 - q^2) + q^2), q = r_min / r_max: no
        # underflow of r^2 for tiny radii (r_max = 1e-320 is a valid, if odd, choice)
        q2 = (r_min / r_max) ** 2
        log_mod2 = 2 * math.log(r_max) + torch.log(u1 * (1 - q2) + q2)
        nu_log = torch.log(-0.5 * log_mod2)
        theta_log = math.log(max_phase) + torch.log(u2)
        gamma_log = 0.5 * torch.log(-torch.expm1(log_mod2))  # log sqrt(1 - |lam|^2)
        init = {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": torch.randn(N, H, dtype=torch.float64) / math.sqrt(2 * H),
            "B_im": torch.randn(N, H, dtype=torch.float64) / math.sqrt(2 * H),
            "C_re": torch.randn(H, N, dtype=torch.float64) / math.sqrt(N),
            "C_im": torch.randn(H, N, dtype=torch.float64) / math.sqrt(N),
            "D": torch.randn(H, dtype=torch.float64),
        }
        self._init_parameters(init)

    @property
    def d_state(self) -> int:
        """Current number of complex states ``N``."""
        return int(self.nu_log.shape[0])

    def _state_shapes(self, d_state: int) -> dict[str, tuple[int, ...]]:
        N, H = d_state, self.d_model
        return {
            "nu_log": (N,),
            "theta_log": (N,),
            "gamma_log": (N,),
            "B_re": (N, H),
            "B_im": (N, H),
            "C_re": (H, N),
            "C_im": (H, N),
        }

    def _discrete(self, dtype: torch.dtype | None = None):
        """``(log_lam (N,), B (N, H), C (H, N), D (H,))`` from the parameters cast to ``dtype``."""
        return lru_discrete(*(getattr(self, n).to(dtype) for n in self._param_names))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}"
