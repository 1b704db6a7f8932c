"""Unstable systems: the additive split, reduction with unstable="keep", boundary poles."""

from __future__ import annotations

import warnings

import control
import numpy as np
import pytest
import scipy.io
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from ctrlreduce import stable_error_system, stable_unstable_split
from tests.conftest import bench_path, grid_peak, random_stable

# Unstable modes appended to stable systems: a complex pair and a real pole.
UNSTABLE_C = np.array([[0.5, 2.0, 0.0], [-2.0, 0.5, 0.0], [0.0, 0.0, 3.0]])  # 0.5 +- 2j, 3
UNSTABLE_D = np.array([[0.4, 1.1, 0.0], [-1.1, 0.4, 0.0], [0.0, 0.0, 1.25]])  # |p| = 1.17, 1.25


def _append_unstable(
    stable: cr.StateSpace, Au: np.ndarray, rng: np.random.Generator, spread: float = 0.1
) -> cr.StateSpace:
    """``stable`` plus unstable modes ``Au`` (random B, C rows), then a random similarity."""
    n, k = stable.n_states, Au.shape[0]
    A = scipy.linalg.block_diag(stable.A, Au)
    B = np.vstack([stable.B, rng.standard_normal((k, stable.n_inputs))])
    C = np.hstack([stable.C, rng.standard_normal((stable.n_outputs, k))])
    T = np.eye(n + k) + spread * rng.standard_normal((n + k, n + k)) / np.sqrt(n + k)
    Ti = np.linalg.inv(T)
    return cr.StateSpace(Ti @ A @ T, Ti @ B, C @ T, stable.D, stable.dt)


def _sorted_poles(p: np.ndarray) -> np.ndarray:
    return p[np.lexsort((np.round(p.imag, 8), np.round(p.real, 8)))]


def _hinf_control(sys: cr.StateSpace) -> float:
    """Reference H-infinity norm from slycot ab13dd (via python-control), real systems only.

    ``control.norm`` passes ``tol=1e-6`` to ab13dd, which can stop short of the peak of
    a large error system (seen at 3e-3 relative on CDplayer order 40).  With the slycot
    0.7 / SciPy 1.17 stack even ``tol=1e-10`` stops at 0.0285988 on that system, where a
    direct frequency sweep of ``G - G_r`` reaches 0.0286810 (2.9e-3 higher); ``tol=1e-12``
    finds the peak.
    """
    return float(control.linfnorm(sys.to_control(), tol=1e-12)[0])


@pytest.fixture(scope="module")
def cdplayer() -> cr.StateSpace:
    d = scipy.io.loadmat(str(bench_path("CDplayer.mat")))
    return cr.StateSpace(d["A"], d["B"], d["C"])


@pytest.fixture(scope="module")
def cd_unstable(cdplayer: cr.StateSpace) -> cr.StateSpace:
    return _append_unstable(cdplayer, UNSTABLE_C, np.random.default_rng(11))


# ----------------------------------------------------------------- the split
def test_split_sums_to_original(cd_unstable: cr.StateSpace) -> None:
    split = stable_unstable_split(cd_unstable)
    assert split.n_unstable == 3 and split.n_stable == 120
    assert not split.stable.is_complex and not split.unstable.is_complex
    assert split.stable.is_stable()
    assert np.all(split.unstable.poles().real > 0)
    w = np.logspace(-2, 6, 200)
    G = cd_unstable.freqresp(w)
    Gs = split.stable.freqresp(w) + split.unstable.freqresp(w)
    assert np.max(np.abs(G - Gs)) <= 1e-9 * np.max(np.abs(G))
    np.testing.assert_allclose(split.S @ split.S_inv, np.eye(123), atol=1e-8)
    Ab = split.S_inv @ cd_unstable.A @ split.S
    nrm = np.linalg.norm(cd_unstable.A, 1)
    assert np.max(np.abs(Ab[:120, 120:])) <= 1e-10 * nrm
    assert np.max(np.abs(Ab[120:, :120])) <= 1e-10 * nrm


@st.composite
def mixed_systems(draw):
    """Random systems with both stable and unstable poles, any dt and dtype."""
    ns = draw(st.integers(1, 12))
    nu = draw(st.integers(1, 5))
    m, p = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    complex_ = draw(st.booleans())
    discrete = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    stable = random_stable(rng, ns, m, p, complex_=complex_, discrete=discrete, with_d=True)
    M = rng.standard_normal((nu, nu)) + (1j * rng.standard_normal((nu, nu)) if complex_ else 0)
    ev = np.linalg.eigvals(M)
    if discrete:
        Au = M * (1.2 + rng.uniform()) / np.min(np.abs(ev))
    else:
        Au = M + (0.3 + rng.uniform() - np.min(ev.real)) * np.eye(nu)
    return _append_unstable(stable, Au, rng, spread=0.3), nu


