"""Which poles are stable: decided on balanced eigenvalues, each with its own round-off.

A computed eigenvalue ``lam_i`` of ``A`` is exact for a matrix within
``eps ||A||`` of ``A``, and moves by about ``kappa_i eps ||A||`` under such a
perturbation, where ``kappa_i = ||x_i|| ||y_i|| / |y_i^H x_i|`` is its
condition number (``x_i``, ``y_i`` right and left eigenvectors).  A pole
closer to the stability boundary than that cannot be told apart from a
marginal one, and a Gramian built on it would be round-off.  So pole ``i``
counts as **stable** when::

    Re(lam_i) < -(alpha + delta_i)          (continuous time)
    |lam_i|   <  1 - (alpha + delta_i)      (discrete time)

    delta_i = 100 eps ||A_bal||_F max(n, kappa_i)

with ``alpha >= 0`` the user's margin and ``A_bal`` the balanced matrix
(diagonal similarity by powers of two, LAPACK ``gebal``), on which the
eigenvalues are computed.  Balancing makes the test invariant under any
diagonal scaling of the states: ``[[-1, 1e13], [0, -2]]`` is balanced to
``||A_bal||_F ~ 3`` and both poles are clearly stable, whereas a margin taken
from ``||A|| = 1e13`` would call them marginal.

``100 n eps ||A||`` is a generous multiple of the backward error of the
Schur decomposition; ``100 kappa_i eps ||A||`` is where a Gramian built on
the pole would have less than two correct digits (its relative error is about
``kappa_i eps ||A|| / distance``).  ``kappa_i`` is computed (from the
triangular Schur factor, ``O(n^2)`` per eigenvalue) only for the poles within
``1e8 delta_0`` of the boundary (``delta_0 = 100 n eps ||A_bal||_F``); the
others are stable whatever their condition below ``1e8 n``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._schur import SchurForm, schur_form
from ._validation import EPS, unstable_poles_error

__all__ = ["balance", "pole_margins", "require_stable", "unstable_mask", "unstable_poles"]

_FACTOR = 100.0  # delta_i = _FACTOR * eps * ||A_bal||_F * max(n, kappa_i)
_KAPPA_RANGE = 1e8  # poles farther than _KAPPA_RANGE * delta_0 need no kappa


def balance(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(D^{-1} A D, d)`` with ``D = diag(d)``, ``d`` powers of two (LAPACK ``gebal``).

    No permutation, so ``D`` is a pure scaling and the similarity is exact.
    """
    if A.shape[0] == 1:
        return A.copy(), np.ones(1)
    Ab, (d, _) = scipy.linalg.matrix_balance(A, permute=False, separate=True)
    return np.asarray(Ab, dtype=A.dtype), np.asarray(d, dtype=float)


def _condition(T: np.ndarray, i: int, smin: float) -> float:
    """Condition number of the eigenvalue ``T[i, i]`` of an upper-triangular ``T``.

    Right eigenvector ``x = [x1; 1; 0]`` with ``(T11 - lam) x1 = -T[:i, i]``,
    left eigenvector ``y = [0; 1; y2]`` with ``y2^H (T22 - lam) = -T[i, i+1:]``;
    ``y^H x = 1``, so ``kappa = ||x|| ||y||``.  Diagonal differences below
    ``smin`` are raised to ``smin`` (as LAPACK ``trevc``), which gives a huge
    ``kappa`` for a (nearly) defective eigenvalue instead of a division by zero.
    """
    lam = T[i, i]
    n = T.shape[0]
    nx = ny = 1.0
    with np.errstate(all="ignore"):
        if i > 0:
            M = T[:i, :i] - lam * np.eye(i)
            d = np.diagonal(M).copy()
            small = np.abs(d) < smin
            M[np.arange(i)[small], np.arange(i)[small]] = smin
            x = scipy.linalg.solve_triangular(M, -T[:i, i], check_finite=False)
            nx = float(np.sqrt(1.0 + np.vdot(x, x).real))
        if i < n - 1:
            k = n - i - 1
            M = T[i + 1 :, i + 1 :] - lam * np.eye(k)
            d = np.diagonal(M).copy()
            small = np.abs(d) < smin
            M[np.arange(k)[small], np.arange(k)[small]] = smin
            y = scipy.linalg.solve_triangular(M, -T[i, i + 1 :], trans="T", check_finite=False)
            ny = float(np.sqrt(1.0 + np.vdot(y, y).real))
    kappa = nx * ny
    return kappa if np.isfinite(kappa) else np.inf


def _distance(lam: np.ndarray, discrete: bool, alpha: float) -> np.ndarray:
    """Signed distance into the stable region past the margin ``alpha``."""
    if discrete:
        return (1.0 - alpha) - np.abs(lam)
    return -lam.real - alpha


def pole_margins(schur: SchurForm, discrete: bool, alpha: float = 0.0) -> np.ndarray:
    """Round-off margins ``delta_i`` of the eigenvalues of ``T`` (module docstring)."""
    lam = schur.eigenvalues()
    n = lam.size
    delta0 = _FACTOR * n * EPS * max(schur.frobenius(), np.finfo(float).tiny)
    margins = np.full(n, delta0)
    if schur.diagonal:
        return margins  # normal: kappa = 1
    near = np.flatnonzero(_distance(lam, discrete, alpha) < _KAPPA_RANGE * delta0)
    smin = EPS * max(schur.frobenius(), np.finfo(float).tiny)
    for i in near:
        margins[i] = max(delta0, delta0 / n * _condition(schur.T, int(i), smin))
    return margins


def unstable_mask(schur: SchurForm, discrete: bool, alpha: float = 0.0) -> np.ndarray:
    """Boolean mask over ``schur.eigenvalues()``: unstable, marginal, or within the margins."""
    lam = schur.eigenvalues()
    bad = ~(_distance(lam, discrete, alpha) > pole_margins(schur, discrete, alpha))
    if schur.pairs.size:  # the two members of a real matrix's complex pair go together
        both = bad[schur.pairs - 1] | bad[schur.pairs]
        bad[schur.pairs - 1] = both
        bad[schur.pairs] = both
    return bad


def require_stable(schur: SchurForm, discrete: bool, what: str) -> None:
    """Raise ``ValueError`` naming the offending poles unless every pole is stable."""
    bad = unstable_mask(schur, discrete)
    if np.any(bad):
        raise unstable_poles_error(schur.eigenvalues()[bad], discrete, what)


def unstable_poles(A: np.ndarray, discrete: bool, alpha: float = 0.0) -> np.ndarray:
    """The unstable or marginal eigenvalues of a validated ``A``, balanced first."""
    schur = schur_form(balance(A)[0])
    return schur.eigenvalues()[unstable_mask(schur, discrete, alpha)]
