"""Singular perturbation (elimination="matchdc"): exact DC gain, same bounds as truncation.

The DC gain is ``G(0)`` in continuous time and ``G(1)`` in discrete time.  SLICOT's
discrete square-root SPA (ab09nd with dico='D') does not keep ``G(1)``, so it is never
used as a reference here; the continuous one is.
"""

from __future__ import annotations

import control
import numpy as np
import pytest
import scipy.io
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from tests.conftest import bench_path, hinf, random_stable, stable_systems


def _dc_point(sys: cr.StateSpace) -> complex:
    return 1.0 if sys.is_discrete else 0.0


def _dc_gain(sys: cr.StateSpace) -> np.ndarray:
    return sys.evaluate([_dc_point(sys)])[0]


def _hinf_ref(sys: cr.StateSpace) -> float:
    """slycot ab13dd at tol 1e-10 for real systems; the project's norm (or a grid) otherwise."""
    if sys.is_complex:
        return hinf(sys)
    return float(control.linfnorm(sys.to_control(), tol=1e-10)[0])


def _check_bounds(red: cr.Reduction, err: float) -> None:
    slack = 1e-10 * red.hsv[0]  # round-off in measuring an error this small
    assert err <= red.error_bound * (1 + 1e-8) + slack, (err, red.error_bound)
    assert err >= red.lower_bound * (1 - 1e-6) - slack, (err, red.lower_bound)


@pytest.fixture(scope="module")
def cdplayer() -> cr.StateSpace:
    d = scipy.io.loadmat(str(bench_path("CDplayer.mat")))
    return cr.StateSpace(d["A"], d["B"], d["C"])


@pytest.fixture(scope="module")
def cdplayer_discrete(cdplayer: cr.StateSpace) -> cr.StateSpace:
    """CDplayer under the bilinear (Tustin) map; HSVs and H-infinity norms are unchanged."""
    dt = 1e-4
    Ad, Bd, Cd, Dd, _ = scipy.signal.cont2discrete(
        (cdplayer.A, cdplayer.B, cdplayer.C, cdplayer.D), dt, method="bilinear"
    )
    return cr.StateSpace(Ad, Bd, Cd, Dd, dt)


# --------------------------------------------------------------- random systems
@settings(max_examples=40, deadline=None)
@given(sys=stable_systems(max_n=25), data=st.data())
def test_matchdc_keeps_dc_gain_and_bound(sys: cr.StateSpace, data) -> None:
    r = data.draw(st.integers(0, sys.n_states - 1), label="order")
    red = cr.balanced_truncation(sys, order=r, elimination="matchdc")
    assert red.system.n_states == max(r, 1) and red.system.dt == sys.dt
    assert red.system.is_complex == sys.is_complex
    G0, Gr0 = _dc_gain(sys), _dc_gain(red.system)
    assert np.linalg.norm(Gr0 - G0, 2) <= 1e-10 * np.linalg.norm(G0, 2) + 1e-13 * red.hsv[0]
    _check_bounds(red, hinf(sys - red.system))


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_matchdc_dc_gain_relative(discrete: bool, complex_: bool) -> None:
    """Seeded systems with a D term, every order: DC gain to 1e-10 relative, and the bound."""
    rng = np.random.default_rng(7 + 2 * discrete + complex_)
    sys = random_stable(rng, 20, 2, 3, complex_=complex_, discrete=discrete, with_d=True)
    G0 = _dc_gain(sys)
    for r in range(sys.n_states):
        red = cr.balanced_truncation(sys, order=r, elimination="matchdc")
        assert np.linalg.norm(_dc_gain(red.system) - G0, 2) <= 1e-10 * np.linalg.norm(G0, 2)
        if r in (0, 3, 10):
            _check_bounds(red, _hinf_ref(sys - red.system))
    red0 = cr.balanced_truncation(sys, order=0, elimination="matchdc")
    np.testing.assert_allclose(red0.system.D, G0, rtol=1e-10)  # a static gain = G(dc)


def test_truncation_does_not_keep_dc_gain() -> None:
    """The DC test above can fail: plain truncation misses G(0) by far more than 1e-10."""
    sys = random_stable(np.random.default_rng(1), 20, 1, 1)
    red = cr.balanced_truncation(sys, order=3)
    G0 = _dc_gain(sys)
    assert np.linalg.norm(_dc_gain(red.system) - G0) > 1e-6 * np.linalg.norm(G0)


@pytest.mark.parametrize("discrete", [False, True])
def test_matchdc_tol(discrete: bool) -> None:
    sys = random_stable(np.random.default_rng(3), 30, 2, 2, discrete=discrete)
    hsv = cr.hankel_singular_values(sys)
    tol = 1e-3 * hsv[0]
    red = cr.balanced_truncation(sys, tol=tol, elimination="matchdc")
    assert red.error_bound <= tol < cr.tail_bound(hsv, red.order - 1)
    assert _hinf_ref(sys - red.system) <= tol


