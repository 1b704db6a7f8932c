"""Batched square-root balanced truncation of diagonal systems, in torch.

Glossary (G systems, N complex states each, r kept complex states, m inputs, p outputs)
---------------------------------------------------------------------------------------
===============  ==============  ===============================================
``lam, B, C, D``  (G, N), ...     a :class:`~ctrlreduce_torch.DiagonalLTI`, read
                                  as the standard system ``S = (diag(lam), B, C, D)``
                                  (for a layer: its recurrence, see
                                  :mod:`ctrlreduce_torch._lti` for why)
``z``             (G, 2N)         real coordinates ``[Re x; Im x]``
``Ar, Br, Cr``    real            the real map in ``z``:
                                  ``Ar = [[Re lam, -Im lam], [Im lam, Re lam]]``,
                                  ``Br = [Re B; Im B]``, ``Cr = [Re C, -Im C]``
``per``           1 or 2          HSVs per complex state: 1 for the complex
                                  system, 2 for the real map
``Lc, Lo``        (G, n, n)       Gramian factors, ``P = Lc Lc^H``, ``Q = Lo Lo^H``
``s``             (G, n)          HSVs, ``Lo^H Lc = Z diag(s) Yh``
``V, W``          (G, n, k)       square-root projections, ``W^H V = I_k``
``Ak, Bk, Ck``    k = per r       projected system ``(W^H A V, W^H B, C V)``
``mu``            (G, r)          eigenvalues of the re-diagonalized reduced system
===============  ==============  ===============================================

Square-root balanced truncation (Tombs-Postlethwaite), order ``n -> k``::

    V = Lc Y_k diag(s_k)^{-1/2},   W = Lo Z_k diag(s_k)^{-1/2},
    ||S - S_r||_inf <= 2 * sum_{i > k} s_i      (Enns, Glover; discrete alike)

per system; for several systems (S4D channels act on separate inputs and
outputs) the bound is the maximum over systems (:func:`bound_curve`, built on
the core's :func:`ctrlreduce._reduction.tail_bounds`).  Two systems can be
truncated:

``method="complex"``
    the complex system ``(diag(lam), B, C)``, order ``N -> r``; ``Ak`` is
    complex, ``Ak X = X diag(mu)`` gives ``(mu, X^{-1} Bk, Ck X)``; a state
    with ``Im mu < 0`` is replaced by its conjugate ``(conj mu, conj b,
    conj c)``, which leaves ``Re(c x)`` unchanged.  The bound in the complex
    HSVs bounds the real map's change too: for real inputs the real output
    error is ``Re(e)`` and ``||Re e||_2 <= ||e||_2``.
``method="real"``
    the real map (``Ar, Br, Cr``), order ``2N -> 2r``; the tighter ranking.
    ``Ak`` is real, so its eigenvalues are real or exact conjugate pairs; with
    the ``r`` eigenvalues ``Im mu > 0`` and eigenvectors ``X_+``,
    ``X = [X_+, conj X_+]``::

        lam_new = mu_+,   B_new = (X^{-1} Bk)[:r],   C_new = 2 Ck X_+

    whose conjugate-augmented system is exactly the modal form of
    ``(Ak, Bk, Ck)``.  A real eigenvalue (frequent) has no such complex state
    and the truncation is refused.

In discrete time the truncated system is not itself balanced: its HSVs are
not exactly the kept ones.  They obey Weyl's inequality for Hankel operators,
``|sigma_i(S_r) - sigma_i(S)| <= ||S - S_r||_inf <= error_bound``.

Everything here is pure numerics on tensors (no layer, no optimizer);
:mod:`ctrlreduce_torch.reduce` plans and applies a cut to a layer with it.
A failed guard raises :class:`Refused`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ctrlreduce._reduction import tail_bounds

from ._lti import DiagonalLTI
from .hsv import gramian_factors, pow2

__all__ = [
    "METHODS",
    "Factors",
    "Refused",
    "Truncation",
    "bound_curve",
    "realization_mismatch",
    "square_root_factors",
    "truncate",
    "unscaled",
]

#: The systems that can be truncated (see the module docstring).
METHODS = ("complex", "real")


class Refused(Exception):
    """A guard failed; the message is the report's ``reason``."""


def per_state(method: str) -> int:
    """HSVs per complex state: 2 for the real map, 1 for the complex system."""
    return 2 if method == "real" else 1


@dataclass(frozen=True, eq=False)
class Factors:
    """Gramian factors and the one SVD ``Lo^H Lc = Z diag(s) Yh`` of a system (batched)."""

    Lc: torch.Tensor  # (G, n, n)
    Lo: torch.Tensor  # (G, n, n)
    Z: torch.Tensor  # (G, n, n)
    s: torch.Tensor  # (G, n) float64, descending: the HSVs
    Yh: torch.Tensor  # (G, n, n)


