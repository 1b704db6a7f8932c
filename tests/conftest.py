"""Shared fixtures and hypothesis strategies for the core tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

import ctrlreduce as cr

BENCH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mor-benchmarks"


SHIPPED_DIR = Path(cr.__file__).resolve().parent / "data"  # CDplayer.mat ships with the package


def bench_path(name: str) -> Path:
    """Path of a SLICOT benchmark file in ../shared, else the copy shipped in the package.

    Skips (with the reason) when neither has it.
    """
    for folder in (BENCH_DIR, SHIPPED_DIR):
        path = folder / name
        if path.is_file():
            return path
    pytest.skip(f"benchmark data {BENCH_DIR / name} is not available on this machine")


def random_stable(
    rng: np.random.Generator,
    n: int,
    m: int,
    p: int,
    *,
    complex_: bool = False,
    discrete: bool = False,
    diagonal: bool = False,
    margin: float = 0.1,
    with_d: bool = False,
) -> cr.StateSpace:
    """A random stable system with a controlled distance from the boundary."""

    def mat(r: int, c: int) -> np.ndarray:
        M = rng.standard_normal((r, c))
        if complex_:
            M = M + 1j * rng.standard_normal((r, c))
        return M

    if diagonal:
        if discrete:
            rad = rng.uniform(0.0, 1.0 - margin, n)
        else:
            rad = -rng.uniform(margin, 3.0, n)
        lam = rad.astype(complex)
        if complex_:
            phase = rng.uniform(-np.pi, np.pi, n)
            lam = np.abs(rad) * np.exp(1j * phase) if discrete else rad + 1j * rng.normal(0, 3, n)
        A = np.diag(lam if complex_ else lam.real)
    else:
        A = mat(n, n) / np.sqrt(n)
        ev = np.linalg.eigvals(A)
        if discrete:
            A = A * (1.0 - margin) * rng.uniform(0.3, 1.0) / max(np.max(np.abs(ev)), 1e-12)
        else:
            A = A - (np.max(ev.real) + margin + rng.uniform(0, 1)) * np.eye(n)
    D = mat(p, m) if with_d else None
    return cr.StateSpace(A, mat(n, m), mat(p, n), D, 0.5 if discrete else None)


@st.composite
def stable_systems(draw, max_n: int = 40, diagonal: bool | None = None):
    """Hypothesis strategy: stable systems, continuous or discrete, real or complex."""
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, 4))
    p = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    complex_ = draw(st.booleans())
    discrete = draw(st.booleans())
    diag = draw(st.booleans()) if diagonal is None else diagonal
    margin = draw(st.sampled_from([0.02, 0.1, 0.5]))
    with_d = draw(st.booleans())
    rng = np.random.default_rng(seed)
    return random_stable(
        rng, n, m, p, complex_=complex_, discrete=discrete, diagonal=diag, margin=margin,
        with_d=with_d,
    )


def hinf(sys: cr.StateSpace) -> float:
    """H-infinity norm: the level-set method when available, else a dense grid (a lower bound)."""
    try:
        from ctrlreduce._norms import hinf_norm
    except ImportError:  # pragma: no cover - before the norms module existed
        return grid_peak(sys)
    return float(hinf_norm(sys))


def grid_peak(sys: cr.StateSpace, k: int = 4000) -> float:
    """max over a dense log grid (both signs for complex systems) of sigma_max(G)."""
    if sys.dt is None:
        poles = np.abs(sys.poles())
        lo, hi = max(poles.min() * 1e-3, 1e-6), poles.max() * 1e3 + 1
        w = np.logspace(np.log10(lo), np.log10(hi), k)
        w = np.concatenate([[0.0], w, -w]) if sys.is_complex else np.concatenate([[0.0], w])
    else:
        w = np.linspace(-np.pi, np.pi, 2 * k) / sys.dt
    G = sys.freqresp(w)
    return float(np.max(np.linalg.svd(G, compute_uv=False)))
