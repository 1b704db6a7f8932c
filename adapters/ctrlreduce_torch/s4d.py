"""S4D layer (Gu, Gupta, Goel and Re, 2022, "On the parameterization and initialization
of diagonal state space models").

Glossary (H = ``d_model`` independent SISO channels, M = ``d_state / 2`` complex modes each)
----------------------------------------------------------------------------------------
================  ======  ===========================================================
``log_dt``        (H,)    per-channel step ``dt = exp(log_dt)``
``log_A_real``    (H, M)  ``Re A = -exp(log_A_real) < 0``
``A_imag``        (H, M)  ``Im A``
``B_re/B_im``     (H, M)  continuous complex input vector of each channel
``C_re/C_im``     (H, M)  complex output vector of each channel
``D``             (H,)    real feedthrough
================  ======  ===========================================================

Zero-order hold per channel ``h`` and mode ``n``::

    lam = exp(A dt_h),   Bbar = (lam - 1) / A * B,
    x_h[k] = lam * x_h[k-1] + Bbar u_h[k],   y_h[k] = 2 Re(C_h . x_h[k]) + D_h u_h[k].

The ``d_state`` of the layer is ``2 M`` (the order of each channel's real
map; ``M`` conjugate pairs).  The forward pass is the causal convolution with
the kernel ``K_h[k] = 2 Re(sum_n C_hn Bbar_hn lam_hn^k)`` by FFT; the kernel is
built from blocks ``lam^(cT + t) = lam^(cT) lam^t`` (one batched matrix
product, ``O(H M L)`` work), never from negative powers.

Initialisation (S4D-Lin): ``A_n = -1/2 + i pi n``, ``B = 1``,
``C_re, C_im ~ N(0, 1/2)``, ``D ~ N(0, 1)``,
``log_dt ~ U(log dt_min, log dt_max)``.

Family (:class:`S4DFamily`, registered at the end of this file)
---------------------------------------------------------------
* LTI form: ``H`` SISO systems, ``lam (H, M)``, ``B (H, M, 1) = Bbar``,
  ``C (H, 1, M) = 2C``, ``D (H, 1, 1)``; **two states per mode** (each
  complex mode is a real pair, so ``d_state = 2 M`` and ``d_state`` moves in
  steps of 2).  This file is the only place that says so.
* State axes: axis 1 of ``log_A_real, A_imag, B_re, B_im, C_re, C_im``
  (``log_dt`` and ``D`` are per channel).
* Write-back (any diagonal system of ``H`` channels): each channel keeps its
  ``log_dt``; ``A = log(lam) / dt`` with the branch of ``log`` whose imaginary
  part is nearest that of the old mode (the same mode when the number of modes
  is unchanged, else the old mode with the nearest eigenvalue);
  ``B = Bbar A / (lam - 1)``, ``C = C_lti / 2``.  Real eigenvalues are fine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import final

import torch
from torch import nn

from ._checks import check_size
from ._layer import (
    BalancedFamily,
    StateSizedModule,
    check_step_range,
    family_of,
    register_family,
    sample_log_step,
)
from ._lti import DiagonalLTI, nearest, siso_lti, zoh_log
from ._scan import compute_dtype, diagonal_scan, run_in_compute_dtype, sequential_scan

__all__ = ["S4D", "S4DFamily", "s4d_discrete"]


def s4d_discrete(
    log_dt: torch.Tensor,
    log_A_real: torch.Tensor,
    A_imag: torch.Tensor,
    B_re: torch.Tensor,
    B_im: torch.Tensor,
    C_re: torch.Tensor,
    C_im: torch.Tensor,
    D: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """S4D's per-channel recurrences ``(log_lam (H, M), Bbar (H, M), 2C (H, M), D (H,))``."""
    A = torch.complex(-torch.exp(log_A_real), A_imag)
    z = A * torch.exp(log_dt)[:, None]
    Bbar = torch.complex(B_re, B_im) * torch.expm1(z) / A
    C = 2 * torch.complex(C_re, C_im)
    return z, Bbar, C, D


