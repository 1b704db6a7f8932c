"""Schur forms: the one decomposition of ``A`` that the algorithms share.

Glossary
--------
==========  ================================================================
``T``       complex upper-triangular Schur factor, ``A = Z T Z^H``
``Z``       ``U Q``: the unitary Schur basis
``U``       real orthogonal (real ``A``, real Schur form ``A = U T_r U^T``)
            or complex unitary (complex ``A``); ``None`` for diagonal ``A``
``T_r``     the real quasi-triangular Schur factor of a real ``A``
``Q``       identity except a ``2 x 2`` unitary block ``G_k^H`` on the rows
            and columns ``(m_k - 1, m_k)`` of each ``2 x 2`` block of ``T_r``
            (a complex-conjugate pair); ``T = Q^H T_r Q``
==========  ================================================================

For a real ``A`` the Schur vectors stay real: the triangular factor is made
complex only by the ``2 x 2`` rotations ``Q``, which act on disjoint pairs of
rows, so ``Z^H M = Q^H (U^T M)`` costs one real product and ``O(n)`` work per
column.  Working "in Schur coordinates" (``xi = Z^H x``) then needs no dense
complex product at all, and quantities computed there (Gramian factors,
Hankel singular values) avoid the rounding of the basis.

A diagonal ``A`` is kept as the vector of its diagonal (``T.ndim == 1``):
nothing to decompose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

__all__ = ["SchurForm", "is_diagonal", "schur_form"]


def is_diagonal(A: np.ndarray) -> bool:
    """``True`` when ``A`` is exactly diagonal."""
    return bool(np.count_nonzero(A - np.diag(np.diag(A))) == 0)


@dataclass(frozen=True, eq=False)
class SchurForm:
    """``A = Z T Z^H`` with ``Z = U Q`` (see the module glossary).

    Attributes
    ----------
    T : ndarray, complex128
        Shape ``(n, n)``, upper triangular; or ``(n,)``, the diagonal of a
        diagonal ``A`` (then ``Z = I``).
    U : ndarray or None
        ``(n, n)`` real orthogonal (real ``A``), complex unitary (complex
        ``A``), ``None`` for a diagonal ``A``.
    T_real : ndarray or None
        The real quasi-triangular factor (real non-diagonal ``A`` only).
    pairs : ndarray of int, shape (k,)
        ``m_k``: the ``2 x 2`` blocks sit on rows and columns ``(m_k - 1, m_k)``.
    c, s : ndarray, shape (k,)
        Rotation ``G_k = [[conj(c), s], [-s, c]]`` (``c`` complex, ``s``
        real, ``|c|^2 + s^2 = 1``); ``Q`` holds ``G_k^H`` on the pair.
    """

    T: np.ndarray
    U: np.ndarray | None
    T_real: np.ndarray | None = None
    pairs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    c: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.complex128))
    s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n(self) -> int:
        """Order of ``A``."""
        return int(self.T.shape[0])

    @property
    def diagonal(self) -> bool:
        """``True`` when ``A`` is diagonal (``T`` is a vector, ``Z = I``)."""
        return self.T.ndim == 1

    @property
    def real_basis(self) -> bool:
        """``True`` when ``U`` is real (real ``A``) or absent (diagonal ``A``)."""
        return self.U is None or not np.iscomplexobj(self.U)

    def eigenvalues(self) -> np.ndarray:
        """The eigenvalues of ``A`` in the order of ``T``'s diagonal, complex128."""
        return (self.T if self.diagonal else np.diag(self.T)).astype(np.complex128)

    def frobenius(self) -> float:
        """``||T||_F = ||A||_F``."""
        return float(np.linalg.norm(self.T))

    # ---------------------------------------------------------- coordinates
    def _rotate(self, M: np.ndarray, adjoint: bool) -> np.ndarray:
        """``Q M`` (``adjoint=False``) or ``Q^H M`` on the rows of ``M``, a new array."""
        out = np.array(M, dtype=np.complex128, copy=True)
        if self.pairs.size == 0:
            return out
        a, b = self.pairs - 1, self.pairs
        c, s = self.c[:, None], self.s[:, None]
        Ma, Mb = out[a].copy(), out[b].copy()
        if adjoint:  # rows <- G [Ma; Mb]
            out[a] = c.conj() * Ma + s * Mb
            out[b] = -s * Ma + c * Mb
        else:  # rows <- G^H [Ma; Mb]
            out[a] = c * Ma - s * Mb
            out[b] = s * Ma + c.conj() * Mb
        return out

    def to_schur(self, M: np.ndarray) -> np.ndarray:
        """``Z^H M`` for ``M`` of shape ``(n, k)``."""
        if self.U is None:
            return np.asarray(M, dtype=np.complex128)
        return self._rotate(self.U.conj().T @ M, adjoint=True)

    def from_schur(self, M: np.ndarray) -> np.ndarray:
        """``Z M`` for ``M`` of shape ``(n, k)``."""
        if self.U is None:
            return np.asarray(M, dtype=np.complex128)
        return self.U @ self._rotate(M, adjoint=False)

    def rotate(self, M: np.ndarray) -> np.ndarray:
        """``Q M``: from complex-Schur to real-Schur coordinates (real ``A``)."""
        return self._rotate(M, adjoint=False)