def square_root_factors(lti: DiagonalLTI, method: str) -> Factors:
    """Factors and SVD of the complex system (``"complex"``) or the real map (``"real"``)."""
    Lc, Lo = gramian_factors(lti, augmented=(method == "real"))
    Z, s, Yh = torch.linalg.svd(Lo.mH @ Lc)
    return Factors(Lc, Lo, Z, s.to(torch.float64), Yh)


def bound_curve(hsv: np.ndarray, per: int) -> np.ndarray:
    """``bounds[r] = max_g 2 * sum(hsv[g, per * r:])`` for ``r = 0..N``, shape ``(N + 1,)``.

    ``hsv`` (G, per N), rows descending; the a-priori bound when every system
    keeps ``r`` complex states (``bounds[N] = 0``).  Each row's tail sums are
    the core's :func:`ctrlreduce._reduction.tail_bounds`.
    """
    rows = np.stack([tail_bounds(row) for row in np.asarray(hsv, dtype=np.float64)])
    return rows[:, ::per].max(axis=0)


def _real_system(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lam, Br (G, 2N, m), Cr (G, p, 2N))`` of the real map in ``z = [Re x; Im x]``."""
    lam = lti.lam.to(torch.complex128)
    B = lti.B.to(torch.complex128)
    C = lti.C.to(torch.complex128)
    return lam, torch.cat([B.real, B.imag], dim=1), torch.cat([C.real, -C.imag], dim=2)


def _apply_Ar(lam: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``Ar @ V`` for ``Ar = [[Re lam, -Im lam], [Im lam, Re lam]]``, V (G, 2N, k)."""
    N = lam.shape[1]
    a, b = lam.real[:, :, None], lam.imag[:, :, None]  # (G, N, 1)
    V1, V2 = V[:, :N], V[:, N:]
    return torch.cat([a * V1 - b * V2, b * V1 + a * V2], dim=1)


def _project(lti: DiagonalLTI, k: int, factors: Factors, method: str):  # noqa: ANN202
    """Square-root projection to order ``k``: ``(W^H A V, W^H B, C V)``."""
    s = factors.s
    s_k = s[:, :k]
    # A kept HSV at round-off level: the projection would divide by ~0.
    floor = torch.finfo(torch.float64).eps * s.shape[1] * s[:, :1]
    if bool((s_k <= floor).any()):
        raise Refused(
            f"a kept Hankel singular value is at round-off level (order {k} exceeds the "
            "numerical rank); choose a smaller order"
        )
    Lc, Lo = factors.Lc, factors.Lo
    isq = s_k.rsqrt()[:, None, :].to(Lc.dtype)  # (G, 1, k)
    V = Lc @ (factors.Yh[:, :k].mH * isq)  # (G, n, k)
    W = Lo @ (factors.Z[:, :, :k] * isq)  # (G, n, k), W^H V = I
    if method == "real":
        lam, Br, Cr = _real_system(lti)
        return W.mT @ _apply_Ar(lam, V), W.mT @ Br, Cr @ V
    lam = lti.lam.to(torch.complex128)
    B, C = lti.B.to(torch.complex128), lti.C.to(torch.complex128)
    return W.mH @ (lam[:, :, None] * V), W.mH @ B, C @ V


def _check_eigs(mu: torch.Tensor, margin: float, min_phase: float, real_map: bool) -> None:
    """Stability and phase guards on the reduced eigenvalues ``mu``.

    Always ``|mu| <= 1 - margin`` and ``|arg mu| >= min_phase`` (e.g. a
    phase-zero eigenvalue is not an LRU eigenvalue, whose phase is
    ``exp(theta_log) > 0``).  For the real map (``real_map``) also no real
    eigenvalue (``Im mu == 0`` exactly, as LAPACK returns them, or within
    ``min_phase`` of the real axis): no complex state of ``Re(C x)`` holds one.
    """
    mod = mu.abs()
    if bool((mod > 1.0 - margin).any()):
        raise Refused(
            f"reduced eigenvalue not strictly stable: max |mu| = {float(mod.max()):.17g} "
            f"> 1 - margin = {1.0 - margin:.17g}"
        )
    phase = mu.angle().abs()
    near_real = (mu.imag == 0) | (phase < min_phase) | (phase > math.pi - min_phase)
    if real_map and bool(near_real.any()):
        raise Refused(
            "the reduced real system has a real eigenvalue (phase 0 or pi within "
            f"min_phase = {min_phase:g}); a real mode is not one complex state of Re(C x)"
        )
    if bool((phase < min_phase).any()):
        raise Refused(
            f"a reduced eigenvalue has phase 0 (within min_phase = {min_phase:g}); "
            "not representable in the layer's parametrization"
        )


