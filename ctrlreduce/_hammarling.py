"""Hammarling's method: Cholesky factors of Lyapunov solutions, never the solutions.

For a stable upper-triangular ``T`` (a Schur factor) and ``B`` of shape
``(n, m)``, the upper-triangular ``R`` with ``X = R R^H`` solving

.. math::

    T X + X T^H + B B^H = 0 \\quad\\text{or}\\quad T X T^H - X + B B^H = 0

is built one state at a time from the last, by a rank-``m`` recursion on
``B`` (Hammarling, IMA J. Numer. Anal. 2, 1982).  No solution is ever formed,
so small Gramian directions, and with them small Hankel singular values, keep
their accuracy relative to themselves rather than to ``||X||``.

Glossary
--------
==========  ================================================================
``AP``      ``T`` in packed upper storage (column-major), so that the
            leading ``k x k`` block is the prefix ``AP[: k (k + 1) / 2]``;
            BLAS ``ztpsv``/``ztpmv`` solve with it without copying
``mu, w``   the pivot of one step: ``mu = ||b|| / sqrt(denom)``,
            ``w = b^H / mu``, ``||w||^2 = denom``
``denom``   ``-2 Re(tau)`` (continuous) or ``1 - |tau|^2`` (discrete)
==========  ================================================================

Every factor is checked against its own equation (:func:`factor_residual`,
a few random probes, ``O(n^2)``), and a residual above round-off level is
reported with a ``RuntimeWarning``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.linalg.blas import ztpmv, ztpsv

from ._scaling import ldexp2

__all__ = [
    "checked_factor",
    "factor_residual",
    "hammarling_diagonal",
    "hammarling_triangular",
    "real_factor",
    "realify_factor",
]


# --------------------------------------------------------------------- helpers
def _packed_upper(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pack upper-triangular ``T`` column by column; return ``(AP, diag_index)``."""
    n = T.shape[0]
    r, c = np.triu_indices(n)
    order = np.lexsort((r, c))  # column-major: by column, then row
    AP = np.ascontiguousarray(T[r[order], c[order]], dtype=np.complex128)
    j = np.arange(n)
    return AP, j * (j + 1) // 2 + j


# ------------------------------------------------------------- Hammarling core
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


def _discrete_update(tau: complex, v: np.ndarray, Bw: np.ndarray) -> np.ndarray:
    """The vector ``y`` of the discrete rank-``m`` update ``B1 <- B1 - y w^H``.

    With ``v = T1 u + mu t`` and ``c = B1 w`` (so ``u = conj(tau) v + c``), the
    leading block needs ``B1 B1^H + v v^H - u u^H = B1' B1'^H``.  Every
    ``y = alpha v + beta c`` with ``|alpha| = 1``, ``d beta^* = -(conj(tau) +
    alpha) / alpha`` and ``d = 1 - |tau|^2 = ||w||^2`` gives it.  The phase
    ``alpha = conj(tau) / |tau|`` (1 at ``tau = 0``) makes
    ``|beta| = 1 / (1 + |tau|)`` its smallest, so

    ``y = (conj(tau) / |tau|) v + c / (1 + |tau|)``,

    a sum of two terms of the size of the result.  The textbook choice
    ``alpha = -1``, ``beta = (1 + tau) / d`` has a coefficient near
    ``2 / (1 - |tau|^2)`` (400 for poles at 0.9974, as on the discretised heat
    equation) and forms ``y`` as a difference of terms that much larger.  (On
    that problem the residual was limited by the Schur basis, see
    :func:`ctrlreduce._schur.schur_form`, so the two choices measured alike.)
    """
    a = abs(tau)
    phase = np.conj(tau) / a if a > 0.0 else 1.0
    return phase * v + Bw / (1.0 + a)


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
            W[:j] = B1 - np.outer(_discrete_update(tau, v, Bw), w.conj())
        else:
            rhs = -(mu * t + Bw)
            AP[didx[:j]] += np.conj(tau)
            u = ztpsv(j, AP, rhs)
            AP[didx[:j]] = dsave[:j]
            W[:j] = B1 - np.outer(u, w.conj())
        R[:j, j] = u
    return R


def hammarling_diagonal(lam: np.ndarray, B: np.ndarray, discrete: bool) -> np.ndarray:
    """Factor ``L`` with ``L L^H = X`` for diagonal ``A = diag(lam)``, with pivoting: ``O(n^2 m)``.

    The recursion of :func:`hammarling_triangular` with ``t = 0``, so each
    shifted solve is an elementwise division.  A diagonal ``A`` can be
    permuted freely, so each step takes the remaining state with the largest
    diagonal entry of the remaining Gramian, ``||W_p||^2 / denom_p`` (its
    exact value, up to the use of the max-norm), as the pivot: pivoted
    Cholesky of the Cauchy-like Gramian.  Without it a nearly uncontrollable
    state met early gives a tiny pivot, an ``O(1)`` column above it, and small
    HSVs accurate only to ``eps * sigma_1``; with it they keep relative
    accuracy.  ``L = P R J``: ``R`` upper triangular in the pivot order, its
    rows returned in the original order and its columns reversed (largest
    pivot first), so that ``Lo^H Lc`` is graded from the top left, the order
    in which LAPACK's bidiagonalization keeps small singular values accurate.
    """
    n, m = B.shape
    R = np.zeros((n, n), dtype=np.complex128)
    W = np.array(B, dtype=np.complex128, copy=True)
    lam = np.array(lam, dtype=np.complex128, copy=True)
    denoms = (1.0 - np.abs(lam)) * (1.0 + np.abs(lam)) if discrete else -2.0 * lam.real
    order = np.arange(n)
    for j in range(n - 1, -1, -1):
        size = np.max(np.abs(W[: j + 1]), axis=1) / np.sqrt(denoms[: j + 1])
        p = int(np.argmax(size))
        if p != j:
            for arr in (W, lam, denoms, order):
                arr[[p, j]] = arr[[j, p]]
            R[[p, j], j + 1 :] = R[[j, p], j + 1 :]
        tau, denom = lam[j], float(denoms[j])
        mu, w = _pivot(W[j], denom)
        R[j, j] = mu
        if j == 0 or w is None:
            continue
        B1 = W[:j]
        Bw = B1 @ w
        if discrete:
            u = Bw / (1.0 - np.conj(tau) * lam[:j])
            W[:j] = B1 - np.outer(_discrete_update(tau, lam[:j] * u, Bw), w.conj())
        else:
            u = -Bw / (lam[:j] + np.conj(tau))
            W[:j] = B1 - np.outer(u, w.conj())
        R[:j, j] = u
    L = np.empty_like(R)
    L[order] = R[:, ::-1]  # largest pivot first: the Hankel product is then graded downward
    return L


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


def real_factor(L: np.ndarray) -> np.ndarray:
    """A real factor of ``Re(L L^H)``: ``L.real`` itself when ``L`` has no imaginary part.

    The Hammarling recursion on a real triangular ``T`` with real data keeps
    every imaginary part exactly zero; only complex eigenvalues need the QR of
    :func:`realify_factor`.
    """
    if not np.any(L.imag):
        return np.ascontiguousarray(L.real)
    return realify_factor(L)
