"""Writing files atomically: whole or not at all.

Each output is written to a new temporary file beside its target (a unique
name, created with ``O_EXCL``, so nothing is overwritten and the umask
applies), and renamed over the target with ``os.replace`` only once every
output of the operation has been written.  On any failure the temporary files
are removed and the targets are left as they were.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "check_target", "replacing"]


def check_target(path: str | os.PathLike[str], suffixes: Sequence[str], name: str) -> Path:
    """Validate an output path: its extension, an existing writable folder, not a folder itself.

    Raises ``ValueError`` naming ``name`` (the argument or option) and the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"{name} must end in {' or '.join(suffixes)}, got {str(p)!r}")
    folder = p.parent
    if not folder.is_dir():
        raise ValueError(f"{name} {p}: folder {str(folder)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"{name} {p}: is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p}: folder {str(folder)!r} is not writable")
    return p


def _temporary_beside(path: Path) -> Path:
    """A new, empty, uniquely named file in ``path``'s folder, with ``path``'s extension."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - a 48-bit collision
            continue
        return tmp


@contextmanager
def replacing(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield one temporary path per target; rename them all over the targets on success."""
    staged: list[Path] = []
    try:
        for p in paths:
            staged.append(_temporary_beside(Path(p)))
        yield list(staged)
        for tmp, p in zip(staged, paths, strict=True):
            os.replace(tmp, p)
    finally:
        for tmp in staged:
            if tmp.exists():
                tmp.unlink()


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` to a temporary file, then rename it over ``path``; return ``path``."""
    with replacing([path]) as (tmp,):
        write(tmp)
    return path
