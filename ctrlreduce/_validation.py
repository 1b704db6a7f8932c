"""Input validation shared by the public functions.

Every public function validates its arguments once, at its boundary, with the
checks below, and raises a ``TypeError`` (wrong kind of object) or a
``ValueError`` (right kind, bad value) that names the argument, what was
expected and what was seen.  Nothing downstream re-checks user input, and no
other exception type is meant to escape on bad input (a fuzz test holds the
public API to that).

``bool`` is never accepted where a number is expected (``True`` is an ``int``
in Python, but ``order=True`` is a mistake), and strings are never accepted
where a number or a flag is expected.  NumPy scalars are accepted wherever the
matching Python type is.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "EPS",
    "as_matrix",
    "check_bool",
    "check_choice",
    "check_dt",
    "check_hsv",
    "check_nonnegative",
    "check_order",
    "check_order_or_tol",
    "check_positive",
    "check_real_vector",
    "unstable_poles_error",
]

EPS = float(np.finfo(float).eps)


def _seen(value: Any) -> str:
    """``repr`` of a rejected value with its type, shortened for messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def as_matrix(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as a 2-D float64 or complex128 array (a copy).

    A 0-D or 1-D input is rejected, so that ``B`` of shape ``(n,)`` is never
    silently read as a row or a column.  Sparse matrices are densified.
    Booleans and integers become float64; anything complex becomes
    complex128.  NaN and Inf are rejected.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {_seen(value)}")
    if hasattr(value, "toarray") and callable(value.toarray):  # scipy.sparse
        value = value.toarray()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists, exotic objects
        raise TypeError(f"{name} must be a numeric array, got {_seen(value)}") from exc
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


def check_real_vector(value: Any, name: str, *, allow_inf: bool = False) -> np.ndarray:
    """A 1-D float64 array of real numbers (a copy): never NaN, ``inf`` only if allowed."""
    what = f"{name} must be a 1-D array of real numbers"
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{what}, got {_seen(value)}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}, got {_seen(value)}") from exc
    if arr.dtype == object or np.iscomplexobj(arr) or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{what}, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64, copy=True)
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if np.any(bad):
        kind = "NaN" if allow_inf else "NaN or Inf"
        count = int(np.count_nonzero(bad))
        raise ValueError(f"{name} must not contain {kind}, got {count} such entries")
    return arr


def check_hsv(value: Any, *, descending: bool = True, nonempty: bool = False) -> np.ndarray:
    """Hankel singular values: a 1-D real array, no NaN, ``>= 0``, ``inf`` allowed.

    ``descending`` also requires the order :func:`hankel_singular_values`
    returns; ``nonempty`` refuses an empty array.
    """
    values = check_real_vector(value, "hsv", allow_inf=True)
    if nonempty and values.size == 0:
        raise ValueError("hsv must be a non-empty 1-D array, got shape (0,)")
    if np.any(values < 0):
        raise ValueError(f"hsv must be >= 0, got minimum {values.min():.3g}")
    if descending and np.any(values[1:] > values[:-1]):
        raise ValueError("hsv must be in descending order (as hankel_singular_values returns)")
    return values


def check_bool(value: Any, name: str) -> bool:
    """A flag: ``True``/``False`` (or a NumPy bool), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_seen(value)}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> Any:
    """One of the strings in ``choices``."""
    names = [repr(c) for c in choices]
    shown = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {shown}, got {_seen(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be {shown}, got {value!r}")
    return value


def _real_number(value: Any, name: str, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {_seen(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_dt(dt: Any) -> float | None:
    """Validate a sample time: ``None`` (continuous) or a finite ``dt > 0``."""
    if dt is None:
        return None
    value = _real_number(dt, "dt", "None (continuous time) or a finite number > 0")
    if value <= 0:
        raise ValueError(f"dt must be None (continuous time) or a finite number > 0, got {dt!r}")
    return value


def check_order(order: Any, n: int, name: str = "order") -> int:
    """Validate a reduced order: an integer in ``0..n``."""
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, numbers.Integral):
        raise TypeError(f"{name} must be an integer in 0..{n}, got {_seen(order)}")
    order = int(order)
    if not 0 <= order <= n:
        raise ValueError(f"{name} must be in 0..{n}, got {order}")
    return order


def check_positive(value: Any, name: str) -> float:
    """Validate a finite real number ``> 0`` (a tolerance)."""
    value = _real_number(value, name, "a finite number > 0")
    if value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_nonnegative(value: Any, name: str) -> float:
    """Validate a finite real number ``>= 0`` (a margin)."""
    value = _real_number(value, name, "a finite number >= 0")
    if value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_order_or_tol(order: Any, tol: Any, n: int) -> tuple[int | None, float | None]:
    """Exactly one of a reduced order (``0..n``) and a tolerance (``> 0``)."""
    if (order is None) == (tol is None):
        raise ValueError(
            f"give exactly one of order and tol, got order={order!r}, tol={tol!r}"
        )
    if order is not None:
        return check_order(order, n), None
    return None, check_positive(tol, "tol")


def unstable_poles_error(bad: np.ndarray, discrete: bool, what: str) -> ValueError:
    """The error for a stable-only function given unstable or marginal poles ``bad``."""
    region = "|p| < 1" if discrete else "Re(p) < 0"
    shown = ", ".join(f"{complex(z):.6g}" for z in bad[:8])
    more = "" if bad.size <= 8 else f" (and {bad.size - 8} more)"
    return ValueError(
        f"{what} needs a stable system (all poles with {region}, clear of the boundary by "
        f"their round-off); A has {bad.size} unstable or marginal poles: {shown}{more}. "
        "Use unstable='keep' where supported."
    )