@settings(max_examples=40, deadline=None)
@given(mixed_systems())
def test_split_invariants(case) -> None:
    sys, nu = case
    split = stable_unstable_split(sys)
    assert split.n_unstable == nu
    assert split.stable.is_complex == sys.is_complex == split.unstable.is_complex
    assert split.stable.is_stable()
    assert split.unstable.unstable_poles().size == nu
    np.testing.assert_array_equal(split.stable.D, sys.D)
    np.testing.assert_array_equal(split.unstable.D, 0)
    # G = G_s + G_u at points well away from every pole
    rad = 2.0 * max(np.abs(sys.poles()).max(), 1.0)
    s = rad * np.exp(1j * np.linspace(0, 2 * np.pi, 13))
    G, Gs, Gu = sys.evaluate(s), split.stable.evaluate(s), split.unstable.evaluate(s)
    assert np.max(np.abs(G - Gs - Gu)) <= 1e-9 * max(np.max(np.abs(G)), 1.0) * split.kappa
    # hsv: one inf per unstable mode, then the stable part's HSVs
    hsv = cr.hankel_singular_values(sys, unstable="keep")
    assert hsv.shape == (sys.n_states,)
    assert np.all(np.isinf(hsv[:nu])) and np.all(np.isfinite(hsv[nu:]))
    assert not np.any(np.isnan(hsv))


def test_hsv_keep_matches_stable_part(cdplayer, cd_unstable) -> None:
    hsv = cr.hankel_singular_values(cd_unstable, unstable="keep")
    ref = cr.hankel_singular_values(cdplayer)
    assert np.all(np.isinf(hsv[:3]))
    k = 60  # HSVs above ~1e-9 sigma_1 carry relative accuracy
    np.testing.assert_allclose(hsv[3 : 3 + k], ref[:k], rtol=1e-6, atol=1e-10 * ref[0])
    with pytest.raises(ValueError, match="unstable"):
        cr.hankel_singular_values(cd_unstable)


# ------------------------------------------------------- reduction, continuous
@pytest.mark.parametrize("r_stable", [1, 8, 20, 40])
def test_cdplayer_unstable_reduction(cdplayer, cd_unstable, r_stable) -> None:
    red = cr.balanced_truncation(cd_unstable, order=r_stable + 3, unstable="keep")
    assert red.order == r_stable + 3 == red.system.n_states
    assert red.n_unstable == 3
    # the unstable poles are kept exactly
    up = _sorted_poles(cd_unstable.unstable_poles())
    upr = _sorted_poles(red.system.unstable_poles())
    assert upr.size == 3
    np.testing.assert_allclose(upr, up, rtol=1e-10)
    np.testing.assert_allclose(up, _sorted_poles(np.linalg.eigvals(UNSTABLE_C)), rtol=1e-10)
    # the bound is the stable part's bound
    ref = cr.balanced_truncation(cdplayer, order=r_stable)
    assert red.error_bound == pytest.approx(ref.error_bound, rel=1e-6)
    assert red.lower_bound == pytest.approx(ref.lower_bound, rel=1e-6)
    # measured error: ab13dd on the stable error system, and a direct frequency grid
    err = _hinf_control(stable_error_system(cd_unstable, red.system))
    assert red.lower_bound * (1 - 1e-6) <= err <= red.error_bound * (1 + 1e-8)
    cert = red.certify()
    assert cert.ok and cert.error == pytest.approx(err, rel=1e-6)
    w = np.logspace(-1, 6, 3000)  # unstable poles are off the imaginary axis
    E = cd_unstable.freqresp(w) - red.system.freqresp(w)
    grid = float(np.max(np.linalg.svd(E, compute_uv=False)))
    assert grid <= err * (1 + 1e-6)
    assert grid >= 0.5 * red.lower_bound


def test_cdplayer_unstable_matches_slycot(cd_unstable) -> None:
    """slycot ab09md reduces the alpha-stable part and keeps the rest: same transfer function."""
    import slycot

    s = cd_unstable
    r = 23
    nr, Ar, Br, Cr, *_ = slycot.ab09md(
        "C", "B", "N", s.n_states, s.n_inputs, s.n_outputs, s.A.copy(), s.B.copy(), s.C.copy(),
        alpha=0.0, nr=r,
    )
    assert nr == r
    ref = cr.StateSpace(Ar[:nr, :nr], Br[:nr], Cr[:, :nr])
    red = cr.balanced_truncation(s, order=r, unstable="keep")
    w = np.logspace(-1, 5, 300)
    G, Gr, Gref = s.freqresp(w), red.system.freqresp(w), ref.freqresp(w)
    assert np.max(np.abs(Gr - Gref)) <= 1e-6 * np.max(np.abs(G))


