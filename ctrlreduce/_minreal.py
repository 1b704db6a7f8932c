"""Minimal realizations by orthogonal (unitary) staircase reduction.

Glossary
--------
==========  ==============================================================
``Q``       unitary similarity built one staircase step at a time
``k``       number of controllable (observable) states found so far
``rho``     numerical rank of the current staircase block
``tol``     relative rank tolerance (see :func:`minimal_realization`)
==========  ==============================================================

The stable part of the system is made minimal by balanced truncation at a
Hankel-singular-value threshold; the unstable part, where no Gramian exists,
by the staircase.  The controllability staircase (Van Dooren 1981; Varga
1981) finds a unitary
``Q`` with::

    Q^H A Q = [[A_c, A_12], [0, A_uc]],   Q^H B = [[B_c], [0]],   C Q = [C_c, C_uc]

where ``(A_c, B_c)`` is controllable; the transfer function of
``(A_c, B_c, C_c, D)`` equals that of ``(A, B, C, D)``.  The observable part
is found by the same procedure applied to the dual ``(A^H, C^H)``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._balance import hankel_svd, reduce_stable
from ._gramians import gramian_factors
from ._scaling import equilibrate, ldexp2
from ._schur import schur_form
from ._split import split_scaled
from ._system import StateSpace, check_system
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
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    tol: float,
    *,
    norm_A: float | None = None,
    norm_B: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Controllable subsystem ``(A_c, B_c, C_c)`` by the staircase algorithm.

    Parameters
    ----------
    A : ndarray, shape (n, n)
    B : ndarray, shape (n, m)
    C : ndarray, shape (p, n)
    tol : float
        Relative rank tolerance: a singular value of the first block (a part
        of ``B``) counts when it exceeds ``tol * norm_B``, of later blocks
        (parts of ``A``) when it exceeds ``tol * norm_A``.  Each block is
        measured against the matrix it comes from, so the decisions do not
        change when ``B`` or the time unit is rescaled.
    norm_A, norm_B : float, optional, keyword-only
        Reference sizes; default ``||A||_F`` and ``||B||_2``.  A caller
        working on one part of a larger system passes the sizes of the whole,
        so that a part made only of round-off is recognized as such.

    Returns
    -------
    A_c, B_c, C_c : ndarray, shapes (k, k), (k, m), (p, k)
        ``k`` is the numerical dimension of the controllable subspace (may be 0).
    """
    n = A.shape[0]
    A, B, C = A.copy(), B.copy(), C.copy()
    nB = float(np.linalg.norm(B, 2)) if norm_B is None else float(norm_B)
    if nB == 0.0:
        return A[:0, :0], B[:0], C[:, :0]
    scale = float(np.linalg.norm(A, "fro")) if norm_A is None else float(norm_A)
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


def _staircase_minimal(part: StateSpace, tol: float, norms: tuple[float, float, float]):  # noqa: ANN202
    """Controllable part, then its observable part (the dual staircase).

    ``norms = (||A||_F, ||B||_2, ||C||_2)`` of the whole system set the scale.
    """
    nA, nB, nC = norms
    A, B, C = (np.array(M) for M in (part.A, part.B, part.C))
    A, B, C = controllable_part(A, B, C, tol, norm_A=nA, norm_B=nB)
    if A.shape[0] > 0:
        Ad, Cd, Bd = controllable_part(
            A.conj().T, C.conj().T, B.conj().T, tol, norm_A=nA, norm_B=nC
        )
        A, B, C = Ad.conj().T, Bd.conj().T, Cd.conj().T
    if A.shape[0] == 0:
        return None
    return StateSpace(A, B, C, np.zeros_like(part.D), part.dt)


def _gramian_minimal(stable: StateSpace, tol: float) -> StateSpace | None:
    """Keep the balanced states of a stable system whose HSV exceeds ``tol * sigma_1``.

    Balancing-free square root (orthonormal ``V``), so no ``sigma^{-1/2}``
    scaling of nearly-zero directions.  ``None`` when no state is kept.
    """
    stable = stable.with_matrices(D=np.zeros_like(stable.D))
    F = gramian_factors(stable, schur_form(stable.A), "minimal_realization")
    svd = hankel_svd(F)
    hsv = svd[1]
    k = int(np.count_nonzero(hsv > tol * hsv[0])) if hsv[0] > 0 else 0
    if k == 0:
        return None
    if k == stable.n_states:
        return stable
    return reduce_stable(stable, F, k, None, "bfsr", "truncate", svd=svd).system


