"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall-clock time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_continuous(n: int, m: int, p: int, seed: int = 0):
    """A stable continuous system with a spread spectrum and a non-normal A.

    ``A = Q (D + N) Q^T`` with ``D`` holding stable eigenvalues (real ones and
    complex pairs, real parts in ``[-100, -0.01]``), ``N`` a small strictly
    upper triangular part, and ``Q`` a random orthogonal matrix.
    """
    import ctrlreduce as cr

    rng = np.random.default_rng(seed)
    T = np.zeros((n, n))
    i = 0
    while i < n:
        re = -(10 ** rng.uniform(-2, 2))
        if i + 1 < n and rng.random() < 0.5:
            im = 10 ** rng.uniform(-1, 2)
            T[i : i + 2, i : i + 2] = [[re, im], [-im, re]]
            i += 2
        else:
            T[i, i] = re
            i += 1
    T += np.triu(rng.standard_normal((n, n)), 2) * 0.1 / np.sqrt(n)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = Q @ T @ Q.T
    return cr.StateSpace(A, rng.standard_normal((n, m)), rng.standard_normal((p, n)))


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain Markdown table."""
    fmt = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        fmt.append("| " + " | ".join(cells) + " |")
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    return head + "\n" + "\n".join(fmt)
