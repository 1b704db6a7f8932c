"""Lyapunov equations: dense solutions and Cholesky factors.

Sign conventions, used everywhere in ctrlreduce:

.. math::

    \\text{continuous:}\\quad A X + X A^H + Q = 0, \\qquad
    \\text{discrete:}\\quad A X A^H - X + Q = 0.

Glossary
--------
==========  ================================================================
``T, U``    complex Schur form ``A = U T U^H``, ``T`` upper triangular
``AP``      ``T`` in packed upper storage (column-major), so that the
            leading ``k x k`` block is the prefix ``AP[: k (k + 1) / 2]``
``L``       a factor of the solution, ``X = L L^H``
==========  ================================================================

All work is ``O(n^3)``: one Schur decomposition, then ``n`` triangular solves
of growing size done by BLAS (``ztpsv``) without copying the matrix.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.linalg
from scipy.linalg.blas import ztpmv, ztpsv

from ._validation import as_matrix, check_dt, stability_margin, unstable_poles_error

__all__ = ["solve_lyapunov", "lyapunov_cholesky"]


# --------------------------------------------------------------------- helpers
def _packed_upper(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pack upper-triangular ``T`` column by column; return ``(AP, diag_index)``."""
    n = T.shape[0]
    r, c = np.triu_indices(n)
    order = np.lexsort((r, c))  # column-major: by column, then row
    AP = np.ascontiguousarray(T[r[order], c[order]], dtype=np.complex128)
    j = np.arange(n)
    return AP, j * (j + 1) // 2 + j


