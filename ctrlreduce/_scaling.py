"""Equilibration: exact scaling of a system by powers of two, undone in the results.

Every public function that computes Gramians, Hankel singular values, norms or
reductions first replaces ``(A, B, C, D)`` by::

    A' = D^{-1} A D,   B' = D^{-1} B / b,   C' = C D / c,   D' = D / (b c)

with ``D = diag(d)`` and ``b``, ``c`` powers of two, so that no rounding
happens, and ``G = (b c) G'``.  ``d`` balances the state coupling (LAPACK
``gebal`` on the matrix ``[[|A|, r], [k^T, 0]]``, where ``r`` and ``k`` hold
the row sizes of ``B / b0`` and the column sizes of ``C / c0``: the analogue of
SLICOT ``TB01ID``), and ``b``, ``c`` bring ``B'`` and ``C'`` to entries of
size about one.  ``b c`` is a power of four, so that ``sqrt(b c)`` is exact
too.

The results are mapped back exactly: Hankel singular values, bounds and norms
are multiplied by ``b c``; a balanced reduced model of ``G'``,
``(A_r, B_r, C_r, D_r)``, is one of ``G`` as
``(A_r, sqrt(b c) B_r, sqrt(b c) C_r, b c D_r)``; projections become
``V = sqrt(b/c) D V'`` and ``W = sqrt(c/b) D^{-1} W'``.  Gramian factors are
``L_c = b D L_c'`` and ``L_o = c D^{-1} L_o'``.

Why: without it the Hammarling recursion squares entries of ``B`` and ``C`` and
over- or underflows outside about ``1e+-154``, and every rank or stability
threshold depends on the units of the states.  With it, Hankel singular
values, bounds and norms are invariant (within round-off) under ``B -> a B``,
``C -> g C`` and diagonal state scaling, for ``a``, ``g`` across the whole
float64 range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ._system import StateSpace

__all__ = ["Scaling", "equilibrate", "ldexp2", "pow2"]


def pow2(x: float) -> int:
    """The exponent ``e`` with ``2**(e - 1) <= x < 2**e`` for ``x > 0`` (0 for ``x == 0``)."""
    return int(np.frexp(x)[1]) if x > 0 else 0


def ldexp2(M: np.ndarray, e: int | np.ndarray) -> np.ndarray:
    """``M * 2**e`` without rounding (real or complex)."""
    if np.iscomplexobj(M):
        return np.ldexp(M.real, e) + 1j * np.ldexp(M.imag, e)
    return np.ldexp(M, e)


@dataclass(frozen=True)
class Scaling:
    """The exact scaling ``(d, b, c)`` of :func:`equilibrate`, as exponents of two.

    Attributes
    ----------
    ed : ndarray of int, shape (n,)
        ``d = 2**ed``: ``A' = D^{-1} A D``, ``B' = D^{-1} B / b``, ``C' = C D / c``.
    eb, ec : int
        ``b = 2**eb``, ``c = 2**ec``; ``eb + ec`` is even.
    """

    ed: np.ndarray
    eb: int
    ec: int

    @property
    def gain(self) -> float:
        """``b c``: ``G = gain * G'``, and HSVs, bounds and norms scale by it."""
        return float(np.ldexp(1.0, self.eb + self.ec))

    def scale(self, x: float | np.ndarray) -> float | np.ndarray:
        """``b c x``, for values that scale like ``G`` (HSVs, bounds, norms)."""
        return np.ldexp(x, self.eb + self.ec)

    def system(self, Ar, Br, Cr, Dr, dt):  # noqa: ANN001, ANN201 - numpy in, StateSpace out
        """A realization of ``G = b c G'`` from one ``(Ar, Br, Cr, Dr)`` of ``G'``.

        ``sqrt(b c)`` goes to each of ``B`` and ``C``, which keeps a balanced
        realization balanced.
        """
        h = (self.eb + self.ec) // 2
        return StateSpace(Ar, ldexp2(Br, h), ldexp2(Cr, h), ldexp2(Dr, self.eb + self.ec), dt)

    def right(self, V: np.ndarray) -> np.ndarray:
        """``sqrt(b / c) D V'``: a right projection in the original coordinates."""
        h = (self.eb - self.ec) // 2
        return ldexp2(V, self.ed[:, None] + h)

    def left(self, W: np.ndarray) -> np.ndarray:
        """``sqrt(c / b) D^{-1} W'``: a left projection in the original coordinates."""
        h = (self.ec - self.eb) // 2
        return ldexp2(W, -self.ed[:, None] + h)

    def controllability(self, L: np.ndarray) -> np.ndarray:
        """``b D L'``: a controllability Gramian factor in the original coordinates."""
        return ldexp2(L, self.ed[:, None] + self.eb)

    def observability(self, L: np.ndarray) -> np.ndarray:
        """``c D^{-1} L'``: an observability Gramian factor in the original coordinates."""
        return ldexp2(L, -self.ed[:, None] + self.ec)

    def states(self) -> np.ndarray:
        """``d`` as floats (``x = D x'``)."""
        return np.ldexp(1.0, self.ed)


def _max_abs(M: np.ndarray) -> float:
    return float(np.max(np.abs(M), initial=0.0))


def equilibrate(sys: StateSpace) -> tuple[StateSpace, Scaling]:
    """The equilibrated system ``(A', B', C', D')`` and its :class:`Scaling`.

    See the module docstring.  Exact: every factor is a power of two.
    Entries of ``B'`` and ``C'`` end up of size about one; ``A'`` has rows and
    columns balanced against each other and against ``B'`` and ``C'``.
    """
    A, B, C = sys.A, sys.B, sys.C
    n = A.shape[0]
    eb0, ec0 = pow2(_max_abs(B)), pow2(_max_abs(C))
    r = np.max(np.abs(ldexp2(B, -eb0)), axis=1)  # (n,) row sizes of B / b0
    k = np.max(np.abs(ldexp2(C, -ec0)), axis=0)  # (n,) column sizes of C / c0
    M = np.zeros((n + 1, n + 1))
    M[:n, :n] = np.abs(A)
    M[:n, n] = r
    M[n, :n] = k
    if n >= 1 and np.any(M):
        _, (dfull, _) = scipy.linalg.matrix_balance(M, permute=False, separate=True)
        ed = np.array([pow2(v) - 1 for v in dfull], dtype=np.int64)
        ed = ed[:n] - ed[n]
    else:  # pragma: no cover - a StateSpace has n >= 1
        ed = np.zeros(n, dtype=np.int64)
    Ab = ldexp2(ldexp2(A, -ed[:, None]), ed[None, :])
    B1 = ldexp2(B, -ed[:, None])
    C1 = ldexp2(C, ed[None, :])
    eb, ec = pow2(_max_abs(B1)), pow2(_max_abs(C1))
    if (eb + ec) % 2:
        ec += 1
    scaled = StateSpace(
        Ab, ldexp2(B1, -eb), ldexp2(C1, -ec), ldexp2(sys.D, -(eb + ec)), sys.dt
    )
    return scaled, Scaling(ed, eb, ec)
