"""Which poles are stable: decided on the balanced matrix, against its own round-off.

A computed Schur form of ``A`` is exact for some ``A + E`` with
``||E|| <= r = 100 n eps ||A_bal||_F``, a generous multiple of the backward
error of the QR algorithm, where ``A_bal`` is the balanced matrix (diagonal
similarity by powers of two, LAPACK ``gebal``) on which it is computed.  A
pole that some such ``A + E`` moves onto the stability boundary cannot be told
apart from a marginal one, and a Gramian built on it would be round-off.  So
pole ``lam_i`` counts as **unstable or marginal** when::

    sigma_min(s_i I - A_bal) <= r

where ``s_i`` is the boundary point nearest to ``lam_i``: ``-alpha + i Im(lam_i)``
(continuous time) or ``(1 - alpha) lam_i / |lam_i|`` (discrete time), with
``alpha >= 0`` the user's margin.  ``sigma_min(s I - A) <= r`` says exactly
that ``s`` is an eigenvalue of some ``A + E`` with ``||E||_2 <= r`` (the
``r``-pseudospectrum reaches the boundary).  For a normal matrix this is
``dist(lam_i, boundary) <= r``; for a non-normal one it also catches poles
whose eigenvalue condition number makes them move by more than their
distance, and it stays sensible for clusters and nearly defective blocks,
where first-order condition numbers blow up.

Balancing makes the test invariant under diagonal scaling of the states:
``[[-1, 1e13], [0, -2]]`` is balanced to ``||A_bal||_F ~ 3`` and both poles
are clearly stable, whereas a margin taken from ``||A|| = 1e13`` would call
them marginal.  ``sigma_min`` is estimated by inverse iteration with the
triangular Schur factor (``O(n^2)`` per pole), only for poles closer than
``1e6 r`` to the boundary; farther poles are stable unless ``A`` amplifies
perturbations by more than ``1e6``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._schur import SchurForm, schur_form
from ._validation import EPS, unstable_poles_error

__all__ = ["balance", "round_off_radius", "require_stable", "unstable_mask", "unstable_poles"]

_FACTOR = 100.0  # r = _FACTOR * n * eps * ||A_bal||_F
_RANGE = 1e6  # poles farther than _RANGE * r from the boundary are not examined
_ITERATIONS = 6  # inverse-iteration steps for sigma_min


def balance(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(D^{-1} A D, d)`` with ``D = diag(d)``, ``d`` powers of two (LAPACK ``gebal``).

    No permutation, so ``D`` is a pure scaling and the similarity is exact.
    """
    if A.shape[0] == 1:
        return A.copy(), np.ones(1)
    Ab, (d, _) = scipy.linalg.matrix_balance(A, permute=False, separate=True)
    return np.asarray(Ab, dtype=A.dtype), np.asarray(d, dtype=float)


def round_off_radius(schur: SchurForm) -> float:
    """``r = 100 n eps ||A_bal||_F``: the backward error allowed to the Schur form."""
    return _FACTOR * schur.n * EPS * max(schur.frobenius(), np.finfo(float).tiny)


def _sigma_min(T: np.ndarray, s: complex) -> float:
    """An estimate of ``sigma_min(s I - T)`` for upper-triangular ``T``, by inverse iteration.

    ``||(s I - T)^{-1}||_2`` by a few power steps on ``M^{-H} M^{-1}`` with two
    triangular solves each; a singular ``M`` gives 0.  The estimate of the
    norm is a lower bound that converges fast when ``sigma_min`` is small, the
    case that matters.
    """
    n = T.shape[0]
    M = -T.astype(np.complex128)
    M[np.diag_indices(n)] += s
    if np.any(np.diagonal(M) == 0):
        return 0.0
    v = np.ones(n, dtype=np.complex128) / np.sqrt(n)
    growth = 0.0
    with np.errstate(all="ignore"):
        for _ in range(_ITERATIONS):
            w = scipy.linalg.solve_triangular(M, v, check_finite=False)
            v = scipy.linalg.solve_triangular(M, w, trans="C", check_finite=False)
            nw, nv = float(np.linalg.norm(w)), float(np.linalg.norm(v))
            if not (np.isfinite(nv) and nv > 0):
                return 0.0
            growth = max(growth, nw)
            v = v / nv
    return 1.0 / growth if growth > 0 else np.inf


def _distance(lam: np.ndarray, discrete: bool, alpha: float) -> np.ndarray:
    """Signed distance into the stable region past the margin ``alpha``."""
    if discrete:
        return (1.0 - alpha) - np.abs(lam)
    return -lam.real - alpha


def _boundary_point(lam: complex, discrete: bool, alpha: float) -> complex:
    """The point of the (shifted) stability boundary nearest to ``lam``."""
    if discrete:
        unit = lam / abs(lam) if lam != 0 else 1.0
        return (1.0 - alpha) * unit
    return complex(-alpha, lam.imag)


def unstable_mask(schur: SchurForm, discrete: bool, alpha: float = 0.0) -> np.ndarray:
    """Boolean mask over ``schur.eigenvalues()``: unstable, marginal, or within round-off.

    Both members of a real matrix's complex pair get the same answer.
    """
    lam = schur.eigenvalues()
    r = round_off_radius(schur)
    dist = _distance(lam, discrete, alpha)
    bad = ~(dist > r)
    if not schur.diagonal:  # diagonal A is normal: the distance decides
        seen: dict[complex, bool] = {}
        for i in np.flatnonzero(~bad & (dist < _RANGE * r)):
            s = _boundary_point(complex(lam[i]), discrete, alpha)
            key = complex(s.real, abs(s.imag)) if schur.real_basis else s
            if key not in seen:
                seen[key] = _sigma_min(schur.T, s) <= r
            bad[i] = seen[key]
    if schur.pairs.size:
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
