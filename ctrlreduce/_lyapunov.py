"""Lyapunov equations: dense solutions and Cholesky factors.

Sign conventions, used everywhere in ctrlreduce:

.. math::

    \\text{continuous:}\\quad A X + X A^H + Q = 0, \\qquad
    \\text{discrete:}\\quad A X A^H - X + Q = 0.

Both solvers first scale the data exactly (powers of two): ``A`` is balanced,
``A' = D^{-1} A D``, and the right-hand side is brought to entries of size
about one, ``Q' = D^{-1} Q D^{-1} / q`` or ``B' = D^{-1} B / b``; then
``X = q D X' D`` and ``L = b D L'``.  Nothing is rounded by the scaling, and
data anywhere in the float64 range solve without over- or underflow.

All work is ``O(n^3)``: one Schur decomposition (:mod:`ctrlreduce._schur`),
then Bartels-Stewart (LAPACK ``trsyl``), a column-wise triangular recursion
(discrete), or Hammarling's recursion (:mod:`ctrlreduce._hammarling`).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
from scipy.linalg import lapack
from scipy.linalg.blas import ztpmv, ztpsv

from ._hammarling import _packed_upper, checked_factor, realify_factor
from ._scaling import ldexp2, pow2
from ._schur import SchurForm, schur_form
from ._stability import balance, require_stable
from ._validation import as_matrix, check_choice, check_dt

__all__ = ["solve_lyapunov", "lyapunov_cholesky"]


def _check_pair(A: Any, M: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    A = as_matrix(A, "A")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if A.shape[0] == 0:
        raise ValueError("A must have at least one row, got shape (0, 0)")
    M = as_matrix(M, name)
    n = A.shape[0]
    if M.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows to fit A {A.shape}, got shape {M.shape}")
    return A, M


def _balanced(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, SchurForm]:
    """``(A', ed, schur)``: ``A' = D^{-1} A D`` with ``D = 2**ed``, and its Schur form."""
    Ab, d = balance(A)
    ed = np.array([pow2(v) - 1 for v in d], dtype=np.int64)
    return Ab, ed, schur_form(Ab)


# ----------------------------------------------------------------- public API
def solve_lyapunov(A: Any, Q: Any, *, dt: float | None = None) -> np.ndarray:
    """Solve a Lyapunov equation densely.

    .. math::

        A X + X A^H + Q = 0 \\quad (dt = None), \\qquad
        A X A^H - X + Q = 0 \\quad (dt > 0).

    Parameters
    ----------
    A : array_like, shape (n, n)
        Stable: ``Re(eig(A)) < 0`` (continuous) or ``|eig(A)| < 1`` (discrete),
        each eigenvalue clear of the boundary by its own round-off.
    Q : array_like, shape (n, n)
    dt : float or None, keyword-only
        ``None`` selects the continuous equation, ``dt > 0`` the discrete one.
        Only whether it is set matters.

    Returns
    -------
    X : ndarray, shape (n, n)
        float64 when ``A`` and ``Q`` are real, complex128 otherwise; Hermitian
        when ``Q`` is.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (named); ``A`` unstable or marginal (the poles are named);
        a solution too large for float64.

    Notes
    -----
    Continuous: Bartels-Stewart on the Schur form of the balanced ``A``
    (LAPACK ``trsyl``, real arithmetic for real data, its scale factor
    divided out).  Discrete: complex Schur form ``A = Z T Z^H``, then the
    columns of ``Y = Z^H X Z`` from last to first, each one shifted
    triangular solve (Kitagawa, 1977); ``O(n^3)``, accurate near ``z = -1``,
    unlike the bilinear transform.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import solve_lyapunov
    >>> A = np.array([[-1.0, 2.0], [0.0, -3.0]]); Q = np.eye(2)
    >>> X = solve_lyapunov(A, Q)
    >>> bool(np.allclose(A @ X + X @ A.T + Q, 0))
    True
    """
    A, Q = _check_pair(A, Q, "Q")
    if Q.shape != A.shape:
        raise ValueError(f"Q must have shape {A.shape} to fit A, got {Q.shape}")
    discrete = check_dt(dt) is not None
    real = not (np.iscomplexobj(A) or np.iscomplexobj(Q))
    hermitian = bool(np.array_equal(Q, Q.conj().T))
    Ab, ed, schur = _balanced(A)
    require_stable(schur, discrete, "solve_lyapunov")
    eq = pow2(float(np.max(np.abs(Q))))
    Qs = ldexp2(Q, -ed[:, None] - ed[None, :] - eq)  # D^{-1} Q D^{-1} / q
    if discrete:
        Xs = _discrete_schur_solve(schur, Qs)
    else:
        Xs = _continuous_schur_solve(schur, Qs)
    with np.errstate(over="ignore"):
        X = ldexp2(Xs, ed[:, None] + ed[None, :] + eq)
    if not np.all(np.isfinite(X)):
        raise ValueError("solve_lyapunov: the solution X overflows float64 (entries > 1.8e308)")
    if hermitian:
        X = 0.5 * X + 0.5 * X.conj().T
    return X.real.copy() if real else X.astype(np.complex128)


def _continuous_schur_solve(schur: SchurForm, Q: np.ndarray) -> np.ndarray:
    """``A X + X A^H + Q = 0`` by ``trsyl`` on the Schur factor, its scale divided out.

    ``trsyl`` returns ``Y`` and ``scale <= 1`` with ``T Y + Y T^H = scale * F``,
    so the solution is ``Y / scale``.
    """
    if schur.diagonal:
        lam = schur.T
        return -Q / (lam[:, None] + lam[None, :].conj())
    if schur.T_real is not None and not np.iscomplexobj(Q):
        T, U, trsyl = schur.T_real, cast(np.ndarray, schur.U), lapack.dtrsyl
        F = -(U.T @ Q @ U)
        tranb = "T"
    else:
        T = schur.T
        F = -schur.to_schur(schur.to_schur(Q).conj().T).conj().T  # -Z^H Q Z
        U, trsyl, tranb = None, lapack.ztrsyl, "C"
    Y, scale, info = trsyl(T, T, F, trana="N", tranb=tranb, isgn=1)
    if info < 0:  # pragma: no cover - argument error inside LAPACK
        raise RuntimeError(f"LAPACK trsyl failed with info={info}")
    with np.errstate(over="ignore"):
        Y = Y / scale
    if U is not None:
        return U @ Y @ U.T
    return schur.from_schur(schur.from_schur(Y).conj().T).conj().T


def _discrete_schur_solve(schur: SchurForm, Q: np.ndarray) -> np.ndarray:
    """Columns of ``Y`` in ``T Y T^H - Y + Z^H Q Z = 0``, last to first; ``X = Z Y Z^H``."""
    n = schur.n
    if schur.diagonal:
        lam = schur.T
        return Q / (1.0 - lam[:, None] * lam[None, :].conj())
    T = schur.T
    F = schur.to_schur(schur.to_schur(Q).conj().T).conj().T
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
    return schur.from_schur(schur.from_schur(Y).conj().T).conj().T


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
        ``"numpy"``: Hammarling's method on the Schur form (always
        available).  ``"slycot"``: SLICOT ``SB03OD`` (real data only).
        ``"auto"``: the NumPy path, whose speed is on a par; slycot is used
        only when asked for.

    Returns
    -------
    L : ndarray, shape (n, n)
        Real (lower triangular) when ``A`` and ``B`` are real, complex
        otherwise.  ``L L^H`` equals the solution to round-off.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (named); ``A`` unstable or marginal (the poles named);
        a factor too large for float64.

    Warns
    -----
    RuntimeWarning
        When the factor's own residual check (a few random probes) finds it
        above round-off level.

    Notes
    -----
    The factor is obtained by Hammarling's recursion
    (:mod:`ctrlreduce._hammarling`), never by factoring a dense solution, so
    the small singular values of ``L`` (and hence small Hankel singular
    values) are accurate relative to themselves, not only to ``||X||``.  For
    a diagonal ``A`` no Schur decomposition is needed and the cost is
    ``O(n^2 m)``.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import lyapunov_cholesky
    >>> A = np.array([[-1.0, 2.0], [0.0, -3.0]]); B = np.array([[1.0], [1.0]])
    >>> L = lyapunov_cholesky(A, B)
    >>> X = L @ L.T
    >>> bool(np.allclose(A @ X + X @ A.T + B @ B.T, 0))
    True
    """
    A, B = _check_pair(A, B, "B")
    discrete = check_dt(dt) is not None
    method = check_choice(method, "method", ("auto", "numpy", "slycot"))
    real = not (np.iscomplexobj(A) or np.iscomplexobj(B))
    if method == "slycot":
        if not real:
            raise ValueError("method='slycot' handles real A and B only; got complex data")
        return _slycot_factor(A, B, discrete)
    Ab, ed, schur = _balanced(A)
    require_stable(schur, discrete, "lyapunov_cholesky")
    eb = pow2(float(np.max(np.abs(B))))
    Bs = ldexp2(B, -ed[:, None] - eb)
    R = checked_factor(schur.T, schur.to_schur(Bs), discrete, "lyapunov_cholesky")
    L = schur.from_schur(R)
    if real:
        L = realify_factor(L)
    with np.errstate(over="ignore"):
        L = ldexp2(L, ed[:, None] + eb)
    if not np.all(np.isfinite(L)):
        raise ValueError("lyapunov_cholesky: the factor L overflows float64 (entries > 1.8e308)")
    return L.real.copy() if real else L


def _slycot_factor(A: np.ndarray, B: np.ndarray, discrete: bool) -> np.ndarray:
    try:
        from slycot import sb03od
    except ImportError as exc:
        raise ImportError("method='slycot' needs the optional package slycot") from exc
    require_stable(schur_form(balance(A)[0]), discrete, "lyapunov_cholesky")
    n, m = B.shape
    # SB03OD with trans='T' solves op(A) X + X op(A)^T = -scale^2 op(B) op(B)^T,
    # op(A) = A, op(B) = B (n x m), returning the upper-triangular U, X = U U^T.
    dico = "D" if discrete else "C"
    Bpad = np.zeros((n, max(n, m)))
    Bpad[:, :m] = B
    U, scale, _ = sb03od(n, m, A.copy(), np.zeros((n, n)), Bpad, dico, fact="N", trans="T")
    return np.asarray(U[:n, :n]) / scale