# ---------------------------------------------------------------- CDplayer
def test_cdplayer_orders_1_to_40(cdplayer: cr.StateSpace) -> None:
    """Acceptance: sigma_{r+1} <= ||G - G_r||_inf <= bound for r = 1..40, both eliminations."""
    G0 = _dc_gain(cdplayer)
    for r in range(1, 41):
        for elimination in ("truncate", "matchdc"):
            red = cr.balanced_truncation(cdplayer, order=r, elimination=elimination)
            _check_bounds(red, _hinf_ref(cdplayer - red.system))
            if elimination == "matchdc":
                dc = np.linalg.norm(_dc_gain(red.system) - G0, 2)
                assert dc <= 1e-10 * np.linalg.norm(G0, 2)


@pytest.mark.parametrize("r", [4, 12, 25])
def test_cdplayer_matchdc_equals_slycot_continuous_spa(cdplayer: cr.StateSpace, r: int) -> None:
    import slycot

    s = cdplayer
    nr, Ar, Br, Cr, Dr, *_ = slycot.ab09nd(
        "C", "B", "N", s.n_states, s.n_inputs, s.n_outputs,
        s.A.copy(), s.B.copy(), s.C.copy(), s.D.copy(), nr=r,
    )
    assert nr == r
    ref = cr.StateSpace(Ar[:nr, :nr], Br[:nr], Cr[:, :nr], Dr)
    red = cr.balanced_truncation(s, order=r, elimination="matchdc")
    w = np.concatenate([[0.0], np.logspace(-1, 6, 400)])
    diff = np.max(np.abs(red.system.freqresp(w) - ref.freqresp(w)))
    assert diff <= 1e-7 * np.max(np.abs(s.freqresp(w)))


@pytest.mark.parametrize("r", [2, 8, 20, 35])
def test_cdplayer_discrete_matchdc(cdplayer_discrete: cr.StateSpace, cdplayer, r: int) -> None:
    sys = cdplayer_discrete
    hsv_c = cr.hankel_singular_values(cdplayer)
    red = cr.balanced_truncation(sys, order=r, elimination="matchdc")
    np.testing.assert_allclose(red.hsv[:40], hsv_c[:40], rtol=1e-6)
    G1 = _dc_gain(sys)
    np.testing.assert_allclose(G1, _dc_gain(cdplayer), rtol=1e-8)
    assert np.linalg.norm(_dc_gain(red.system) - G1, 2) <= 1e-10 * np.linalg.norm(G1, 2)
    assert np.all(np.abs(red.system.poles()) < 1)
    _check_bounds(red, _hinf_ref(sys - red.system))


# ------------------------------------------------------------ repeated HSVs
def _doubled(discrete: bool) -> tuple[cr.StateSpace, np.ndarray]:
    """``diag(G, G)`` for a balanced SISO ``G``: every HSV of ``G`` appears exactly twice."""
    rng = np.random.default_rng(21)
    for _ in range(50):  # a G whose HSVs are well separated and far above round-off
        g = random_stable(rng, 5, 1, 1, discrete=discrete, margin=0.3)
        hs = cr.hankel_singular_values(g)
        if hs[-1] > 1e-5 * hs[0] and np.all(hs[1:] < 0.8 * hs[:-1]):
            break
    b = cr.balanced_realization(g).system
    Z = np.zeros_like(b.A)
    A = np.block([[b.A, Z], [Z, b.A]])
    B = np.block([[b.B, np.zeros_like(b.B)], [np.zeros_like(b.B), b.B]])
    C = np.block([[b.C, np.zeros_like(b.C)], [np.zeros_like(b.C), b.C]])
    return cr.StateSpace(A, B, C, None, b.dt), hs


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("elimination", ["truncate", "matchdc"])
def test_repeated_hsv_bounds(discrete: bool, elimination: str) -> None:
    sys, hs = _doubled(discrete)
    hsv = cr.hankel_singular_values(sys)
    np.testing.assert_allclose(hsv, np.repeat(hs, 2), rtol=1e-9)
    for r in range(sys.n_states):
        red = cr.balanced_truncation(sys, order=r, elimination=elimination)
        err = _hinf_ref(sys - red.system)
        # each distinct discarded value once
        k = (r + 1) // 2  # distinct values partly or wholly kept
        distinct = 2 * np.sum(hs[r // 2 :]) if r % 2 else 2 * np.sum(hs[k:])
        assert red.error_bound_distinct == pytest.approx(distinct, rel=1e-8)
        assert red.error_bound == pytest.approx(2 * np.sum(hsv[r:]), rel=1e-12)
        assert red.lower_bound * (1 - 1e-6) <= err <= red.error_bound_distinct * (1 + 1e-8)
        assert red.error_bound_distinct <= red.error_bound
        if sys.n_states - r >= 2:  # a whole repeated pair is discarded: strictly tighter
            assert red.error_bound_distinct < 0.99 * red.error_bound
