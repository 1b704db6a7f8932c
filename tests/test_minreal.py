"""Minimal realization: removes exactly the uncontrollable and unobservable states."""

from __future__ import annotations

import control
import numpy as np
import pytest
import scipy.io
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ctrlreduce as cr
from ctrlreduce import stable_unstable_split
from ctrlreduce._minreal import minimal_realization
from tests.conftest import bench_path


def _random_matrix(rng: np.random.Generator, r: int, c: int, complex_: bool) -> np.ndarray:
    M = rng.standard_normal((r, c))
    return M + 1j * rng.standard_normal((r, c)) if complex_ else M


def _padded(
    rng: np.random.Generator, n: int, n_uc: int, n_uo: int, m: int, p: int, *,
    complex_: bool, discrete: bool, stable: bool,
) -> tuple[cr.StateSpace, cr.StateSpace]:
    """A minimal system of order ``n`` and a realization of it with ``n_uc`` uncontrollable
    and ``n_uo`` unobservable states added (Kalman form, then a unitary similarity).

    The added states interact with the minimal ones through the Kalman-form couplings, so
    they cannot be spotted by looking at zero rows of ``B`` or columns of ``C``.
    """

    def dyn(k: int) -> np.ndarray:
        M = _random_matrix(rng, k, k, complex_) / np.sqrt(max(k, 1))
        if k == 0:
            return M
        if discrete:
            rad = 0.8 if stable else 1.3
            return M * rad / max(np.max(np.abs(np.linalg.eigvals(M))), 1e-12)
        return M - (np.max(np.linalg.eigvals(M).real) + (0.5 if stable else -0.4)) * np.eye(k)

    A0, B0, C0 = dyn(n), _random_matrix(rng, n, m, complex_), _random_matrix(rng, p, n, complex_)
    D = _random_matrix(rng, p, m, complex_)
    N = n + n_uc + n_uo
    i0, i1 = n, n + n_uc  # blocks: [minimal | uncontrollable | unobservable]
    A = np.zeros((N, N), dtype=A0.dtype)
    A[:i0, :i0], A[i0:i1, i0:i1], A[i1:, i1:] = A0, dyn(n_uc), dyn(n_uo)
    A[:i0, i0:i1] = _random_matrix(rng, n, n_uc, complex_)  # uncontrollable drives minimal
    A[i1:, :i0] = _random_matrix(rng, n_uo, n, complex_)  # minimal drives unobservable
    A[i1:, i0:i1] = _random_matrix(rng, n_uo, n_uc, complex_)
    B = np.vstack([B0, np.zeros((n_uc, m)), _random_matrix(rng, n_uo, m, complex_)])
    C = np.hstack([C0, _random_matrix(rng, p, n_uc, complex_), np.zeros((p, n_uo))])
    Q = np.linalg.qr(_random_matrix(rng, N, N, complex_))[0]
    dt = 0.2 if discrete else None
    Qh = Q.conj().T
    full = cr.StateSpace(Qh @ A @ Q, Qh @ B, C @ Q, D, dt)
    return full, cr.StateSpace(A0, B0, C0, D, dt)


def _clearly_minimal(sys: cr.StateSpace, rel: float = 1e-6) -> bool:
    """Every HSV of the stable part above ``rel * sigma_1``: minimal beyond doubt at tol 1e-9.

    ``minimal_realization`` drops stable states whose HSV is below ``tol * sigma_1``
    (they change ``G`` by at most ``2 n tol sigma_1``); a random minimal system can
    have such states, and then its numerically minimal order is below ``n``.
    """
    split = stable_unstable_split(sys)
    if split.stable is None:
        return True
    hs = cr.hankel_singular_values(split.stable)
    return bool(hs[-1] > rel * hs[0])


