"""Gramians, HSVs and balanced truncation: invariants on generated systems."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from tests.conftest import hinf, random_stable, stable_systems


def _similar(sys: cr.StateSpace, rng: np.random.Generator) -> cr.StateSpace:
    n = sys.n_states
    T = rng.standard_normal((n, n)) + 3 * np.eye(n)  # well conditioned
    Ti = np.linalg.inv(T)
    return cr.StateSpace(Ti @ sys.A @ T, Ti @ sys.B, sys.C @ T, sys.D, sys.dt)


@settings(max_examples=40, deadline=None)
@given(sys=stable_systems(), seed=st.integers(0, 2**31))
def test_hsv_basic_and_similarity_invariant(sys, seed):
    h = cr.hankel_singular_values(sys)
    assert h.dtype == np.float64 and h.shape == (sys.n_states,)
    assert np.all(np.isfinite(h)) and np.all(h >= 0)
    assert np.all(np.diff(h) <= 1e-12 * max(h[0], 1e-300))
    h2 = cr.hankel_singular_values(_similar(sys, np.random.default_rng(seed)))
    assert np.allclose(h, h2, rtol=0, atol=1e-7 * h[0] + 1e-300)


@settings(max_examples=30, deadline=None)
@given(sys=stable_systems(max_n=30), data=st.data())
def test_bt_error_between_bounds(sys, data):
    n = sys.n_states
    r = data.draw(st.integers(0, n))
    method = data.draw(st.sampled_from(["sr", "bfsr"]))
    red = cr.balanced_truncation(sys, r, method=method)
    assert red.order == r and red.system.dt == sys.dt
    assert red.system.n_states == max(r, 1)  # order 0 is a static gain (one dummy state)
    assert red.system.is_complex == sys.is_complex
    h = red.hsv
    assert red.error_bound == pytest.approx(2 * h[r:].sum(), rel=1e-12, abs=0)
    err = hinf(sys - red.system)
    slack = 1e-7 * h[0] + 1e-12
    assert err <= red.error_bound + slack
    if r < n:
        assert err >= h[r] - slack


@settings(max_examples=25, deadline=None)
@given(sys=stable_systems(max_n=25))
def test_reduced_model_is_balanced_with_kept_hsvs(sys):
    """The truncated balanced model and its Gramians.

    Continuous time: balanced with Gramians ``diag(h[:r])``.  Discrete time:
    truncation keeps the Lyapunov *inequalities* (Al-Saggaf and Franklin 1987):
    ``A11 S A11^H - S + B1 B1^H = -A12 S2 A12^H <= 0`` with ``S = diag(h[:r])``,
    so the reduced Gramians satisfy ``P_r <= S``, ``Q_r <= S``, and the model
    is stable when ``h[r-1] > h[r]``.  ``r`` is taken at such a gap.
    """
    h = cr.hankel_singular_values(sys)
    k = int(np.count_nonzero(h > 1e-6 * h[0]))
    top = min(sys.n_states - 1, max(1, k // 2))
    gaps = [r for r in range(1, top + 1) if h[r - 1] > h[r] * (1 + 1e-3)]
    assume(gaps)
    r = gaps[-1]
    red = cr.balanced_truncation(sys, r)
    S = np.diag(h[:r])
    P, Q = cr.gramians(red.system)
    if sys.dt is None:
        assert np.allclose(P, S, atol=1e-6 * h[0])
        assert np.allclose(Q, S, atol=1e-6 * h[0])
        assert np.allclose(cr.hankel_singular_values(red.system), h[:r], atol=1e-6 * h[0])
        return
    assert red.system.is_stable()
    for G in (P, Q):
        assert np.linalg.eigvalsh(S - 0.5 * (G + G.conj().T)).min() >= -1e-8 * h[0]


@settings(max_examples=30, deadline=None)
@given(sys=stable_systems(diagonal=True))
def test_diagonal_closed_form_matches_dense(sys):
    """Diagonal A (LRU/S5 form): closed-form Gramians and HSVs equal the dense path."""
    assert sys.is_diagonal()
    P, Q = cr.gramians(sys)
    A = sys.A
    Pd = cr.solve_lyapunov(A, sys.B @ sys.B.conj().T, dt=sys.dt)
    Qd = cr.solve_lyapunov(A.conj().T, sys.C.conj().T @ sys.C, dt=sys.dt)
    assert np.allclose(P, Pd, rtol=1e-9, atol=1e-12 * np.abs(Pd).max())
    assert np.allclose(Q, Qd, rtol=1e-9, atol=1e-12 * np.abs(Qd).max())
    # dense path: perturb nothing but hide the diagonal structure by a unitary similarity
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((sys.n_states,) * 2))[0]
    dense = cr.StateSpace(U.T @ A @ U, U.T @ sys.B, sys.C @ U, sys.D, sys.dt)
    assert not dense.is_diagonal() or sys.n_states == 1
    h1 = cr.hankel_singular_values(sys)
    h2 = cr.hankel_singular_values(dense)
    assert np.allclose(h1, h2, rtol=0, atol=1e-9 * h1[0])


def test_complex_diagonal_lru_like_system():
    rng = np.random.default_rng(7)
    n, m, p = 64, 8, 8
    lam = rng.uniform(0.5, 0.99, n) * np.exp(1j * rng.uniform(0, np.pi / 5, n))
    B = (rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))) / np.sqrt(2 * m)
    C = (rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n))) / np.sqrt(n)
    sys = cr.StateSpace(np.diag(lam), B, C, dt=1.0)
    Lc, Lo = cr.gramians(sys, factor=True)
    P, Q = cr.gramians(sys)
    assert np.allclose(Lc @ Lc.conj().T, P, atol=1e-12 * np.abs(P).max())
    assert np.allclose(Lo @ Lo.conj().T, Q, atol=1e-12 * np.abs(Q).max())
    V = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))[0]
    dense = cr.StateSpace(V.conj().T @ sys.A @ V, V.conj().T @ B, C @ V, dt=1.0)
    h1, h2 = cr.hankel_singular_values(sys), cr.hankel_singular_values(dense)
    assert np.allclose(h1, h2, atol=1e-10 * h1[0])
    red = cr.balanced_truncation(sys, 16)
    assert red.system.is_complex and red.system.dt == 1.0
    assert hinf(sys - red.system) <= red.error_bound * (1 + 1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_discrete_exact_order_dt_and_bound(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 40))
    sys = random_stable(rng, n, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                        discrete=True, complex_=bool(seed % 2), margin=0.05)
    r = int(rng.integers(1, n))
    red = cr.balanced_truncation(sys, r)
    assert red.system.n_states == r and red.order == r
    assert red.system.dt == sys.dt == 0.5
    err = hinf(sys - red.system)
    assert red.hsv[r] * (1 - 1e-7) <= err <= red.error_bound * (1 + 1e-7)


def test_tol_picks_smallest_order():
    rng = np.random.default_rng(3)
    sys = random_stable(rng, 30, 2, 2)
    h = cr.hankel_singular_values(sys)
    tol = 2 * h[10:].sum() * 1.0001
    red = cr.balanced_truncation(sys, tol=tol)
    assert red.error_bound <= tol
    assert red.order == 10 and 2 * h[9:].sum() > tol  # order 9 would break the tolerance
    assert hinf(sys - red.system) <= tol


def test_sr_and_bfsr_give_same_transfer_function():
    rng = np.random.default_rng(4)
    sys = random_stable(rng, 25, 2, 3, with_d=True)
    a = cr.balanced_truncation(sys, 8, method="sr").system
    b = cr.balanced_truncation(sys, 8, method="bfsr").system
    w = np.logspace(-2, 2, 50)
    assert np.allclose(a.freqresp(w), b.freqresp(w), rtol=1e-8, atol=1e-10)
    # both are oblique projections (W^H V = I) onto the same subspaces
    sr = cr.balanced_truncation(sys, 8, method="sr")
    bf = cr.balanced_truncation(sys, 8, method="bfsr")
    for red in (sr, bf):
        assert np.allclose(red.W.conj().T @ red.V, np.eye(8), atol=1e-9)
    assert np.allclose(sr.V @ sr.W.conj().T, bf.V @ bf.W.conj().T, atol=1e-7)
    Qv = np.linalg.qr(bf.V)[0]
    assert np.allclose(Qv @ (Qv.T @ sr.V), sr.V, atol=1e-9 * np.abs(sr.V).max())


def test_order_zero_and_full():
    rng = np.random.default_rng(5)
    sys = random_stable(rng, 6, 2, 2, with_d=True)
    red0 = cr.balanced_truncation(sys, 0)
    assert red0.order == 0
    assert np.allclose(red0.system.freqresp([0.0, 5.0]), sys.D)
    full = cr.balanced_truncation(sys, 6)
    assert full.error_bound == 0.0 and full.lower_bound == 0.0
    w = [0.0, 1.0, 7.0]
    assert np.allclose(full.system.freqresp(w), sys.freqresp(w), rtol=1e-8, atol=1e-10)


def test_balanced_realization_gramians_diagonal_and_nonminimal_error():
    rng = np.random.default_rng(6)
    sys = random_stable(rng, 8, 2, 2)
    bal = cr.balanced_realization(sys)
    P, Q = cr.gramians(bal.system)
    assert np.allclose(P, np.diag(bal.hsv), atol=1e-9 * bal.hsv[0])
    assert np.allclose(Q, np.diag(bal.hsv), atol=1e-9 * bal.hsv[0])
    assert np.allclose(bal.W.conj().T @ bal.V, np.eye(8), atol=1e-8)
    # an uncontrollable state: not minimal
    A = np.diag([-1.0, -2.0])
    nonmin = cr.StateSpace(A, [[1.0], [0.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="not minimal"):
        cr.balanced_realization(nonmin)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(order=-1), ValueError, r"order must be in 0..4, got -1"),
        (dict(order=5), ValueError, r"order must be in 0..4, got 5"),
        (dict(order=2.0), TypeError, "order must be an integer"),
        (dict(order="2"), TypeError, "order must be an integer"),
        (dict(order=True), TypeError, "order must be an integer"),
        (dict(tol=0.0), ValueError, "tol must be a finite number > 0"),
        (dict(tol=-1.0), ValueError, "tol must be a finite number > 0"),
        (dict(tol=float("nan")), ValueError, "tol must be a finite number > 0"),
        (dict(), ValueError, "exactly one of order and tol"),
        (dict(order=2, tol=1.0), ValueError, "exactly one of order and tol"),
        (dict(order=2, method="qr"), ValueError, "method must be 'sr' or 'bfsr'"),
        (dict(order=2, elimination="x"), ValueError, "elimination must be"),
        (dict(order=2, unstable="x"), ValueError, "unstable must be"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    sys = cr.StateSpace(np.diag([-1.0, -2.0, -3.0, -4.0]), np.ones((4, 1)), np.ones((1, 4)))
    with pytest.raises(exc, match=match):
        cr.balanced_truncation(sys, **kwargs)


def test_non_system_and_unstable_rejected():
    with pytest.raises(TypeError, match="must be a ctrlreduce.StateSpace"):
        cr.balanced_truncation((np.eye(2), np.ones((2, 1)), np.ones((1, 2))), 1)
    with pytest.raises(TypeError, match="must be a ctrlreduce.StateSpace"):
        cr.hankel_singular_values(np.eye(2))
    with pytest.raises(TypeError, match="must be a ctrlreduce.StateSpace"):
        cr.gramians("sys")
    uns = cr.StateSpace(np.diag([-1.0, 0.3]), np.ones((2, 1)), np.ones((1, 2)))
    for f in (cr.hankel_singular_values, cr.gramians, cr.balanced_realization):
        with pytest.raises(ValueError, match=r"0\.3"):
            f(uns)
    with pytest.raises(ValueError, match=r"unstable or marginal poles: 0\.3"):
        cr.balanced_truncation(uns, 1)
    marg = cr.StateSpace(np.diag([0.5, 1.0]), np.ones((2, 1)), np.ones((1, 2)), dt=1.0)
    with pytest.raises(ValueError, match=r"\|p\| < 1"):
        cr.balanced_truncation(marg, 1)


def test_never_nan_on_nearly_uncontrollable():
    # A state that is controllable only at round-off level: HSVs ~ 0, never NaN
    A = np.diag([-1.0, -2.0, -3.0])
    B = np.array([[1.0], [1e-170], [0.0]])
    C = np.array([[1.0, 1.0, 1.0]])
    sys = cr.StateSpace(A, B, C)
    h = cr.hankel_singular_values(sys)
    # states 1, 2: P = [[1/2, b/3], [b/3, b^2/4]], Q = [[1/2, 1/3], [1/3, 1/4]], so
    # sigma_1 sigma_2 = sqrt(det P det Q) = b / 72 and sigma_1 = 1/2 + O(b): sigma_2 = b / 36
    assert np.all(np.isfinite(h)) and h[2] == 0.0
    assert h[0] == pytest.approx(0.5, rel=1e-14)
    assert h[1] == pytest.approx(1e-170 / 36, rel=1e-12)
    for r in range(4):
        red = cr.balanced_truncation(sys, r)
        M = red.system
        assert all(np.all(np.isfinite(X)) for X in (M.A, M.B, M.C, M.D))
