"""Argument checks of every public entry point of ``ctrlreduce_torch``.

One home for the rules (and the wording) of the adapters' argument errors:

* a wrong *type* raises ``TypeError``, a value of the right type out of range
  raises ``ValueError``;
* every message names the argument, says what was expected and shows the
  value seen with its type, e.g. ``tau must be a number in (0, 1), got '0.05'
  (str)``;
* ``bool`` is not a number (``True`` is refused where an int or a float is
  expected), strings are not numbers, and NumPy integer and floating scalars
  are accepted where Python ints and floats are.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_choice", "check_int", "check_real", "check_size", "seen"]


def seen(value: Any) -> str:
    """``'0.05' (str)``: the value and its type, for error messages (long reprs cut)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"in {minimum}..{maximum}"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python int in ``[minimum, maximum]``.

    Accepts ``int`` and NumPy integer scalars (anything ``numbers.Integral``
    except ``bool``); ``TypeError`` for other types, ``ValueError`` out of range.
    """
    rng = _int_range(minimum, maximum)
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        what = f"an int {rng}" if rng else "an int"
        raise TypeError(f"{name} must be {what}, got {seen(value)}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {rng}, got {seen(value)}")
    return v


def check_size(value: Any, name: str, *, minimum: int = 1, multiple_of: int = 1) -> int:
    """A size: an int ``>= minimum`` and a multiple of ``multiple_of`` ("even" for 2)."""
    v = check_int(value, name, minimum=minimum)
    if v % multiple_of:
        what = "even" if multiple_of == 2 else f"a multiple of {multiple_of}"
        raise ValueError(f"{name} must be {what}, got {seen(value)}")
    return v


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def check_real(
    value: Any,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
) -> float:
    """Return ``value`` as a float in the interval given by ``lo``/``hi``.

    Accepts ``int``, ``float`` and NumPy integer/floating scalars (anything
    ``numbers.Real`` except ``bool``); ``TypeError`` for other types (strings
    included), ``ValueError`` for NaN, for infinities when ``finite``, and
    out of the interval.  ``lo_open``/``hi_open`` exclude the end points.
    """
    rng = _interval(lo, hi, lo_open, hi_open)
    fin = "finite " if finite and (lo is None or hi is None) else ""
    what = f"a {fin}number {rng}".rstrip()
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {seen(value)}")
    v = float(value)
    ok = not math.isnan(v) and (math.isfinite(v) or not finite)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        raise ValueError(f"{name} must be {what}, got {seen(value)}")
    return v


def check_bool(value: Any, name: str, *, allow_none: bool = False) -> bool | None:
    """A ``bool`` (``numpy.bool_`` accepted), or ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return None
    if not _is_bool(value):
        what = "a bool or None" if allow_none else "a bool"
        raise TypeError(f"{name} must be {what}, got {seen(value)}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    opts = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {opts}, got {seen(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {opts}, got {seen(value)}")
    return value