def _diagonalize_real(Ak, Bk, Ck, r: int, margin: float, min_phase: float):  # noqa: ANN001, ANN202
    """Complex states ``(mu_+, B_new, C_new)`` whose real map is ``(Ak, Bk, Ck)`` (real)."""
    mu, X = torch.linalg.eig(Ak)  # Ak real => eigenvalues real or exact conjugate pairs
    if not bool(torch.isfinite(mu).all() and torch.isfinite(X).all()):
        raise Refused("the reduced system's eigendecomposition is not finite")
    _check_eigs(mu, margin, min_phase, real_map=True)
    pos = mu.imag > 0
    if not bool((pos.sum(dim=1) == r).all()):
        raise Refused("the reduced eigenvalues do not form conjugate pairs")
    idx = torch.argsort((~pos).to(torch.int8), dim=1, stable=True)[:, :r]  # Im > 0 first
    neg = torch.argsort(pos.to(torch.int8), dim=1, stable=True)[:, :r]
    mu_p, mu_m = torch.gather(mu, 1, idx), torch.gather(mu, 1, neg)
    gap = (mu_p[:, :, None] - mu_m[:, None, :].conj()).abs().amin(dim=2)
    # geev returns exact conjugates; allow round-off relative to the spectral radius
    if bool((gap > 1e3 * torch.finfo(torch.float64).eps).any()):
        raise Refused("the reduced eigenvalues do not form conjugate pairs")
    Xp = torch.gather(X, 2, idx[:, None, :].expand(-1, X.shape[1], -1))  # (G, 2r, r)
    Xf = torch.cat([Xp, Xp.conj()], dim=2)  # eigenvector matrix of Ak
    B_new = torch.linalg.solve(Xf, Bk.to(torch.complex128))[:, :r]  # (G, r, m)
    C_new = 2.0 * (Ck.to(torch.complex128) @ Xp)  # (G, p, r)
    return mu_p, B_new, C_new


def _diagonalize_complex(Ak, Bk, Ck, margin: float, min_phase: float):  # noqa: ANN001, ANN202
    """``(mu, B_new, C_new)`` with ``diag(mu) = X^{-1} Ak X``, states with Im < 0 conjugated.

    Conjugating a state, ``(lam, b, c) -> (conj lam, conj b, conj c)``, leaves
    ``Re(c x)`` unchanged, so every phase can be taken in ``[0, pi]``.
    """
    mu, X = torch.linalg.eig(Ak)
    if not bool(torch.isfinite(mu).all() and torch.isfinite(X).all()):
        raise Refused("the reduced system's eigendecomposition is not finite")
    _check_eigs(mu, margin, min_phase, real_map=False)
    B_new = torch.linalg.solve(X, Bk)  # (G, r, m)
    C_new = Ck @ X  # (G, p, r)
    flip = mu.imag < 0  # (G, r)
    mu = torch.where(flip, mu.conj(), mu)
    B_new = torch.where(flip[:, :, None], B_new.conj(), B_new)
    C_new = torch.where(flip[:, None, :], C_new.conj(), C_new)
    return mu, B_new, C_new


@dataclass(frozen=True, eq=False)
class Truncation:
    """A reduced model, re-diagonalized, and the projected system it came from."""

    lti: DiagonalLTI  # re-diagonalized, the input's convention, complex128
    Ak: torch.Tensor  # (G, k, k) projected system, real ("real") or complex ("complex")
    Bk: torch.Tensor  # (G, k, m)
    Ck: torch.Tensor  # (G, p, k)
    method: str


def truncate(
    lti: DiagonalLTI, r: int, factors: Factors, method: str, *, margin: float, min_phase: float
) -> Truncation:
    """Balanced truncation of ``lti`` to ``r`` complex states per system, re-diagonalized.

    Parameters
    ----------
    lti : DiagonalLTI
        Strictly stable; its tensors read as the standard system
        ``(diag(lam), B, C, D)`` (``D`` is kept).
    r : int
        Complex states kept per system, ``1 <= r < N``.
    factors : Factors
        :func:`square_root_factors` of ``lti`` for ``method``.
    method : {"complex", "real"}
    margin, min_phase : float, keyword-only
        Guards on the reduced eigenvalues: ``|mu| <= 1 - margin``,
        ``|arg mu| >= min_phase`` (and no real eigenvalue for ``"real"``).

    Raises
    ------
    Refused
        When a guard fails (the message says which).
    """
    Ak, Bk, Ck = _project(lti, per_state(method) * r, factors, method)
    if method == "real":
        mu, Bn, Cn = _diagonalize_real(Ak, Bk, Ck, r, margin, min_phase)
    else:
        mu, Bn, Cn = _diagonalize_complex(Ak, Bk, Ck, margin, min_phase)
    if not all(bool(torch.isfinite(t).all()) for t in (mu, Bn, Cn)):
        raise Refused("the re-diagonalized reduced system has non-finite entries")
    new = DiagonalLTI(mu, Bn, Cn, lti.D.to(torch.float64))
    return Truncation(new, Ak, Bk, Ck, method)


