"""StateSpace construction, validation, conversions and loading."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.signal
import scipy.sparse

import ctrlreduce as cr
from tests.conftest import bench_path


def _sys(**kw):
    base = dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 2)))
    base.update(kw)
    return cr.StateSpace(**base)


def test_dtypes_are_normalised_and_read_only():
    s = cr.StateSpace(np.array([[-1]], dtype=np.int32), np.ones((1, 1), np.float32), [[2]])
    assert s.A.dtype == np.float64 and s.B.dtype == np.float64 and s.D.dtype == np.float64
    assert s.D.shape == (1, 1) and s.D[0, 0] == 0
    with pytest.raises(ValueError):
        s.A[0, 0] = 3.0
    c = cr.StateSpace(np.array([[-1 + 1j]], np.complex64), [[1.0]], [[1.0]])
    assert c.is_complex and c.B.dtype == np.complex128 and c.D.dtype == np.complex128
    assert (s.n_states, s.n_inputs, s.n_outputs) == (1, 1, 1)


def test_frozen():
    s = _sys()
    with pytest.raises(AttributeError):
        s.dt = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(A=np.ones((2, 3))), ValueError, r"A must be square, got shape \(2, 3\)"),
        (dict(B=np.ones((3, 1))), ValueError, r"B must have 2 rows.*\(3, 1\)"),
        (dict(C=np.ones((1, 3))), ValueError, r"C must have 2 columns.*\(1, 3\)"),
        (dict(D=np.ones((2, 2))), ValueError, r"D must have shape \(1, 1\).*\(2, 2\)"),
        (dict(A=np.array([[np.nan, 0], [0, -1]])), ValueError, "A must be finite, got 1 NaN"),
        (dict(B=np.array([[np.inf], [0]])), ValueError, "B must be finite"),
        (dict(C=np.array([[1, np.nan]])), ValueError, "C must be finite"),
        (dict(D=np.array([[np.nan]])), ValueError, "D must be finite"),
        (dict(dt=0.0), ValueError, "dt must be None"),
        (dict(dt=-0.1), ValueError, "dt must be None"),
        (dict(dt=float("nan")), ValueError, "dt must be None"),
        (dict(dt="0.1"), TypeError, "dt must be None"),
        (dict(dt=True), TypeError, "dt must be None"),
        (dict(A=np.zeros((0, 0)), B=np.zeros((0, 1)), C=np.zeros((1, 0))), ValueError,
         "at least one state"),
        (dict(B=np.zeros((2, 0))), ValueError, "at least one input"),
        (dict(C=np.zeros((0, 2))), ValueError, "at least one output"),
        (dict(A=np.array([-1.0, -2.0])), ValueError, "A must be a 2-D array, got 1-D"),
        (dict(A=np.array([["a", "b"], ["c", "d"]])), TypeError, "A must be a numeric array"),
        (dict(A=None), TypeError, "A must be an array, got None"),
    ],
)
def test_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        _sys(**kw)


def test_sparse_input_is_densified():
    s = cr.StateSpace(scipy.sparse.csc_matrix(-np.eye(3)), np.ones((3, 1)), np.ones((1, 3)))
    assert isinstance(s.A, np.ndarray) and s.A[1, 1] == -1


def test_unstable_poles_named():
    s = cr.StateSpace(np.diag([-1.0, 2.5]), np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"2\.5"):
        s.require_stable()
    assert not s.is_stable()
    d = cr.StateSpace(np.diag([0.5, -1.0]), np.ones((2, 1)), np.ones((1, 2)), dt=1)
    assert d.unstable_poles().size == 1
    # within round-off of the boundary: marginal
    e = cr.StateSpace(np.diag([-1e-15, -1.0]), np.ones((2, 1)), np.ones((1, 2)))
    assert not e.is_stable()


def test_freqresp_matches_direct_solve():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5)) - 3 * np.eye(5)
    s = cr.StateSpace(A, rng.standard_normal((5, 2)), rng.standard_normal((3, 5)),
                      rng.standard_normal((3, 2)))
    w = np.array([0.0, 0.3, 10.0])
    G = s.freqresp(w)
    for k, wk in enumerate(w):
        ref = s.C @ np.linalg.solve(1j * wk * np.eye(5) - A, s.B) + s.D
        assert np.allclose(G[k], ref, rtol=1e-12, atol=1e-12)
    sd = cr.StateSpace(A / 10, s.B, s.C, s.D, dt=0.1)
    z = np.exp(1j * 0.3 * 0.1)
    ref = sd.C @ np.linalg.solve(z * np.eye(5) - sd.A, sd.B) + sd.D
    assert np.allclose(sd.freqresp([0.3])[0], ref, rtol=1e-12)
    with pytest.raises(ValueError, match="pole"):
        cr.StateSpace(np.diag([-1.0]), [[1.0]], [[1.0]]).evaluate([-1.0])


def test_difference_system():
    rng = np.random.default_rng(1)
    a = cr.StateSpace(-np.eye(2) * 2, rng.standard_normal((2, 1)), rng.standard_normal((1, 2)))
    b = cr.StateSpace(-np.eye(3), rng.standard_normal((3, 1)), rng.standard_normal((1, 3)))
    e = a - b
    assert e.n_states == 5
    w = [0.1, 2.0]
    assert np.allclose(e.freqresp(w), a.freqresp(w) - b.freqresp(w))
    with pytest.raises(ValueError, match="dt"):
        a - cr.StateSpace(np.eye(1) * 0.5, [[1.0]], [[1.0]], dt=1.0)
    with pytest.raises(TypeError):
        a - 3  # type: ignore[operator]


def test_control_round_trip():
    control = pytest.importorskip("control")
    rng = np.random.default_rng(2)
    for dt in (None, 0.25):
        s = cr.StateSpace(np.diag([-0.5, -0.2]) if dt is None else np.diag([0.5, 0.2]),
                          rng.standard_normal((2, 2)), rng.standard_normal((1, 2)),
                          rng.standard_normal((1, 2)), dt)
        c = s.to_control()
        assert isinstance(c, control.StateSpace)
        assert (c.dt == 0) if dt is None else (c.dt == dt)
        back = cr.StateSpace.from_control(c)
        assert back.dt == dt
        for M in "ABCD":
            assert np.array_equal(getattr(back, M), getattr(s, M))
    with pytest.raises(ValueError, match="complex"):
        cr.StateSpace([[-1 + 1j]], [[1]], [[1]]).to_control()
    with pytest.raises(ValueError, match="unspecified"):
        cr.StateSpace.from_control(control.ss([[0.5]], [[1]], [[1]], [[0]], True))


def test_scipy_round_trip_keeps_complex_and_dt():
    s = cr.StateSpace([[-1 + 2j]], [[1.0]], [[1j]], dt=None)
    back = cr.StateSpace.from_scipy(s.to_scipy())
    assert back.is_complex and np.array_equal(back.C, s.C) and back.dt is None
    d = cr.StateSpace([[0.5]], [[1.0]], [[2.0]], dt=0.1)
    sd = d.to_scipy()
    assert isinstance(sd, scipy.signal.dlti) and sd.dt == 0.1
    assert cr.StateSpace.from_scipy(sd).dt == 0.1


def test_load_mat_and_npz(tmp_path):
    s = cr.load(bench_path("CDplayer.mat"))
    assert (s.n_states, s.n_inputs, s.n_outputs) == (120, 2, 2) and s.dt is None
    out = tmp_path / "sys.npz"
    d = cr.StateSpace(np.diag([0.5, 0.1]), np.ones((2, 1)), np.ones((1, 2)), dt=0.2)
    cr.save(out, d)
    back = cr.load(out)
    assert back.dt == 0.2 and np.array_equal(back.A, d.A)
    m = tmp_path / "dt.mat"
    scipy.io.savemat(m, {"A": scipy.sparse.csc_matrix(d.A), "B": d.B, "C": d.C, "dt": 0.2})
    assert cr.load(m).dt == 0.2


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cr.load(tmp_path / "nope.mat")
    bad = tmp_path / "x.txt"
    bad.write_text("hi")
    with pytest.raises(ValueError, match=".mat or .npz"):
        cr.load(bad)
    partial = tmp_path / "p.npz"
    np.savez(partial, A=-np.eye(2), B=np.ones((2, 1)))
    with pytest.raises(ValueError, match="lacks matrices C"):
        cr.load(partial)
    with pytest.raises(ValueError, match="must end in .npz"):
        cr.save(tmp_path / "x.mat", cr.StateSpace([[-1.0]], [[1.0]], [[1.0]]))
