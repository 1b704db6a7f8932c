"""Additive stable/unstable decomposition, and reduction of unstable systems.

Glossary
--------
==============  ============================================================
``U, T``        ordered Schur form ``A = U T U^H``; real (quasi-triangular)
                for a real ``A``, complex (triangular) otherwise
``T11, T22``    stable block ``(ns, ns)`` first, unstable block ``(nu, nu)``
``X``           solution ``(ns, nu)`` of ``T11 X - X T22 + T12 = 0``
``S``           split transformation ``S = U [[I, X], [0, I]]``, so that
                ``S^{-1} A S = diag(T11, T22)``
``alpha``       stability margin chosen by the user
``delta``       round-off margin, ``_validation.stability_margin``
==============  ============================================================

A pole ``p`` counts as **stable** when::

    Re(p) < -(alpha + delta)          (continuous time)
    |p|   <  1 - (alpha + delta)      (discrete time)

and as unstable otherwise, so poles on the boundary, or within round-off of
it, always land in the unstable part and never reach a Lyapunov solver.

With ``S^{-1} B = [B_s; B_u]`` and ``C S = [C_s, C_u]``::

    G(s) = G_s(s) + G_u(s),
    G_s = (T11, B_s, C_s, D),   G_u = (T22, B_u, C_u, 0)

exactly (in exact arithmetic), with ``B_s = B1 - X B2``, ``B_u = B2``,
``C_s = C1``, ``C_u = C1 X + C2`` and ``[B1; B2] = U^H B``, ``[C1, C2] = C U``.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from ._system import StateSpace
from ._validation import check_order, check_positive, stability_margin

__all__ = ["Split", "reduce_unstable", "stable_unstable_split", "stable_error_system"]

# The split loses about log10(kappa(S)) digits; past 1/sqrt(eps) half of them are gone.
_KAPPA_WARN = 1.0 / np.sqrt(np.finfo(float).eps)


@dataclass(frozen=True, eq=False)
class Split:
    """An additive decomposition ``G = G_stable + G_unstable``.

    Attributes
    ----------
    stable : StateSpace or None
        ``(T11, B_s, C_s, D)``, every pole strictly stable by the margin; carries
        the feedthrough ``D``.  ``None`` when no pole is stable.
    unstable : StateSpace or None
        ``(T22, B_u, C_u, 0)``, the unstable and marginal poles; ``None`` when
        there are none.
    n_unstable : int
        Number of unstable states ``nu`` (a complex pair of a real system
        counts twice).
    D : ndarray, shape (p, m)
        The feedthrough of the original system (also the ``D`` of ``stable``);
        when ``stable`` is ``None``, ``G = G_unstable + D``.
    S, S_inv : ndarray, shape (n, n)
        The transformation: ``S^{-1} A S = diag(A_stable, A_unstable)``,
        ``S^{-1} B = [B_s; B_u]``, ``C S = [C_s, C_u]``.  The stable
        coordinates are the first ``n - nu`` columns of ``S``.
    kappa : float
        2-norm condition number of ``S``; a large value means the stable and
        unstable poles are close and the split loses ``log10(kappa)`` digits.
    """

    stable: StateSpace | None
    unstable: StateSpace | None
    n_unstable: int
    D: np.ndarray
    S: np.ndarray
    S_inv: np.ndarray
    kappa: float

    @property
    def n_stable(self) -> int:
        """Number of stable states ``ns``."""
        return int(self.S.shape[0]) - self.n_unstable


# ----------------------------------------------------------------- helpers
def check_alpha(alpha: Any, discrete: bool) -> float:
    """Validate the stability margin: ``alpha >= 0``, and ``alpha < 1`` in discrete time."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number >= 0, got {alpha!r}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if discrete and alpha >= 1:
        raise ValueError(f"alpha must be < 1 for a discrete system (|p| < 1 - alpha), got {alpha}")
    return alpha


