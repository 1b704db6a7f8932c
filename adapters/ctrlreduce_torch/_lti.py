"""The diagonal LTI form of a layer, and the systems exported from it.

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
``s``    (G, N)         state of the standard form, ``s[k] = x[k-1]``
``z``    (G, 2N)        real coordinates ``z = [Re s; Im s]``
======  =============  =====================================================

A :class:`DiagonalLTI` holds the *recurrence* ``(lam, B, C, D)`` exactly as
the layer runs it (what :func:`ctrlreduce_torch.to_lti` returns and
:func:`ctrlreduce_torch.from_lti` writes).  Because the layer reads ``x[k]``
after adding ``B u[k]``, its input-output map in standard form
(``s[k+1] = A s[k] + B' u[k]``, ``y[k] = C' s[k] + D' u[k]``) is, with
``s[k] = x[k-1]``::

    s[k+1] = diag(lam) s[k] + B u[k]
    y[k]   = Re(C diag(lam) s[k]) + (D + Re(C B)) u[k]

i.e. ``(lam, B, C lam, D + Re(C B))`` (:func:`standard_form`), with transfer
function ``G(z) = D + z S(z) - z D`` where ``S(z) = C (z I - diag(lam))^{-1} B + D``
is the recurrence read as a standard system.

Exports (one ``ctrlreduce.StateSpace`` per system, ``dt = 1``, float64 /
complex128):

:meth:`DiagonalLTI.to_statespace`
    the layer's map, **real**: order ``2N`` in ``z = [Re s; Im s]``::

        A = [[Re L, -Im L], [Im L, Re L]],  L = diag(lam)   (2x2 rotation-scaling
                                                            blocks after interleaving)
        B' = [Re B; Im B],   C' = [Re(C L), -Im(C L)],   D' = D + Re(C B)

    ``scipy.signal.dlsim`` and python-control simulate it to ``layer(x)``
    (both are real-only; ``dlsim`` silently drops the imaginary part of a
    complex realization).
:meth:`DiagonalLTI.complex_statespace`
    the same map in complex diagonal coordinates: the conjugate-augmented
    ``(diag(lam, conj lam), [B; conj B], [C L, conj(C L)] / 2, D + Re(C B))``
    (same transfer function), or with ``augmented=False`` the complex system
    ``(L, B, C L, D + C B)`` whose output's real part is the layer's.
:meth:`DiagonalLTI.recurrence_statespace`
    the recurrence ``S = (L, B, C, D)`` read as a standard system
    (conjugate-augmented by default).  This is what
    :func:`ctrlreduce_torch.reduce_` truncates, because (i) a truncation of
    ``S`` keeps the layer's *diagonal* feedthrough ``D`` (the standard
    form's ``D + Re(C B)`` is a full matrix no layer can hold), and
    (ii) ``G - G_r = z (S - S_r)`` with ``|z| = 1`` on the unit circle, so
    ``||G - G_r||_inf = ||S - S_r||_inf``: the bound ``2 sum(tail HSVs of S)``
    certifies the change of the layer's map exactly.  Its Hankel operator
    maps inputs up to and including time ``k`` to outputs from time ``k``
    on; that of the map (:meth:`to_statespace`) is the strict past-to-future
    one, whose HSVs :func:`ctrlreduce_torch.hankel_singular_values` reports
    by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

import ctrlreduce

from ._checks import seen

__all__ = [
    "DiagonalLTI",
    "check_lti",
    "diagonal_of",
    "layer_form",
    "mimo_lti",
    "nearest",
    "one_mimo_system",
    "siso_lti",
    "standard_form",
    "zoh_log",
]

_F64 = torch.float64
_C128 = torch.complex128


def _np(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return t.detach().cpu().to(dtype).numpy()


@dataclass(frozen=True, eq=False)
class DiagonalLTI:
    """A batch of ``G`` discrete-time diagonal recurrences, as tensors on one device.

    ``dt`` is 1: one step of the layer's recurrence is one sample.  See the
    module docstring for the convention and the exported systems.
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
        """The recurrence conjugate-augmented: ``(lam_aug (G, 2N), B_aug (G, 2N, m),
        C_aug (G, p, 2N), D (G, p, m))`` with ``C_aug = [C, conj C] / 2``."""
        lam = torch.cat([self.lam, self.lam.conj()], dim=1)
        B = torch.cat([self.B, self.B.conj()], dim=1)
        C = torch.cat([self.C, self.C.conj()], dim=2) / 2
        return lam, B, C, self.D

    def to_statespace(self) -> list[ctrlreduce.StateSpace]:
        """The layer's exact input-output map, real, one ``StateSpace`` per system.

        Order ``2N`` in ``z = [Re s; Im s]``, ``s[k] = x[k-1]`` (module
        docstring): ``A = [[Re L, -Im L], [Im L, Re L]]``, ``B' = [Re B; Im B]``,
        ``C' = [Re(C L), -Im(C L)]``, ``D' = D + Re(C B)``, all float64.
        ``scipy.signal.dlsim((A, B', C', D', 1), u)`` reproduces ``layer(u)``
        (per channel for S4D, whose systems are its channels).
        """
        std = standard_form(self)
        lam, B, C, D = std.lam, std.B, std.C, std.D
        out = []
        for g in range(self.n_systems):
            a, b = np.diag(_np(lam[g].real, _F64)), np.diag(_np(lam[g].imag, _F64))
            A = np.block([[a, -b], [b, a]])
            Bg, Cg = _np(B[g], _C128), _np(C[g], _C128)
            Br = np.vstack([Bg.real, Bg.imag])
            Cr = np.hstack([Cg.real, -Cg.imag])
            out.append(ctrlreduce.StateSpace(A, Br, Cr, _np(D[g], _F64), dt=1.0))
        return out

    def complex_statespace(self, *, augmented: bool = True) -> list[ctrlreduce.StateSpace]:
        """The layer's map in complex diagonal coordinates, one ``StateSpace`` per system.

        ``augmented=True`` (default): ``(diag(lam, conj lam), [B; conj B],
        [C L, conj(C L)] / 2, D + Re(C B))``, order ``2N``, the same transfer
        function as :meth:`to_statespace`.  ``False``: the complex system
        ``(L, B, C L, D + C B)`` of order ``N``, whose (complex) output has
        the layer's output as its real part.
        """
        std = standard_form(self)
        if augmented:
            return _statespaces(*std.augmented())
        D = self.D.to(_C128) + self.C.to(_C128) @ self.B.to(_C128)
        return _statespaces(std.lam, std.B, std.C, D)

    def recurrence_statespace(self, *, augmented: bool = True) -> list[ctrlreduce.StateSpace]:
        """The recurrence ``S = (L, B, C, D)`` read as a standard system, one per system.

        Not the layer's map (that is ``D + z (S(z) - D)``, see
        :meth:`to_statespace`); this is the system :func:`ctrlreduce_torch.reduce_`
        truncates and bounds, because its truncation keeps the layer's
        diagonal ``D`` and ``||G - G_r||_inf = ||S - S_r||_inf`` (module
        docstring).  ``augmented=True`` (default): conjugate-augmented, order
        ``2N``, the real map of ``Re(C x)``; ``False``: the complex system
        ``(diag(lam), B, C, D)`` of order ``N``.
        """
        if augmented:
            return _statespaces(*self.augmented())
        return _statespaces(self.lam, self.B, self.C, self.D)


