"""Finite-difference test problems: the 2-D heat and convection-diffusion operators.

The construction follows LYAPACK's ``fdm_2d_matrix``: the operator
``Delta u - cx u_x - cy u_y`` on the unit square with homogeneous Dirichlet
boundary conditions, on an ``N x N`` interior grid (``h = 1 / (N + 1)``),
central differences for both terms.  The state has ``n = N^2`` entries; the
symmetric part is the (negative definite) discrete Laplacian, so every
eigenvalue has a negative real part for any convection.
"""

from __future__ import annotations

import numpy as np


def fdm_2d(N: int, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """The ``N^2 x N^2`` operator, dense, ``x`` the fast index."""
    h = 1.0 / (N + 1)
    I = np.eye(N)
    lap = (np.eye(N, k=1) + np.eye(N, k=-1) - 2.0 * I) / h**2  # u_xx
    dif = (np.eye(N, k=1) - np.eye(N, k=-1)) / (2.0 * h)  # u_x
    return np.kron(I, lap - cx * dif) + np.kron(lap - cy * dif, I)


def heat_inputs(N: int, m: int) -> np.ndarray:
    """``m`` inputs: the whole square, then indicator strips of the left part."""
    n = N * N
    B = np.ones((n, m))
    x = (np.arange(N) + 1.0) / (N + 1)
    X = np.tile(x, N)  # x coordinate of each state
    for k in range(1, m):
        B[:, k] = (X <= k / (m + 1)).astype(float)
    return B


def heat_problem(N: int, kind: str, m: int, discrete: bool):
    """``(A, B, C, dt)`` for ``kind`` in {"heat", "convection"}.

    Discrete twins use ``I + A / (8 / h^2)`` (the explicit Euler step at the
    stability limit of the Laplacian halved), spectral radius just below 1.
    """
    conv = (0.0, 0.0) if kind == "heat" else (100.0, 50.0)
    A = fdm_2d(N, *conv)
    B = heat_inputs(N, m)
    C = heat_inputs(N, m).T / (N * N)
    dt = None
    if discrete:
        h = 1.0 / (N + 1)
        A = np.eye(N * N) + A * (h**2 / 8.0)
        dt = 1.0
    return A, B, C, dt
