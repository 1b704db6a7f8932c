"""Balanced realizations and balanced truncation (square-root methods).

Glossary
--------
==============  ============================================================
``Lc, Lo``      Gramian factors, ``P = Y Lc Lc^H Y^H``, ``Q = Y Lo Lo^H Y^H``
                in working coordinates (:class:`GramianFactors`)
``Z, s, Y^H``   SVD ``Lo^H Lc = Z diag(s) Y^H``; ``s`` are the HSVs
``V, W``        right and left projections, ``(n, r)``, ``W^H V = I_r``;
                the reduced system is ``(W^H A V, W^H B, C V, D)``
``r``           reduced order
==============  ============================================================

Square root (``"sr"``, Tombs and Postlethwaite 1987)::

    V = Lc Y_r diag(s_r)^{-1/2},   W = Lo Z_r diag(s_r)^{-1/2}

which gives a balanced reduced model (both Gramians ``diag(s_r)``).
Balancing-free square root (``"bfsr"``, Varga 1991): ``V`` and ``W`` are
orthonormal bases of the same subspaces, with ``W`` rescaled so that
``W^H V = I``; better conditioned when the kept HSVs span many decades, the
same transfer function.

Every reduction runs on the equilibrated system (:mod:`ctrlreduce._scaling`)
and is mapped back exactly.  The bounds are in :mod:`ctrlreduce._reduction`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import numpy as np
import scipy.linalg

from ._gramians import GramianFactors, finite_or_raise, gramian_factors
from ._reduction import Reduction, tail_bound, tail_bounds
from ._scaling import Scaling, equilibrate
from ._schur import schur_form
from ._split import split_scaled
from ._stability import require_stable
from ._system import StateSpace, check_alpha, check_system, inert_pole
from ._validation import EPS, check_choice, check_order, check_order_or_tol

__all__ = [
    "balanced_realization", "balanced_truncation", "hankel_svd", "reduce_scaled", "reduce_stable",
]


# ------------------------------------------------------------------ helpers
def _svd(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        return scipy.linalg.svd(M, check_finite=False)
    except np.linalg.LinAlgError:  # gesdd rarely fails to converge; gesvd is robust
        return scipy.linalg.svd(M, check_finite=False, lapack_driver="gesvd")


def numerical_rank(hsv: np.ndarray) -> int:
    """States whose HSV is distinguishable from round-off in ``sigma_1``."""
    if hsv.size == 0 or hsv[0] == 0:
        return 0
    tol = hsv.size * EPS * hsv[0]
    return int(np.count_nonzero(hsv > tol))


def _projections(F: GramianFactors, svd, r: int, method: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Right and left projections ``(V, W)`` of order ``r`` in original coordinates."""
    Z, s, Yh = svd
    Y = Yh.conj().T
    if r == 0:
        n = F.Lc.shape[0]
        empty = np.zeros((n, 0), dtype=F.Lc.dtype)
        return empty, empty
    scale = 1.0 / np.sqrt(s[:r])
    V = F.original(F.Lc @ Y[:, :r]) * scale
    W = F.original(F.Lo @ Z[:, :r]) * scale
    if method == "bfsr":
        V = scipy.linalg.qr(V, mode="economic", check_finite=False)[0]
        Wb = scipy.linalg.qr(W, mode="economic", check_finite=False)[0]
        # W = Wb M spanning range(Lo Z_r) with W^H V = M^H (Wb^H V) = I
        W = Wb @ np.linalg.inv(Wb.conj().T @ V).conj().T
    return V, W


def _project(sys: StateSpace, V: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, ...]:
    Wh = W.conj().T
    return Wh @ sys.A @ V, Wh @ sys.B, sys.C @ V, np.array(sys.D)


def _spa(sys: StateSpace, V: np.ndarray, W: np.ndarray, r: int) -> tuple[np.ndarray, ...]:
    """Singular perturbation of a balanced realization ``(W^H A V, ...)`` at order ``r``.

    Continuous (keeps ``G(0)``)::

        Ar = A11 - A12 A22^{-1} A21,   Br = B1 - A12 A22^{-1} B2,
        Cr = C1 - C2 A22^{-1} A21,     Dr = D - C2 A22^{-1} B2

    Discrete (keeps ``G(1)``): the same with ``A22`` replaced by ``A22 - I``
    and the lower blocks unchanged.
    """
    Ab, Bb, Cb, D = _project(sys, V, W)
    A11, A12, A21, A22 = Ab[:r, :r], Ab[:r, r:], Ab[r:, :r], Ab[r:, r:]
    B1, B2, C1, C2 = Bb[:r], Bb[r:], Cb[:, :r], Cb[:, r:]
    M = A22 - np.eye(A22.shape[0]) if sys.dt is not None else A22
    try:
        lu = scipy.linalg.lu_factor(M, check_finite=False)
    except (ValueError, np.linalg.LinAlgError) as exc:  # pragma: no cover
        raise ValueError("singular perturbation failed: the eliminated block is singular") from exc
    X = scipy.linalg.lu_solve(lu, np.hstack([A21, B2]), check_finite=False)
    XA, XB = X[:, :r], X[:, r:]
    return A11 - A12 @ XA, B1 - A12 @ XB, C1 - C2 @ XA, D - C2 @ XB


