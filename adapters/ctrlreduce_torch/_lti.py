"""The diagonal LTI form shared by every adapter.

Glossary (G independent systems, N complex states each, m inputs, p outputs)
-------------------------------------------------------------------------
======  =============  =====================================================
``lam``  (G, N)         discrete-time eigenvalues of the recurrence
                         ``x[k] = diag(lam) x[k-1] + B u[k]``, complex
                         (every layer updates its state before reading
                         the output)
``B``    (G, N, m)      complex input matrix (any input normalisation,
                         e.g. the LRU's ``gamma``, already folded in)
``C``    (G, p, N)      complex output matrix; the layer outputs
                         ``y[k] = Re(C x[k]) + D u[k]`` (a factor 2, as in
                         S5/S4D's ``2 Re(C x)``, is folded into ``C``)
``D``    (G, p, m)      real feedthrough
======  =============  =====================================================

The *real* input-output map of ``Re(C x)`` is the conjugate-augmented system
of order ``2N``::

    A_aug = diag(lam, conj(lam)),  B_aug = [B; conj(B)],
    C_aug = [C / 2, conj(C) / 2],  D_aug = D

whose transfer function is real on the real axis.  Its HSVs are what the
adapters report and rank by.

Reading convention.  ``to_statespace`` returns ``S = (diag(lam), B, C, D)``
read as a standard system, ``S(z) = C (z I - diag(lam))^{-1} B + D``.  Because
the layer reads ``x[k]`` after adding ``B u[k]``, its own map is
``D + z (S(z) - D)``.  On the unit circle ``|z| = 1``, so
``||layer - layer_r||_inf = ||S - S_r||_inf`` for any two layers in this form:
the balanced-truncation bound ``2 * sum(tail HSVs of S)`` certifies the change
of the layer's map exactly, and a truncation of ``S`` that keeps ``D`` maps
back into the layer's parametrization.  (The HSVs of ``S`` are those the
CompreSSM reference ranks by; the Hankel operator of the layer's own
realisation ``(lam, B, C lam, D + C B)`` has ``Q`` replaced by
``lam^H Q lam``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import ctrlreduce

from ._checks import seen

__all__ = ["DiagonalLTI", "check_lti"]


@dataclass(frozen=True, eq=False)
class DiagonalLTI:
    """A batch of ``G`` discrete-time diagonal systems, as tensors on one device.

    ``dt`` is 1: one step of the layer's recurrence is one sample.
    """

    lam: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor

    @property
    def n_systems(self) -> int:
        return int(self.lam.shape[0])

    @property
    def n_states(self) -> int:
        """Complex states per system ``N`` (the real map has ``2N``)."""
        return int(self.lam.shape[1])

    @property
    def device(self) -> torch.device:
        return self.lam.device

    def augmented(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(lam_aug (G, 2N), B_aug (G, 2N, m), C_aug (G, p, 2N), D (G, p, m))``."""
        lam = torch.cat([self.lam, self.lam.conj()], dim=1)
        B = torch.cat([self.B, self.B.conj()], dim=1)
        C = torch.cat([self.C, self.C.conj()], dim=2) / 2
        return lam, B, C, self.D

    def to_statespace(self, *, augmented: bool = True) -> list[ctrlreduce.StateSpace]:
        """One ``ctrlreduce.StateSpace`` (``dt=1``) per system, in float64/complex128.

        This is ``S = (diag(lam), B, C, D)`` read as a standard system; the
        layer's map is ``D + z (S(z) - D)`` (see the module docstring), so
        H-infinity errors and balanced-truncation bounds of ``S`` apply to the
        layer unchanged.

        ``augmented=True`` (default) gives the real input-output map (order
        ``2N``, complex diagonal coordinates); ``False`` gives the complex
        system ``(diag(lam), B, C, D)`` whose output is ``C x`` before the real
        part is taken.
        """
        if augmented:
            lam, B, C, D = self.augmented()
        else:
            lam, B, C, D = self.lam, self.B, self.C, self.D
        out = []
        for g in range(self.n_systems):
            out.append(
                ctrlreduce.StateSpace(
                    np.diag(lam[g].detach().cpu().to(torch.complex128).numpy()),
                    B[g].detach().cpu().to(torch.complex128).numpy(),
                    C[g].detach().cpu().to(torch.complex128).numpy(),
                    D[g].detach().cpu().to(torch.float64).numpy(),
                    dt=1.0,
                )
            )
        return out


def check_lti(lti: object, name: str = "lti") -> None:
    """Validate a :class:`DiagonalLTI`: the one set of checks every adapter applies.

    Raises ``TypeError`` (not a ``DiagonalLTI``, a field that is not a
    floating or complex tensor) or ``ValueError`` (shapes ``lam (G, N)``,
    ``B (G, N, m)``, ``C (G, p, N)``, ``D (G, p, m)`` with ``G, N >= 1``;
    fields on different devices; a complex ``D`` with a nonzero imaginary
    part; NaN or infinite entries; an eigenvalue with ``|lam| >= 1``), each
    message naming ``name`` and the field.
    """
    if not isinstance(lti, DiagonalLTI):
        raise TypeError(f"{name} must be a DiagonalLTI, got {seen(lti)}")
    fields = {f: getattr(lti, f) for f in ("lam", "B", "C", "D")}
    for field, t in fields.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}.{field} must be a torch.Tensor, got {seen(t)}")
        if not (t.is_floating_point() or t.is_complex()):
            raise TypeError(f"{name}.{field} must be a floating or complex tensor, got {t.dtype}")
        if t.device != lti.lam.device:
            raise ValueError(
                f"{name}.{field} is on {t.device}, but {name}.lam is on {lti.lam.device}"
            )
    lam, B, C, D = fields.values()
    if lam.dim() != 2 or lam.shape[0] < 1 or lam.shape[1] < 1:
        raise ValueError(
            f"{name}.lam must have shape (G, N) with G, N >= 1, got {tuple(lam.shape)}"
        )
    G, N = lam.shape
    if B.dim() != 3 or B.shape[:2] != (G, N):
        raise ValueError(f"{name}.B must have shape ({G}, {N}, m), got {tuple(B.shape)}")
    if C.dim() != 3 or C.shape[0] != G or C.shape[2] != N:
        raise ValueError(f"{name}.C must have shape ({G}, p, {N}), got {tuple(C.shape)}")
    if tuple(D.shape) != (G, C.shape[1], B.shape[2]):
        raise ValueError(
            f"{name}.D must have shape ({G}, {C.shape[1]}, {B.shape[2]}), got {tuple(D.shape)}"
        )
    if D.is_complex() and bool((D.imag != 0).any()):
        raise ValueError(f"{name}.D must be real, got a complex D with nonzero imaginary part")
    for field, t in fields.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}.{field} has non-finite entries (NaN or inf)")
    rho = float(lam.abs().max())
    if rho >= 1.0:
        raise ValueError(
            f"{name}: every eigenvalue must satisfy |lam| < 1 (strictly stable), "
            f"got max |lam| = {rho!r}"
        )