def _complexify(Tr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Complex triangular ``T = Q^H T_r Q`` from a real Schur factor (as ``rsf2csf``).

    Each ``2 x 2`` block ``[[p, q], [r, t]]`` (``r != 0``) holds a complex pair;
    with ``mu`` the eigenvalue of positive imaginary part minus ``t``,
    ``rho = sqrt(|mu|^2 + r^2)``, ``c = mu / rho``, ``s = r / rho``, the
    rotation ``G = [[conj(c), s], [-s, c]]`` zeroes the block's subdiagonal.
    The blocks are disjoint, so all rotations are applied at once.
    """
    n = Tr.shape[0]
    T = np.array(Tr, dtype=np.complex128)
    m = np.flatnonzero(np.diag(Tr, -1) != 0.0) + 1
    if m.size == 0:
        return T, m, np.zeros(0, dtype=np.complex128), np.zeros(0)
    a = m - 1
    p, q, r, t = Tr[a, a], Tr[a, m], Tr[m, a], Tr[m, m]
    half = 0.5 * (p - t)
    root = np.sqrt((half * half + q * r).astype(np.complex128))
    root = np.where(root.imag < 0, -root, root)  # the eigenvalue with Im > 0 goes first
    mu = half + root  # eigenvalue - t
    rho = np.hypot(np.abs(mu), np.abs(r))
    c, s = mu / rho, r / rho
    Ta, Tb = T[a].copy(), T[m].copy()
    T[a] = c.conj()[:, None] * Ta + s[:, None] * Tb
    T[m] = -s[:, None] * Ta + c[:, None] * Tb
    Ca, Cb = T[:, a].copy(), T[:, m].copy()
    T[:, a] = Ca * c[None, :] + Cb * s[None, :]
    T[:, m] = -Ca * s[None, :] + Cb * c.conj()[None, :]
    T[np.tril_indices(n, -1)] = 0.0
    return T, m, c, s


def _hermitian(A: np.ndarray) -> bool:
    """``True`` when ``A`` equals its conjugate transpose exactly."""
    return bool(np.array_equal(A, A.conj().T))


def schur_form(A: np.ndarray) -> SchurForm:
    """The Schur form of a validated square ``A`` (float64 or complex128).

    Diagonal ``A``: nothing is computed.  Exactly Hermitian (symmetric) ``A``:
    its eigendecomposition (LAPACK ``heevr``/``syevr``), whose Schur factor is
    the diagonal of eigenvalues.  ``gees`` would return the same form only up
    to an off-diagonal part of size ``eps ||A||`` and a basis a few times
    less orthogonal; on the discretised heat equation (``||X|| ~ 100 ||B B^T||``)
    that alone put the Lyapunov residual at 2e-12 of ``||B B^T||`` instead of
    1.5e-13.  Real ``A``: LAPACK ``gees`` in real
    arithmetic, then the ``2 x 2`` blocks are rotated to triangular form.
    Complex ``A``: complex ``gees``.
    """
    if is_diagonal(A):
        return SchurForm(np.diag(A).astype(np.complex128), None)
    if _hermitian(A):
        w, V = scipy.linalg.eigh(A, check_finite=False)
        T = np.diag(w).astype(np.complex128)
        if np.iscomplexobj(A):
            return SchurForm(T, V.astype(np.complex128))
        return SchurForm(T, V, np.diag(w))
    if np.iscomplexobj(A):
        T, U = scipy.linalg.schur(A, output="complex", check_finite=False)
        return SchurForm(np.triu(T).astype(np.complex128), U.astype(np.complex128))
    Tr, U = scipy.linalg.schur(A, output="real", check_finite=False)
    T, pairs, c, s = _complexify(Tr)
    return SchurForm(T, U, Tr, pairs, c, s)
