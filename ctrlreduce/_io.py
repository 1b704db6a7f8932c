"""Loading systems from ``.mat`` (SLICOT benchmark layout) and ``.npz`` files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from ._files import atomic_write, check_target
from ._system import StateSpace

__all__ = ["MissingFileError", "load", "save"]


class MissingFileError(FileNotFoundError, ValueError):
    """A missing file: both a ``FileNotFoundError`` and bad input (``ValueError``).

    Code that catches either keeps working; the public API raises only
    ``TypeError`` and ``ValueError`` on bad input.
    """


def _scalar_dt(value: Any, key: str) -> float | None:
    """A stored sample time: one real number (0 means continuous), or a ``ValueError``."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"variable {key!r} must be one real number, got {value!r}") from exc
    if arr.size == 0:
        return None
    if arr.size != 1:
        raise ValueError(
            f"variable {key!r} must be one real number (the sample time), got {arr.size} "
            f"values: {arr[:4]}"
        )
    dt = float(arr[0])
    return None if dt == 0 else dt


def load(path: str | os.PathLike[str]) -> StateSpace:
    """Read a system from a ``.mat`` or ``.npz`` file.

    ``.mat`` files follow the SLICOT benchmark layout: variables ``A``, ``B``,
    ``C`` and optionally ``D`` (sparse matrices are accepted and densified);
    an optional scalar ``dt`` (or ``Ts``) makes it discrete.  ``.npz`` files
    hold the same names (as written by :func:`save`).

    Raises
    ------
    MissingFileError
        ``path`` does not exist (a subclass of both ``FileNotFoundError`` and
        ``ValueError``).
    ValueError
        Unknown extension, or ``A``, ``B`` or ``C`` missing.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a path (str or os.PathLike), got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"path {str(p)!r} does not exist or is not a file")
    ext = p.suffix.lower()
    if ext == ".mat":
        try:
            data = scipy.io.loadmat(str(p))
        except Exception as exc:
            raise ValueError(f"path {str(p)!r} is not a readable MATLAB file: {exc}") from exc
    elif ext == ".npz":
        try:
            with np.load(str(p), allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except Exception as exc:
            raise ValueError(f"path {str(p)!r} is not a readable .npz file: {exc}") from exc
    else:
        raise ValueError(f"path must end in .mat or .npz, got {p.suffix!r}")
    missing = [k for k in ("A", "B", "C") if k not in data]
    if missing:
        raise ValueError(
            f"{p.name} lacks matrices {', '.join(missing)}; found variables: "
            f"{', '.join(sorted(k for k in data if not k.startswith('__')))}"
        )
    dt = None
    for key in ("dt", "Ts"):
        if key in data:
            dt = _scalar_dt(data[key], key)
    return StateSpace(data["A"], data["B"], data["C"], data.get("D"), dt)


def save(path: str | os.PathLike[str], sys: StateSpace) -> None:
    """Write ``A``, ``B``, ``C``, ``D`` (and ``dt`` when discrete) to an ``.npz``.

    The file is written to a new, uniquely named temporary file in the same
    folder and renamed over ``path``, so a failure never leaves a
    half-written or clobbered file behind.

    Raises
    ------
    TypeError
        ``sys`` is not a ``StateSpace``, or ``path`` is not a path.
    ValueError
        ``path`` does not end in ``.npz``, is a folder, or its folder does
        not exist or is not writable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ctrlreduce import StateSpace, load, save
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.npz"
    >>> save(p, StateSpace([[-1.0]], [[1.0]], [[2.0]], dt=None))
    >>> load(p).C
    array([[2.]])
    """
    if not isinstance(sys, StateSpace):
        raise TypeError(f"sys must be a StateSpace, got {type(sys).__name__}")
    p = check_target(path, (".npz",), "path")
    arrays = {"A": sys.A, "B": sys.B, "C": sys.C, "D": sys.D}
    if sys.dt is not None:
        arrays["dt"] = np.array(sys.dt)

    def write(tmp: Path) -> None:
        np.savez(str(tmp), **arrays)  # type: ignore[arg-type]

    atomic_write(p, write)
