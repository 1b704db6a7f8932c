"""S5 layer (Smith, Warrington and Linderman, 2023, "Simplified state space layers").

Glossary (H = ``d_model`` inputs/outputs, P = ``d_state`` complex states)
------------------------------------------------------------------------
=================  ======  ==========================================================
``Lambda_re_log``  (P,)    ``Re Lambda = -exp(Lambda_re_log) < 0`` (stable by construction)
``Lambda_im``      (P,)    ``Im Lambda``
``log_step``       (P,)    per-state time step ``step = exp(log_step)``
``B_re/B_im``      (P, H)  continuous complex input matrix ``B``
``C_re/C_im``      (H, P)  complex output matrix ``C``
``D``              (H,)    real diagonal feedthrough
=================  ======  ==========================================================

Discretisation (elementwise per state)::

    zoh:       lam = exp(Lambda step),                     Bbar = (lam - 1) / Lambda * B
    bilinear:  lam = (1 + Lambda step/2) / (1 - Lambda step/2),
               Bbar = step / (1 - Lambda step/2) * B

Recurrence (state updated before the output is read)::

    x[k] = lam * x[k-1] + Bbar u[k],      y[k] = 2 Re(C x[k]) + D * u[k].

Initialisation: S4D-Lin eigenvalues ``Lambda_n = -1/2 + i pi n`` (``n = 0..P-1``)
instead of the paper's diagonalised HiPPO-LegS (same imaginary spacing, no
low-rank correction); ``log_step ~ U(log dt_min, log dt_max)``;
``B_re, B_im ~ N(0, 1/(2H))``, ``C_re, C_im ~ N(0, 1/(2P))``, ``D ~ N(0, 1)``.

Family (:class:`S5Family`, registered at the end of this file)
--------------------------------------------------------------
* LTI form: one MIMO system, ``lam (1, P)``, ``B (1, P, H) = Bbar``,
  ``C (1, H, P) = 2C``, ``D (1, H, H) = diag(D)``; one state per mode.
* State axes: axis 0 of ``Lambda_re_log, Lambda_im, log_step, B_re, B_im``;
  axis 1 of ``C_re, C_im``.
* Write-back (any diagonal system): the step is kept, each state's own when
  the number of states is unchanged, else that of the old state whose
  eigenvalue is nearest.  Zero-order hold: ``Lambda = log(lam) / step`` with
  the branch of ``log`` whose imaginary part is nearest that same old state's
  ``Im(Lambda step)`` (a round trip restores ``Lambda_im`` exactly); bilinear:
  ``Lambda step = 2 (lam - 1) / (lam + 1)``.  ``B = Bbar / gain``,
  ``C = C_lti / 2``; ``D`` must be diagonal.  Real eigenvalues are fine
  (``Im Lambda = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import final

import torch
from torch import nn

from ._checks import check_choice, check_size
from ._layer import (
    BalancedFamily,
    MIMOLayer,
    check_step_range,
    register_family,
    sample_log_step,
)
from ._lti import DiagonalLTI, mimo_lti, nearest, one_mimo_system, zoh_log

__all__ = ["S5", "S5Family", "s5_discrete"]

DISCRETIZATIONS = ("zoh", "bilinear")


def s5_discrete(
    discretization: str,
    Lambda_re_log: torch.Tensor,
    Lambda_im: torch.Tensor,
    log_step: torch.Tensor,
    B_re: torch.Tensor,
    B_im: torch.Tensor,
    C_re: torch.Tensor,
    C_im: torch.Tensor,
    D: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S5's recurrence ``(log_lam (P,), Bbar (P, H), 2C (H, P), D (H,))``."""
    Lambda = torch.complex(-torch.exp(Lambda_re_log), Lambda_im)
    step = torch.exp(log_step)
    z = Lambda * step
    if discretization == "zoh":
        log_lam = z
        gain = torch.expm1(z) / Lambda  # (lam - 1) / Lambda, accurate for small steps
    else:
        denom = 1 - z / 2
        log_lam = torch.log((1 + z / 2) / denom)
        gain = step / denom
    B = torch.complex(B_re, B_im) * gain[:, None]
    C = 2 * torch.complex(C_re, C_im)
    return log_lam, B, C, D


