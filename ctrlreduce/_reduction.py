"""What a reduction returns: the model, what it lost, and a way to check it.

Error bounds (Enns 1984, Glover 1984; the same in discrete time)::

    sigma_{r+1} <= ||G - G_r||_inf <= 2 * sum_{k > r} sigma_k

for balanced truncation and for singular perturbation of a balanced
realization; ``sigma_k`` are the Hankel singular values of ``G``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._norms import hinf_norm
from ._split import stable_error_system
from ._system import StateSpace
from ._validation import EPS, check_bool, check_hsv, check_order, check_positive

__all__ = ["Certificate", "Reduction", "tail_bound", "tail_bounds"]


def tail_bounds(hsv: np.ndarray) -> np.ndarray:
    """``2 * sum(hsv[r:])`` for every order ``r = 0..n`` at once, shape ``(n + 1,)``.

    Summed from the smallest value up (in ``float64``), so small tails are
    not lost to the rounding of large partial sums; ``inf`` entries (unstable
    modes) make every bound that includes them infinite.
    """
    hsv = np.asarray(hsv, dtype=np.float64)
    rev = np.cumsum(hsv[::-1])[::-1]  # rev[r] = sum(hsv[r:])
    return 2.0 * np.concatenate([rev, [0.0]])


def tail_bound(hsv: Any, order: Any, *, distinct: bool = False) -> float:
    """A-priori H-infinity bound ``2 * sum(hsv[order:])``.

    Parameters
    ----------
    hsv : array_like, shape (n,)
        Hankel singular values: real, ``>= 0`` (``inf`` for unstable modes),
        in descending order.
    order : int
        Number of kept states, ``0..n``.
    distinct : bool, keyword-only
        Count each distinct value once (the tighter classical form, valid
        because a repeated HSV contributes only once to the bound); values
        within ``1e-9`` relative of each other count as equal, which keeps
        the bound valid (it can only grow by that slack).

    Returns
    -------
    float
        ``inf`` when a discarded value is ``inf``.

    Raises
    ------
    TypeError, ValueError
        ``hsv`` is not a 1-D array of non-negative, non-NaN numbers in
        descending order; ``order`` is not an integer in ``0..n``.

    Examples
    --------
    >>> tail_bound([3.0, 2.0, 1.0], 1)
    6.0
    >>> tail_bound([3.0, 1.0, 1.0], 1, distinct=True)
    2.0
    """
    values = check_hsv(hsv)
    order = check_order(order, values.size)
    distinct = check_bool(distinct, "distinct")
    tail = values[order:]
    if tail.size == 0:
        return 0.0
    if np.any(np.isinf(tail)):
        return float("inf")
    if not distinct:
        return float(tail_bounds(tail)[0])
    groups: list[float] = []
    for v in tail:  # tail is descending
        if not groups or abs(groups[-1] - v) > 1e-9 * max(groups[-1], 1e-300):
            groups.append(float(v))
        else:
            groups[-1] = max(groups[-1], float(v))
    return float(tail_bounds(np.array(groups[::-1]))[0])


@dataclass(frozen=True)
class Certificate:
    """A measured reduction error next to its bounds.

    Attributes
    ----------
    error : float
        ``||G - G_r||_inf``, measured (level-set method, relative accuracy
        ``rtol``).
    error_bound, error_bound_distinct, lower_bound : float
        The bounds of the :class:`Reduction`.
    slack : float
        The round-off allowance used in the check (absolute).
    ok : bool
        ``lower_bound - slack <= error <= error_bound + slack``.
    """

    error: float
    error_bound: float
    error_bound_distinct: float
    lower_bound: float
    ok: bool
    slack: float = 0.0


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
    n_unstable : int
        Unstable modes kept unchanged (``unstable="keep"``).
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

    def roundoff(self) -> float:
        """Absolute round-off allowance of a measured error: ``1e4 eps sum(hsv) ||V|| ||W||``.

        ``2 sum(hsv) >= ||G||_inf`` is the size of the two terms of ``G - G_r``,
        and the reduced matrices carry rounding amplified by the condition of
        the projections, ``||V||_2 ||W||_2 >= 1`` (``W^H V = I``), which grows
        like ``sqrt(sigma_1 / sigma_r)`` with square-root balancing.  Measured
        on full-order reductions (where the exact error is 0) of random
        discrete systems with poles at 0.999, n = 5..120: at most 6e3 times
        ``eps sum(hsv) ||V|| ||W||``.
        """
        finite = self.hsv[np.isfinite(self.hsv)]
        cond = 1.0
        if self.V.size:
            cond = max(1.0, float(np.linalg.norm(self.V, 2) * np.linalg.norm(self.W, 2)))
        return 1e4 * EPS * float(np.sum(finite)) * cond

    def certify(self, *, rtol: float = 1e-10) -> Certificate:
        """Measure ``||G - G_r||_inf`` and check it against both bounds.

        Parameters
        ----------
        rtol : float, keyword-only
            Relative accuracy of the measured norm (:func:`hinf_norm`).

        Returns
        -------
        Certificate
            ``ok`` is ``True`` when ``lower_bound * (1 - 1e-8) - slack <= error
            <= error_bound * (1 + 1e-8) + slack``, ``slack`` from
            :meth:`roundoff`.

        Examples
        --------
        >>> import numpy as np
        >>> from ctrlreduce import StateSpace, balanced_truncation
        >>> sys = StateSpace(np.diag([-1.0, -2.0, -30.0]), np.ones((3, 1)), np.ones((1, 3)))
        >>> balanced_truncation(sys, 1).certify().ok
        True
        """
        rtol = check_positive(rtol, "rtol")
        err_sys = self.original - self.system
        if self.n_unstable:
            # the kept unstable part cancels exactly: measure the stable part of G - G_r
            err_sys = stable_error_system(self.original, self.system)
        err = float(hinf_norm(err_sys, rtol=rtol))
        slack = self.roundoff()
        upper_ok = err <= self.error_bound * (1 + 1e-8) + slack
        lower_ok = err >= self.lower_bound * (1 - 1e-8) - slack
        return Certificate(
            error=err,
            error_bound=self.error_bound,
            error_bound_distinct=self.error_bound_distinct,
            lower_bound=self.lower_bound,
            ok=bool(upper_ok and lower_ok),
            slack=slack,
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