def _statespaces(lam, B, C, D) -> list[ctrlreduce.StateSpace]:  # noqa: ANN001
    """One complex-diagonal ``StateSpace`` (``dt=1``) per system of the batched tensors."""
    dd = _C128 if D.is_complex() else _F64
    return [
        ctrlreduce.StateSpace(
            np.diag(_np(lam[g], _C128)), _np(B[g], _C128), _np(C[g], _C128), _np(D[g], dd), dt=1.0
        )
        for g in range(lam.shape[0])
    ]


def _cast(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    D = lti.D.real if lti.D.is_complex() else lti.D
    return lti.lam.to(_C128), lti.B.to(_C128), lti.C.to(_C128), D.to(_F64)


def standard_form(lti: DiagonalLTI) -> DiagonalLTI:
    """The layer's map as a standard realization: ``(lam, B, C diag(lam), D + Re(C B))``.

    With ``s[k] = x[k-1]`` the recurrence ``x[k] = lam x[k-1] + B u[k]``,
    ``y[k] = Re(C x[k]) + D u[k]`` is ``s[k+1] = lam s[k] + B u[k]``,
    ``y[k] = Re(C lam s[k]) + (D + Re(C B)) u[k]`` (complex128/float64; the
    output is the real part of ``C' s``).  Its transfer function is
    ``G(z) = D + z (S(z) - D)`` with ``S`` that of ``(lam, B, C, D)`` read as
    a standard system.
    """
    lam, B, C, D = _cast(lti)
    return DiagonalLTI(lam, B, C * lam[:, None, :], D + (C @ B).real)


def layer_form(lti: DiagonalLTI) -> DiagonalLTI:
    """Inverse of :func:`standard_form`: ``(lam, B, C diag(lam)^{-1}, D - Re(C lam^{-1} B))``.

    Requires ``lam != 0`` (``ValueError`` otherwise).
    """
    lam, B, C, D = _cast(lti)
    if bool((lam == 0).any()):
        raise ValueError("layer_form needs every eigenvalue nonzero, got lam == 0")
    Cl = C / lam[:, None, :]
    return DiagonalLTI(lam, B, Cl, D - (Cl @ B).real)


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


# ----------------------------------------------------------------------------
# helpers for the layer families: packing, and pieces of the inverse maps
# ----------------------------------------------------------------------------


def mimo_lti(log_lam, B, C, D) -> DiagonalLTI:  # noqa: ANN001
    """One MIMO system: ``log_lam (N,)``, ``B (N, H)``, ``C (H, N)``, diagonal ``D (H,)``
    packed as ``(1, N)``, ``(1, N, H)``, ``(1, H, N)``, ``(1, H, H)``."""
    return DiagonalLTI(
        lam=torch.exp(log_lam)[None], B=B[None], C=C[None], D=torch.diag_embed(D)[None]
    )


def siso_lti(log_lam, B, C, D) -> DiagonalLTI:  # noqa: ANN001
    """``H`` SISO systems: ``log_lam, B, C (H, M)``, ``D (H,)`` packed as ``(H, M)``,
    ``(H, M, 1)``, ``(H, 1, M)``, ``(H, 1, 1)``."""
    return DiagonalLTI(lam=torch.exp(log_lam), B=B[..., None], C=C[:, None, :], D=D[:, None, None])


def diagonal_of(D: torch.Tensor, what: str) -> torch.Tensor:
    """The diagonal of a square ``D (p, p)``, which must be diagonal up to round-off.

    Off-diagonal entries up to ``64 eps max|D|`` (round-off of the algebra that
    produced ``D``) are dropped; larger ones are not representable.
    """
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(D.shape)}")
    d = torch.diagonal(D)
    off = (D - torch.diag_embed(d)).abs().max() if D.numel() else D.new_zeros(())
    tol = 64 * torch.finfo(_F64).eps * float(D.abs().max()) if D.numel() else 0.0
    if float(off) > tol:
        raise ValueError(
            f"{what} must be diagonal (the layer's D is a vector), got off-diagonal "
            f"entries up to {float(off):.3g}"
        )
    return d