def _schur_eigs(T: np.ndarray) -> np.ndarray:
    """Eigenvalues along the diagonal of a (quasi-)triangular Schur factor, in place order."""
    n = T.shape[0]
    if np.iscomplexobj(T):
        return np.diag(T).astype(np.complex128)
    lam = np.empty(n, dtype=np.complex128)
    i = 0
    while i < n:
        if i + 1 < n and T[i + 1, i] != 0.0:
            lam[i : i + 2] = np.linalg.eigvals(T[i : i + 2, i : i + 2])
            i += 2
        else:
            lam[i] = T[i, i]
            i += 1
    return lam


def _is_stable_mask(lam: np.ndarray, margin: float, discrete: bool) -> np.ndarray:
    if discrete:
        return np.abs(lam) < 1.0 - margin
    return lam.real < -margin


def _ordered_schur(A: np.ndarray, alpha: float, discrete: bool):  # noqa: ANN202
    """Schur form with the stable eigenvalues leading; returns ``(T, U, ns)``.

    The selection is decided once, on the eigenvalues of the unordered Schur
    form, with margin ``alpha + max(stability_margin(A), stability_margin(T))``,
    and applied with LAPACK ``trsen`` (a complex-conjugate pair of a real
    matrix is moved as one 2x2 block; both members share real part and
    modulus, so they are always selected together).  Deciding first and
    reordering second avoids the ``gees`` failure mode where round-off during
    the reordering makes a selected eigenvalue fail the test.
    """
    real = not np.iscomplexobj(A)
    T, U = scipy.linalg.schur(A, output="real" if real else "complex", check_finite=False)
    margin = alpha + max(stability_margin(A), stability_margin(T))
    select = _is_stable_mask(_schur_eigs(T), margin, discrete)
    ns = int(np.count_nonzero(select))
    if ns in (0, T.shape[0]) or np.all(select[:ns]):
        return T, U, ns
    trsen = lapack.dtrsen if real else lapack.ztrsen
    out = trsen(select.astype(np.int32), T, U, job="N")
    Ts, Us, info = out[0], out[1], out[-1]
    if info != 0:  # pragma: no cover - LAPACK could not swap two close blocks
        raise ValueError(
            "cannot split A into stable and unstable parts: LAPACK trsen failed to "
            f"reorder the Schur form (info={info}); the poles are too close to separate"
        )
    return Ts, Us, ns


def _solve_coupling(T11: np.ndarray, T22: np.ndarray, T12: np.ndarray) -> np.ndarray:
    """Solve ``T11 X - X T22 + T12 = 0`` for (quasi-)triangular ``T11``, ``T22``."""
    trsyl = lapack.ztrsyl if np.iscomplexobj(T11) else lapack.dtrsyl
    X, scale, info = trsyl(T11, T22, -T12, isgn=-1)
    if info < 0 or not np.all(np.isfinite(X)) or scale == 0:  # pragma: no cover
        raise ValueError(
            "cannot split A into stable and unstable parts: the Sylvester equation "
            "T11 X - X T22 + T12 = 0 has no finite solution (the parts share a pole "
            "to working precision)"
        )
    return X / scale


