"""Minimal realizations by orthogonal (unitary) staircase reduction.

Glossary
--------
==========  ==============================================================
``Q``       unitary similarity built one staircase step at a time
``k``       number of controllable (observable) states found so far
``rho``     numerical rank of the current staircase block
``tol``     relative rank tolerance (see :func:`minimal_realization`)
==========  ==============================================================

The controllability staircase (Van Dooren 1981; Varga 1981) finds a unitary
``Q`` with::

    Q^H A Q = [[A_c, A_12], [0, A_uc]],   Q^H B = [[B_c], [0]],   C Q = [C_c, C_uc]

where ``(A_c, B_c)`` is controllable; the transfer function of
``(A_c, B_c, C_c, D)`` equals that of ``(A, B, C, D)``.  The observable part
is found by the same procedure applied to the dual ``(A^H, C^H)``.  No
Gramian is involved, so unstable and marginal systems are handled alike.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._gramians import _check_system
from ._system import StateSpace
from ._validation import check_positive

__all__ = ["minimal_realization", "controllable_part"]


def _svd_rank(M: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Left singular vectors of ``M`` and the number of singular values ``> threshold``."""
    try:
        U, s, _ = scipy.linalg.svd(M, check_finite=False)
    except np.linalg.LinAlgError:  # pragma: no cover - gesdd rarely fails
        U, s, _ = scipy.linalg.svd(M, check_finite=False, lapack_driver="gesvd")
    return U, int(np.count_nonzero(s > threshold))


def controllable_part(
    A: np.ndarray, B: np.ndarray, C: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Controllable subsystem ``(A_c, B_c, C_c)`` by the staircase algorithm.

    Parameters
    ----------
    A : ndarray, shape (n, n)
    B : ndarray, shape (n, m)
    C : ndarray, shape (p, n)
    tol : float
        Relative rank tolerance: a singular value of the first block counts
        when it exceeds ``tol * ||B||_2``, of later blocks when it exceeds
        ``tol * max(||A||_F, ||B||_2)``.

    Returns
    -------
    A_c, B_c, C_c : ndarray, shapes (k, k), (k, m), (p, k)
        ``k`` is the numerical dimension of the controllable subspace (may be 0).
    """
    n = A.shape[0]
    A, B, C = A.copy(), B.copy(), C.copy()
    nB = float(np.linalg.norm(B, 2))
    if nB == 0.0:
        return A[:0, :0], B[:0], C[:, :0]
    scale = max(float(np.linalg.norm(A, "fro")), nB)
    k = 0  # states already known to be controllable
    block = B  # the part of the "input" that drives the remaining states
    threshold = tol * nB
    while k < n:
        U, rho = _svd_rank(block, threshold)
        if rho == 0:
            break
        # similarity with diag(I_k, U) on the trailing n - k states
        A[k:, :] = U.conj().T @ A[k:, :]
        A[:, k:] = A[:, k:] @ U
        if k == 0:
            B = U.conj().T @ B
        C[:, k:] = C[:, k:] @ U
        k_prev, k = k, k + rho
        block = A[k:, k_prev:k]
        threshold = tol * scale
    return A[:k, :k], B[:k], C[:, :k]


def minimal_realization(sys: StateSpace, *, tol: float) -> StateSpace:
    """Remove the uncontrollable and unobservable states of ``sys``.

    Parameters
    ----------
    sys : StateSpace
        Continuous or discrete, real or complex, stable or not.
    tol : float, keyword-only, required
        Relative rank tolerance of the staircase, e.g. ``1e-10``.  In each
        step a singular value counts as non-zero when it exceeds ``tol``
        times the size of the data it came from (``||B||_2`` or ``||C||_2`` for
        the first block, ``max(||A||_F, ||B||_2)`` or ``max(||A||_F,
        ||C||_2)`` after).  It is a modelling choice -- how weakly coupled a
        state may be and still count -- so there is no default; a value a few
        orders above ``n * eps`` keeps everything but exact (round-off)
        non-minimality.

    Returns
    -------
    StateSpace
        A realization ``(A_m, B_m, C_m, D)`` with the same transfer function,
        same ``dt`` and dtype, controllable and observable to the tolerance.
        Its states are ``Q^H x`` for a unitary ``Q`` (no balancing).  When no
        state is both controllable and observable the system is a static gain
        and is returned as one state that is neither (``A = [[-1]]``, or
        ``[[0]]`` in discrete time, ``B = 0``, ``C = 0``), the convention of
        an order-0 reduction, because a ``StateSpace`` needs one state.

    Notes
    -----
    Two passes of the unitary staircase (module docstring): the controllable
    part of ``(A, B, C)``, then the observable part of that, found as the
    controllable part of the dual ``(A^H, C^H, B^H)``.  Every transformation
    is unitary, so the result is backward stable; it costs ``O(n^3)`` per
    staircase step in the worst case.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace
    >>> from ctrlreduce._minreal import minimal_realization
    >>> A = np.diag([-1.0, -2.0, 3.0]); B = np.array([[1.0], [1.0], [0.0]])
    >>> C = np.array([[1.0, 0.0, 1.0]])
    >>> minimal_realization(StateSpace(A, B, C), tol=1e-10).n_states
    1
    """
    sys = _check_system(sys)
    tol = check_positive(tol, "tol")
    if tol >= 1:
        raise ValueError(f"tol must be a relative tolerance < 1, got {tol!r}")
    A, B, C = (np.array(M) for M in (sys.A, sys.B, sys.C))
    A, B, C = controllable_part(A, B, C, tol)
    if A.shape[0] > 0:
        # observable part of (A, B, C) = controllable part of the dual
        Ad, Cd, Bd = controllable_part(A.conj().T, C.conj().T, B.conj().T, tol)
        A, B, C = Ad.conj().T, Bd.conj().T, Cd.conj().T
    if A.shape[0] == 0:
        a = 0.0 if sys.dt is not None else -1.0
        return StateSpace(
            np.full((1, 1), a, dtype=sys.A.dtype),
            np.zeros((1, sys.n_inputs), dtype=sys.A.dtype),
            np.zeros((sys.n_outputs, 1), dtype=sys.A.dtype),
            sys.D,
            sys.dt,
        )
    return StateSpace(A, B, C, sys.D, sys.dt)
