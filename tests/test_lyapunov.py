"""Lyapunov solvers: residuals at round-off level, factor consistency, references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from tests.conftest import random_stable

EPS = np.finfo(float).eps


def _residual(A, X, Q, discrete):
    if discrete:
        R = A @ X @ A.conj().T - X + Q
    else:
        R = A @ X + X @ A.conj().T + Q
    An = np.linalg.norm(A, 2)
    scale = (An**2 + 1 if discrete else 2 * An) * np.linalg.norm(X, 2) + np.linalg.norm(Q, 2)
    return np.linalg.norm(R, 2) / scale


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    complex_=st.booleans(),
    discrete=st.booleans(),
    diagonal=st.booleans(),
)
def test_dense_and_factor_residuals(n, m, seed, complex_, discrete, diagonal):
    rng = np.random.default_rng(seed)
    sys = random_stable(rng, n, m, 1, complex_=complex_, discrete=discrete, diagonal=diagonal)
    A, B = sys.A, sys.B
    Q = B @ B.conj().T
    dt = sys.dt
    X = cr.solve_lyapunov(A, Q, dt=dt)
    assert _residual(A, X, Q, discrete) < 100 * n * EPS
    L = cr.lyapunov_cholesky(A, B, dt=dt)
    assert L.shape == (n, n)
    XL = L @ L.conj().T
    assert _residual(A, XL, Q, discrete) < 100 * n * EPS
    # real data -> real results
    assert np.isrealobj(X) == (not complex_)
    assert np.isrealobj(L) == (not complex_)


def test_continuous_agrees_with_scipy():
    rng = np.random.default_rng(1)
    sys = random_stable(rng, 30, 3, 1)
    Q = sys.B @ sys.B.T
    X = cr.solve_lyapunov(sys.A, Q)
    Xs = scipy.linalg.solve_continuous_lyapunov(sys.A, -Q)
    assert np.allclose(X, Xs, rtol=1e-10, atol=1e-12 * np.abs(Xs).max())


def test_discrete_agrees_with_scipy_direct():
    rng = np.random.default_rng(2)
    sys = random_stable(rng, 12, 2, 1, discrete=True, complex_=True)
    Q = sys.B @ sys.B.conj().T
    X = cr.solve_lyapunov(sys.A, Q, dt=1.0)
    Xs = scipy.linalg.solve_discrete_lyapunov(sys.A, Q, method="direct")
    assert np.allclose(X, Xs, rtol=1e-9, atol=1e-12 * np.abs(Xs).max())


def test_discrete_accurate_near_minus_one():
    # poles near z = -1 are where the bilinear transform loses accuracy
    lam = np.array([-0.999999, -0.99999 + 0.001j, -0.99999 - 0.001j, 0.5])
    rng = np.random.default_rng(3)
    V = rng.standard_normal((4, 4))
    A = np.real_if_close(V @ np.diag(lam) @ np.linalg.inv(V)).real
    Q = np.eye(4)
    X = cr.solve_lyapunov(A, Q, dt=1.0)
    assert _residual(A, X, Q, True) < 1e3 * EPS


def test_general_nonsymmetric_q():
    rng = np.random.default_rng(4)
    A = np.diag([-1.0, -2.0, -3.0]) + np.triu(rng.standard_normal((3, 3)), 1)
    Q = rng.standard_normal((3, 3))
    for dt in (None, 1.0):
        A_ = A / 4 if dt else A
        X = cr.solve_lyapunov(A_, Q, dt=dt)
        assert _residual(A_, X, Q, dt is not None) < 1e3 * EPS


def test_slycot_factor_agrees():
    pytest.importorskip("slycot")
    rng = np.random.default_rng(5)
    for discrete in (False, True):
        sys = random_stable(rng, 25, 3, 1, discrete=discrete)
        L1 = cr.lyapunov_cholesky(sys.A, sys.B, dt=sys.dt)
        L2 = cr.lyapunov_cholesky(sys.A, sys.B, dt=sys.dt, method="slycot")
        X1, X2 = L1 @ L1.T, L2 @ L2.T
        assert np.linalg.norm(X1 - X2) <= 1e-12 * np.linalg.norm(X1)


def test_factor_keeps_small_directions():
    # A Gramian with eigenvalues spanning ~1e-24 .. 1: the Hammarling factor keeps the
    # small ones relative to themselves; factoring the dense solution cannot.
    lam = -np.logspace(0, 3, 12)
    A = np.diag(lam)
    B = np.ones((12, 1))
    L = cr.lyapunov_cholesky(A, B)
    # exact Gramian: Cauchy matrix
    P = -(B @ B.T) / (lam[:, None] + lam[None, :])
    s_exact = np.linalg.svd(np.linalg.cholesky(P), compute_uv=False)
    s = np.linalg.svd(L, compute_uv=False)
    # compare the larger half tightly; the smallest values at least to 1e-6 relative
    assert np.allclose(s[:6], s_exact[:6], rtol=1e-10)
    assert np.all(np.isfinite(s)) and np.all(s >= 0)


@pytest.mark.parametrize("discrete", [False, True])
def test_unstable_rejected_with_poles_named(discrete):
    A = np.diag([-1.0, 1.5]) if not discrete else np.diag([0.5, 1.2])
    with pytest.raises(ValueError, match="1.2|1.5"):
        cr.solve_lyapunov(A, np.eye(2), dt=1.0 if discrete else None)
    with pytest.raises(ValueError, match="unstable"):
        cr.lyapunov_cholesky(A, np.ones((2, 1)), dt=1.0 if discrete else None)


def test_marginal_rejected():
    with pytest.raises(ValueError, match="marginal"):
        cr.lyapunov_cholesky(np.diag([-1.0, 0.0]), np.ones((2, 1)))
    with pytest.raises(ValueError, match="marginal"):
        cr.lyapunov_cholesky(np.diag([0.5, -1.0]), np.ones((2, 1)), dt=1.0)


@pytest.mark.parametrize(
    "A, Q, match",
    [
        (np.ones((2, 3)), np.eye(2), "A must be square"),
        (np.eye(2) * -1, np.eye(3), "Q must have"),
        (np.array([[np.nan, 0], [0, -1]]), np.eye(2), "A must be finite"),
        (-np.eye(2), np.array([[np.inf, 0], [0, 1]]), "Q must be finite"),
        (np.zeros((0, 0)), np.zeros((0, 0)), "at least one"),
        (np.array([-1.0]), np.eye(1), "A must be a 2-D"),
    ],
)
def test_solve_lyapunov_bad_input(A, Q, match):
    with pytest.raises(ValueError, match=match):
        cr.solve_lyapunov(A, Q)


def test_lyapunov_bad_dt_and_method():
    with pytest.raises(ValueError, match="dt must be"):
        cr.solve_lyapunov(-np.eye(2), np.eye(2), dt=0.0)
    with pytest.raises(ValueError, match="dt must be"):
        cr.lyapunov_cholesky(-np.eye(2), np.ones((2, 1)), dt=-1.0)
    with pytest.raises(TypeError, match="dt must be"):
        cr.lyapunov_cholesky(-np.eye(2), np.ones((2, 1)), dt="1")
    with pytest.raises(ValueError, match="B must have 2 rows"):
        cr.lyapunov_cholesky(-np.eye(2), np.ones((3, 1)))
    with pytest.raises(ValueError, match="method must be"):
        cr.lyapunov_cholesky(-np.eye(2), np.ones((2, 1)), method="magic")
    with pytest.raises(ValueError, match="real A and B only"):
        cr.lyapunov_cholesky(-np.eye(2) * (1 + 1j), np.ones((2, 1)), method="slycot")