def minimal_realization(sys: StateSpace, *, tol: float) -> StateSpace:
    """Remove the uncontrollable and unobservable states of ``sys``.

    Parameters
    ----------
    sys : StateSpace
        Continuous or discrete, real or complex, stable or not.
    tol : float, keyword-only, required
        Relative tolerance in ``(0, 1)``, e.g. ``1e-10``: how weakly a state may
        be coupled and still count.  It is a modelling choice, so there is no
        default; a value a few orders above ``n * eps`` removes only exact
        (round-off level) non-minimality.  Its meaning, per part (see Notes):

        * staircase (both parts): in each step a singular value counts when it
          exceeds ``tol`` times the size of the matrix the block comes from,
          in the whole equilibrated system (``||B||_2`` or ``||C||_2`` for the
          first block, ``||A||_F`` after), so the decisions are invariant under
          rescaling ``B``, ``C`` or time;
        * stable part, afterwards: a balanced state is kept when its Hankel
          singular value exceeds ``tol * sigma_1`` (``sigma_1`` of the stable
          part).

    Returns
    -------
    StateSpace
        A realization with the same transfer function (up to the tolerance),
        same ``D``, ``dt`` and dtype, controllable and observable to the
        tolerance; its states are the reduced stable states followed by the
        reduced unstable ones.  When no state is both controllable and
        observable the system is a static gain and is returned as one state
        that is neither (``A = [[-1]]``, or ``[[0]]`` in discrete time,
        ``B = 0``, ``C = 0``), the convention of an order-0 reduction, because
        a ``StateSpace`` needs one state.

    Notes
    -----
    The system is first split additively, ``G = G_s + G_u``
    (:func:`ctrlreduce.stable_unstable_split`, ``alpha = 0``); a
    state of ``G_s`` cannot cancel one of ``G_u``, so the minimal order of
    ``G`` is the sum of theirs.

    * Both parts first go through two passes of the unitary staircase
      (module docstring): the controllable part, then the observable part of
      that, found as the controllable part of the dual ``(A^H, C^H, B^H)``.
      Every transformation is unitary, so the step is backward stable; its
      thresholds use the norms of the whole (equilibrated) system, so a part that is only
      round-off (say, an unobservable stable mode whose ``C`` block is
      ``1e-17``) is removed.
    * ``G_s`` is then reduced by balanced truncation at the HSV threshold.
      This is reliable where the staircase is not: the controllable subspace of a
      realization such as ``G + G`` is a Krylov space, and the staircase (like
      SLICOT ``TB01PD``, behind ``control.minreal``) loses it to round-off when
      the Krylov basis is ill-conditioned -- for the ``build`` benchmark it
      returns 96 states for ``G + G`` where 48 suffice.  Dropping states with
      HSVs below ``tol * sigma_1`` changes ``G`` by at most
      ``2 * sum(dropped HSVs) <= 2 n tol sigma_1`` in the H-infinity norm.
    * ``G_u`` (usually a few modes, possibly on the stability boundary, where
      no Gramian exists) has the staircase only.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace
    >>> from ctrlreduce import minimal_realization
    >>> A = np.diag([-1.0, -2.0, 3.0]); B = np.array([[1.0], [1.0], [0.0]])
    >>> C = np.array([[1.0, 0.0, 1.0]])
    >>> minimal_realization(StateSpace(A, B, C), tol=1e-10).n_states
    1
    """
    sys = check_system(sys)
    tol = check_positive(tol, "tol")
    if tol >= 1:
        raise ValueError(f"tol must be a relative tolerance < 1, got {tol!r}")
    scaled, sc = equilibrate(sys)
    norms = (
        float(np.linalg.norm(scaled.A, "fro")),
        float(np.linalg.norm(scaled.B, 2)),
        float(np.linalg.norm(scaled.C, 2)),
    )
    split = split_scaled(scaled, 0.0)
    parts: list[StateSpace] = []
    if split.stable is not None:
        st = _staircase_minimal(split.stable, tol, norms)
        red = None if st is None else _gramian_minimal(st, tol)
        if red is not None:
            parts.append(red)
    if split.unstable is not None:
        u = _staircase_minimal(split.unstable, tol, norms)
        if u is not None:
            parts.append(u)
    if not parts:
        return StateSpace.static_gain(sys.D, sys.dt)
    out = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    # a realization of G' = G / (b c) is one of G with B times b and C times c
    return StateSpace(out.A, ldexp2(out.B, sc.eb), ldexp2(out.C, sc.ec), sys.D, sys.dt)
