"""Controllability and observability Gramians, and Hankel singular values.

Conventions
-----------
Continuous time (``dt is None``)::

    A P + P A^H + B B^H = 0          (controllability Gramian P)
    A^H Q + Q A + C^H C = 0          (observability Gramian Q)

Discrete time (``dt > 0``)::

    A P A^H - P + B B^H = 0
    A^H Q A - Q + C^H C = 0

Factors satisfy ``P = Lc Lc^H`` and ``Q = Lo Lo^H``.  The Hankel singular
values are the singular values of ``Lo^H Lc``, i.e. ``sqrt(eig(P Q))``
computed without ever forming ``P Q`` (the square-root method).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._lyapunov import _require_stable_eigs, _schur, checked_factor, realify_factor
from ._system import StateSpace

__all__ = ["gramians", "hankel_singular_values", "gramian_factors"]


def _check_system(sys: object, name: str = "sys") -> StateSpace:
    if not isinstance(sys, StateSpace):
        raise TypeError(
            f"{name} must be a ctrlreduce.StateSpace, got {type(sys).__name__}; "
            "build one with StateSpace(A, B, C, D, dt) or StateSpace.from_control(...)"
        )
    return sys


def _closed_form(lam: np.ndarray, M: np.ndarray, discrete: bool) -> np.ndarray:
    """Cauchy-like closed form for ``diag(lam)``: ``X_ij = -M_ij / (lam_i + conj(lam_j))``.

    Discrete: ``X_ij = M_ij / (1 - lam_i conj(lam_j))``.  ``O(n^2)`` given ``M``.
    """
    if discrete:
        return M / (1.0 - lam[:, None] * lam[None, :].conj())
    return -M / (lam[:, None] + lam[None, :].conj())


def gramian_factors(
    sys: StateSpace, what: str = "gramian_factors"
) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``(Lc, Lo)`` of both Gramians from one Schur decomposition.

    For diagonal ``A`` no decomposition is needed (``O(n^2 (m + p))``).
    The observability factor reuses the Schur form of ``A``: with
    ``A = U T U^H`` and ``J`` the reversal permutation,
    ``A^H = (U J) (J T^H J) (U J)^H`` and ``J T^H J`` is upper triangular.
    Real systems get real factors.  Stability is checked on the Schur form
    (no separate eigenvalue computation); ``what`` names the caller in the
    error.
    """
    discrete = sys.dt is not None
    A, B, C = sys.A, sys.B, sys.C
    if sys.is_diagonal():
        lam = np.diag(A).astype(np.complex128)
        _require_stable_eigs(lam, A, discrete, what)
        Lc = checked_factor(lam, B, discrete, what)
        Lo = checked_factor(lam.conj(), C.conj().T, discrete, what)
    else:
        T, U = _schur(A)
        _require_stable_eigs(np.diag(T), A, discrete, what)
        Lc = U @ checked_factor(T, U.conj().T @ B, discrete, what)
        Uf = U[:, ::-1]
        Tf = T.conj().T[::-1, ::-1]
        Lo = Uf @ checked_factor(Tf, Uf.conj().T @ C.conj().T, discrete, what)
    if not sys.is_complex:
        return realify_factor(Lc), realify_factor(Lo)
    return Lc, Lo


def gramians(sys: StateSpace, *, factor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Controllability and observability Gramians of a stable system.

    Parameters
    ----------
    sys : StateSpace
        Stable (continuous or discrete, real or complex).
    factor : bool, keyword-only
        ``False``: return ``(P, Q)``.  ``True``: return factors ``(Lc, Lo)``
        with ``P = Lc Lc^H``, ``Q = Lo Lo^H``, each of shape ``(n, n)``,
        computed directly by Hammarling's method.

    Returns
    -------
    (P, Q) or (Lc, Lo) : tuple of ndarray, each (n, n)
        float64 for real systems, complex128 for complex ones.

    Notes
    -----
    See the module docstring for the equations.  When ``A`` is diagonal
    (the form of LRU, S5 and S4D layers) the dense Gramians use the closed
    form ``P_ij = -(B B^H)_ij / (lam_i + conj(lam_j))`` (continuous) or
    ``(B B^H)_ij / (1 - lam_i conj(lam_j))`` (discrete), ``O(n^2 (m + p))``,
    and the factors the diagonal Hammarling recursion, also ``O(n^2 (m + p))``.
    """
    sys = _check_system(sys)
    if factor:
        return gramian_factors(sys, "gramians")
    discrete = sys.dt is not None
    if sys.is_diagonal():
        lam = np.diag(sys.A).astype(np.complex128)
        _require_stable_eigs(lam, sys.A, discrete, "gramians")
        P = _closed_form(lam, sys.B @ sys.B.conj().T, discrete)
        Q = _closed_form(lam.conj(), sys.C.conj().T @ sys.C, discrete)
        if not sys.is_complex:
            P, Q = P.real, Q.real
        return P, Q
    from ._lyapunov import solve_lyapunov

    P = solve_lyapunov(sys.A, sys.B @ sys.B.conj().T, dt=sys.dt)
    Q = solve_lyapunov(sys.A.conj().T, sys.C.conj().T @ sys.C, dt=sys.dt)
    return P, Q


def hankel_singular_values(sys: StateSpace, *, unstable: str = "raise", alpha: float = 0.0):
    """Hankel singular values, descending, by the square-root method.

    Parameters
    ----------
    sys : StateSpace
    unstable : {"raise", "keep"}, keyword-only
        ``"raise"`` (default): an unstable or marginal pole is a ``ValueError``
        naming it.  ``"keep"``: the system is split additively into stable and
        unstable parts; one ``inf`` is reported per unstable mode, ahead of the
        stable part's HSVs.
    alpha : float, keyword-only
        Stability margin used with ``unstable="keep"``.

    Returns
    -------
    hsv : ndarray, shape (n,), float64
        ``sigma_1 >= ... >= sigma_n >= 0``; never NaN, never complex.

    Notes
    -----
    ``hsv = svd(Lo^H Lc)`` with ``P = Lc Lc^H``, ``Q = Lo Lo^H`` computed by
    Hammarling's method.  Unlike ``sqrt(eig(P Q))`` this cannot produce
    negative or complex values, and small HSVs keep relative accuracy.
    """
    sys = _check_system(sys)
    if unstable not in ("raise", "keep"):
        raise ValueError(f"unstable must be 'raise' or 'keep', got {unstable!r}")
    if unstable == "keep":
        from ._unstable import stable_unstable_split

        split = stable_unstable_split(sys, alpha=alpha)
        hs = hankel_singular_values(split.stable) if split.stable is not None else np.empty(0)
        return np.concatenate([np.full(split.n_unstable, np.inf), hs])
    Lc, Lo = gramian_factors(sys, "hankel_singular_values")
    return _hsv_from_factors(Lc, Lo)


def _hsv_from_factors(Lc: np.ndarray, Lo: np.ndarray) -> np.ndarray:
    s = scipy.linalg.svd(Lo.conj().T @ Lc, compute_uv=False, check_finite=False)
    return np.asarray(s, dtype=np.float64)