def s4d_kernel(log_lam: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """Real kernel ``K[h, k] = Re(sum_n CB[h, n] lam[h, n]^k)``, ``k < L``: shape ``(H, L)``."""
    T = max(1, math.isqrt(L))
    nc = -(-L // T)
    rdt = log_lam.real.dtype
    inner = torch.exp(log_lam[..., None] * torch.arange(T, device=CB.device, dtype=rdt))
    outer = CB[..., None] * torch.exp(
        log_lam[..., None] * (T * torch.arange(nc, device=CB.device, dtype=rdt))
    )  # (H, M, nc)
    K = torch.einsum("hmc,hmt->hct", outer, inner).real  # (H, nc, T)
    return K.reshape(K.shape[0], nc * T)[:, :L]


def fft_causal_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """``y[b, k, h] = sum_{j <= k} K[h, k - j] u[b, j, h]`` by a zero-padded real FFT."""
    L = u.shape[1]
    n = 2 * L
    Uf = torch.fft.rfft(u, n=n, dim=1)  # (b, L+1, H)
    Kf = torch.fft.rfft(K.T, n=n, dim=0)  # (L+1, H)
    return torch.fft.irfft(Uf * Kf, n=n, dim=1)[:, :L]


class S4D(StateSizedModule):
    """S4D layer: ``d_model`` independent SISO diagonal SSMs, ``(batch, length, d_model)``.

    Parameters
    ----------
    d_model : int
        Number of channels ``H``.
    d_state : int
        Even; each channel has ``d_state / 2`` complex modes.
    dt_min, dt_max : float, optional
        Range of the initial per-channel steps, ``0 < dt_min <= dt_max``.
    """

    def __init__(
        self, d_model: int, d_state: int, *, dt_min: float = 1e-3, dt_max: float = 1e-1
    ) -> None:
        super().__init__()
        H = check_size(d_model, "d_model")
        family = family_of(self)
        M = family.check_d_state(d_state) // family.states_per_mode
        dt_min, dt_max = check_step_range(dt_min, dt_max)
        self.d_model = H
        f64 = torch.float64
        init = {
            "log_dt": sample_log_step((H,), dt_min, dt_max),
            "log_A_real": torch.full((H, M), math.log(0.5), dtype=f64),
            "A_imag": math.pi * torch.arange(M, dtype=f64).expand(H, M).clone(),
            "B_re": torch.ones(H, M, dtype=f64),
            "B_im": torch.zeros(H, M, dtype=f64),
            "C_re": torch.randn(H, M, dtype=f64) * math.sqrt(0.5),
            "C_im": torch.randn(H, M, dtype=f64) * math.sqrt(0.5),
            "D": torch.randn(H, dtype=f64),
        }
        self._init_parameters(init)

    def _discrete(self, dtype: torch.dtype | None = None):
        """``(log_lam (H, M), Bbar (H, M), 2C (H, M), D (H,))``, parameters cast to ``dtype``."""
        return s4d_discrete(**{n: p.to(dtype) for n, p in self.named_parameters(recurse=False)})

    def kernel(self, length: int) -> torch.Tensor:
        """The convolution kernel ``K (d_model, length)`` (without ``D``)."""
        L = check_size(length, "length")
        log_lam, Bbar, C, _ = self._discrete(compute_dtype(self.D.dtype))
        return s4d_kernel(log_lam, C * Bbar, L).to(self.D.dtype)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``y_h = 2 Re(C_h x_h) + D_h u_h`` for ``u (batch, length, d_model)``, by FFT.

        The kernel and the FFT run in float32 or float64 whatever the
        parameter and input dtypes, with autocast off; the output is in the
        autocast dtype inside ``torch.autocast``, else in the parameters'
        dtype (see :func:`ctrlreduce_torch._scan.precision`).
        """
        return run_in_compute_dtype(u, self.d_model, self.D.dtype, self._fft_forward)

    def _fft_forward(self, u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if u.numel() == 0:  # (MKL's FFT refuses a batch of 0)
            return u * self.D.to(dtype)
        log_lam, Bbar, C, D = self._discrete(dtype)
        K = s4d_kernel(log_lam, C * Bbar, u.shape[1])
        return fft_causal_conv(u, K) + u * D

    def _forward_by(self, scan, u: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """:meth:`forward` with ``scan`` (a diagonal-recurrence solver) over all ``H M`` modes."""

        def run(u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            if u.numel() == 0:
                return u * self.D.to(dtype)
            log_lam, Bbar, C, D = self._discrete(dtype)
            X = (u.permute(2, 0, 1)[:, None] * Bbar[..., None, None]).flatten(0, 1)  # (HM, b, L)
            x = scan(log_lam.reshape(-1), X).unflatten(0, Bbar.shape)  # (H, M, b, L)
            return (x * C[..., None, None]).real.sum(1).permute(1, 2, 0) + u * D

        return run_in_compute_dtype(u, self.d_model, self.D.dtype, run)

    def _forward_scan(self, u: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` by the chunked diagonal scan (for comparison with the FFT)."""
        return self._forward_by(diagonal_scan, u)

    def forward_sequential(self, u: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward` by a Python loop over time (test oracle; slow)."""
        return self._forward_by(sequential_scan, u)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}"


@final
class S4DFamily(BalancedFamily):
    """S4D's family: one SISO system per channel, two states per mode (module docstring)."""

    name = "s4d"
    states_per_mode = 2
    state_axes = MappingProxyType(
        {"log_A_real": 1, "A_imag": 1, "B_re": 1, "B_im": 1, "C_re": 1, "C_im": 1}
    )

    def lti(self, layer: nn.Module, params: Mapping[str, torch.Tensor]) -> DiagonalLTI:
        return siso_lti(*s4d_discrete(**params))

    def params_from_lti(self, layer: nn.Module, lti: DiagonalLTI) -> dict[str, torch.Tensor]:
        lam, B, C, D = lti.lam, lti.B, lti.C, lti.D
        H = layer.d_model
        G, M = lam.shape
        if G != H:
            raise ValueError(
                f"an S4D layer is {H} SISO systems: lti.lam must have shape ({H}, M), "
                f"got {tuple(lam.shape)}"
            )
        if B.shape != (H, M, 1):
            raise ValueError(f"lti.B must have shape ({H}, {M}, 1) for S4D, got {tuple(B.shape)}")
        if C.shape != (H, 1, M):
            raise ValueError(f"lti.C must have shape ({H}, 1, {M}) for S4D, got {tuple(C.shape)}")
        f64 = torch.float64
        with torch.no_grad():
            z_old, *_ = layer._discrete(f64)
            dt = torch.exp(layer.log_dt.detach().to(f64))
        if M == z_old.shape[1]:
            z_ref = z_old
        else:
            z_ref = torch.gather(z_old, 1, nearest(lam, torch.exp(z_old)))
        z = zoh_log(lam, z_ref)
        A = z / dt[:, None]
        Bc = B[..., 0] * A / torch.expm1(z)
        C = C[:, 0, :]
        return {
            "log_A_real": torch.log(-A.real),
            "A_imag": A.imag,
            "B_re": Bc.real,
            "B_im": Bc.imag,
            "C_re": C.real / 2,
            "C_im": C.imag / 2,
            "D": D[:, 0, 0],
        }


register_family(S4D, S4DFamily())