def _schur(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complex Schur form ``A = U T U^H`` (real Schur + rsf2csf for real ``A``)."""
    if np.iscomplexobj(A):
        return scipy.linalg.schur(A, output="complex", check_finite=False)
    T, U = scipy.linalg.schur(A, output="real", check_finite=False)
    T, U = scipy.linalg.rsf2csf(T, U, check_finite=False)
    return T.astype(np.complex128), U.astype(np.complex128)


def _check_pair(A: Any, M: Any, name: str, *, rows: bool) -> tuple[np.ndarray, np.ndarray]:
    A = as_matrix(A, "A")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if A.shape[0] == 0:
        raise ValueError("A must have at least one row, got shape (0, 0)")
    M = as_matrix(M, name)
    n = A.shape[0]
    if rows and M.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows to fit A {A.shape}, got shape {M.shape}")
    return A, M


def _require_stable_eigs(
    eigs: np.ndarray, A: np.ndarray, discrete: bool, what: str = "the Lyapunov solver"
) -> None:
    """Raise naming the poles unless every eigenvalue is clear of the boundary."""
    margin = stability_margin(A)
    bad = eigs[np.abs(eigs) >= 1 - margin] if discrete else eigs[eigs.real >= -margin]
    if bad.size:
        raise unstable_poles_error(bad, discrete, what)


# ------------------------------------------------------------- Hammarling core

def ldexp2(M: np.ndarray, e: int) -> np.ndarray:
    """``M * 2**e`` for a complex array, exact (no rounding) unless it over- or underflows."""
    return np.ldexp(M.real, e) + 1j * np.ldexp(M.imag, e)


def _pivot(b: np.ndarray, denom: float) -> tuple[float, np.ndarray | None]:
    """One Hammarling pivot: ``mu = ||b|| / sqrt(denom)`` and ``w = b^H / mu``.

    The recursion is exact only if ``||w||^2 = denom`` holds to round-off,
    whatever the size of ``b``.  The rows ``b`` of the updated right-hand
    side shrink geometrically along the recursion (products of Blaschke
    factors); on the 2-D heat equation they reach 1e-170 and below, where
    ``sum(|b_k|^2)`` underflows and a plain ``norm(b)`` returns 0 or a
    denormal with a few correct bits.  The resulting ``w`` has the wrong
    length, the rank-``m`` update stops being a congruence, and the factor is
    silently wrong (relative residual 1e-2 on the 30 x 30 heat grid).  So
    ``b`` is first scaled by an exact power of two, its direction ``w / ||w||``
    taken at unit size, and only ``mu`` (which may underflow harmlessly) carries
    the scale.  ``w is None`` when ``b`` is exactly zero (the step is skipped).
    """
    big = float(np.max(np.abs(b)))
    if big == 0.0:
        return 0.0, None
    e = int(np.frexp(big)[1])
    bs = ldexp2(b, -e)
    ns = float(np.linalg.norm(bs))  # in [1/2, sqrt(m)]: no over- or underflow
    root = np.sqrt(denom)
    mu = float(np.ldexp(ns / root, e))
    return mu, bs.conj() * (root / ns)


def hammarling_triangular(T: np.ndarray, B: np.ndarray, discrete: bool) -> np.ndarray:
    """Upper-triangular ``R`` with ``X = R R^H`` solving the Lyapunov equation for ``(T, B B^H)``.

    ``T`` is upper triangular and stable; ``B`` has shape ``(n, m)``.  The
    recursion peels off the last state: with ``T = [[T1, t], [0, tau]]`` and
    ``B = [[B1], [b]]``, the last diagonal entry is
    ``mu = ||b|| / sqrt(-2 Re tau)`` (continuous) or
    ``||b|| / sqrt(1 - |tau|^2)`` (discrete), the column above it solves one
    shifted triangular system, and the remaining ``B1`` is updated by a rank-one
    term so that the leading block satisfies the same equation.  Every step is
    ``O(k^2 + k m)`` and no solution is ever formed, so small Gramian
    directions keep their relative accuracy (Hammarling, IMA J. Numer. Anal.,
    1982).
    """
    n, m = B.shape
    AP, didx = _packed_upper(T)
    dsave = AP[didx].copy()
    tdiag = np.diag(T).copy()
    R = np.zeros((n, n), dtype=np.complex128)
    W = np.array(B, dtype=np.complex128, copy=True)
    for j in range(n - 1, -1, -1):
        tau = tdiag[j]
        b = W[j]
        if discrete:
            denom = (1.0 - abs(tau)) * (1.0 + abs(tau))
        else:
            denom = -2.0 * tau.real
        mu, w = _pivot(b, denom)
        R[j, j] = mu
        if j == 0 or w is None:
            continue
        t = T[:j, j]
        B1 = W[:j]
        Bw = B1 @ w
        if discrete:
            rhs = -(np.conj(tau) * mu * t + Bw)
            if tau == 0:
                u = -rhs
            else:
                shift = 1.0 / np.conj(tau)
                AP[didx[:j]] -= shift
                u = ztpsv(j, AP, rhs / np.conj(tau))
                AP[didx[:j]] = dsave[:j]
            v = ztpmv(j, AP, u) + mu * t
            coef = (1.0 + tau) / denom
            W[:j] = B1 + np.outer(v - coef * Bw, w.conj())
        else:
            rhs = -(mu * t + Bw)
            AP[didx[:j]] += np.conj(tau)
            u = ztpsv(j, AP, rhs)
            AP[didx[:j]] = dsave[:j]
            W[:j] = B1 - np.outer(u, w.conj())
        R[:j, j] = u
    return R


def hammarling_diagonal(lam: np.ndarray, B: np.ndarray, discrete: bool) -> np.ndarray:
    """Upper-triangular factor for diagonal ``A = diag(lam)``: ``O(n^2 m)``.

    The same recursion as :func:`hammarling_triangular` with ``t = 0``, so each
    shifted solve is an elementwise division.
    """
    n, m = B.shape
    R = np.zeros((n, n), dtype=np.complex128)
    W = np.array(B, dtype=np.complex128, copy=True)
    lam = np.asarray(lam, dtype=np.complex128)
    for j in range(n - 1, -1, -1):
        tau = lam[j]
        b = W[j]
        denom = (1.0 - abs(tau)) * (1.0 + abs(tau)) if discrete else -2.0 * tau.real
        mu, w = _pivot(b, denom)
        R[j, j] = mu
        if j == 0 or w is None:
            continue
        B1 = W[:j]
        Bw = B1 @ w
        if discrete:
            u = Bw / (1.0 - np.conj(tau) * lam[:j])
            v = lam[:j] * u
            W[:j] = B1 + np.outer(v - (1.0 + tau) / denom * Bw, w.conj())
        else:
            u = -Bw / (lam[:j] + np.conj(tau))
            W[:j] = B1 - np.outer(u, w.conj())
        R[:j, j] = u
    return R


# Relative residuals (in the Frobenius scale of ``factor_residual``) of a
# correct factor, measured on random, near-marginal and benchmark systems and
# the 2-D heat problems up to n = 2000, stay below 1e-16 * sqrt(n); a factor
# broken by a lost pivot was at 5e-5.  The threshold leaves two decades of room.
_RESIDUAL_RTOL = 1e-13


def factor_residual(
    T: np.ndarray, R: np.ndarray, B: np.ndarray, discrete: bool, *, probes: int = 4
) -> float:
    """Estimated relative residual of ``X = R R^H`` in the Lyapunov equation for ``(T, B B^H)``.

    .. math::

        \\rho = \\frac{\\|\\mathcal{R}\\|_F}{2 \\|T\\|_F \\|R\\|_F^2 + \\|B\\|_F^2}
        \\ (\\text{continuous}), \\qquad
        \\rho = \\frac{\\|\\mathcal{R}\\|_F}{(\\|T\\|_F^2 + 1) \\|R\\|_F^2 + \\|B\\|_F^2}
        \\ (\\text{discrete}),

    with ``R_res = T X + X T^H + B B^H`` or ``T X T^H - X + B B^H``.
    ``||R_res||_F`` is estimated from ``probes`` Gaussian probes ``V``
    (``E ||R_res V||_F^2 = probes * ||R_res||_F^2``), so the cost is a few
    matrix-vector products with ``T``, ``R`` and ``B``, ``O(n^2 probes)``;
    ``X`` is never formed.  ``T`` is a square matrix, or a vector holding a
    diagonal.  ``R`` and ``B`` are scaled together by a power of two first,
    which leaves ``rho`` unchanged and keeps every product in range.
    """
    n = R.shape[0]
    big = max(float(np.max(np.abs(R), initial=0.0)), float(np.max(np.abs(B), initial=0.0)))
    if big == 0.0:
        return 0.0
    e = -int(np.frexp(big)[1])
    R, B = ldexp2(R, e), ldexp2(B, e)
    diag = T.ndim == 1

    def t_mul(M: np.ndarray, adjoint: bool = False) -> np.ndarray:
        if diag:
            return (T.conj() if adjoint else T)[:, None] * M
        return (T.conj().T if adjoint else T) @ M

    V = np.random.default_rng(0).standard_normal((n, probes))
    XV = R @ (R.conj().T @ V)
    BV = B @ (B.conj().T @ V)
    nT = float(np.linalg.norm(T))
    nR2 = float(np.linalg.norm(R)) ** 2
    nB2 = float(np.linalg.norm(B)) ** 2
    if discrete:
        res = t_mul(R @ (R.conj().T @ t_mul(V, adjoint=True))) - XV + BV
        scale = (nT * nT + 1.0) * nR2 + nB2
    else:
        res = t_mul(XV) + R @ (R.conj().T @ t_mul(V, adjoint=True)) + BV
        scale = 2.0 * nT * nR2 + nB2
    return float(np.linalg.norm(res) / np.sqrt(probes) / scale)


def checked_factor(
    T: np.ndarray, B: np.ndarray, discrete: bool, what: str
) -> np.ndarray:
    """Hammarling factor for triangular ``T`` (or a diagonal given as a vector), self-checked.

    Runs :func:`hammarling_triangular` or :func:`hammarling_diagonal`, then
    :func:`factor_residual`; a residual above round-off level is reported by a
    ``RuntimeWarning`` naming ``what`` and the residual (never silently).
    """
    if T.ndim == 1:
        R = hammarling_diagonal(T, B, discrete)
    else:
        R = hammarling_triangular(T, B, discrete)
    rho = factor_residual(T, R, B, discrete)
    if not rho <= _RESIDUAL_RTOL:
        warnings.warn(
            f"{what}: the Lyapunov factor's relative residual is {rho:.2g}, above the "
            f"round-off level {_RESIDUAL_RTOL:.0e}; results computed from it may be inaccurate",
            RuntimeWarning,
            stacklevel=3,
        )
    return R


def realify_factor(L: np.ndarray) -> np.ndarray:
    """A real ``n x n`` factor ``R`` with ``R R^T = Re(L L^H)`` (exact when ``L L^H`` is real).

    ``[Re L, Im L] [Re L, Im L]^T = Re(L L^H)``; a QR of the transpose
    compresses the ``n x 2n`` factor back to ``n x n``.
    """
    Lr = np.hstack([L.real, L.imag])
    Rq = scipy.linalg.qr(Lr.T, mode="r", check_finite=False)[0]
    n = L.shape[0]
    return np.ascontiguousarray(Rq[:n].T)


# ----------------------------------------------------------------- public API
def solve_lyapunov(A: Any, Q: Any, *, dt: float | None = None) -> np.ndarray:
    """Solve a Lyapunov equation densely.

    .. math::

        A X + X A^H + Q = 0 \\quad (dt = None), \\qquad
        A X A^H - X + Q = 0 \\quad (dt > 0).

    Parameters
    ----------
    A : array_like, shape (n, n)
        Stable: ``Re(eig(A)) < 0`` (continuous) or ``|eig(A)| < 1`` (discrete).
    Q : array_like, shape (n, n)
    dt : float or None, keyword-only
        ``None`` selects the continuous equation, ``dt > 0`` the discrete one.
        Only whether it is set matters.

    Returns
    -------
    X : ndarray, shape (n, n)
        float64 when ``A`` and ``Q`` are real, complex128 otherwise.

    Notes
    -----
    Continuous: Bartels-Stewart on the Schur form (LAPACK ``trsyl`` through
    SciPy).  Discrete: complex Schur form ``A = U T U^H``, then the columns of
    ``Y = U^H X U`` from last to first, each one shifted triangular solve
    (Kitagawa, 1977); ``O(n^3)``, accurate near ``z = -1``, unlike the
    bilinear transform.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import solve_lyapunov
    >>> A = np.array([[-1.0, 2.0], [0.0, -3.0]]); Q = np.eye(2)
    >>> X = solve_lyapunov(A, Q)
    >>> bool(np.allclose(A @ X + X @ A.T + Q, 0))
    True
    """
    A, Q = _check_pair(A, Q, "Q", rows=True)
    if Q.shape != A.shape:
        raise ValueError(f"Q must have shape {A.shape} to fit A, got {Q.shape}")
    discrete = check_dt(dt) is not None
    real = not (np.iscomplexobj(A) or np.iscomplexobj(Q))
    T, U = _schur(A)
    _require_stable_eigs(np.diag(T), A, discrete)
    if not discrete:
        X = scipy.linalg.solve_continuous_lyapunov(A, -Q)
    else:
        X = _discrete_schur_solve(T, U, Q)
    X = 0.5 * (X + X.conj().T) if _is_hermitian(Q) else X
    return X.real.copy() if real else X.astype(np.complex128)


def _is_hermitian(Q: np.ndarray) -> bool:
    return bool(np.allclose(Q, Q.conj().T, rtol=0, atol=0))


def _discrete_schur_solve(T: np.ndarray, U: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Columns of ``Y`` in ``T Y T^H - Y + U^H Q U = 0``, last to first."""
    n = T.shape[0]
    F = U.conj().T @ Q @ U
    AP, didx = _packed_upper(T)
    dsave = AP[didx].copy()
    Y = np.zeros((n, n), dtype=np.complex128)
    tdiag = np.diag(T)
    for j in range(n - 1, -1, -1):
        tail = Y[:, j + 1 :] @ T[j, j + 1 :].conj() if j < n - 1 else np.zeros(n, complex)
        rhs = -F[:, j] - ztpmv(n, AP, np.ascontiguousarray(tail))
        tj = np.conj(tdiag[j])
        if tj == 0:
            Y[:, j] = -rhs
            continue
        # (conj(t_jj) T - I) y = rhs  <=>  (T - I / conj(t_jj)) y = rhs / conj(t_jj)
        AP[didx] -= 1.0 / tj
        Y[:, j] = ztpsv(n, AP, rhs / tj)
        AP[didx] = dsave
    return U @ Y @ U.conj().T


def lyapunov_cholesky(
    A: Any,
    B: Any,
    *,
    dt: float | None = None,
    method: Literal["auto", "numpy", "slycot"] = "auto",
) -> np.ndarray:
    """Factor ``L`` of the Lyapunov solution ``X = L L^H``, computed directly.

    .. math::

        A X + X A^H + B B^H = 0 \\quad (dt = None), \\qquad
        A X A^H - X + B B^H = 0 \\quad (dt > 0).

    Parameters
    ----------
    A : array_like, shape (n, n)
        Stable.
    B : array_like, shape (n, m)
    dt : float or None, keyword-only
        ``None`` for continuous time, ``dt > 0`` for discrete time.
    method : {"auto", "numpy", "slycot"}, keyword-only
        ``"numpy"``: Hammarling's method on the complex Schur form (always
        available).  ``"slycot"``: SLICOT ``SB03OD`` (real data only).
        ``"auto"``: the NumPy path, whose speed is on a par; slycot is used
        only when asked for.

    Returns
    -------
    L : ndarray, shape (n, n)
        Real (lower triangular) when ``A`` and ``B`` are real, complex
        otherwise.  ``L L^H`` equals the solution to round-off.

    Notes
    -----
    The factor is obtained by Hammarling's recursion (see
    :func:`hammarling_triangular`), never by factoring a dense solution, so
    the small singular values of ``L`` (and hence small Hankel singular
    values) are accurate relative to themselves, not only to ``||X||``.  For
    a diagonal ``A`` no Schur decomposition is needed and the cost is
    ``O(n^2 m)``.
    """
    A, B = _check_pair(A, B, "B", rows=True)
    discrete = check_dt(dt) is not None
    if method not in ("auto", "numpy", "slycot"):
        raise ValueError(f"method must be 'auto', 'numpy' or 'slycot', got {method!r}")
    real = not (np.iscomplexobj(A) or np.iscomplexobj(B))
    if method == "slycot":
        if not real:
            raise ValueError("method='slycot' handles real A and B only; got complex data")
        return _slycot_factor(A, B, discrete)
    return factor_checked(A, B, discrete, real)


def factor_checked(A: np.ndarray, B: np.ndarray, discrete: bool, real: bool) -> np.ndarray:
    """Validated-input core of :func:`lyapunov_cholesky` (NumPy path)."""
    if np.count_nonzero(A - np.diag(np.diag(A))) == 0:
        lam = np.diag(A).astype(np.complex128)
        _require_stable_eigs(lam, A, discrete)
        L = checked_factor(lam, B, discrete, "lyapunov_cholesky")
    else:
        T, U = _schur(A)
        _require_stable_eigs(np.diag(T), A, discrete)
        L = U @ checked_factor(T, U.conj().T @ B, discrete, "lyapunov_cholesky")
    return realify_factor(L) if real else L


def _slycot_factor(A: np.ndarray, B: np.ndarray, discrete: bool) -> np.ndarray:
    try:
        from slycot import sb03od
    except ImportError as exc:
        raise ImportError("method='slycot' needs the optional package slycot") from exc
    eigs = np.linalg.eigvals(A)
    _require_stable_eigs(eigs, A, discrete)
    n, m = B.shape
    # SB03OD with trans='T' solves op(A) X + X op(A)^T = -scale^2 op(B) op(B)^T,
    # op(A) = A, op(B) = B (n x m), returning the upper-triangular U, X = U U^T.
    dico = "D" if discrete else "C"
    Bpad = np.zeros((n, max(n, m)))
    Bpad[:, :m] = B
    U, scale, _ = sb03od(n, m, A.copy(), np.zeros((n, n)), Bpad, dico, fact="N", trans="T")
    return np.asarray(U[:n, :n]) / scale
