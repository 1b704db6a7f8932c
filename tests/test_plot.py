"""Tests for ctrlreduce.plot: HSV bar charts and sigma plots."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import ctrlreduce as cr
from ctrlreduce import plot as crplot

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _system(seed: int, n: int = 10, m: int = 2, p: int = 2, dt: float | None = None):
    """A stable real system with lightly damped modes (continuous) or |z| < 0.9 (discrete)."""
    rng = np.random.default_rng(seed)
    if dt is None:
        blocks = []
        for k in range(n // 2):
            w, zeta = 1.0 + 3.0 * k, 0.02 + 0.05 * k
            blocks.append(np.array([[-zeta * w, w], [-w, -zeta * w]]))
        A = np.zeros((n, n))
        for k, blk in enumerate(blocks):
            A[2 * k:2 * k + 2, 2 * k:2 * k + 2] = blk
        T = np.eye(n) + 0.1 * rng.standard_normal((n, n))
        A = T @ A @ np.linalg.inv(T)
    else:
        A = rng.standard_normal((n, n))
        A *= 0.9 / np.max(np.abs(np.linalg.eigvals(A)))
    return cr.StateSpace(A, rng.standard_normal((n, m)), rng.standard_normal((p, n)), None, dt)


def _sigma_max(sys: cr.StateSpace, w: np.ndarray) -> np.ndarray:
    """Reference: sigma_max(C (zI - A)^{-1} B + D) by dense solves, one frequency at a time."""
    z = 1j * w if sys.dt is None else np.exp(1j * w * sys.dt)
    out = []
    for zk in z:
        G = sys.C @ np.linalg.solve(zk * np.eye(sys.n_states) - sys.A, sys.B) + sys.D
        out.append(np.linalg.svd(G, compute_uv=False)[0])
    return np.array(out)


def _by_gid(ax, gid: str):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


# ----------------------------------------------------------------- plot_hsv
def test_plot_hsv_returns_figure_with_cut_and_bars(tmp_path):
    hsv = cr.hankel_singular_values(_system(0))
    out = tmp_path / "hsv.png"
    fig = crplot.plot_hsv(hsv, order=4, path=out)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    cut = _by_gid(ax, "cut")
    assert len(cut) == 1
    assert np.allclose(cut[0].get_xdata(), 4.5)
    assert f"{cr.tail_bound(hsv, 4):.3g}" in cut[0].get_label()
    bars = [p for c in ax.containers for p in c]
    assert len(bars) == hsv.size
    tops = sorted((p.get_x() + p.get_width() / 2, p.get_y() + p.get_height()) for p in bars)
    np.testing.assert_allclose([t for _, t in tops], hsv, rtol=1e-12)
    assert _is_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hsv.png"]  # no temp files


def test_plot_hsv_inf_and_zero_values_draw_without_log_errors():
    hsv = np.array([np.inf, np.inf, 3.0, 1.0, 1e-20, 0.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = crplot.plot_hsv(hsv, order=3)
        fig.savefig(io.BytesIO(), format="png")  # render: log-scale trouble would warn here
    (ax,) = fig.axes
    infs = _by_gid(ax, "inf")
    assert len(infs) == 2
    lo, hi = ax.get_ylim()
    assert 0 < lo < 1e-20 < 1.0 < 3.0 < hi
    for patch in infs:  # unstable bars reach the top of the axes
        assert patch.get_y() + patch.get_height() == pytest.approx(hi)
    (zeros,) = _by_gid(ax, "zero")
    assert np.all(np.isfinite(zeros.get_ydata())) and np.all(zeros.get_ydata() > 0)
    assert len(zeros.get_xdata()) == 2  # the exact zeros; 1e-20 is drawn as a bar
    (cut,) = _by_gid(ax, "cut")
    assert "bound 2" in cut.get_label()  # 2 * (1 + 1e-20)


@pytest.mark.parametrize("hsv", [[0.0, 0.0], [np.inf], [np.inf, 0.0], [5.0]])
def test_plot_hsv_degenerate_inputs(hsv):
    fig = crplot.plot_hsv(hsv, order=len(hsv))
    lo, hi = fig.axes[0].get_ylim()
    assert 0 < lo < hi and np.isfinite(hi)


def test_plot_hsv_into_given_axes(tmp_path):
    fig0 = Figure()
    ax = fig0.add_subplot()
    fig = crplot.plot_hsv([3.0, 2.0, 1.0], ax=ax)
    assert fig is fig0
    assert not _by_gid(ax, "cut")


@pytest.mark.parametrize(
    "hsv, order, exc, match",
    [
        ([1.0, np.nan], None, ValueError, "NaN"),
        ([1.0, -1.0], None, ValueError, ">= 0"),
        ([[1.0]], None, ValueError, "1-D"),
        ([], None, ValueError, "non-empty"),
        ([1.0, 0.5], 3, ValueError, "order must be in 0..2"),
        ([1.0, 0.5], True, TypeError, "order"),
        ([1.0 + 1j], None, TypeError, "real"),
    ],
)
def test_plot_hsv_rejects_bad_input(hsv, order, exc, match):
    with pytest.raises(exc, match=match):
        crplot.plot_hsv(hsv, order=order)


# --------------------------------------------------------------- plot_sigma
def test_plot_sigma_continuous_matches_dense_reference(tmp_path):
    full = _system(1, n=10)
    red = cr.balanced_truncation(full, 4)
    out = tmp_path / "sigma.png"
    fig = crplot.plot_sigma(full, red.system, path=out)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    (lf,) = _by_gid(ax, "full")
    (lr,) = _by_gid(ax, "reduced")
    (le,) = _by_gid(ax, "error")
    w = np.asarray(lf.get_xdata())
    assert np.all(w > 0) and np.all(np.diff(w) > 0)
    idx = np.linspace(0, w.size - 1, 25).astype(int)
    np.testing.assert_allclose(np.asarray(lf.get_ydata())[idx], _sigma_max(full, w[idx]),
                               rtol=1e-9)
    np.testing.assert_allclose(np.asarray(lr.get_ydata())[idx],
                               _sigma_max(red.system, w[idx]), rtol=1e-9)
    err = np.asarray(le.get_ydata())
    # the error curve lies between nothing and the a-priori bound, and its peak
    # is at least a good fraction of sigma_{r+1} (the grid is refined at the poles)
    assert np.nanmax(err) <= red.error_bound * (1 + 1e-9)
    assert np.nanmax(err) >= 0.5 * red.lower_bound
    # the grid spans the poles' magnitudes and samples every resonance
    mags = np.abs(full.poles())
    assert w[0] < mags.min() and w[-1] > mags.max()
    for im in full.poles().imag[full.poles().imag > 0]:
        assert np.min(np.abs(w - im)) <= 1e-9 * im
    assert _is_png(out)


def test_plot_sigma_discrete_stops_at_nyquist():
    dt = 0.1
    full = _system(2, n=8, dt=dt)
    red = cr.balanced_truncation(full, 3)
    fig = crplot.plot_sigma(full, red.system, all_sv=True)
    ax = fig.axes[0]
    (lf,) = _by_gid(ax, "full")
    w = np.asarray(lf.get_xdata())
    assert w[-1] == pytest.approx(np.pi / dt, rel=1e-12)
    assert np.all(w <= np.pi / dt * (1 + 1e-12))
    idx = np.linspace(0, w.size - 1, 15).astype(int)
    np.testing.assert_allclose(np.asarray(lf.get_ydata())[idx], _sigma_max(full, w[idx]),
                               rtol=1e-9)
    assert _by_gid(ax, "nyquist")
    # all_sv: the second singular values of full and reduced are drawn too
    assert len(ax.get_lines()) >= 3 + 2 + 1


def test_plot_sigma_matchdc_zero_error_at_dc_is_masked():
    full = _system(3, n=8)
    red = cr.balanced_truncation(full, 3, elimination="matchdc")
    w = np.array([0.0 + 1e-300, 1e-12, 1e-3, 1.0, 10.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = crplot.plot_sigma(full, red.system, omega=w)
    (le,) = _by_gid(fig.axes[0], "error")
    y = np.asarray(le.get_ydata(), dtype=float)
    assert np.all(np.isnan(y) | (y > 0))  # never zero or negative on a log axis


def test_plot_sigma_full_only_and_custom_omega():
    full = _system(4, n=6)
    w = np.geomspace(0.1, 100, 50)
    fig = crplot.plot_sigma(full, None, omega=w)
    ax = fig.axes[0]
    assert _by_gid(ax, "full") and not _by_gid(ax, "error")
    np.testing.assert_array_equal(_by_gid(ax, "full")[0].get_xdata(), w)


@pytest.mark.parametrize(
    "omega, dt, match",
    [
        ([-1.0, 1.0], None, "> 0"),
        ([1.0, np.nan], None, "finite"),
        ([1.0], None, "at least 2"),
        ([1.0, 100.0], 0.1, "Nyquist"),
    ],
)
def test_plot_sigma_rejects_bad_omega(omega, dt, match):
    full = _system(5, n=6, dt=dt)
    with pytest.raises(ValueError, match=match):
        crplot.plot_sigma(full, None, omega=omega)


def test_plot_sigma_rejects_mismatched_systems():
    full = _system(6, n=6)
    other = _system(7, n=6, m=1)
    with pytest.raises(ValueError, match="inputs, outputs"):
        crplot.plot_sigma(full, other)
    with pytest.raises(TypeError, match="reduced must be a ctrlreduce.StateSpace"):
        crplot.plot_sigma(full, np.eye(2))


# -------------------------------------------------------------- atomic save
def test_save_replaces_existing_file_and_keeps_it_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "h.png"
    out.write_bytes(b"old")
    fig = crplot.plot_hsv([2.0, 1.0], path=out)
    assert _is_png(out)
    good = out.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        crplot.save_figure(fig, out)
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


def test_save_into_missing_folder_or_bad_extension(tmp_path):
    with pytest.raises(FileNotFoundError):
        crplot.plot_hsv([1.0], path=tmp_path / "nope" / "h.png")
    with pytest.raises(ValueError, match="path must end in one of"):
        crplot.plot_hsv([1.0], path=tmp_path / "h.xyz")
    assert list(tmp_path.iterdir()) == []


def test_pdf_and_svg_formats(tmp_path):
    crplot.plot_hsv([1.0, 0.1], path=tmp_path / "h.pdf")
    crplot.plot_hsv([1.0, 0.1], path=tmp_path / "h.svg")
    assert (tmp_path / "h.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:2000]


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install ctrlreduce\[plot\]"):
        crplot.plot_hsv([1.0])
    with pytest.raises(ImportError, match=r"pip install ctrlreduce\[plot\]"):
        crplot.plot_sigma(_system(8, n=4), None)


def test_plot_sigma_complex_system_draws_negative_frequencies():
    lam = np.array([-0.05 + 2.0j, -0.1 - 7.0j, -1.0 + 0.5j])  # no conjugate pairs
    rng = np.random.default_rng(9)
    full = cr.StateSpace(np.diag(lam), rng.standard_normal((3, 1)) + 0j,
                         rng.standard_normal((1, 3)) + 1j * rng.standard_normal((1, 3)))
    red = cr.balanced_truncation(full, 2)
    fig = crplot.plot_sigma(full, red.system)
    ax = fig.axes[0]
    (pos,) = _by_gid(ax, "full")
    (neg,) = _by_gid(ax, "full_neg")
    assert _by_gid(ax, "error_neg") and _by_gid(ax, "reduced_neg")
    w = np.asarray(pos.get_xdata())
    np.testing.assert_allclose(pos.get_ydata(), _sigma_max(full, w), rtol=1e-9)
    np.testing.assert_allclose(neg.get_ydata(), _sigma_max(full, -w), rtol=1e-9)
    # the resonances sit on their own side: +2 rad/s above, -7 rad/s below
    assert w[np.argmax(pos.get_ydata())] == pytest.approx(2.0, rel=1e-3)
    assert w[np.argmax(neg.get_ydata())] == pytest.approx(7.0, rel=1e-3)
    # real systems are symmetric and get no negative-frequency lines
    assert not _by_gid(crplot.plot_sigma(_system(10, n=4), None).axes[0], "full_neg")
