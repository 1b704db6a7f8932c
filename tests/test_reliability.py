"""The reproducers of the reliability report, each with its right answer or a clear error.

Each test is one defect found by adversarial testing: a silent wrong answer, a
NaN or a false error where the answer is representable, a wrong refusal, a
wrong exception type, a false alarm.  Expected values are computed
independently (closed forms, exact arithmetic or a direct evaluation), never
taken from the code under test.  The heat-equation factor has its own module,
``test_heat.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import control
import numpy as np
import pytest
import scipy.io
import scipy.signal

import ctrlreduce as cr
from ctrlreduce import cli

S = cr.StateSpace


# ---------------------------------------------------------- silent wrong answers
def test_solve_lyapunov_applies_the_trsyl_scale_the_right_way() -> None:
    # -0.4 X - 0.4 X + 1e308 I = 0  ->  X = 1.25e308 I (SciPy's solver returns 1.25e-308)
    X = cr.solve_lyapunov(-0.4 * np.eye(2), 1e308 * np.eye(2))
    np.testing.assert_allclose(X, 1.25e308 * np.eye(2), rtol=1e-14)


@pytest.mark.parametrize(
    "sys, tol",
    [
        (S([[-1.0, 0], [1, -2]], [[1e9], [0]], [[0, 1.0]]), 1e-9),
        (S([[-1.0, 0], [1, -2]], [[1e7], [0]], [[0, 1.0]]), 1e-6),
        (S([[-1e-6, 0], [1e-6, -2e-6]], [[1.0], [0]], [[0, 1.0]]), 1e-6),
    ],
    ids=["B=1e9", "B=1e7", "A*1e-6"],
)
def test_minimal_realization_keeps_a_minimal_system(sys, tol) -> None:
    # x2' = x1 - 2 x2: both states reach the output, the system is minimal (order 2)
    red = cr.minimal_realization(sys, tol=tol)
    assert red.n_states == 2
    G0 = -sys.C @ np.linalg.solve(sys.A, sys.B)  # 5e8, 5e6, 5e5
    np.testing.assert_allclose(red.evaluate([0.0])[0], G0, rtol=1e-10)


def test_evaluate_at_nan_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        S([[-1.0]], [[1.0]], [[1.0]], [[0.5]]).evaluate(float("nan"))


def test_unstable_poles_with_nan_alpha_is_an_error() -> None:
    with pytest.raises(ValueError, match="alpha"):
        S([[1.0]], [[1.0]], [[1.0]]).unstable_poles(alpha=float("nan"))
    assert S([[1.0]], [[1.0]], [[1.0]]).unstable_poles().size == 1


# --------------------------------------------- NaN or false errors, representable
@pytest.mark.parametrize("b", [1e155, 1e-170, 1e300, 1e-300])
def test_hsv_of_a_first_order_system_at_any_scale(b) -> None:
    # 1/(s + 1) with gain b: P = b^2 / 2, Q = 1 / 2, sigma = b / 2
    hsv = cr.hankel_singular_values(S([[-1.0]], [[b]], [[1.0]]))
    np.testing.assert_allclose(hsv, [b / 2], rtol=1e-15)


def test_tiny_b_huge_c_is_a_system() -> None:
    sys = S([[-1.0]], [[1e-200]], [[1e200]])
    np.testing.assert_allclose(cr.hankel_singular_values(sys), [0.5], rtol=1e-15)


def test_lyapunov_factor_of_huge_b() -> None:
    A = np.array([[-1.0, 1.0], [0.0, -2.0]])
    B = np.array([[1e170], [1e170]])
    L = cr.lyapunov_cholesky(A, B)
    assert np.all(np.isfinite(L))
    X1 = cr.solve_lyapunov(A, np.ones((2, 2)))  # the same with B = [1; 1]
    np.testing.assert_allclose((L / 1e170) @ (L / 1e170).T, X1, rtol=1e-13)


def test_norms_with_huge_b() -> None:
    # G(s) = 1e155 / ((s + 1)(s + 2)): ||G||_inf = G(0) = 5e154;
    # ||G||_2^2 = 1e310 * int |1/((iw+1)(iw+2))|^2 dw / 2pi = 1e310 / 12
    sys = S([[-1.0, 0], [1, -2]], [[1e155], [0]], [[0, 1.0]])
    assert cr.hinf_norm(sys) == pytest.approx(5e154, rel=1e-12)
    assert cr.h2_norm(sys) == pytest.approx(1e155 / np.sqrt(12.0), rel=1e-12)
    assert cr.h2_norm(sys, gramian="observability") == pytest.approx(1e155 / np.sqrt(12.0),
                                                                      rel=1e-12)


def test_discrete_norm_with_huge_b() -> None:
    # G(z) = 1e155 / ((z - 0.5)(z - 0.25)): peak at z = 1, 1e155 / (0.5 * 0.75)
    sys = S([[0.5, 0], [1, 0.25]], [[1e155], [0]], [[0, 1.0]], dt=1.0)
    assert cr.hinf_norm(sys) == pytest.approx(1e155 / 0.375, rel=1e-12)


def test_badly_scaled_stable_system_is_not_refused() -> None:
    # G(s) = 1e13 / ((s + 1)(s + 2)), stable; ||A|| = 1e13 must not make its poles "marginal"
    sys = S([[-1.0, 1e13], [0, -2]], [[0.0], [1]], [[1.0, 0]])
    assert sys.is_stable()
    assert cr.hinf_norm(sys) == pytest.approx(5e12, rel=1e-12)
    hsv = cr.hankel_singular_values(sys)
    ref = cr.hankel_singular_values(S([[-1.0, 1.0], [0, -2]], [[0.0], [1]], [[1e13, 0]]))
    np.testing.assert_allclose(hsv, ref, rtol=1e-12)


# ------------------------------------------------------------ exception types
@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: cr.stable_unstable_split(None), TypeError, "sys must be"),
        (lambda: S.from_scipy(None), TypeError, "sys must be"),
        (lambda: S.from_control("G"), TypeError, "sys must be"),
        (lambda: cr.tail_bound([3.0, 2, 1], -1), ValueError, "order"),
        (lambda: cr.tail_bound([1.0, np.nan], 0), ValueError, "NaN"),
        (lambda: cr.tail_bound([1.0, -5], 0), ValueError, ">= 0"),
        (lambda: cr.tail_bound([1.0, 5.0], 0), ValueError, "descending"),
        (lambda: cr.tail_bound([1.0], True), TypeError, "order"),
    ],
)
def test_wrong_input_gets_a_named_error(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_from_control_converts_a_transfer_function() -> None:
    sys = S.from_control(control.tf([1], [1, 1]))
    np.testing.assert_allclose(sys.evaluate([0.0, 1j]).ravel(), [1.0, 1 / (1 + 1j)], rtol=1e-14)
    dsys = S.from_scipy(scipy.signal.dlti([1], [1, -0.5], dt=0.1))
    assert dsys.dt == 0.1
    np.testing.assert_allclose(dsys.evaluate([1.0]).ravel(), [2.0], rtol=1e-14)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda G: cr.balanced_truncation(G, 1, alpha="x"), "alpha"),
        (lambda G: cr.gramians(G, factor="yes"), "factor"),
        (lambda G: cr.hinf_norm(G, return_frequency="no"), "return_frequency"),
        (lambda G: cr.balanced_truncation(G, True), "order"),
        (lambda G: cr.hankel_singular_values(G, unstable=1), "unstable"),
    ],
)
def test_flags_and_options_are_typed(call, match) -> None:
    G = S([[-1.0, 0], [1, -2]], [[1.0], [0]], [[0, 1.0]])
    with pytest.raises(TypeError, match=match):
        call(G)


def test_mat_file_with_vector_dt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.mat"
    scipy.io.savemat(path, {"A": [[0.5]], "B": [[1.0]], "C": [[1.0]], "dt": [[0.1, 0.2]]})
    with pytest.raises(ValueError, match="'dt' must be one real number"):
        cr.load(path)


def test_save_onto_a_folder_is_a_value_error(tmp_path: Path) -> None:
    G = S([[-1.0]], [[1.0]], [[1.0]])
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        cr.save(tmp_path / "x.npz", G)
    with pytest.raises(ValueError, match=r"\.npz"):
        cr.save(tmp_path, G)


def test_save_uses_a_fresh_temporary_name(tmp_path: Path) -> None:
    # a file at the old fixed temporary name is neither clobbered nor left behind by us
    target = tmp_path / "g.npz"
    stale = tmp_path / "g.npz.tmp.npz"
    stale.write_text("someone else's file")
    cr.save(target, S([[-1.0]], [[1.0]], [[2.0]]))
    assert stale.read_text() == "someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", "g.npz.tmp.npz"]
    assert cr.load(target).C[0, 0] == 2.0


# ------------------------------------------------------------------ false alarm
def test_full_order_certificate_near_the_unit_circle() -> None:
    # the measured error of a full-order reduction is round-off; poles at |p| = 0.999
    # amplify it (3.7e-10 was reported against a bound of 0)
    rng = np.random.default_rng(3)
    n = 20
    lam = 0.999 * np.exp(1j * rng.uniform(0, np.pi, n // 2))
    A = np.zeros((n, n))
    for k, z in enumerate(lam):
        A[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = [[z.real, z.imag], [-z.imag, z.real]]
    T = rng.standard_normal((n, n))
    sys = S(np.linalg.solve(T, A @ T), rng.standard_normal((n, 2)), rng.standard_normal((2, n)),
            dt=1.0)
    red = cr.balanced_truncation(sys, n)
    cert = red.certify()
    assert red.error_bound == 0.0 and cert.error > 0
    assert cert.ok, cert
    assert cert.slack < 1e-6 * cr.hinf_norm(sys)  # the allowance stays at round-off level


# ------------------------------------------------------------------------ CLI
def test_cli_hsv_of_huge_entries(tmp_path: Path, capsys) -> None:
    # sigma = b c / 2 for 1/(s + 1): representable -> printed; overflowing -> exit 1
    ok = tmp_path / "ok.mat"
    scipy.io.savemat(ok, {"A": [[-1.0]], "B": [[1e200]], "C": [[1e-150]]})
    assert cli.main(["hsv", str(ok), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hsv"] == [pytest.approx(1e200 * 1e-150 / 2, rel=1e-15)]
    huge = tmp_path / "huge.mat"
    scipy.io.savemat(huge, {"A": [[-1.0]], "B": [[1e200]], "C": [[1e150]]})
    assert cli.main(["hsv", str(huge), "--json"]) == 1
    assert "overflows" in capsys.readouterr().err


def test_cli_never_exits_zero_with_nan(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "g.mat"
    scipy.io.savemat(path, {"A": [[-1.0]], "B": [[1.0]], "C": [[1.0]]})
    monkeypatch.setattr(cli, "hankel_singular_values",
                        lambda *a, **k: np.array([np.nan]))
    assert cli.main(["hsv", str(path), "--json"]) == 1
    assert "NaN" in capsys.readouterr().err


def test_overflowing_result_is_an_error_not_inf_or_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows"):
            cr.hankel_singular_values(S([[-1.0]], [[1e200]], [[1e150]]))
