"""The 2-D heat and convection-diffusion operators: Lyapunov factors and HSVs.

These are the classic test problems (LYAPACK's ``fdm_2d_matrix``) on which the
Cholesky-factor solver once returned a factor with relative residual 0.09 and
no warning: the pivot norm of the Hammarling recursion underflowed once the
updated right-hand side fell below 1e-154.  Random non-normal systems of a few
hundred states never reach that regime; these do, from n = 400 on.

Residuals are computed independently, by forming ``X = L L^T`` and the
equation in full.  Two normalisations are checked:

* ``||R||_2 / ((2 ||A|| or ||A||^2 + 1) ||X|| + ||B B^T||)``, the backward
  error of the solution, which a backward stable solver keeps at a few
  ``eps`` at every size;
* ``||R||_F / ||B B^T||_F``, the residual relative to the right-hand side,
  as in the original report.  It also carries the rounding of forming the
  residual itself (``eps ||A|| ||X||`` with ``||A|| ~ 8 / h^2``), so at
  n ~ 2000 it sits near 1e-12 for every solver, SLICOT ``SB03OD`` and SciPy
  included; it is compared with SLICOT's on the same data.  Our factors
  reach below 1e-12 at every size (measured: at most 7.6e-13, discrete
  convection at n = 2025), which needs the eigendecomposition for the
  symmetric heat operator: the Schur vectors of ``gees`` alone put the
  discrete heat residual at 2e-12 (n = 900) to 7e-12 (n = 1936).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg

import ctrlreduce as cr
from tests._fdm import heat_problem

slycot = pytest.importorskip("slycot")

CASES = [
    (N, kind, discrete)
    for N in (20, 30, 45)  # n = 400, 900, 2025
    for kind in ("heat", "convection")
    for discrete in (False, True)
]


def _norm2(M):
    """Spectral norm by Lanczos (an exact SVD of a 2000 x 2000 matrix costs seconds)."""
    return float(scipy.sparse.linalg.svds(M, k=1, return_singular_vectors=False, tol=1e-6)[0])


def _residuals(A, B, L, discrete):
    X = L @ L.T
    Q = B @ B.T
    R = A @ X @ A.T - X + Q if discrete else A @ X + X @ A.T + Q
    nA, nX = _norm2(A), _norm2(L) ** 2
    scale = ((nA * nA + 1) if discrete else 2 * nA) * nX + np.linalg.norm(Q, 2)
    # ||R||_F >= ||R||_2: the backward error is overstated, never understated
    return np.linalg.norm(R) / scale, np.linalg.norm(R) / np.linalg.norm(Q)


def _slycot_factor(A, B, discrete):
    n, m = B.shape
    Bpad = np.zeros((n, max(n, m)))
    Bpad[:, :m] = B
    U, scale, _ = slycot.sb03od(n, m, A.copy(), np.zeros((n, n)), Bpad,
                                "D" if discrete else "C", fact="N", trans="T")
    return np.asarray(U[:n, :n]) / scale


@pytest.mark.parametrize("N, kind, discrete", CASES)
def test_factor_residual_at_round_off(N, kind, discrete):
    A, B, _, dt = heat_problem(N, kind, 1 if kind == "heat" else 2, discrete)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the self-check must stay quiet
        L = cr.lyapunov_cholesky(A, B, dt=dt)
    backward, raw = _residuals(A, B, L, discrete)
    assert backward < 1e-13
    # the report's measure: 0.09 before the fix
    assert raw < 1e-12
    if N <= 30:  # on a par with SLICOT on the same data (SB03OD is slow at n ~ 2000)
        raw_slicot = _residuals(A, B, _slycot_factor(A, B, discrete), discrete)[1]
        assert raw <= 5 * raw_slicot + 1e-13


def _exact_heat_hsv(N, discrete):
    """HSVs of the symmetric heat problem through its known eigendecomposition.

    ``A = V diag(lam) V^T`` with ``V = S (x) S`` (``S`` the orthonormal sine
    matrix) and ``lam`` from the cosine formula, all to full relative
    accuracy, so the diagonal system ``(lam, V^T B, C V)`` has the same HSVs
    without any Schur decomposition; its Gramians are Cauchy matrices that
    the diagonal Hammarling recursion factors to relative accuracy.
    """
    h = 1.0 / (N + 1)
    k = np.arange(1, N + 1)
    lam1 = -(2.0 - 2.0 * np.cos(k * np.pi / (N + 1))) / h**2
    S = np.sqrt(2.0 / (N + 1)) * np.sin(np.outer(k, k) * np.pi / (N + 1))
    V = np.kron(S, S)
    lam = (lam1[:, None] + lam1[None, :]).ravel()
    if discrete:
        lam = 1.0 + lam * (h**2 / 8.0)
    A, B, C, dt = heat_problem(N, "heat", 1, discrete)
    assert np.linalg.norm(A @ V - V * lam) <= 1e-13 * np.linalg.norm(A)
    return cr.hankel_singular_values(cr.StateSpace(np.diag(lam), V.T @ B, C @ V, None, dt))


@pytest.mark.parametrize("N", [20, 30])
@pytest.mark.parametrize("discrete", [False, True])
def test_heat_hsv_against_exact_eigenbasis(N, discrete):
    A, B, C, dt = heat_problem(N, "heat", 1, discrete)
    ref = _exact_heat_hsv(N, discrete)
    hsv = cr.hankel_singular_values(cr.StateSpace(A, B, C, None, dt))
    keep = ref >= 1e-8 * ref[0]
    rel = np.abs(hsv[keep] - ref[keep]) / ref[keep]
    # measured: at most 4.8e-12; SLICOT AB09AD on the same data is off by up to 1.9e-10
    assert rel.max() < 2e-11


def _sensitivity(A, B, C, dt, keep, rng):
    """Largest relative HSV change when every entry of ``A`` moves by at most half an ulp.

    That is the rounding of storing ``A`` in float64 at all, so no float64
    method can promise agreement below it.
    """
    ref = cr.hankel_singular_values(cr.StateSpace(A, B, C, None, dt))
    worst = 0.0
    for _ in range(2):
        Ap = A * (1.0 + 2.0**-53 * rng.uniform(-1.0, 1.0, A.shape))
        hsv = cr.hankel_singular_values(cr.StateSpace(Ap, B, C, None, dt))
        worst = max(worst, float(np.max(np.abs(hsv[keep] - ref[keep]) / ref[keep])))
    return worst


@pytest.mark.parametrize("N", [20, 30])
@pytest.mark.parametrize("kind", ["heat", "convection"])
@pytest.mark.parametrize("discrete", [False, True])
def test_hsv_agree_with_ab09ad(N, kind, discrete):
    A, B, C, dt = heat_problem(N, kind, 1 if kind == "heat" else 2, discrete)
    n, m, p = A.shape[0], B.shape[1], C.shape[0]
    hsv = cr.hankel_singular_values(cr.StateSpace(A, B, C, None, dt))
    ref = slycot.ab09ad("D" if discrete else "C", "B", "N", n, m, p,
                        A.copy(), B.copy(), C.copy(), nr=1, tol=0.0)[-1]
    top = ref >= 1e-6 * ref[0]
    # measured: at most 4.3e-12 (heat), 2.7e-11 (convection)
    assert (np.abs(hsv[top] - ref[top]) / ref[top]).max() < 1e-10
    keep = ref >= 1e-8 * ref[0]
    assert keep.sum() >= 6
    rel = np.abs(hsv[keep] - ref[keep]) / ref[keep]
    if kind == "heat":
        # AB09AD is itself off the exact heat HSVs by up to 1.9e-10 (test above)
        assert rel.max() < 1e-9
    else:
        # Between 1e-8 and 1e-6 of sigma_1 the convection HSVs move by up to 2e-9 when
        # A's entries move by half an ulp; the two solvers (measured: up to 2.4e-9
        # apart) agree to within a small multiple of that conditioning.
        sens = _sensitivity(A, B, C, dt, keep, np.random.default_rng(N))
        assert sens > 1e-11  # the bound below is not vacuous: this band is ill-conditioned
        assert rel.max() < 4.0 * sens