@pytest.mark.parametrize("method", ["sr", "bfsr"])
@pytest.mark.parametrize("elimination", ["truncate", "matchdc"])
def test_projections_and_tol(cd_unstable, method, elimination) -> None:
    red = cr.balanced_truncation(
        cd_unstable, tol=1.0, unstable="keep", method=method, elimination=elimination
    )
    r = red.order
    assert red.error_bound <= 1.0 < cr.tail_bound(red.hsv, r - 1)
    err = _hinf_control(stable_error_system(cd_unstable, red.system))
    assert err <= 1.0
    V, W = red.V, red.W
    assert V.shape == W.shape == (cd_unstable.n_states, r)
    np.testing.assert_allclose(W.conj().T @ V, np.eye(r), atol=1e-8)
    if elimination == "truncate":
        Ar = W.conj().T @ cd_unstable.A @ V
        scale = np.linalg.norm(cd_unstable.A, 2)
        assert np.max(np.abs(Ar - red.system.A)) <= 1e-9 * scale
    else:
        G0 = cd_unstable.evaluate([0.0])[0]
        assert np.linalg.norm(red.system.evaluate([0.0])[0] - G0) <= 1e-9 * np.linalg.norm(G0)


def test_order_below_unstable_count(cd_unstable) -> None:
    with pytest.raises(ValueError, match=r"order=2.*n_unstable=3"):
        cr.balanced_truncation(cd_unstable, order=2, unstable="keep")
    red = cr.balanced_truncation(cd_unstable, order=3, unstable="keep")
    assert red.system.n_states == 3 and red.n_unstable == 3
    assert red.error_bound == pytest.approx(2 * np.sum(red.hsv[3:]), rel=1e-12)
    np.testing.assert_allclose(
        _sorted_poles(red.system.poles()), _sorted_poles(cd_unstable.unstable_poles()), rtol=1e-10
    )


# --------------------------------------------------------- reduction, discrete
@pytest.mark.parametrize("complex_", [False, True])
def test_discrete_unstable_reduction(complex_) -> None:
    rng = np.random.default_rng(5)
    stable = random_stable(rng, 40, 2, 2, discrete=True, complex_=complex_, with_d=True)
    Au = UNSTABLE_D.astype(complex) * np.exp(0.3j) if complex_ else UNSTABLE_D
    sys = _append_unstable(stable, Au, rng)
    hsv_ref = cr.hankel_singular_values(stable)
    for r_stable in (2, 6, 12):
        red = cr.balanced_truncation(sys, order=r_stable + 3, unstable="keep")
        up = _sorted_poles(sys.unstable_poles())
        np.testing.assert_allclose(_sorted_poles(red.system.unstable_poles()), up, rtol=1e-10)
        np.testing.assert_allclose(
            _sorted_poles(up), _sorted_poles(np.linalg.eigvals(Au)), rtol=1e-10
        )
        assert red.error_bound == pytest.approx(cr.tail_bound(hsv_ref, r_stable), rel=1e-7)
        E = stable_error_system(sys, red.system)
        err = grid_peak(E) if complex_ else _hinf_control(E)
        slack = 1e-10 * hsv_ref[0]
        assert red.lower_bound * (1 - 1e-3) <= err <= red.error_bound * (1 + 1e-8) + slack
        # G(1) and G(-1) of the two systems differ by the stable error only
        z = np.array([1.0, -1.0, 1j])
        diff = np.linalg.svd(sys.evaluate(z) - red.system.evaluate(z), compute_uv=False)
        assert np.max(diff) <= red.error_bound * (1 + 1e-6) + slack