def nearest(new_lam: torch.Tensor, old_lam: torch.Tensor) -> torch.Tensor:
    """Index of the nearest old eigenvalue for each new one, along the last axis."""
    return (new_lam[..., :, None] - old_lam[..., None, :]).abs().argmin(dim=-1)


def zoh_log(lam: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """``log(lam) + 2 pi i k`` with ``k`` putting the imaginary part nearest ``Im z_ref``."""
    z = torch.log(lam)
    k = torch.nan_to_num(torch.round((z_ref.imag - z.imag) / (2 * math.pi)), nan=0.0)
    return torch.complex(z.real, z.imag + 2 * math.pi * k)


def one_mimo_system(
    lti: DiagonalLTI, d_model: int, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lam (N,), B (N, H), C (H, N), diag(D) (H,))`` of a one-system ``lti``, checked."""
    lam, B, C, D = lti.lam, lti.B, lti.C, lti.D
    if lam.shape[0] != 1:
        raise ValueError(
            f"{what} is one system: lti.lam must have shape (1, N), got {tuple(lam.shape)}"
        )
    if B.shape[2] != d_model or C.shape[1] != d_model:
        raise ValueError(
            f"lti must have {d_model} inputs and outputs, got B {tuple(B.shape)}, "
            f"C {tuple(C.shape)}"
        )
    return lam[0], B[0], C[0], diagonal_of(D[0], "lti.D[0]")