def _select_order(bounds: np.ndarray, order: int | None, tol: float | None) -> int:
    """``order``, or the smallest order whose bound is at most ``tol``."""
    if order is not None:
        return order
    return int(np.flatnonzero(bounds <= tol)[0])  # bounds[n] = 0 <= tol always


def _make_reduced(sys: StateSpace, Ar, Br, Cr, Dr, size: int) -> tuple[np.ndarray, ...]:  # noqa: ANN001
    """The reduced matrices with exactly ``size`` states.

    Missing states are padded as neither controllable nor observable
    (``A = inert_pole(dt) I``, ``B = 0``, ``C = 0``), which leaves the
    transfer function unchanged (:meth:`StateSpace.static_gain` is the
    order-0 case).  ``StateSpace`` needs at least one state, so an order-0
    model (a static gain ``D``) is represented by one such state.
    """
    k = Ar.shape[0]
    if k < size:
        pad = size - k
        Ar = scipy.linalg.block_diag(Ar, inert_pole(sys.dt) * np.eye(pad))
        Br = np.vstack([Br, np.zeros((pad, sys.n_inputs), dtype=Br.dtype)])
        Cr = np.hstack([Cr, np.zeros((sys.n_outputs, pad), dtype=Cr.dtype)])
    if not sys.is_complex:
        Ar, Br, Cr, Dr = (np.real(M) for M in (Ar, Br, Cr, Dr))
    return Ar, Br, Cr, Dr