# ------------------------------------------------------------------ public
def stable_unstable_split(sys: StateSpace, *, alpha: float = 0.0) -> Split:
    """Split ``G = G_stable + G_unstable`` by an ordered Schur form and a Sylvester solve.

    Parameters
    ----------
    sys : StateSpace
        Continuous or discrete, real or complex.
    alpha : float, keyword-only
        Stability margin ``>= 0``: poles with ``Re(p) >= -alpha`` (continuous)
        or ``|p| >= 1 - alpha`` (discrete), or within the round-off margin
        ``delta`` of that boundary, go to the unstable part.

    Returns
    -------
    Split
        ``.stable`` (carries ``D``), ``.unstable`` (``D = 0``), ``.n_unstable``,
        the transformation ``.S`` / ``.S_inv`` and its condition ``.kappa``.
        Real systems give real parts.

    Warns
    -----
    RuntimeWarning
        When ``kappa(S) > 1/sqrt(eps)``: stable and unstable poles are so
        close that the two parts are individually large and cancel.

    Notes
    -----
    ``delta = max(stability_margin(A), stability_margin(T))``, a few hundred
    units of round-off in ``||A||``; the second term makes the stable part
    pass the same test when it is later handed to a Lyapunov solver on its own.
    When every pole is stable the system is returned as ``.stable`` in its own
    coordinates (``S = I``).

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace
    >>> from ctrlreduce._unstable import stable_unstable_split
    >>> A = np.array([[-1.0, 2.0, 0.5], [0.0, 0.5, 1.0], [0.0, 0.0, -3.0]])
    >>> sys = StateSpace(A, np.ones((3, 1)), np.ones((1, 3)), [[1.0]])
    >>> split = stable_unstable_split(sys)
    >>> split.n_unstable, split.stable.n_states
    (1, 2)
    >>> s = np.array([1j, 2.0 + 1j])
    >>> G = split.stable.evaluate(s) + split.unstable.evaluate(s)
    >>> bool(np.allclose(G, sys.evaluate(s), rtol=1e-12))
    True
    """
    discrete = sys.dt is not None
    alpha = check_alpha(alpha, discrete)
    n, m, p = sys.n_states, sys.n_inputs, sys.n_outputs
    D = np.array(sys.D)
    T, U, ns = _ordered_schur(np.asarray(sys.A), alpha, discrete)
    if ns == n:
        eye = np.eye(n, dtype=sys.A.dtype)
        return Split(sys, None, 0, D, eye, eye, 1.0)
    nu = n - ns
    Bt, Ct = U.conj().T @ sys.B, sys.C @ U
    if ns == 0:
        unstable = StateSpace(T, Bt, Ct, np.zeros((p, m)), sys.dt)
        return Split(None, unstable, n, D, U, U.conj().T, 1.0)
    T11, T12, T22 = T[:ns, :ns], T[:ns, ns:], T[ns:, ns:]
    X = _solve_coupling(T11, T22, T12)
    B1, B2, C1, C2 = Bt[:ns], Bt[ns:], Ct[:, :ns], Ct[:, ns:]
    stable = StateSpace(T11, B1 - X @ B2, C1, D, sys.dt)
    unstable = StateSpace(T22, B2, C1 @ X + C2, np.zeros((p, m)), sys.dt)
    # S = U [[I, X], [0, I]],  S^{-1} = [[I, -X], [0, I]] U^H
    S = np.hstack([U[:, :ns], U[:, :ns] @ X + U[:, ns:]])
    Uh = U.conj().T
    S_inv = np.vstack([Uh[:ns] - X @ Uh[ns:], Uh[ns:]])
    x = float(np.linalg.norm(X, 2))
    kappa = (x + np.sqrt(x * x + 4.0)) ** 2 / 4.0  # cond_2 of [[I, X], [0, I]]
    if kappa > _KAPPA_WARN:
        warnings.warn(
            f"the stable/unstable split is ill-conditioned: cond(S) = {kappa:.3g} "
            f"(||X|| = {x:.3g}); the stable and unstable poles are close and the two "
            "parts may carry large, cancelling errors. Consider a larger alpha.",
            RuntimeWarning,
            stacklevel=2,
        )
    return Split(stable, unstable, nu, D, S, S_inv, float(kappa))


def stable_error_system(original: StateSpace, reduced: StateSpace) -> StateSpace:
    """The stable part of ``original - reduced`` when their unstable parts are identical.

    With ``unstable="keep"`` the reduced model keeps the unstable part of the
    original exactly, so ``G - G_r`` has unstable states whose contributions
    cancel.  Splitting the error system (at ``alpha = 0``) leaves a stable
    realization of the same transfer function, fit for an H-infinity norm.
    """
    split = stable_unstable_split(original - reduced, alpha=0.0)
    if split.stable is None:  # both are exactly the unstable part
        return StateSpace.static_gain(split.D, original.dt)
    return split.stable


