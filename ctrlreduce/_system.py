"""Linear time-invariant state-space systems.

Glossary
--------
===========  ==================================================================
``A``        state matrix, shape ``(n, n)``
``B``        input matrix, shape ``(n, m)``
``C``        output matrix, shape ``(p, n)``
``D``        feedthrough, shape ``(p, m)``
``dt``       ``None`` for continuous time ``x' = A x + B u``;
             ``dt > 0`` for discrete time ``x[k+1] = A x[k] + B u[k]``
``G(s)``     transfer function ``C (s I - A)^{-1} B + D``, ``s = i w`` on the
             imaginary axis (continuous) or ``s = exp(i w dt)`` on the unit
             circle (discrete)
===========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.signal

from ._schur import SchurForm, is_diagonal, schur_form
from ._stability import balance, unstable_poles
from ._validation import (
    EPS,
    as_matrix,
    check_dt,
    check_nonnegative,
    unstable_poles_error,
)

__all__ = ["StateSpace", "check_alpha", "check_system", "inert_pole", "transfer_evaluator"]


def check_alpha(alpha: Any, discrete: bool) -> float:
    """Validate a stability margin: ``alpha >= 0``, and ``alpha < 1`` in discrete time."""
    alpha = check_nonnegative(alpha, "alpha")
    if discrete and alpha >= 1:
        raise ValueError(f"alpha must be < 1 for a discrete system (|p| < 1 - alpha), got {alpha}")
    return alpha


def check_system(sys: object, name: str = "sys") -> StateSpace:
    """``sys`` itself if it is a :class:`StateSpace`; a ``TypeError`` naming ``name`` otherwise."""
    if not isinstance(sys, StateSpace):
        raise TypeError(
            f"{name} must be a ctrlreduce.StateSpace, got {type(sys).__name__}; "
            "build one with StateSpace(A, B, C, D, dt) or StateSpace.from_control(...)"
        )
    return sys


def inert_pole(dt: float | None) -> float:
    """The pole given to padding states (neither controllable nor observable).

    ``-1`` in continuous time, ``0`` in discrete time: stable, well away from
    the boundary, and exact in floating point.
    """
    return -1.0 if dt is None else 0.0


def _check_points(s: Any, name: str = "s") -> np.ndarray:
    """Complex evaluation points, flattened; ``inf`` allowed, NaN rejected."""
    if s is None or isinstance(s, (str, bytes)):
        raise TypeError(f"{name} must be a complex number or array, got {s!r}")
    try:
        pts = np.atleast_1d(np.asarray(s, dtype=np.complex128)).ravel()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a complex number or array, got {s!r}") from exc
    if np.any(np.isnan(pts)):
        raise ValueError(f"{name} must not contain NaN, got {np.count_nonzero(np.isnan(pts))} "
                         "NaN points")
    return pts


def transfer_evaluator(
    sys: StateSpace, schur: SchurForm | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``G(s) = C (s I - A)^{-1} B + D`` as a function of complex points ``s``.

    ``A`` is balanced (``A_bal = D^{-1} A D``, powers of two) and reduced to
    complex Schur form once, ``A_bal = Z T Z^H``; each point then costs one
    triangular solve (LAPACK ``trtrs``), ``O(n^2 m)``, on a preallocated
    ``s I - T`` whose diagonal alone changes.  The function takes validated
    points (flattened complex128, no NaN) and returns an array ``(k, p, m)``;
    an infinite point gives ``D``, and a point within round-off of a pole
    raises ``ValueError``.  A caller that already holds the Schur form of
    ``sys.A`` itself passes it as ``schur`` (no balancing is done then).
    """
    if schur is None:
        A, d = balance(sys.A)
        schur = schur_form(A)
    else:
        d = np.ones(sys.n_states)
    n = schur.n
    Bt = np.asfortranarray(schur.to_schur(sys.B / d[:, None]))  # (n, m)
    Ct = (schur.to_schur((sys.C * d[None, :]).conj().T)).conj().T  # C D Z, (p, n)
    D = sys.D
    diag = schur.eigenvalues()
    T = np.diag(schur.T) if schur.diagonal else schur.T
    idx = np.diag_indices(n)
    M = np.asfortranarray(-T.astype(np.complex128))  # s I - T: only the diagonal changes
    (trtrs,) = scipy.linalg.get_lapack_funcs(("trtrs",), (M, Bt))
    # a pole is indistinguishable from s below the eigenvalues' round-off
    tol = EPS * n * float(np.abs(T).max())  # relative: no absolute floor

    def G(pts: np.ndarray) -> np.ndarray:
        out = np.empty((pts.size, D.shape[0], D.shape[1]), dtype=np.complex128)
        for k, sk in enumerate(pts):
            if not np.isfinite(sk):
                out[k] = D
                continue
            if np.min(np.abs(sk - diag)) <= tol:
                raise ValueError(f"G(s) is not defined at s={sk:.6g}: it is a pole of the system")
            M[idx] = sk - diag
            X, info = trtrs(M, Bt)
            if info != 0:
                raise ValueError(f"G(s) is not defined at s={sk:.6g}: it is a pole of the system")
            out[k] = Ct @ X + D
        return out

    return G