class S5(MIMOLayer):
    """S5 layer (MIMO diagonal SSM), input and output ``(batch, length, d_model)``.

    Parameters
    ----------
    d_model : int
        Input and output width ``H``.
    d_state : int
        Number of complex states ``P`` (the real map has order ``2P``).
    discretization : {"zoh", "bilinear"}, optional
    dt_min, dt_max : float, optional
        Range of the initial per-state steps, ``0 < dt_min <= dt_max``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ) -> None:
        super().__init__()
        H = check_size(d_model, "d_model")
        P = check_size(d_state, "d_state")
        check_choice(discretization, "discretization", DISCRETIZATIONS)
        dt_min, dt_max = check_step_range(dt_min, dt_max)
        self.d_model = H
        self.discretization = discretization
        f64 = torch.float64
        init = {
            "Lambda_re_log": torch.full((P,), math.log(0.5), dtype=f64),
            "Lambda_im": math.pi * torch.arange(P, dtype=f64),
            "log_step": sample_log_step((P,), dt_min, dt_max),
            "B_re": torch.randn(P, H, dtype=f64) / math.sqrt(2 * H),
            "B_im": torch.randn(P, H, dtype=f64) / math.sqrt(2 * H),
            "C_re": torch.randn(H, P, dtype=f64) / math.sqrt(2 * P),
            "C_im": torch.randn(H, P, dtype=f64) / math.sqrt(2 * P),
            "D": torch.randn(H, dtype=f64),
        }
        self._init_parameters(init)

    def _discrete(self, dtype: torch.dtype | None = None):
        """``(log_lam (P,), Bbar (P, H), 2C (H, P), D (H,))``, parameters cast to ``dtype``."""
        params = {n: p.to(dtype) for n, p in self.named_parameters(recurse=False)}
        return s5_discrete(self.discretization, **params)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, "
            f"discretization={self.discretization!r}"
        )


@final
class S5Family(BalancedFamily):
    """S5's family: one MIMO system, one state per mode (see the module docstring)."""

    name = "s5"
    states_per_mode = 1
    state_axes = MappingProxyType(
        {
            "Lambda_re_log": 0,
            "Lambda_im": 0,
            "log_step": 0,
            "B_re": 0,
            "B_im": 0,
            "C_re": 1,
            "C_im": 1,
        }
    )

    def lti(self, layer: nn.Module, params: Mapping[str, torch.Tensor]) -> DiagonalLTI:
        return mimo_lti(*s5_discrete(layer.discretization, **params))

    def params_from_lti(self, layer: nn.Module, lti: DiagonalLTI) -> dict[str, torch.Tensor]:
        lam, B, C, d = one_mimo_system(lti, layer.d_model, "an S5 layer")
        f64 = torch.float64
        with torch.no_grad():
            z_old, *_ = layer._discrete(f64)
            step_old = torch.exp(layer.log_step.detach().to(f64))
        ref = torch.arange(lam.shape[0], device=lam.device)
        if lam.shape[0] != z_old.shape[0]:
            ref = nearest(lam, torch.exp(z_old))
        step = step_old[ref]
        if layer.discretization == "zoh":
            z = zoh_log(lam, z_old[ref])
            gain = torch.expm1(z) / (z / step)
        else:
            z = 2 * (lam - 1) / (lam + 1)
            gain = step / (1 - z / 2)
        Lambda = z / step
        Bc = B / gain[:, None]
        return {
            "Lambda_re_log": torch.log(-Lambda.real),
            "Lambda_im": Lambda.imag,
            "log_step": torch.log(step),
            "B_re": Bc.real,
            "B_im": Bc.imag,
            "C_re": C.real / 2,
            "C_im": C.imag / 2,
            "D": d,
        }


register_family(S5, S5Family())
