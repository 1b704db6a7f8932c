"""Input validation shared by the public functions.

Every public function validates its arguments once, here, and raises a
``TypeError`` or ``ValueError`` that names the argument, what was expected and
what was seen. Nothing downstream re-checks user input.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "as_matrix",
    "check_dt",
    "check_order",
    "check_positive",
    "stability_margin",
    "unstable_poles_error",
]


def as_matrix(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as a 2-D float64 or complex128 array.

    Scalars become 1x1 and 1-D arrays become columns only where the caller
    reshapes them; here a 0-D or 1-D input is rejected so that ``B`` of shape
    ``(n,)`` is never silently read as a row.  Sparse matrices are densified.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(value, "toarray") and callable(value.toarray):  # scipy.sparse
        value = value.toarray()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {arr.ndim}-D with shape {arr.shape}")
    dtype = np.complex128 if np.iscomplexobj(arr) else np.float64
    arr = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite, got {bad} NaN or Inf entries")
    return arr


def check_dt(dt: Any) -> float | None:
    """Validate a sample time: ``None`` (continuous) or a finite ``dt > 0``."""
    if dt is None:
        return None
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise TypeError(f"dt must be None or a positive real number, got {dt!r}")
    dt = float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be None (continuous time) or a finite number > 0, got {dt!r}")
    return dt


def check_order(order: Any, n: int, name: str = "order") -> int:
    """Validate a reduced order: an integer in ``0..n``."""
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"{name} must be an integer in 0..{n}, got {order!r}")
    order = int(order)
    if not 0 <= order <= n:
        raise ValueError(f"{name} must be in 0..{n}, got {order}")
    return order


def check_positive(value: Any, name: str) -> float:
    """Validate a finite real number ``> 0`` (a tolerance)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def stability_margin(A: np.ndarray) -> float:
    """Distance from the stability boundary below which a pole counts as unstable.

    Eigenvalues of ``A`` are computed with backward error about
    ``eps * n * ||A||``; a pole closer than a generous multiple of that to the
    imaginary axis (or unit circle) cannot be told apart from a marginal one,
    and would give Gramians dominated by round-off.  The floor ``1e-12`` keeps
    small, well-scaled systems from calling a pole at ``-1e-13`` stable.
    """
    n = A.shape[0]
    scale = max(1.0, float(np.linalg.norm(A, 1)))
    return max(100.0 * n * np.finfo(float).eps, 1e-12) * scale


def unstable_poles_error(bad: np.ndarray, discrete: bool, what: str) -> ValueError:
    """The error for a stable-only function given unstable or marginal poles ``bad``."""
    region = "|p| < 1" if discrete else "Re(p) < 0"
    shown = ", ".join(f"{complex(z):.6g}" for z in bad[:8])
    more = "" if bad.size <= 8 else f" (and {bad.size - 8} more)"
    return ValueError(
        f"{what} needs a stable system (all poles with {region}, clear of the boundary by "
        f"round-off); A has {bad.size} unstable or marginal poles: {shown}{more}. "
        "Use unstable='keep' where supported."
    )
