"""Balanced realizations and balanced truncation (square-root methods).

Glossary
--------
==============  ============================================================
``Lc, Lo``      Gramian factors, ``P = Lc Lc^H``, ``Q = Lo Lo^H``
``Z, s, Y``     SVD ``Lo^H Lc = Z diag(s) Y^H``; ``s`` are the HSVs
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

Error bound (Enns 1984, Glover 1984; the same in discrete time)::

    sigma_{r+1} <= ||G - G_r||_inf <= 2 * sum_{k > r} sigma_k
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg

from ._gramians import _check_system, gramian_factors
from ._system import StateSpace, inert_pole
from ._validation import check_order, check_positive

__all__ = ["Reduction", "balanced_realization", "balanced_truncation", "tail_bound"]


def tail_bound(hsv: np.ndarray, order: int, *, distinct: bool = False) -> float:
    """A-priori H-infinity bound ``2 * sum(hsv[order:])``.

    With ``distinct=True`` each distinct value is counted once (the tighter
    classical form, valid because a repeated HSV contributes only once to the
    bound); values within ``1e-9`` relative of each other count as equal,
    which keeps the bound valid (it can only grow by that slack).
    """
    tail = np.asarray(hsv[order:], dtype=float)
    if tail.size == 0:
        return 0.0
    if np.any(np.isinf(tail)):
        return float("inf")
    if not distinct:
        return float(2.0 * tail.sum())
    groups: list[float] = []
    for v in tail:  # tail is descending
        if not groups or abs(groups[-1] - v) > 1e-9 * max(groups[-1], 1e-300):
            groups.append(float(v))
        else:
            groups[-1] = max(groups[-1], float(v))
    return float(2.0 * sum(groups))


@dataclass(frozen=True, eq=False)
class Reduction:
    """The outcome of a reduction: the model, and how much it lost.

    Attributes
    ----------
    system : StateSpace
        The reduced model, same ``dt`` as the original.
    original : StateSpace
        The system that was reduced.
    hsv : ndarray, shape (n,)
        Hankel singular values of ``original`` (descending; ``inf`` for each
        unstable mode kept with ``unstable="keep"``).
    order : int
        Order of ``system``.
    error_bound : float
        ``2 * sum(hsv[order:])``, every discarded HSV counted with its
        multiplicity: a bound on ``||G - G_r||_inf`` that needs no test for
        repeated values.
    error_bound_distinct : float
        The tighter classical bound counting each distinct discarded HSV once
        (values within ``1e-9`` relative counted as one).
    lower_bound : float
        ``hsv[order]``, no reduction of this order can do better in the
        H-infinity norm (0 when nothing is discarded).
    V, W : ndarray, shape (n, k)
        Projections, ``W^H V = I``; for ``elimination="truncate"`` the
        reduced matrices are ``(W^H A V, W^H B, C V, D)``.  ``k = order``
        except when ``order`` exceeds the numerical rank of the Hankel
        operator, where ``k`` is that rank and the model is padded with
        states that are neither controllable nor observable.
    method, elimination : str
    """

    system: StateSpace
    original: StateSpace
    hsv: np.ndarray
    order: int
    error_bound: float
    error_bound_distinct: float
    lower_bound: float
    V: np.ndarray
    W: np.ndarray
    method: str = "sr"
    elimination: str = "truncate"
    n_unstable: int = 0

    def certify(self, *, rtol: float = 1e-10) -> Certificate:
        """Measure ``||G - G_r||_inf`` and check it against both bounds.

        Returns a :class:`Certificate`; ``ok`` is ``True`` when
        ``lower_bound * (1 - slack) <= error <= error_bound * (1 + slack)`` with
        ``slack`` a round-off allowance.
        """
        from ._norms import hinf_norm

        err_sys = self.original - self.system
        if self.n_unstable:
            # the kept unstable part cancels exactly: measure the stable part of G - G_r
            from ._unstable import stable_error_system

            err_sys = stable_error_system(self.original, self.system)
        err = float(hinf_norm(err_sys, rtol=rtol))
        slack = 1e-8
        scale = max(float(np.max(self.hsv[np.isfinite(self.hsv)], initial=0.0)), 1e-300)
        upper_ok = err <= self.error_bound * (1 + slack) + 1e-12 * scale
        lower_ok = err >= self.lower_bound * (1 - slack) - 1e-12 * scale
        return Certificate(
            error=err,
            error_bound=self.error_bound,
            error_bound_distinct=self.error_bound_distinct,
            lower_bound=self.lower_bound,
            ok=bool(upper_ok and lower_ok),
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly dict of the sizes and bounds."""
        return {
            "n_before": self.original.n_states,
            "n_after": self.order,
            "error_bound": self.error_bound,
            "error_bound_distinct": self.error_bound_distinct,
            "lower_bound": self.lower_bound,
            "method": self.method,
            "elimination": self.elimination,
            "n_unstable": self.n_unstable,
        }