def reduce_unstable(
    sys: StateSpace,
    *,
    order: int | None,
    tol: float | None,
    method: str,
    elimination: str,
    alpha: float,
):  # noqa: ANN201 - returns _balance.Reduction (imported lazily)
    """Reduce the stable part of ``sys`` and keep its unstable part untouched.

    Parameters
    ----------
    sys : StateSpace
    order : int or None
        Total reduced order, **counting the kept unstable modes**; must be at
        least ``n_unstable``.
    tol : float or None
        Bound on the error of the stable part: the smallest stable order with
        ``2 * sum(tail HSVs) <= tol``.  Exactly one of ``order``, ``tol``.
    method, elimination : str
        As in :func:`balanced_truncation`, applied to the stable part.
    alpha : float
        Stability margin (see :func:`stable_unstable_split`).

    Returns
    -------
    Reduction
        ``system = reduced stable part + unstable part`` (states in that
        order); ``hsv`` is ``inf`` for each unstable mode followed by the stable
        part's HSVs; the bounds are those of the stable part, which bound
        ``||G - G_r||_inf`` because ``G - G_r = G_s - G_{s,r}``.

    Notes
    -----
    The projections are expressed in the original coordinates:
    ``V = [S_s V_s, S_u]`` and ``W = [S_inv_s^H W_s, S_inv_u^H]``, where
    ``S_s``/``S_u`` are the stable/unstable columns of the split
    transformation ``S``, ``S_inv_s``/``S_inv_u`` the matching rows of
    ``S^{-1}``, and ``V_s``, ``W_s`` the balancing projections of the stable
    part.  ``W^H V = I`` and, for ``elimination="truncate"``, the reduced
    matrices are ``(W^H A V, W^H B, C V, D)``.  With ``"matchdc"`` ``V`` and
    ``W`` span the kept subspaces but the stable block is a Schur complement.
    """
    from ._balance import Reduction, reduce_stable, replace
    from ._gramians import gramian_factors

    n = sys.n_states
    split = stable_unstable_split(sys, alpha=alpha)
    nu = split.n_unstable
    if (order is None) == (tol is None):
        raise ValueError(f"give exactly one of order and tol, got order={order!r}, tol={tol!r}")
    if order is not None:
        order = check_order(order, n)
        if order < nu:
            raise ValueError(
                f"order must be at least the number of unstable modes, which are kept: "
                f"got order={order} but sys has n_unstable={nu} (alpha={alpha:g})"
            )
    else:
        check_positive(tol, "tol")
    if split.stable is None:
        hsv = np.full(n, np.inf)
        eye = np.eye(n, dtype=sys.A.dtype)
        return Reduction(
            system=sys, original=sys, hsv=hsv, order=n, error_bound=0.0,
            error_bound_distinct=0.0, lower_bound=0.0, V=eye, W=eye,
            method=method, elimination=elimination, n_unstable=nu,
        )
    stable = split.stable
    Lc, Lo = gramian_factors(stable)
    order_s = None if order is None else order - nu
    red = reduce_stable(stable, Lc, Lo, order_s, tol, method, elimination)
    rs = red.order
    if split.unstable is None:
        return red
    unstable = split.unstable
    if rs == 0:  # _make_reduced's order-0 placeholder state is dropped
        system = unstable.with_matrices(D=red.system.D)
    else:
        system = red.system + unstable
    ns = split.n_stable
    V = np.hstack([split.S[:, :ns] @ red.V, split.S[:, ns:]])
    W = np.hstack([split.S_inv[:ns].conj().T @ red.W, split.S_inv[ns:].conj().T])
    hsv = np.concatenate([np.full(nu, np.inf), red.hsv])
    return replace(
        red,
        system=system,
        original=sys,
        hsv=hsv,
        order=rs + nu,
        V=V,
        W=W,
        n_unstable=nu,
    )
