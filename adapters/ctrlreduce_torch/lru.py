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

Family (:class:`LRUFamily`, registered at the end of this file)
---------------------------------------------------------------
* LTI form: one MIMO system, ``lam (1, N) = exp(log_lam)``, ``B (1, N, H) = gamma B``,
  ``C (1, H, N)``, ``D (1, H, H) = diag(D)``; one state per mode.
* State axes: axis 0 of ``nu_log, theta_log, gamma_log, B_re, B_im``; axis 1 of
  ``C_re, C_im``.
* Write-back (any diagonal system): ``nu_log = log(-log|lam|)``,
  ``theta_log = log(arg lam)`` with the phase in ``(0, 2 pi)`` (phase 0 is not
  representable: ``min_phase = 1e-8``), ``gamma_log = log(sqrt(1 - |lam|^2))``
  (the paper's normalisation) and ``B = B_lti / gamma``; ``C``, ``D`` as they are
  (``D`` must be diagonal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import final

import torch
from torch import nn

from ._checks import check_real, check_size
from ._layer import MAX_STEP, BalancedFamily, MIMOLayer, register_family
from ._lti import DiagonalLTI, mimo_lti, one_mimo_system

__all__ = ["LRU", "LRUFamily", "lru_discrete"]


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
        Initial phases are uniform on ``[0, max_phase]``, ``0 < max_phase <= 1e30``
        (beyond, ``k * phase`` overflows the float32 scan).

    Notes
    -----
    Parameters are created in ``torch.get_default_dtype()``; ``layer.double()``
    runs everything in float64/complex128.  See the module docstring for the
    equations.
    """

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
        max_phase = check_real(max_phase, "max_phase", lo=0.0, hi=MAX_STEP, lo_open=True)
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

    def _discrete(self, dtype: torch.dtype | None = None):
        """``(log_lam (N,), B (N, H), C (H, N), D (H,))`` from the parameters cast to ``dtype``."""
        return lru_discrete(**{n: p.to(dtype) for n, p in self.named_parameters(recurse=False)})

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}"


@final
class LRUFamily(BalancedFamily):
    """The LRU's family: one MIMO system, one state per mode (see the module docstring)."""

    name = "lru"
    states_per_mode = 1
    state_axes = MappingProxyType(
        {"nu_log": 0, "theta_log": 0, "gamma_log": 0, "B_re": 0, "B_im": 0, "C_re": 1, "C_im": 1}
    )
    #: the phase ``exp(theta_log)`` cannot be 0: eigenvalues within this of the
    #: positive real axis are not representable
    min_phase = 1e-8

    def lti(self, layer: nn.Module, params: Mapping[str, torch.Tensor]) -> DiagonalLTI:
        return mimo_lti(*lru_discrete(**params))

    def params_from_lti(self, layer: nn.Module, lti: DiagonalLTI) -> dict[str, torch.Tensor]:
        lam, B, C, d = one_mimo_system(lti, layer.d_model, "an LRU")
        phase = torch.angle(lam)
        phase = torch.where(phase < 0, phase + 2 * math.pi, phase)
        if bool((phase == 0).any()):
            idx = torch.nonzero(phase == 0).flatten().tolist()
            raise ValueError(
                f"the LRU cannot represent eigenvalues with phase 0 (real, >= 0), got some at {idx}"
            )
        r = lam.abs()
        gamma = torch.sqrt(1 - r**2)
        Bn = B / gamma[:, None]
        return {
            "nu_log": torch.log(-torch.log(r)),
            "theta_log": torch.log(phase),
            "gamma_log": torch.log(gamma),
            "B_re": Bn.real,
            "B_im": Bn.imag,
            "C_re": C.real,
            "C_im": C.imag,
            "D": d,
        }


register_family(LRU, LRUFamily())