def _markov(sys: cr.StateSpace, k: int) -> np.ndarray:
    out, X = [np.array(sys.D)], np.array(sys.B)
    for _ in range(k):
        out.append(sys.C @ X)
        X = sys.A @ X
    return np.stack(out)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8), n_uc=st.integers(0, 4), n_uo=st.integers(0, 4),
    m=st.integers(1, 3), p=st.integers(1, 3), complex_=st.booleans(),
    discrete=st.booleans(), stable=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_removes_exactly_the_nonminimal_states(
    n, n_uc, n_uo, m, p, complex_, discrete, stable, seed
) -> None:
    rng = np.random.default_rng(seed)
    full, minimal = _padded(
        rng, n, n_uc, n_uo, m, p, complex_=complex_, discrete=discrete, stable=stable
    )
    assume(_clearly_minimal(minimal))
    red = minimal_realization(full, tol=1e-9)
    assert red.n_states == n
    assert red.dt == full.dt and red.is_complex == full.is_complex
    np.testing.assert_array_equal(red.D, full.D)
    # transfer function, on a circle clear of every pole
    rad = 2.0 * max(np.abs(full.poles()).max(), 1.0)
    s = rad * np.exp(1j * np.linspace(0.1, 2 * np.pi, 11))
    G, Gm, G0 = full.evaluate(s), red.evaluate(s), minimal.evaluate(s)
    scale = max(np.max(np.abs(G0)), 1.0)
    assert np.max(np.abs(Gm - G0)) <= 1e-9 * scale
    assert np.max(np.abs(G - G0)) <= 1e-9 * scale
    # Markov parameters (the impulse response in discrete time)
    k = 2 * (n + n_uc + n_uo)
    M0, Mm = _markov(minimal, k), _markov(red, k)
    mscale = np.max(np.abs(M0), axis=(1, 2), keepdims=True) + 1.0
    np.testing.assert_allclose(Mm / mscale, M0 / mscale, atol=1e-8)
    # the poles that remain are those of the minimal part
    np.testing.assert_allclose(
        np.sort_complex(red.poles()), np.sort_complex(minimal.poles()), atol=1e-6
    )


def test_build_is_minimal_and_padding_is_removed() -> None:
    d = scipy.io.loadmat(str(bench_path("build.mat")))
    sys = cr.StateSpace(d["A"], d["B"], d["C"])
    red = minimal_realization(sys, tol=1e-12)
    assert red.n_states == sys.n_states  # the building model is minimal
    twice = sys + sys  # 2 G realized with 2n states: n of them are superfluous
    red2 = minimal_realization(twice, tol=1e-9)
    assert red2.n_states == sys.n_states
    w = np.logspace(-1, 3, 100)
    G2 = twice.freqresp(w)
    assert np.max(np.abs(red2.freqresp(w) - G2)) <= 1e-8 * np.max(np.abs(G2))


def test_agrees_with_python_control_minreal() -> None:
    rng = np.random.default_rng(4)
    full, _ = _padded(rng, 5, 2, 3, 2, 2, complex_=False, discrete=False, stable=False)
    ours = minimal_realization(full, tol=1e-9)
    theirs = control.minreal(full.to_control(), tol=1e-9, verbose=False)
    assert ours.n_states == theirs.nstates == 5


def test_static_gain_and_tol_validation() -> None:
    A = np.diag([-1.0, 2.0])
    sys = cr.StateSpace(A, [[0.0], [1.0]], [[1.0, 0.0]], [[3.0]])  # no state is both
    red = minimal_realization(sys, tol=1e-10)
    assert red.n_states == 1 and np.all(red.B == 0) and np.all(red.C == 0)
    np.testing.assert_allclose(red.evaluate([1j, 5.0]), 3.0)
    with pytest.raises(TypeError, match="tol"):
        minimal_realization(sys)  # type: ignore[call-arg]
    for bad in (0.0, -1e-3, 1.0, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            minimal_realization(sys, tol=bad)
    with pytest.raises(TypeError, match="StateSpace"):
        minimal_realization(A, tol=1e-9)  # type: ignore[arg-type]


def test_numerically_minimal_order_follows_the_hsvs() -> None:
    """A stable state with HSV below tol * sigma_1 goes, with the H-infinity change bounded."""
    rng = np.random.default_rng(8)
    full, minimal = _padded(rng, 10, 2, 2, 1, 1, complex_=False, discrete=False, stable=True)
    hsv = cr.hankel_singular_values(minimal)
    for tol in (1e-3, 1e-6, 1e-9):
        k = int(np.count_nonzero(hsv > tol * hsv[0]))
        red = minimal_realization(full, tol=tol)
        assert red.n_states == k
        err = float(control.linfnorm((minimal - red).to_control(), tol=1e-10)[0])
        assert err <= 2 * np.sum(hsv[k:]) * (1 + 1e-6) + 1e-12 * hsv[0]


def test_weak_coupling_is_a_modelling_choice() -> None:
    """A state coupled by 1e-6 is kept at tol=1e-9 and removed at tol=1e-4."""
    A = np.diag([-1.0, -2.0])
    sys = cr.StateSpace(A, [[1.0], [1e-6]], [[1.0, 1.0]])
    assert minimal_realization(sys, tol=1e-9).n_states == 2
    assert minimal_realization(sys, tol=1e-4).n_states == 1
