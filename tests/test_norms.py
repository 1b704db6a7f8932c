"""H2 and H-infinity norms, and measured reduction certificates.

References: slycot ``ab13dd`` (through ``control.linfnorm`` / ``control.norm``),
dense frequency sweeps refined locally (complex systems, which python-control
cannot hold), quadrature and Markov-parameter sums for the H2 norm, and the
Hankel-singular-value bounds ``sigma_{r+1} <= ||G - G_r||_inf <= 2 sum tail``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from ctrlreduce._norms import h2_norm, hinf_norm, reduction_error
from tests.conftest import bench_path, random_stable, stable_systems

control = pytest.importorskip("control")

BENCHMARKS = ["CDplayer", "build", "iss1R", "beam", "heat-cont"]
# slycot ab13dd (control.linfnorm(sys, tol=1e-10), slycot 0.7.1) on ISS12A.mat:
# 87 s on one core, hence stored here instead of recomputed.
ISS12A_AB13DD = 0.011500628323510006


def _sigma_max(sys: cr.StateSpace, w: float) -> float:
    """sigma_max(G) at frequency ``w`` (rad/s), ``||D||`` at ``w = inf``."""
    if not np.isfinite(w):
        return float(np.linalg.norm(sys.D, 2))
    return float(np.linalg.norm(sys.freqresp([w])[0], 2))


def _freqresp(sys: cr.StateSpace, w: np.ndarray) -> np.ndarray:
    """G at frequencies ``w`` (rad/s) by batched dense solves, shape (k, p, m); small n only."""
    s = 1j * w if sys.dt is None else np.exp(1j * w * sys.dt)
    M = s[:, None, None] * np.eye(sys.n_states) - sys.A  # (k, n, n)
    return sys.C @ np.linalg.solve(M, np.broadcast_to(sys.B, (w.size, *sys.B.shape))) + sys.D


def _sweep_peak(sys: cr.StateSpace, k: int = 20000) -> tuple[float, float]:
    """Dense sweep over both signs of frequency, then a local refinement.

    Returns ``(sweep_max, refined_max)``; the refinement maximises
    ``sigma_max`` between the neighbours of the best sweep point.
    """
    if sys.dt is None:
        mag = np.abs(sys.poles())
        w = np.geomspace(mag.min() * 1e-3, mag.max() * 1e3, k // 2)
        w = np.concatenate([-w[::-1], [0.0], w])
    else:
        w = np.linspace(-np.pi, np.pi, k + 1) / sys.dt
    s = np.linalg.svd(_freqresp(sys, w), compute_uv=False)[:, 0]
    i = int(np.argmax(s))
    lo, hi = w[max(i - 1, 0)], w[min(i + 1, w.size - 1)]
    res = scipy.optimize.minimize_scalar(
        lambda x: -_sigma_max(sys, x), bounds=(lo, hi), method="bounded",
        options={"xatol": 1e-12 * max(abs(lo), abs(hi), 1e-12)},
    )
    return float(s[i]), max(float(s[i]), -float(res.fun))


def _ab13dd(sys: cr.StateSpace) -> float:
    return float(control.linfnorm(sys.to_control(), tol=1e-10)[0])


# ---------------------------------------------------------------- benchmarks
@pytest.mark.parametrize("name", BENCHMARKS)
def test_hinf_benchmarks_agree_with_slycot(name: str) -> None:
    sys = cr.load(bench_path(f"{name}.mat"))
    g, w = hinf_norm(sys, return_frequency=True)
    ref_ctrl = float(control.norm(sys.to_control(), "inf"))  # ab13dd with tol=1e-6
    assert g == pytest.approx(ref_ctrl, rel=1e-6)
    assert g == pytest.approx(_ab13dd(sys), rel=1e-9)
    assert _sigma_max(sys, w) == pytest.approx(g, rel=1e-9)
    assert w >= 0.0


@pytest.mark.slow
def test_hinf_iss12a_against_stored_ab13dd() -> None:
    """ISS12A (n = 1412): about 30-40 s on one core (one 2824 x 2824 eigenproblem)."""
    sys = cr.load(bench_path("ISS12A.mat"))
    g, w = hinf_norm(sys, return_frequency=True)
    assert g == pytest.approx(ISS12A_AB13DD, rel=1e-9)
    assert _sigma_max(sys, w) == pytest.approx(g, rel=1e-9)


# ---------------------------------------------------------- random real systems
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("with_d", [False, True])
def test_hinf_random_real_agrees_with_slycot(discrete: bool, with_d: bool) -> None:
    rng = np.random.default_rng(1234 + 2 * discrete + with_d)
    for _ in range(8):
        n, m, p = int(rng.integers(1, 25)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sys = random_stable(
            rng, n, m, p, discrete=discrete, with_d=with_d,
            diagonal=bool(rng.integers(2)), margin=float(rng.choice([0.02, 0.1, 0.5])),
        )
        g, w = hinf_norm(sys, return_frequency=True)
        assert g == pytest.approx(float(control.norm(sys.to_control(), "inf")), rel=1e-6)
        assert g == pytest.approx(_ab13dd(sys), rel=1e-9)
        assert _sigma_max(sys, w) == pytest.approx(g, rel=1e-9)
        if discrete:
            assert 0.0 <= w <= np.pi / sys.dt
        else:
            assert w >= 0.0


def test_hinf_discrete_frequency_in_rad_per_s() -> None:
    """A resonance at angle 0.7 rad with dt = 0.1 peaks near 7 rad/s."""
    z = 0.98 * np.exp(0.7j)
    A = np.array([[z.real, -z.imag], [z.imag, z.real]])
    sys = cr.StateSpace(A, [[1.0], [0.0]], [[1.0, 0.0]], dt=0.1)
    g, w = hinf_norm(sys, return_frequency=True)
    assert g == pytest.approx(_ab13dd(sys), rel=1e-9)
    assert w == pytest.approx(control.linfnorm(sys.to_control(), tol=1e-12)[1], rel=1e-6)
    assert abs(w - 7.0) < 0.3


def test_hinf_discrete_poles_at_origin() -> None:
    """FIR filters (A nilpotent, all poles at z = 0) and a mixed singular A."""
    rng = np.random.default_rng(7)
    n = 6
    A = np.diag(np.ones(n - 1), -1)  # shift register
    h = rng.standard_normal(n)
    sys = cr.StateSpace(A, np.eye(n, 1), h[None, :], [[0.3]], dt=1.0)
    theta = np.linspace(-np.pi, np.pi, 200001)
    # G(z) = 0.3 + sum_k h_k z^{-(k+1)}
    resp = 0.3 + np.exp(-1j * np.outer(theta, np.arange(1, n + 1))) @ h
    g = hinf_norm(sys)
    assert g >= np.abs(resp).max() * (1 - 1e-12)
    assert g == pytest.approx(_ab13dd(sys), rel=1e-9)
    # singular but not nilpotent: poles at 0 and elsewhere
    B = rng.standard_normal((4, 2))
    A2 = np.diag([0.0, 0.0, 0.5, -0.8])
    A2[0, 1] = 1.0
    sys2 = cr.StateSpace(A2, B, rng.standard_normal((3, 4)), dt=0.5)
    assert hinf_norm(sys2) == pytest.approx(_ab13dd(sys2), rel=1e-9)


# -------------------------------------------------------------- complex systems
@pytest.mark.parametrize("discrete", [False, True])
def test_hinf_complex_against_dense_sweep(discrete: bool) -> None:
    rng = np.random.default_rng(99 + discrete)
    for _ in range(4):
        n, m, p = int(rng.integers(2, 12)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
        sys = random_stable(
            rng, n, m, p, complex_=True, discrete=discrete, with_d=bool(rng.integers(2)),
            diagonal=bool(rng.integers(2)), margin=0.05,
        )
        g, w = hinf_norm(sys, return_frequency=True)
        sweep, refined = _sweep_peak(sys)
        assert g >= sweep * (1 - 1e-12)
        assert g == pytest.approx(refined, rel=1e-6)
        assert g >= refined * (1 - 1e-12)
        assert _sigma_max(sys, w) == pytest.approx(g, rel=1e-9)
        if discrete:
            assert -np.pi / sys.dt < w <= np.pi / sys.dt


@pytest.mark.parametrize("discrete", [False, True])
def test_hinf_complex_peak_at_negative_frequency(discrete: bool) -> None:
    """One complex pole resonating at -5 rad/s: the peak and its sign are found."""
    if discrete:
        dt = 0.05
        pole = np.exp((-0.01 - 5j) * dt)
    else:
        dt, pole = None, -0.01 - 5j
    sys = cr.StateSpace([[pole]], [[1.0]], [[1.0]], [[0.1]], dt)
    g, w = hinf_norm(sys, return_frequency=True)
    assert w == pytest.approx(-5.0, rel=1e-3)
    _, refined = _sweep_peak(sys, k=100000)
    assert g == pytest.approx(refined, rel=1e-9)
    # the mirror image peaks at +5 rad/s
    mirror = cr.StateSpace([[np.conj(pole)]], [[1.0]], [[1.0]], [[0.1]], dt)
    g2, w2 = hinf_norm(mirror, return_frequency=True)
    assert g2 == pytest.approx(g, rel=1e-12)
    assert w2 == pytest.approx(5.0, rel=1e-3)


@settings(max_examples=25, deadline=None)
@given(sys=stable_systems(max_n=12))
def test_hinf_property_against_references(sys: cr.StateSpace) -> None:
    g, w = hinf_norm(sys, return_frequency=True)
    assert math.isfinite(g) and g >= 0
    assert _sigma_max(sys, w) == pytest.approx(g, rel=1e-8, abs=1e-300)
    if sys.is_complex:
        sweep, refined = _sweep_peak(sys, k=4000)
        assert g >= sweep * (1 - 1e-10)
        assert g >= refined * (1 - 1e-10)
    else:
        assert g == pytest.approx(_ab13dd(sys), rel=1e-8)


@settings(max_examples=15, deadline=None)
@given(sys=stable_systems(max_n=10), seed=st.integers(0, 2**32 - 1))
def test_hinf_invariant_under_similarity_and_scaling(sys: cr.StateSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = sys.n_states
    T = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    Ti = np.linalg.inv(T)
    other = sys.with_matrices(A=Ti @ sys.A @ T, B=Ti @ sys.B, C=sys.C @ T)
    g = hinf_norm(sys)
    assert hinf_norm(other) == pytest.approx(g, rel=1e-8)
    scaled = sys.with_matrices(C=-3.0 * sys.C, D=-3.0 * sys.D)
    assert hinf_norm(scaled) == pytest.approx(3.0 * g, rel=1e-9)


def test_hinf_rtol_brackets_the_norm() -> None:
    """``g <= ||G|| <= (1 + 2 rtol) g`` also for a loose ``rtol``."""
    rng = np.random.default_rng(17)
    for discrete in (False, True):
        sys = random_stable(rng, 15, 2, 2, discrete=discrete, with_d=True, margin=0.02)
        ref = _ab13dd(sys)
        g = hinf_norm(sys, rtol=1e-3)
        assert g <= ref * (1 + 1e-9)
        assert ref <= g * (1 + 2e-3) * (1 + 1e-9)


# ------------------------------------------------------------- special cases
def test_hinf_peak_at_infinity() -> None:
    """G(s) = 2 - 1/(s + 1): |G(iw)|^2 = (1 + 4 w^2) / (1 + w^2) < 4, sup 2 at w = inf."""
    sys = cr.StateSpace([[-1.0]], [[1.0]], [[-1.0]], [[2.0]])
    g, w = hinf_norm(sys, return_frequency=True)
    assert g == pytest.approx(2.0, rel=1e-12)
    assert w == math.inf
    # G(s) = 1 + 1/(s + 1) peaks at DC with value 2
    g0, w0 = hinf_norm(cr.StateSpace([[-1.0]], [[1.0]], [[1.0]], [[1.0]]), return_frequency=True)
    assert (g0, w0) == (pytest.approx(2.0, rel=1e-12), 0.0)


def test_hinf_nonzero_d_mimo_against_slycot() -> None:
    rng = np.random.default_rng(3)
    sys = random_stable(rng, 30, 3, 3, with_d=True, margin=0.01)
    big_d = sys.with_matrices(D=10 * sys.D)  # ||D|| dominates: peak at or near infinity
    for s in (sys, big_d):
        assert hinf_norm(s) == pytest.approx(_ab13dd(s), rel=1e-9)


def test_hinf_static_and_zero_systems() -> None:
    sys = random_stable(np.random.default_rng(5), 8, 2, 3, with_d=True)
    static = cr.balanced_truncation(sys, 0).system  # order 0: G == D
    g, w = hinf_norm(static, return_frequency=True)
    assert g == pytest.approx(np.linalg.norm(sys.D, 2), rel=1e-14)
    assert w == 0.0
    zero = cr.StateSpace(-np.eye(3), np.zeros((3, 2)), np.zeros((1, 3)))
    assert hinf_norm(zero) == 0.0
    # B and C non-zero, yet G == 0 (the controllable and the observable modes differ)
    hidden = cr.StateSpace(np.diag([-1.0, -2.0]), [[1.0], [0.0]], [[0.0, 1.0]])
    assert hinf_norm(hidden, return_frequency=True) == (0.0, 0.0)
    hidden_d = cr.StateSpace(np.diag([0.5, 0.2]), [[1.0], [0.0]], [[0.0, 1.0]], dt=1.0)
    assert hinf_norm(hidden_d) == 0.0


def test_hinf_rejects_bad_input() -> None:
    sys = cr.StateSpace([[-1.0]], [[1.0]], [[1.0]])
    with pytest.raises(TypeError, match="StateSpace"):
        hinf_norm(sys.to_control())
    with pytest.raises(TypeError, match="StateSpace"):
        hinf_norm(np.eye(2))
    unstable = cr.StateSpace(np.diag([-1.0, 0.5]), np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"hinf_norm needs a stable system.*0\.5"):
        hinf_norm(unstable)
    marginal = cr.StateSpace([[1.0]], [[1.0]], [[1.0]], dt=0.1)
    with pytest.raises(ValueError, match="hinf_norm needs a stable system"):
        hinf_norm(marginal)
    for bad in (0.0, -1e-3, 1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="rtol"):
            hinf_norm(sys, rtol=bad)
    with pytest.raises(TypeError, match="rtol"):
        hinf_norm(sys, rtol="1e-8")


def test_reduction_error_is_norm_of_difference() -> None:
    sys = random_stable(np.random.default_rng(11), 20, 2, 2)
    red = cr.balanced_truncation(sys, 6)
    err = reduction_error(sys, red.system)
    assert err == pytest.approx(_ab13dd(sys - red.system), rel=1e-9)
    assert red.hsv[6] * (1 - 1e-9) <= err <= red.error_bound * (1 + 1e-9)
    with pytest.raises(TypeError, match="reduced"):
        reduction_error(sys, red.system.to_control())
    with pytest.raises(ValueError, match="dt"):
        reduction_error(sys, cr.StateSpace(red.system.A * 0 + 0.1 * np.eye(6), red.system.B,
                                           red.system.C, red.system.D, dt=1.0))


# ----------------------------------------------------------------- H2 norm
def _h2_markov(sys: cr.StateSpace, k: int = 4000) -> float:
    """Discrete H2 norm from Markov parameters: ||D||_F^2 + sum_k ||C A^k B||_F^2."""
    total = np.linalg.norm(sys.D) ** 2
    X = sys.B.copy()
    for _ in range(k):
        total += np.linalg.norm(sys.C @ X) ** 2
        X = sys.A @ X
    return float(np.sqrt(total))


def _h2_quad(sys: cr.StateSpace) -> float:
    """Continuous H2 norm by quadrature of ||G(iw)||_F^2 / (2 pi) over the real line."""
    def f(w: float) -> float:
        return float(np.linalg.norm(sys.freqresp([w])[0]) ** 2)

    peaks = np.sort(sys.poles().imag)
    val = scipy.integrate.quad(f, -np.inf, np.inf, limit=400, epsabs=0, epsrel=1e-11)[0]
    if peaks.size:  # cross-check with breakpoints at the resonances on a finite band
        wmax = 1e3 * (1 + np.abs(sys.poles()).max())
        finite = scipy.integrate.quad(
            f, -wmax, wmax, points=peaks, limit=800, epsabs=0, epsrel=1e-11
        )[0]
        val = max(val, finite)
    return float(np.sqrt(val / (2 * np.pi)))


@settings(max_examples=25, deadline=None)
@given(sys=stable_systems(max_n=15))
def test_h2_both_gramian_formulas_agree(sys: cr.StateSpace) -> None:
    if sys.dt is None and np.any(sys.D != 0):
        sys = sys.with_matrices(D=np.zeros_like(sys.D))
    a = h2_norm(sys)
    b = h2_norm(sys, gramian="observability")
    assert a == pytest.approx(b, rel=1e-8)
    P, Q = cr.gramians(sys)
    extra = np.trace(sys.D @ sys.D.conj().T).real if sys.dt is not None else 0.0
    assert a == pytest.approx(np.sqrt(np.trace(sys.C @ P @ sys.C.conj().T).real + extra), rel=1e-8)
    assert a == pytest.approx(np.sqrt(np.trace(sys.B.conj().T @ Q @ sys.B).real + extra), rel=1e-8)


@pytest.mark.parametrize("discrete", [False, True])
def test_h2_agrees_with_control(discrete: bool) -> None:
    rng = np.random.default_rng(21 + discrete)
    for _ in range(6):
        n, m, p = int(rng.integers(1, 20)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sys = random_stable(rng, n, m, p, discrete=discrete, with_d=discrete)
        ref = float(control.norm(sys.to_control(), 2))
        assert h2_norm(sys) == pytest.approx(ref, rel=1e-8)


def test_h2_benchmark_agrees_with_control() -> None:
    sys = cr.load(bench_path("CDplayer.mat"))
    assert h2_norm(sys) == pytest.approx(float(control.norm(sys.to_control(), 2)), rel=1e-8)


def test_h2_complex_against_quadrature_and_markov() -> None:
    rng = np.random.default_rng(8)
    cont = random_stable(rng, 5, 2, 2, complex_=True, margin=0.3)
    assert h2_norm(cont) == pytest.approx(_h2_quad(cont), rel=1e-7)
    disc = random_stable(rng, 6, 2, 3, complex_=True, discrete=True, with_d=True, margin=0.2)
    assert h2_norm(disc) == pytest.approx(_h2_markov(disc), rel=1e-10)
    assert h2_norm(disc, gramian="observability") == pytest.approx(_h2_markov(disc), rel=1e-10)


def test_h2_infinite_with_feedthrough() -> None:
    sys = cr.StateSpace([[-1.0]], [[1.0]], [[1.0]], [[0.5]])
    with pytest.warns(RuntimeWarning, match="non-zero feedthrough D.*H2 norm is infinite"):
        assert h2_norm(sys) == math.inf
    # discrete time: finite and includes D
    dsys = cr.StateSpace([[0.5]], [[1.0]], [[1.0]], [[0.5]], dt=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 0.25 + sum_k 0.25^k = 0.25 + 4/3
        assert h2_norm(dsys) == pytest.approx(np.sqrt(0.25 + 4.0 / 3.0), rel=1e-13)


def test_h2_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="StateSpace"):
        h2_norm(control.ss([[-1.0]], [[1.0]], [[1.0]], [[0.0]]))
    unstable = cr.StateSpace(np.diag([-1.0, 2.0]), np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"h2_norm needs a stable system.*2"):
        h2_norm(unstable)
    with pytest.raises(ValueError, match="gramian"):
        h2_norm(cr.StateSpace([[-1.0]], [[1.0]], [[1.0]]), gramian="both")


# ------------------------------------------------------------ certificates
@pytest.fixture(scope="module")
def cdplayer() -> cr.StateSpace:
    return cr.load(bench_path("CDplayer.mat"))


def test_certify_cdplayer_order_20(cdplayer: cr.StateSpace) -> None:
    cert = cr.balanced_truncation(cdplayer, 20).certify()
    assert cert.error == pytest.approx(0.7631, rel=1e-3)
    assert cert.error_bound == pytest.approx(4.742, rel=1e-3)
    assert cert.ok
    assert cert.lower_bound <= cert.error <= cert.error_bound


@pytest.mark.parametrize("elimination", ["truncate", "matchdc"])
def test_certify_cdplayer_orders_1_to_40(cdplayer: cr.StateSpace, elimination: str) -> None:
    """Acceptance 2 of issue 3: sigma_{r+1} <= measured error <= bound for r = 1..40."""
    G0 = cdplayer.evaluate(0.0)[0]
    for r in range(1, 41):
        red = cr.balanced_truncation(cdplayer, r, elimination=elimination)
        cert = red.certify()
        assert cert.ok, (r, cert)
        assert red.hsv[r] * (1 - 1e-8) <= cert.error <= red.error_bound * (1 + 1e-8), r
        if elimination == "matchdc":  # singular perturbation keeps G(0)
            Gr0 = red.system.evaluate(0.0)[0]
            assert np.linalg.norm(Gr0 - G0) <= 1e-10 * np.linalg.norm(G0), r