@dataclass(frozen=True, eq=False)
class StateSpace:
    """An LTI system ``(A, B, C, D, dt)``, real or complex, stored read-only.

    Parameters
    ----------
    A : array_like, shape (n, n)
    B : array_like, shape (n, m)
    C : array_like, shape (p, n)
    D : array_like, shape (p, m), optional
        Zero when omitted.
    dt : float or None, optional
        ``None`` (default) for continuous time, ``dt > 0`` for a discrete
        system with that sample time.

    Notes
    -----
    All matrices are stored as float64 when every one is real, and as
    complex128 when any one is complex, whatever dtype arrives.  Sparse inputs
    are densified.  The arrays are made read-only, so a ``StateSpace`` is a
    value.

    Examples
    --------
    >>> import numpy as np
    >>> from ctrlreduce import StateSpace
    >>> sys = StateSpace([[-1.0]], [[1.0]], [[2.0]])
    >>> sys.n_states, sys.n_inputs, sys.n_outputs, sys.is_discrete
    (1, 1, 1, False)
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray = field(default=None)  # type: ignore[assignment,arg-type]
    dt: float | None = None

    def __post_init__(self) -> None:
        A = as_matrix(self.A, "A")
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square, got shape {A.shape}")
        n = A.shape[0]
        if n == 0:
            raise ValueError("A must have at least one state, got shape (0, 0)")
        B = as_matrix(self.B, "B")
        C = as_matrix(self.C, "C")
        if B.shape[0] != n:
            raise ValueError(f"B must have {n} rows to fit A {A.shape}, got shape {B.shape}")
        if C.shape[1] != n:
            raise ValueError(f"C must have {n} columns to fit A {A.shape}, got shape {C.shape}")
        if B.shape[1] == 0:
            raise ValueError(f"B must have at least one input column, got shape {B.shape}")
        if C.shape[0] == 0:
            raise ValueError(f"C must have at least one output row, got shape {C.shape}")
        m, p = B.shape[1], C.shape[0]
        if self.D is None:
            D = np.zeros((p, m))
        else:
            D = as_matrix(self.D, "D")
            if D.shape != (p, m):
                raise ValueError(f"D must have shape {(p, m)} to fit B and C, got {D.shape}")
        dt = check_dt(self.dt)
        mats = [A, B, C, D]
        if any(np.iscomplexobj(M) for M in mats):
            mats = [M.astype(np.complex128) for M in mats]
        for M in mats:
            M.setflags(write=False)
        for name, M in zip("ABCD", mats, strict=True):
            object.__setattr__(self, name, M)
        object.__setattr__(self, "dt", dt)

    # ------------------------------------------------------------------ sizes
    @property
    def n_states(self) -> int:
        """Number of states ``n``."""
        return int(self.A.shape[0])

    @property
    def n_inputs(self) -> int:
        """Number of inputs ``m``."""
        return int(self.B.shape[1])

    @property
    def n_outputs(self) -> int:
        """Number of outputs ``p``."""
        return int(self.C.shape[0])

    @property
    def is_discrete(self) -> bool:
        """``True`` for a discrete-time system (``dt`` is set)."""
        return self.dt is not None

    @property
    def is_complex(self) -> bool:
        """``True`` when the matrices are complex."""
        return bool(np.iscomplexobj(self.A))

    def __repr__(self) -> str:
        kind = "continuous" if self.dt is None else f"discrete, dt={self.dt:g}"
        dtype = "complex" if self.is_complex else "real"
        return (
            f"StateSpace(n={self.n_states}, m={self.n_inputs}, p={self.n_outputs}, "
            f"{kind}, {dtype})"
        )

    # ------------------------------------------------------------- analysis
    def poles(self) -> np.ndarray:
        """Eigenvalues of ``A``, shape ``(n,)``, complex128."""
        return np.linalg.eigvals(self.A).astype(np.complex128)

    def unstable_poles(self, alpha: float = 0.0) -> np.ndarray:
        """Poles that are unstable, marginally stable, or within a margin of it.

        A pole counts as unstable when it is not strictly inside the region
        ``Re(p) < -alpha`` (continuous) or ``|p| < 1 - alpha`` (discrete), or
        when a perturbation of the balanced ``A`` of norm
        ``r = 100 n eps ||A_bal||_F`` can move it onto that region's boundary:
        ``sigma_min(s I - A_bal) <= r`` at the boundary point ``s`` nearest to it
        (see :mod:`ctrlreduce._stability`).

        Parameters
        ----------
        alpha : float
            Extra margin ``>= 0`` (``< 1`` in discrete time).

        Returns
        -------
        ndarray, complex128
            The offending poles (empty when the system is stable).
        """
        alpha = check_alpha(alpha, self.dt is not None)
        return unstable_poles(np.asarray(self.A), self.dt is not None, alpha)

    def is_stable(self) -> bool:
        """``True`` when every pole is strictly inside the stability region."""
        return self.unstable_poles().size == 0

    def require_stable(self, what: str = "this function") -> None:
        """Raise ``ValueError`` naming the offending poles unless stable."""
        bad = self.unstable_poles()
        if bad.size:
            raise unstable_poles_error(bad, self.dt is not None, what)

    def is_diagonal(self) -> bool:
        """``True`` when ``A`` is exactly diagonal."""
        return is_diagonal(self.A)

    def freqresp(self, omega: Any) -> np.ndarray:
        """Frequency response ``G`` at real frequencies ``omega`` (rad/s).

        Returns
        -------
        ndarray, shape (k, p, m), complex128
            ``G(i w)`` in continuous time, ``G(exp(i w dt))`` in discrete time.

        Raises
        ------
        TypeError, ValueError
            ``omega`` is not real, or not finite; a frequency hits a pole.

        Notes
        -----
        ``A`` is balanced and reduced once to complex Schur form; each
        frequency then costs one triangular solve, ``O(n^2 m)``.
        """
        if omega is None or isinstance(omega, (str, bytes)) or np.iscomplexobj(omega):
            raise TypeError(f"omega must be a real number or array, got {omega!r}")
        try:
            w = np.atleast_1d(np.asarray(omega, dtype=float)).ravel()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"omega must be a real number or array, got {omega!r}") from exc
        if not np.all(np.isfinite(w)):
            raise ValueError("omega must be finite")
        s = 1j * w if self.dt is None else np.exp(1j * w * self.dt)
        return transfer_evaluator(self)(s)

    def evaluate(self, s: Any) -> np.ndarray:
        """Transfer function ``C (s I - A)^{-1} B + D`` at complex points ``s``.

        Returns an array of shape ``(k, p, m)``; ``s = inf`` gives ``D``.
        Raises ``ValueError`` if a point is NaN or a pole (``s I - A``
        singular to working precision).  For many calls on one system, reuse
        :func:`transfer_evaluator`.
        """
        return transfer_evaluator(self)(_check_points(s))

    @classmethod
    def static_gain(cls, D: Any, dt: float | None = None) -> StateSpace:
        """The static gain ``G = D`` as a ``StateSpace``.

        A ``StateSpace`` has at least one state, so the gain is carried by one
        state that is neither controllable nor observable (``A = inert_pole(dt)``,
        ``B = 0``, ``C = 0``): the transfer function is exactly ``D``.  This is
        the convention of an order-0 reduction.
        """
        D = as_matrix(D, "D")
        p, m = D.shape
        return cls(np.full((1, 1), inert_pole(dt)), np.zeros((1, m)), np.zeros((p, 1)), D, dt)

    # ------------------------------------------------------------ conversions
    def to_control(self):  # noqa: ANN201 - optional dependency type
        """Return a ``control.StateSpace`` (keeps ``dt``; 0 means continuous there).

        Raises ``ValueError`` for a complex system, which python-control cannot hold.
        """
        import control

        if self.is_complex:
            raise ValueError("a complex system cannot be converted to control.StateSpace")
        dt = 0 if self.dt is None else self.dt
        return control.StateSpace(self.A, self.B, self.C, self.D, dt)

    @classmethod
    def from_control(cls, sys: Any) -> StateSpace:
        """Build from a python-control system (``dt=0`` continuous, ``dt=True`` rejected).

        A ``control.StateSpace`` is taken as it is; a ``control.TransferFunction``
        is converted with ``control.ss`` first.
        """
        try:
            import control
        except ImportError as exc:  # pragma: no cover - control is a test dependency
            raise ImportError("from_control needs the optional package control") from exc
        if isinstance(sys, control.TransferFunction):
            sys = control.ss(sys)
        if not isinstance(sys, control.StateSpace):
            raise TypeError(
                f"sys must be a control.StateSpace or control.TransferFunction, "
                f"got {type(sys).__name__}"
            )
        dt = sys.dt
        if dt is True:
            raise ValueError("sys.dt is True (unspecified sample time); give a numeric dt")
        dt = None if (dt is None or dt == 0) else float(dt)
        return cls(np.asarray(sys.A), np.asarray(sys.B), np.asarray(sys.C), np.asarray(sys.D), dt)

    def to_scipy(self):  # noqa: ANN201
        """Return a ``scipy.signal.StateSpace`` (``dt`` kept, complex entries kept)."""
        if self.dt is None:
            return scipy.signal.StateSpace(self.A, self.B, self.C, self.D)
        return scipy.signal.StateSpace(self.A, self.B, self.C, self.D, dt=self.dt)

    @classmethod
    def from_scipy(cls, sys: Any) -> StateSpace:
        """Build from a ``scipy.signal`` LTI system (continuous or discrete).

        State-space objects are taken as they are; transfer-function and
        zeros-poles-gain objects are converted with their ``to_ss()`` first.
        """
        kinds = (scipy.signal.lti, scipy.signal.dlti)
        if not isinstance(sys, kinds):
            raise TypeError(
                f"sys must be a scipy.signal lti or dlti system, got {type(sys).__name__}"
            )
        if not isinstance(sys, (scipy.signal.StateSpace,)):
            sys = sys.to_ss()
        dt = getattr(sys, "dt", None)
        return cls(sys.A, sys.B, sys.C, sys.D, dt)

    # ------------------------------------------------------------ arithmetic
    def _check_compatible(self, other: Any, op: str) -> StateSpace:
        if not isinstance(other, StateSpace):
            raise TypeError(f"cannot {op} StateSpace and {type(other).__name__}")
        if (self.n_inputs, self.n_outputs) != (other.n_inputs, other.n_outputs):
            raise ValueError(
                f"cannot {op} systems with (inputs, outputs) "
                f"{(self.n_inputs, self.n_outputs)} and {(other.n_inputs, other.n_outputs)}"
            )
        if self.dt != other.dt:
            raise ValueError(f"cannot {op} systems with dt={self.dt} and dt={other.dt}")
        return other

    def __add__(self, other: StateSpace) -> StateSpace:
        """Parallel connection: ``(G1 + G2)(s) = G1(s) + G2(s)``."""
        other = self._check_compatible(other, "add")
        A = scipy.linalg.block_diag(self.A, other.A)
        return StateSpace(
            A, np.vstack([self.B, other.B]), np.hstack([self.C, other.C]),
            self.D + other.D, self.dt,
        )

    def __neg__(self) -> StateSpace:
        return StateSpace(self.A, self.B, -self.C, -self.D, self.dt)

    def __sub__(self, other: StateSpace) -> StateSpace:
        """Error system ``G1 - G2`` (states stacked, ``n1 + n2`` of them)."""
        return self + (-self._check_compatible(other, "subtract"))

    def with_matrices(self, A=None, B=None, C=None, D=None) -> StateSpace:  # noqa: ANN001
        """Copy with some matrices replaced (same ``dt``)."""
        return StateSpace(
            self.A if A is None else A,
            self.B if B is None else B,
            self.C if C is None else C,
            self.D if D is None else D,
            self.dt,
        )