@dataclass(frozen=True)
class Certificate:
    """A measured reduction error next to its bounds."""

    error: float
    error_bound: float
    error_bound_distinct: float
    lower_bound: float
    ok: bool


# ------------------------------------------------------------------ helpers
def _svd(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        return scipy.linalg.svd(M, check_finite=False)
    except np.linalg.LinAlgError:  # gesdd rarely fails to converge; gesvd is robust
        return scipy.linalg.svd(M, check_finite=False, lapack_driver="gesvd")


def _numerical_rank(hsv: np.ndarray) -> int:
    """States whose HSV is distinguishable from round-off in ``sigma_1``."""
    if hsv.size == 0 or hsv[0] == 0:
        return 0
    tol = hsv.size * np.finfo(float).eps * hsv[0]
    return int(np.count_nonzero(hsv > tol))


def _projections(Lc, Lo, svd, r: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Right and left projections ``(V, W)`` of order ``r`` from ``svd = (Z, s, Y^H)``."""
    Z, s, Yh = svd
    Y = Yh.conj().T
    if r == 0:
        n = Lc.shape[0]
        empty = np.zeros((n, 0), dtype=Lc.dtype)
        return empty, empty
    scale = 1.0 / np.sqrt(s[:r])
    V = (Lc @ Y[:, :r]) * scale
    W = (Lo @ Z[:, :r]) * scale
    if method == "bfsr":
        V = scipy.linalg.qr(Lc @ Y[:, :r], mode="economic", check_finite=False)[0]
        Wb = scipy.linalg.qr(Lo @ Z[:, :r], mode="economic", check_finite=False)[0]
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


def _select_order(hsv: np.ndarray, order: Any, tol: Any, n: int) -> int:
    if (order is None) == (tol is None):
        raise ValueError(
            f"give exactly one of order and tol, got order={order!r}, tol={tol!r}"
        )
    if order is not None:
        return check_order(order, n)
    tol = check_positive(tol, "tol")
    for r in range(n + 1):
        if tail_bound(hsv, r) <= tol:
            return r
    return n  # pragma: no cover - r = n always has bound 0


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
        Stability margin for ``unstable="keep"``.

    Returns
    -------
    Reduction
        ``.system``, ``.hsv``, ``.order``, ``.error_bound``, the projections,
        and ``.certify()`` for the measured error.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace, balanced_truncation
    >>> A = np.diag([-1.0, -2.0, -30.0]); B = np.ones((3, 1)); C = np.ones((1, 3))
    >>> red = balanced_truncation(StateSpace(A, B, C), order=2)
    >>> red.order, red.system.n_states
    (2, 2)
    """
    sys = _check_system(sys)
    if method not in ("sr", "bfsr"):
        raise ValueError(f"method must be 'sr' or 'bfsr', got {method!r}")
    if elimination not in ("truncate", "matchdc"):
        raise ValueError(f"elimination must be 'truncate' or 'matchdc', got {elimination!r}")
    if unstable not in ("raise", "keep"):
        raise ValueError(f"unstable must be 'raise' or 'keep', got {unstable!r}")
    if tol is not None and order is None:
        check_positive(tol, "tol")
    if order is not None:
        check_order(order, sys.n_states)
    if unstable == "keep":
        from ._unstable import reduce_unstable

        return reduce_unstable(
            sys, order=order, tol=tol, method=method, elimination=elimination, alpha=alpha
        )
    Lc, Lo = gramian_factors(sys, "balanced_truncation")
    return reduce_stable(sys, Lc, Lo, order, tol, method, elimination)


def reduce_stable(
    sys: StateSpace,
    Lc: np.ndarray,
    Lo: np.ndarray,
    order: Any,
    tol: Any,
    method: str,
    elimination: str,
) -> Reduction:
    """Balanced truncation / SPA of a stable system given its Gramian factors."""
    n = sys.n_states
    svd = _svd(Lo.conj().T @ Lc)
    hsv = np.asarray(svd[1], dtype=np.float64)
    r = _select_order(hsv, order, tol, n)
    nmin = _numerical_rank(hsv)
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
            stacklevel=3,
        )
    if elimination == "truncate" or r_eff == nmin:
        V, W = _projections(Lc, Lo, svd, r_eff, method)
        Ar, Br, Cr, Dr = _project(sys, V, W)
    else:
        # SPA works on the numerically minimal balanced realization (see above).
        V, W = _projections(Lc, Lo, svd, nmin, "sr")
        Ar, Br, Cr, Dr = _spa(sys, V, W, r_eff)
        V, W = V[:, :r_eff], W[:, :r_eff]
    reduced = _make_reduced(sys, Ar, Br, Cr, Dr, max(r, 1))
    return Reduction(
        system=reduced,
        original=sys,
        hsv=hsv,
        order=r,
        error_bound=tail_bound(hsv, r),
        error_bound_distinct=tail_bound(hsv, r, distinct=True),
        lower_bound=float(hsv[r]) if r < n else 0.0,
        V=V,
        W=W,
        method=method if elimination == "truncate" else "sr",
        elimination=elimination,
    )


def _make_reduced(sys: StateSpace, Ar, Br, Cr, Dr, size: int) -> StateSpace:  # noqa: ANN001
    """Build the reduced ``StateSpace`` with exactly ``size`` states.

    Missing states are padded as neither controllable nor observable
    (``A = inert_pole(dt) I``, ``B = 0``, ``C = 0``), which leaves the
    transfer function unchanged (:meth:`StateSpace.static_gain` is the
    order-0 case).  ``StateSpace``
    needs at least one state, so an order-0 model (a static gain ``D``) is
    represented by one such state.
    """
    k = Ar.shape[0]
    if k < size:
        pad = size - k
        Ar = scipy.linalg.block_diag(Ar, inert_pole(sys.dt) * np.eye(pad))
        Br = np.vstack([Br, np.zeros((pad, sys.n_inputs), dtype=Br.dtype)])
        Cr = np.hstack([Cr, np.zeros((sys.n_outputs, pad), dtype=Cr.dtype)])
    if not sys.is_complex:
        Ar, Br, Cr, Dr = (np.real(M) for M in (Ar, Br, Cr, Dr))
    return StateSpace(Ar, Br, Cr, Dr, sys.dt)


def balanced_realization(sys: StateSpace) -> Reduction:
    """A balanced realization: both Gramians equal ``diag(hsv)``.

    Needs a minimal system (every HSV above round-off in ``sigma_1``);
    raises ``ValueError`` otherwise, naming how many states are not minimal.
    Returns a :class:`Reduction` of full order (``error_bound == 0``) whose
    ``V`` and ``W`` are the balancing transformation and its inverse
    (``W^H = V^{-1}``).
    """
    sys = _check_system(sys)
    Lc, Lo = gramian_factors(sys, "balanced_realization")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the padding warning: we raise instead
        red = reduce_stable(sys, Lc, Lo, sys.n_states, None, "sr", "truncate")
    hsv = red.hsv
    nmin = _numerical_rank(hsv)
    if nmin < sys.n_states:
        raise ValueError(
            f"sys is not minimal: {sys.n_states - nmin} of its {sys.n_states} HSVs are at "
            f"round-off level (sigma_min/sigma_1 = {hsv[-1] / hsv[0]:.3g}); use "
            f"balanced_truncation(sys, order={nmin}) or minimal_realization first"
        )
    return red


def replace(red: Reduction, **changes: Any) -> Reduction:
    """``dataclasses.replace`` for :class:`Reduction` (used by the unstable path)."""
    return dataclasses.replace(red, **changes)