def unscaled(trunc: Truncation, eB: torch.Tensor, eC: torch.Tensor) -> Truncation:
    """The truncation of the original system from that of the system scaled by
    :func:`ctrlreduce_torch.hsv.scaled_system`: ``B_r`` and ``Bk`` times ``2^eB``,
    ``C_r`` and ``Ck`` times ``2^eC`` (exact powers of two), per system."""
    sB = pow2(eB.to(trunc.Ak.device))[:, None, None]
    sC = pow2(eC.to(trunc.Ak.device))[:, None, None]
    lti = DiagonalLTI(trunc.lti.lam, trunc.lti.B * sB, trunc.lti.C * sC, trunc.lti.D)
    return Truncation(lti, trunc.Ak, trunc.Bk * sB, trunc.Ck * sC, trunc.method)


def _probe_points(mu: torch.Tensor, n_uniform: int = 16, n_peaks: int = 8) -> torch.Tensor:
    """(G, K) points on the unit circle: a uniform grid of angles in [0, pi]
    and the angles of the ``n_peaks`` slowest eigenvalues (resonance peaks)."""
    G = mu.shape[0]
    w = torch.linspace(0.0, math.pi, n_uniform, dtype=torch.float64, device=mu.device)
    k = min(n_peaks, mu.shape[1])
    slow = torch.topk(mu.abs(), k, dim=1).indices
    ang = torch.cat([w.expand(G, -1), torch.gather(mu.angle(), 1, slow)], dim=1)
    return torch.polar(torch.ones_like(ang), ang)


def realization_mismatch(trunc: Truncation, written: DiagonalLTI, n_probes: int = 2) -> float:
    """Relative mismatch between ``written``'s real map and the reduced model.

    ``written`` is the recurrence the layer's new parameters give (what
    :func:`ctrlreduce_torch.convert.prepare_writeback` evaluates), in the
    same convention as ``trunc``; both read as standard systems.  The
    reference is ``D + Fr(z)`` with ``Fr(z) = (f(z) + conj(f(conj z))) / 2``
    and ``f(z) = Ck (z - Ak)^{-1} Bk`` (for real ``(Ak, Bk, Ck)``, ``Fr = f``).
    Compared as ``w^T G(z) v`` for seeded random real probes ``v, w`` at the
    points of :func:`_probe_points`, relative to the largest value of the
    reference: a sketch, cheap, that misses a gross error with probability 0.
    """
    dev = trunc.Ak.device
    c = torch.complex128
    G, p, m = written.D.shape
    gen = torch.Generator(device="cpu").manual_seed(1234)
    v = torch.randn(m, n_probes, generator=gen, dtype=torch.float64).to(dev, c)
    w = torch.randn(p, n_probes, generator=gen, dtype=torch.float64).to(dev, c)
    zs = _probe_points(trunc.lti.lam)  # (G, K)
    K, k = zs.shape[1], trunc.Ak.shape[1]
    eye = torch.eye(k, dtype=c, device=dev)
    Ak = trunc.Ak.to(c)[:, None]  # (G, 1, k, k)
    rhs = (trunc.Bk.to(c) @ v)[:, None].expand(-1, 2 * K, -1, -1)  # (G, 2K, k, q)
    pts = torch.cat([zs, zs.conj()], dim=1)  # (G, 2K)
    f = (w.T @ trunc.Ck.to(c))[:, None] @ torch.linalg.solve(
        pts[:, :, None, None] * eye - Ak, rhs
    )  # (G, 2K, q, q)
    Fr = 0.5 * (f[:, :K] + f[:, K:].conj())
    ref = (w.T @ trunc.lti.D.to(c) @ v)[:, None] + Fr  # (G, K, q, q)
    lam_a, B_a, C_a, D_w = written.augmented()
    wc = w.T @ C_a.to(c)  # (G, q, 2N)
    bv = B_a.to(c) @ v  # (G, 2N, q)
    res = 1.0 / (zs[:, :, None] - lam_a.to(c)[:, None, :])  # (G, K, 2N)
    got = torch.einsum("gqn,gkn,gnr->gkqr", wc, res, bv) + (w.T @ D_w.to(c) @ v)[:, None]
    scale = float(ref.abs().amax())
    diff = float((got - ref).abs().amax())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale
