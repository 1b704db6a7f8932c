"""Agreement with the anchors (python-control, slycot) and the SLICOT benchmark systems.

python-control's ``balred`` treats discrete systems as continuous and its
``hsvd`` (``sqrt(eig(P Q))``) returns complex or NaN values on ordinary
systems (seen on CDplayer and random systems; ``benchmarks/bench_bt_dense.py``
counts them), so neither is taken as the truth where those flaws apply.
Complex systems have no anchor of their own: SLICOT on their real ``2n``
realization is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

import ctrlreduce as cr
from tests.conftest import bench_path, hinf, random_stable

control = pytest.importorskip("control")
slycot = pytest.importorskip("slycot")


def _ab09ad(sys: cr.StateSpace, r: int, job: str = "B"):
    dico = "D" if sys.dt is not None else "C"
    n, m, p = sys.n_states, sys.n_inputs, sys.n_outputs
    nr, Ar, Br, Cr, hsv = slycot.ab09ad(
        dico, job, "N", n, m, p, sys.A.copy(), sys.B.copy(), sys.C.copy(), nr=r, tol=0.0
    )
    return cr.StateSpace(Ar[:nr, :nr], Br[:nr], Cr[:, :nr], sys.D, sys.dt), np.asarray(hsv)


def test_hsv_agree_with_control_hsvd_on_well_conditioned():
    """Where python-control's sqrt(eig(P Q)) gives real, finite values, ours agree.

    It does not always (NaN or complex values on ordinary random systems), so the
    comparison runs on the systems where it does, and at least 5 of them.
    """
    compared = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        sys = random_stable(rng, 6, 2, 2, margin=1.0)
        ref = np.asarray(control.hsvd(sys.to_control()))
        if not (np.all(np.isfinite(ref)) and np.all(np.abs(np.imag(ref)) == 0)):
            continue
        ref = np.sort(np.real(ref))[::-1]
        h = cr.hankel_singular_values(sys)
        # sqrt(eig(P Q)) is accurate to about eps * cond relative to sigma_1 only, so
        # the comparison is absolute in sigma_1; slycot (below) is the tight reference.
        assert np.allclose(h, ref, rtol=1e-6, atol=1e-7 * h[0])
        compared += 1
    assert compared >= 5


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_hsv_and_reduced_models_agree_with_slycot_ab09ad(discrete, seed):
    rng = np.random.default_rng(10 + seed)
    n = int(rng.integers(6, 35))
    sys = random_stable(rng, n, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                        discrete=discrete, margin=0.1)
    r = int(rng.integers(1, n))
    h = cr.hankel_singular_values(sys)
    if h[r - 1] <= 1e-10 * h[0]:
        r = int(np.count_nonzero(h > 1e-10 * h[0]))
    ref_sys, ref_h = _ab09ad(sys, r)
    assert np.allclose(h, ref_h, rtol=0, atol=1e-10 * h[0])
    for method in ("sr", "bfsr"):
        red = cr.balanced_truncation(sys, r, method=method)
        w = np.linspace(0, np.pi / sys.dt, 200) if discrete else np.logspace(-3, 3, 200)
        G, Gref = red.system.freqresp(w), ref_sys.freqresp(w)
        assert np.max(np.abs(G - Gref)) <= 1e-7 * max(h[0], np.abs(Gref).max())


def test_cdplayer_hsv_are_slycots():
    """CDplayer (HSVs over 1e6..1e-12, where sqrt(eig(P Q)) goes complex): ours are AB09AD's."""
    sys = cr.load(bench_path("CDplayer.mat"))
    h = cr.hankel_singular_values(sys)
    assert h.dtype == np.float64 and np.all(np.isfinite(h)) and np.all(h >= 0)
    _, slycot_h = _ab09ad(sys, 20)
    assert np.allclose(h, slycot_h, rtol=0, atol=1e-11 * h[0])


def _real_2n(sys: cr.StateSpace) -> cr.StateSpace:
    """The real realization of a complex system on ``[Re; Im]`` of state, input and output.

    ``M -> [[Re M, -Im M], [Im M, Re M]]`` for ``A``, ``B`` and ``C``: the same
    map on real and imaginary parts, whose HSVs are the complex ones, each twice.
    """

    def real(M: np.ndarray) -> np.ndarray:
        return np.block([[M.real, -M.imag], [M.imag, M.real]])

    return cr.StateSpace(real(sys.A), real(sys.B), real(sys.C), real(sys.D), sys.dt)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_complex_hsv_against_slycot_on_the_real_2n_realization(discrete, diagonal, seed):
    rng = np.random.default_rng(50 + seed)
    n = int(rng.integers(3, 30))
    sys = random_stable(rng, n, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                        complex_=True, discrete=discrete, diagonal=diagonal, margin=0.1)
    assert sys.is_complex
    h = cr.hankel_singular_values(sys)
    _, ref = _ab09ad(_real_2n(sys), 1)
    np.testing.assert_allclose(ref[0::2], ref[1::2], rtol=0, atol=1e-10 * ref[0])  # pairs
    np.testing.assert_allclose(h, ref[0::2], rtol=0, atol=1e-10 * h[0])


def test_cdplayer_order_20_reference_values():
    sys = cr.load(bench_path("CDplayer.mat"))
    red = cr.balanced_truncation(sys, 20)
    assert red.error_bound == pytest.approx(4.742, abs=5e-4)
    assert hinf(sys - red.system) == pytest.approx(0.7631, abs=5e-4)


def test_heat_cont_hsv_match_stored_reference():
    path = bench_path("heat-cont.mat")
    ref = np.sort(np.ravel(scipy.io.loadmat(path)["hsv"]))[::-1]
    h = cr.hankel_singular_values(cr.load(path))
    assert np.allclose(h, ref, rtol=0, atol=1e-9 * h[0])
    # the leading values to many digits
    assert np.allclose(h[:10], ref[:10], rtol=1e-8)


@pytest.mark.parametrize("name", ["build.mat", "iss1R.mat", "beam.mat"])
def test_benchmark_hsv_agree_with_slycot(name):
    sys = cr.load(bench_path(name))
    h = cr.hankel_singular_values(sys)
    _, ref = _ab09ad(sys, 1)
    assert np.all(np.isfinite(h))
    assert np.allclose(h, ref, rtol=0, atol=1e-9 * h[0])


def test_control_balred_treats_discrete_as_continuous_we_do_not():
    """python-control's balred ignores dt; our discrete reduction honours the discrete bound."""
    rng = np.random.default_rng(3)
    sys = random_stable(rng, 12, 1, 1, discrete=True, margin=0.05)
    red = cr.balanced_truncation(sys, 4)
    assert red.system.dt == sys.dt
    assert hinf(sys - red.system) <= red.error_bound * (1 + 1e-8)