def hankel_svd(F: GramianFactors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SVD ``Lo^H Lc = Z diag(s) Y^H`` (``gesdd``, ``gesvd`` if it fails)."""
    return _svd(F.hankel())


def reduce_stable(
    sys: StateSpace, F: GramianFactors, order: int | None, tol: float | None,
    method: str, elimination: str, svd: tuple[np.ndarray, ...] | None = None,
) -> Reduction:
    """Balanced truncation / SPA of an equilibrated stable system given its factors.

    ``svd`` is :func:`hankel_svd` of ``F`` when the caller has it already.  The
    returned :class:`Reduction` is in the coordinates and units of ``sys``.
    """
    n = sys.n_states
    svd = hankel_svd(F) if svd is None else svd
    hsv = np.asarray(svd[1], dtype=np.float64)
    bounds = tail_bounds(hsv)
    r = _select_order(bounds, order, tol)
    nmin = numerical_rank(hsv)
    # States beyond the numerical rank have HSVs at round-off level: diag(s)^{-1/2}
    # would overflow.  They change G by O(n eps sigma_1), so the model is built at
    # order min(r, nmin) and padded with states that are neither controllable nor
    # observable (exactly the same transfer function) to keep the requested order.
    r_eff = min(r, nmin)
    if r_eff < r:
        warnings.warn(
            f"order {r} exceeds the numerical rank {nmin} of the Hankel operator "
            f"(sigma_{nmin + 1}/sigma_1 = {hsv[min(nmin, n - 1)] / max(hsv[0], 1e-300):.2g}); "
            f"{r - r_eff} states are padded as uncontrollable and unobservable",
            RuntimeWarning,
            stacklevel=4,
        )
    if elimination == "truncate" or r_eff == nmin:
        V, W = _projections(F, svd, r_eff, method)
        Ar, Br, Cr, Dr = _project(sys, V, W)
    else:
        # SPA works on the numerically minimal balanced realization (see above).
        V, W = _projections(F, svd, nmin, "sr")
        Ar, Br, Cr, Dr = _spa(sys, V, W, r_eff)
        V, W = V[:, :r_eff], W[:, :r_eff]
    Ar, Br, Cr, Dr = _make_reduced(sys, Ar, Br, Cr, Dr, max(r, 1))
    return Reduction(
        system=StateSpace(Ar, Br, Cr, Dr, sys.dt),
        original=sys,
        hsv=hsv,
        order=r,
        error_bound=float(bounds[r]),
        error_bound_distinct=tail_bound(hsv, r, distinct=True),
        lower_bound=float(hsv[r]) if r < n else 0.0,
        V=V,
        W=W,
        method=method if elimination == "truncate" else "sr",
        elimination=elimination,
    )


def _reduce_unstable(
    sys: StateSpace, order: int | None, tol: float | None, method: str, elimination: str,
    alpha: float,
) -> Reduction:
    """Reduce the stable part of an equilibrated ``sys`` and keep its unstable part.

    ``order`` counts the kept unstable modes and must be at least their
    number; ``tol`` bounds the error of the stable part.  The projections are
    expressed in the coordinates of ``sys``: ``V = [S_s V_s, S_u]`` and
    ``W = [S_inv_s^H W_s, S_inv_u^H]``, where ``S_s``/``S_u`` are the
    stable/unstable columns of the split transformation ``S``, ``S_inv_s``/
    ``S_inv_u`` the matching rows of ``S^{-1}``, and ``V_s``, ``W_s`` the
    balancing projections of the stable part.  ``W^H V = I`` and, for
    ``elimination="truncate"``, the reduced matrices are
    ``(W^H A V, W^H B, C V, D)``.  The HSVs are ``inf`` for each unstable
    mode, then the stable part's; the bounds are the stable part's, which
    bound ``||G - G_r||_inf`` because ``G - G_r = G_s - G_{s,r}``.
    """
    n = sys.n_states
    split = split_scaled(sys, alpha)
    nu = split.n_unstable
    if order is not None and order < nu:
        raise ValueError(
            f"order must be at least the number of unstable modes, which are kept: "
            f"got order={order} but sys has n_unstable={nu} (alpha={alpha:g})"
        )
    if split.stable is None:
        eye = np.eye(n, dtype=sys.A.dtype)
        return Reduction(
            system=sys, original=sys, hsv=np.full(n, np.inf), order=n, error_bound=0.0,
            error_bound_distinct=0.0, lower_bound=0.0, V=eye, W=eye,
            method=method, elimination=elimination, n_unstable=nu,
        )
    stable = split.stable
    schur = schur_form(stable.A)
    F = gramian_factors(stable, schur, "balanced_truncation")
    red = reduce_stable(stable, F, None if order is None else order - nu, tol, method,
                        elimination)
    if split.unstable is None:
        return red
    rs = red.order
    unstable = split.unstable
    if rs == 0:  # _make_reduced's order-0 placeholder state is dropped
        system = unstable.with_matrices(D=red.system.D)
    else:
        system = red.system + unstable
    ns = split.n_stable
    V = np.hstack([split.S[:, :ns] @ red.V, split.S[:, ns:]])
    W = np.hstack([split.S_inv[:ns].conj().T @ red.W, split.S_inv[ns:].conj().T])
    return dataclasses.replace(
        red, system=system, original=sys, hsv=np.concatenate([np.full(nu, np.inf), red.hsv]),
        order=rs + nu, V=V, W=W, n_unstable=nu,
    )


def _unscale(red: Reduction, original: StateSpace, sc: Scaling) -> Reduction:
    """A :class:`Reduction` of the equilibrated system, in the original coordinates and units."""
    s = red.system
    if s is red.original:  # nothing reduced (every mode kept): the caller's own object
        return dataclasses.replace(red, system=original, original=original,
                                   hsv=finite_or_raise(sc, red.hsv, "reduction"),
                                   V=sc.right(red.V), W=sc.left(red.W))
    system = sc.system(s.A, s.B, s.C, s.D, s.dt)
    if not all(np.all(np.isfinite(M)) for M in (system.A, system.B, system.C, system.D)):
        raise ValueError("the reduced model overflows float64; rescale the system")
    bounds = finite_or_raise(
        sc, np.array([red.error_bound, red.error_bound_distinct, red.lower_bound]), "reduction"
    )
    return dataclasses.replace(
        red, system=system, original=original,
        hsv=finite_or_raise(sc, red.hsv, "reduction"),
        error_bound=float(bounds[0]), error_bound_distinct=float(bounds[1]),
        lower_bound=float(bounds[2]), V=sc.right(red.V), W=sc.left(red.W),
    )


def reduce_scaled(
    scaled: StateSpace, order: int | None, tol: float | None, *, method: str = "sr",
    elimination: str = "truncate", unstable: str = "raise", alpha: float = 0.0,
    what: str = "balanced_truncation",
) -> Reduction:
    """Balanced truncation of an equilibrated, validated system, in its own units."""
    if unstable == "keep":
        return _reduce_unstable(scaled, order, tol, method, elimination, alpha)
    schur = schur_form(scaled.A)
    require_stable(schur, scaled.dt is not None, what)
    F = gramian_factors(scaled, schur, what)
    return reduce_stable(scaled, F, order, tol, method, elimination)


# ------------------------------------------------------------------ public
def balanced_truncation(
    sys: StateSpace,
    order: int | None = None,
    *,
    tol: float | None = None,
    method: Literal["sr", "bfsr"] = "sr",
    elimination: Literal["truncate", "matchdc"] = "truncate",
    unstable: Literal["raise", "keep"] = "raise",
    alpha: float = 0.0,
) -> Reduction:
    """Reduce a system by balanced truncation or singular perturbation.

    Parameters
    ----------
    sys : StateSpace
        Continuous or discrete, real or complex, SISO or MIMO.  Must be
        stable unless ``unstable="keep"``.
    order : int, optional
        Reduced order ``r`` in ``0..n`` (counting kept unstable modes).
    tol : float, optional, keyword-only
        Pick the smallest order whose a-priori bound ``2 * sum(tail HSVs)`` is
        at most ``tol``.  Exactly one of ``order`` and ``tol`` must be given.
        The bound holds for the measured error, so ``||G - G_r||_inf <= tol``.
    method : {"sr", "bfsr"}, keyword-only
        Square root, or balancing-free square root.  Singular perturbation
        always eliminates from the square-root balanced realization, so with
        ``elimination="matchdc"`` the result reports ``method="sr"``.
    elimination : {"truncate", "matchdc"}, keyword-only
        ``"truncate"``: drop the weak states.  ``"matchdc"``: singular
        perturbation, which keeps the DC gain (``G(0)``, or ``G(1)`` in
        discrete time) exactly; same bound.
    unstable : {"raise", "keep"}, keyword-only
        With ``"keep"`` the system is split additively into stable and
        unstable parts; the stable part is reduced and the unstable part kept
        unchanged.
    alpha : float, keyword-only
        Stability margin ``>= 0`` for ``unstable="keep"``.

    Returns
    -------
    Reduction
        ``.system``, ``.hsv``, ``.order``, ``.error_bound``, the projections,
        and ``.certify()`` for the measured error.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (named); an unstable system with ``unstable="raise"``
        (the poles are named); ``order`` below the number of kept unstable
        modes.

    Warns
    -----
    RuntimeWarning
        ``order`` exceeds the numerical rank of the Hankel operator (the model
        is padded with inert states).

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace, balanced_truncation
    >>> A = np.diag([-1.0, -2.0, -30.0]); B = np.ones((3, 1)); C = np.ones((1, 3))
    >>> red = balanced_truncation(StateSpace(A, B, C), order=2)
    >>> red.order, red.system.n_states
    (2, 2)
    """
    sys = check_system(sys)
    method = check_choice(method, "method", ("sr", "bfsr"))
    elimination = check_choice(elimination, "elimination", ("truncate", "matchdc"))
    unstable = check_choice(unstable, "unstable", ("raise", "keep"))
    alpha = check_alpha(alpha, sys.dt is not None)
    order, tol = check_order_or_tol(order, tol, sys.n_states)
    scaled, sc = equilibrate(sys)
    tol_s = None if tol is None else tol / sc.gain
    red = reduce_scaled(scaled, order, tol_s, method=method, elimination=elimination,
                        unstable=unstable, alpha=alpha)
    return _unscale(red, sys, sc)


def balanced_realization(sys: StateSpace) -> Reduction:
    """A balanced realization: both Gramians equal ``diag(hsv)``.

    Needs a minimal system (every HSV above round-off in ``sigma_1``);
    raises ``ValueError`` otherwise, naming how many states are not minimal.
    Returns a :class:`Reduction` of full order (``error_bound == 0``) whose
    ``V`` and ``W`` are the balancing transformation and its inverse
    (``W^H = V^{-1}``).

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace, balanced_realization, gramians
    >>> bal = balanced_realization(StateSpace(np.diag([-1.0, -3.0]), [[1.0], [2.0]],
    ...                                       [[1.0, 1.0]])).system
    >>> P, Q = gramians(bal)
    >>> bool(np.allclose(P, Q) and np.allclose(P, np.diag(np.diag(P))))
    True
    """
    sys = check_system(sys)
    scaled, sc = equilibrate(sys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the padding warning: we raise instead
        red = reduce_scaled(scaled, check_order(sys.n_states, sys.n_states), None,
                            what="balanced_realization")
    hsv = red.hsv
    nmin = numerical_rank(hsv)
    if nmin < sys.n_states:
        raise ValueError(
            f"sys is not minimal: {sys.n_states - nmin} of its {sys.n_states} HSVs are at "
            f"round-off level (sigma_min/sigma_1 = {hsv[-1] / hsv[0]:.3g}); use "
            f"balanced_truncation(sys, order={nmin}) or minimal_realization first"
        )
    return _unscale(red, sys, sc)