# ------------------------------------------------------------ boundary poles
def _boundary_system(discrete: bool, offset: float) -> cr.StateSpace:
    """Stable modes plus poles on the boundary and within ``offset`` of it, both sides."""
    rng = np.random.default_rng(2)
    if discrete:
        stable = [0.5, -0.3, 0.8]
        marg = [1.0, -1.0, 1.0 - offset, 1.0 + offset]
        pair = (1.0 - offset) * np.array([[np.cos(0.7), np.sin(0.7)], [-np.sin(0.7), np.cos(0.7)]])
    else:
        stable = [-1.0, -2.0, -0.5]
        marg = [0.0, -offset, offset, 0.0]
        pair = np.array([[-offset, 1.5], [-1.5, -offset]])
    A = scipy.linalg.block_diag(np.diag(stable + marg), pair)
    n = A.shape[0]
    T = scipy.linalg.qr(rng.standard_normal((n, n)))[0]
    return cr.StateSpace(T.T @ A @ T, T.T @ rng.standard_normal((n, 2)),
                         rng.standard_normal((1, n)) @ T, None, 0.1 if discrete else None)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("offset", [1e-13, 1e-14])
def test_boundary_poles(discrete, offset) -> None:
    # Offsets below each pole's round-off margin, 100 n eps ||A||_F kappa ~ 6e-13 here
    # (the old absolute floor of 1e-12 is gone: margins are relative to ||A||)
    sys = _boundary_system(discrete, offset)
    with pytest.raises(ValueError, match="unstable or marginal"):
        cr.balanced_truncation(sys, order=2)
    with pytest.raises(ValueError, match="unstable or marginal"):
        cr.hankel_singular_values(sys)
    with pytest.raises(ValueError, match="unstable or marginal"):
        cr.gramians(sys)
    hsv = cr.hankel_singular_values(sys, unstable="keep")
    assert not np.any(np.isnan(hsv))
    assert np.count_nonzero(np.isinf(hsv)) == 6 and np.all(np.isfinite(hsv[6:]))
    red = cr.balanced_truncation(sys, order=7, unstable="keep")
    assert red.n_unstable == 6 and red.system.n_states == 7
    for M in (red.system.A, red.system.B, red.system.C, red.system.D):
        assert np.all(np.isfinite(M))
    assert np.isfinite(red.error_bound) and red.error_bound > 0
    cert = red.certify()
    assert cert.ok and np.isfinite(cert.error)


def test_alpha_margin_keeps_slow_poles() -> None:
    A = np.diag([-0.05, -1.0, -2.0, -3.0])
    sys = cr.StateSpace(A, np.ones((4, 1)), np.ones((1, 4)))
    assert stable_unstable_split(sys).n_unstable == 0
    split = stable_unstable_split(sys, alpha=0.1)
    assert split.n_unstable == 1
    np.testing.assert_allclose(split.unstable.poles(), [-0.05])
    red = cr.balanced_truncation(sys, order=2, unstable="keep", alpha=0.1)
    assert np.min(np.abs(red.system.poles() + 0.05)) < 1e-12
    for bad in (-0.1, np.nan):
        with pytest.raises(ValueError, match="alpha"):
            stable_unstable_split(sys, alpha=bad)
    with pytest.raises(ValueError, match="alpha"):
        stable_unstable_split(cr.StateSpace(A / 10, A[:, :1], A[:1], dt=1.0), alpha=1.0)


def test_all_unstable_system_is_returned_unchanged() -> None:
    sys = cr.StateSpace(UNSTABLE_C, np.ones((3, 1)), np.ones((1, 3)), [[2.0]])
    red = cr.balanced_truncation(sys, order=3, unstable="keep")
    assert red.system is sys and red.order == 3 and red.n_unstable == 3
    assert np.all(np.isinf(red.hsv)) and red.error_bound == 0.0
    assert red.certify().error == 0.0
    red_tol = cr.balanced_truncation(sys, tol=1e-3, unstable="keep")
    assert red_tol.order == 3
    with pytest.raises(ValueError, match="n_unstable=3"):
        cr.balanced_truncation(sys, order=1, unstable="keep")


def test_ill_conditioned_split_warns() -> None:
    d = 1e-5
    A = np.array([[-d, 1.0], [0.0, d]])  # poles -+1e-5, strongly coupled
    sys = cr.StateSpace(A, [[1.0], [1.0]], [[1.0, 1.0]])
    with pytest.warns(RuntimeWarning, match="ill-conditioned"):
        split = stable_unstable_split(sys)
    assert split.n_unstable == 1 and split.kappa > 1e9
    # at d = 1e-9 the stable pole's condition number is 5e8: an eps-perturbation of A
    # moves it by ~1e-7, past the axis, so it cannot be told from a marginal pole and
    # both poles go to the unstable part (no coupling, no warning)
    tight = cr.StateSpace(np.array([[-1e-9, 1.0], [0.0, 1e-9]]), [[1.0], [1.0]], [[1.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stable_unstable_split(tight).n_unstable == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stable_unstable_split(cr.StateSpace(np.diag([-1.0, 1.0]), A[:, :1], A[:1]))
