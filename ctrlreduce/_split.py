"""Additive stable/unstable decomposition ``G = G_stable + G_unstable``.

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
``delta_i``     round-off margin of pole ``i`` (:mod:`ctrlreduce._stability`)
==============  ============================================================

A pole ``p_i`` counts as **stable** when::

    Re(p_i) < -(alpha + delta_i)          (continuous time)
    |p_i|   <  1 - (alpha + delta_i)      (discrete time)

and as unstable otherwise, so poles on the boundary, or within round-off of
it, always land in the unstable part and never reach a Lyapunov solver.

With ``S^{-1} B = [B_s; B_u]`` and ``C S = [C_s, C_u]``::

    G(s) = G_s(s) + G_u(s),
    G_s = (T11, B_s, C_s, D),   G_u = (T22, B_u, C_u, 0)

exactly (in exact arithmetic), with ``B_s = B1 - X B2``, ``B_u = B2``,
``C_s = C1``, ``C_u = C1 X + C2`` and ``[B1; B2] = U^H B``, ``[C1, C2] = C U``.
The split is computed on the equilibrated system (:mod:`ctrlreduce._scaling`)
and mapped back exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy.linalg import lapack

from ._scaling import equilibrate, ldexp2
from ._schur import schur_form
from ._stability import unstable_mask
from ._system import StateSpace, check_alpha, check_system

__all__ = ["Split", "split_scaled", "stable_error_system", "stable_unstable_split"]

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
        2-norm condition number of the coupling ``[[I, X], [0, I]]``; a
        large value means the stable and unstable poles are close and the
        split loses ``log10(kappa)`` digits.
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


def _ordered_schur(A: np.ndarray, alpha: float, discrete: bool):  # noqa: ANN202
    """Schur form with the stable eigenvalues leading; returns ``(T, U, ns)``.

    The selection is decided once, on the unordered Schur form, by
    :func:`ctrlreduce._stability.unstable_mask` (each pole with its own
    round-off margin; both members of a complex pair together), and applied
    with LAPACK ``trsen``.  Deciding first and reordering second avoids the
    ``gees`` failure mode where round-off during the reordering makes a
    selected eigenvalue fail the test.
    """
    schur = schur_form(A)
    select = ~unstable_mask(schur, discrete, alpha)
    ns = int(np.count_nonzero(select))
    if schur.diagonal:
        order = np.argsort(~select, kind="stable")
        P = np.eye(A.shape[0], dtype=A.dtype)[:, order]
        return np.diag(np.diag(A)[order]), P, ns
    real = schur.T_real is not None
    T = schur.T_real if schur.T_real is not None else schur.T
    U = cast(np.ndarray, schur.U)  # not diagonal: a Schur basis exists
    if ns in (0, schur.n) or np.all(select[:ns]):
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


def split_scaled(sys: StateSpace, alpha: float, *, warn: bool = True) -> Split:
    """:func:`stable_unstable_split` of an already validated (and equilibrated) system."""
    discrete = sys.dt is not None
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
    if warn and kappa > _KAPPA_WARN:
        warnings.warn(
            f"the stable/unstable split is ill-conditioned: cond(S) = {kappa:.3g} "
            f"(||X|| = {x:.3g}); the stable and unstable poles are close and the two "
            "parts may carry large, cancelling errors. Consider a larger alpha.",
            RuntimeWarning,
            stacklevel=3,
        )
    return Split(stable, unstable, nu, D, S, S_inv, float(kappa))


def stable_unstable_split(sys: StateSpace, *, alpha: float = 0.0) -> Split:
    """Split ``G = G_stable + G_unstable`` by an ordered Schur form and a Sylvester solve.

    Parameters
    ----------
    sys : StateSpace
        Continuous or discrete, real or complex.
    alpha : float, keyword-only
        Stability margin ``>= 0`` (``< 1`` in discrete time): poles with
        ``Re(p) >= -alpha`` (continuous) or ``|p| >= 1 - alpha`` (discrete),
        or within their round-off margin of that boundary, go to the unstable
        part.

    Returns
    -------
    Split
        ``.stable`` (carries ``D``), ``.unstable`` (``D = 0``), ``.n_unstable``,
        the transformation ``.S`` / ``.S_inv`` and its condition ``.kappa``.
        Real systems give real parts.

    Raises
    ------
    TypeError, ValueError
        ``sys`` is not a ``StateSpace``; ``alpha`` is not a number in range.

    Warns
    -----
    RuntimeWarning
        When ``kappa > 1/sqrt(eps)``: stable and unstable poles are so
        close that the two parts are individually large and cancel.

    Notes
    -----
    The system is equilibrated first (``x = D x'``, ``B = b D B'``,
    ``C = c C' D^{-1}``, powers of two); the split of the scaled system maps
    back exactly: ``S = D S'``, ``S^{-1} = S'^{-1} D^{-1}``, the parts'
    ``B`` times ``b`` and ``C`` times ``c``.  When every pole is stable the
    system is returned as ``.stable`` in those coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace, stable_unstable_split
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
    sys = check_system(sys)
    alpha = check_alpha(alpha, sys.dt is not None)
    scaled, sc = equilibrate(sys)
    sp = split_scaled(scaled, alpha)
    ed = sc.ed

    def part(s: StateSpace | None, D: np.ndarray) -> StateSpace | None:
        if s is None:
            return None
        return StateSpace(s.A, ldexp2(s.B, sc.eb), ldexp2(s.C, sc.ec), D, s.dt)

    zero = np.zeros_like(sys.D)
    return Split(
        part(sp.stable, sys.D),
        part(sp.unstable, zero),
        sp.n_unstable,
        np.array(sys.D),
        ldexp2(sp.S, ed[:, None]),
        ldexp2(sp.S_inv, -ed[None, :]),
        sp.kappa,
    )


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
