"""The ``ctrlreduce`` command line, run as a subprocess.

References are independent of the code under test: python-control / slycot
for Hankel singular values and H-infinity norms, dense formulas for DC gains,
and the benchmark collection's published CD player figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import ctrlreduce as cr
from ctrlreduce import cli
from tests.conftest import BENCH_DIR, bench_path

control = pytest.importorskip("control")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ctrlreduce.cli", *map(str, args)],
        capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300,
    )


def bench(name: str) -> Path:
    return bench_path(name)


# ------------------------------------------------------------------ systems
def _matrices(seed: int, n: int = 8, m: int = 2, p: int = 2, *, unstable: bool = False,
              dt: float | None = None):
    """Random (A, B, C, D) with known poles: stable, or with one unstable pole 0.5 / 1.5."""
    rng = np.random.default_rng(seed)
    if dt is None:
        poles = -np.geomspace(0.2, 30.0, n)
        if unstable:
            poles[0] = 0.5
    else:
        poles = np.linspace(-0.8, 0.85, n)
        if unstable:
            poles[0] = 1.5
    T = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    A = T @ np.diag(poles) @ np.linalg.inv(T)
    return A, rng.standard_normal((n, m)), rng.standard_normal((p, n)), rng.standard_normal((p, m))


def _write_npz(path: Path, A, B, C, D=None, dt=None) -> Path:
    arrays = {"A": A, "B": B, "C": C}
    if D is not None:
        arrays["D"] = D
    if dt is not None:
        arrays["dt"] = np.array(dt)
    np.savez(path, **arrays)
    return path


def _write_npz_raw(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _control_sys(A, B, C, D, dt=None):
    return control.ss(A, B, C, D, 0 if dt is None else dt)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("systems")
    A, B, C, D = _matrices(0)
    Ad, Bd, Cd, Dd = _matrices(1, dt=0.5)
    Au, Bu, Cu, Du = _matrices(2, unstable=True)
    (d / "garbage.mat").write_bytes(b"this is not a MATLAB file")
    (d / "sys.txt").write_text("A = 1")
    (d / "regular_file").write_text("x")
    return {
        "dir": d,
        "stable": _write_npz(d / "stable.npz", A, B, C, D),
        "discrete": _write_npz(d / "discrete.npz", Ad, Bd, Cd, Dd, dt=0.5),
        "unstable": _write_npz(d / "unstable.npz", Au, Bu, Cu, Du),
        "noC": _write_npz_raw(d / "noC.npz", A=A, B=B),
        "garbage": d / "garbage.mat",
        "txt": d / "sys.txt",
        "regular_file": d / "regular_file",
    }


def _field(text: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}\s+(.*)$", text, flags=re.MULTILINE)
    assert m, f"no {key!r} row in:\n{text}"
    return m.group(1)


def _num(text: str, key: str) -> float:
    return float(_field(text, key).split()[0])


# ------------------------------------------------------------ success paths
def test_hsv_json_matches_python_control(files):
    res = run_cli("hsv", files["stable"], "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    A, B, C, D = (np.load(files["stable"])[k] for k in "ABCD")
    ref = np.sort(control.hankel_singular_values(_control_sys(A, B, C, D)))[::-1]
    hsv = np.array(data["hsv"])
    np.testing.assert_allclose(hsv, ref, rtol=1e-8, atol=1e-12 * ref[0])
    # bound(k) = 2 * sum_{j > k} sigma_j, from the reference values
    bound_ref = [2.0 * ref[k:].sum() for k in range(1, ref.size + 1)]
    np.testing.assert_allclose(data["bound"], bound_ref, rtol=1e-8, atol=1e-12 * ref[0])
    assert data["n"] == 8 and data["dt"] is None and data["n_unstable"] == 0


def test_hsv_table_on_benchmark_with_plot(tmp_path):
    path = bench("build.mat")
    out = tmp_path / "hsv.png"
    res = run_cli("hsv", path, "--plot", out)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if not line.startswith("#")]
    assert rows[0] == ["k", "sigma_k", "bound(k)"]
    table = np.array(rows[1:], dtype=float)
    assert table.shape == (48, 3)
    np.testing.assert_array_equal(table[:, 0], np.arange(1, 49))
    d = scipy.io.loadmat(path)
    ref = np.sort(control.hankel_singular_values(
        _control_sys(d["A"].toarray() if hasattr(d["A"], "toarray") else d["A"], d["B"],
                     d["C"], np.zeros((1, 1)))))[::-1]
    # 7 printed digits; the eig-based reference has absolute error ~eps * cond * sigma_1
    np.testing.assert_allclose(table[:, 1], ref, rtol=1e-6, atol=1e-9 * ref[0])
    # consecutive bounds differ by twice the next HSV (6 printed digits)
    np.testing.assert_allclose(table[:-1, 2] - table[1:, 2], 2 * table[1:, 1],
                               rtol=1e-4, atol=1e-6 * table[0, 2])
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "# wrote" in res.stdout


def test_reduce_order_writes_npz_with_requested_order(files, tmp_path):
    out = tmp_path / "red.npz"
    res = run_cli("reduce", files["stable"], "--order", "3", "-o", out)
    assert res.returncode == 0, res.stderr
    assert _field(res.stdout, "states").startswith("8 -> 3")
    with np.load(out) as f:
        red = {k: f[k] for k in f.files}
    assert set(red) == {"A", "B", "C", "D"}  # continuous: no dt
    assert red["A"].shape == (3, 3) and red["B"].shape == (3, 2) and red["C"].shape == (2, 3)
    A, B, C, D = (np.load(files["stable"])[k] for k in "ABCD")
    np.testing.assert_array_equal(red["D"], D)  # truncation keeps the feedthrough
    full = _control_sys(A, B, C, D)
    hsv_full = np.sort(control.hankel_singular_values(full))[::-1]
    hsv_red = np.sort(control.hankel_singular_values(_control_sys(*red.values())))[::-1]
    np.testing.assert_allclose(hsv_red, hsv_full[:3], rtol=1e-7)  # balanced truncation
    err_ref = control.norm(full - _control_sys(red["A"], red["B"], red["C"], red["D"]), "inf")
    assert _num(res.stdout, "a-priori bound") == pytest.approx(2 * hsv_full[3:].sum(), rel=1e-5)
    assert _num(res.stdout, "lower bound") == pytest.approx(hsv_full[3], rel=1e-5)
    measured = _num(res.stdout, "measured error")
    assert measured == pytest.approx(err_ref, rel=1e-5)
    assert hsv_full[3] * (1 - 1e-6) <= measured <= 2 * hsv_full[3:].sum() * (1 + 1e-6)
    assert "within bounds" in _field(res.stdout, "measured error")
    assert re.match(r"reduce \d+\.\d+ s, certify \d+\.\d+ s", _field(res.stdout, "time"))


def test_reduce_tol_meets_tolerance(files, tmp_path):
    A, B, C, D = (np.load(files["stable"])[k] for k in "ABCD")
    full = _control_sys(A, B, C, D)
    hsv = np.sort(control.hankel_singular_values(full))[::-1]
    tol = float(1.5 * 2 * hsv[4:].sum())  # orders >= 4 meet it; order 3 does not
    assert 2 * hsv[3:].sum() > tol
    out = tmp_path / "red.npz"
    res = run_cli("reduce", files["stable"], "--tol", f"{tol!r}", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["n_before"] == 8 and data["n_after"] == 4 and data["tol"] == tol
    red = np.load(out)
    assert red["A"].shape == (4, 4)
    err = control.norm(full - _control_sys(red["A"], red["B"], red["C"], red["D"]), "inf")
    assert err <= tol
    assert data["measured_error"] == pytest.approx(err, rel=1e-5)
    assert data["certified"] is True
    assert data["outputs"] == [str(out)]


def test_reduce_matchdc_keeps_dc_gain(files, tmp_path):
    out = tmp_path / "spa.npz"
    res = run_cli("reduce", files["stable"], "--order", "2", "--matchdc", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "matchdc" in _field(res.stdout, "method")
    A, B, C, D = (np.load(files["stable"])[k] for k in "ABCD")
    r = np.load(out)
    g0 = D - C @ np.linalg.solve(A, B)
    g0_red = r["D"] - r["C"] @ np.linalg.solve(r["A"], r["B"])
    np.testing.assert_allclose(g0_red, g0, rtol=1e-10, atol=1e-10 * np.abs(g0).max())


def test_reduce_discrete_roundtrip_keeps_dt(files, tmp_path):
    out = tmp_path / "d.npz"
    res = run_cli("reduce", files["discrete"], "--order", "4", "--method", "bfsr", "-o", out)
    assert res.returncode == 0, res.stderr
    r = np.load(out)
    assert float(r["dt"]) == 0.5 and r["A"].shape == (4, 4)
    loaded = cr.load(out)
    assert loaded.dt == 0.5 and loaded.n_states == 4
    A, B, C, D = (np.load(files["discrete"])[k] for k in "ABCD")
    err = control.norm(_control_sys(A, B, C, D, 0.5)
                       - _control_sys(r["A"], r["B"], r["C"], r["D"], 0.5), "inf")
    assert _num(res.stdout, "measured error") == pytest.approx(err, rel=1e-5)
    assert "discrete (dt = 0.5)" in _field(res.stdout, "system")


def test_reduce_plot_writes_png(files, tmp_path):
    out = tmp_path / "fig.png"
    res = run_cli("reduce", files["stable"], "--order", "3", "--plot", out, "--no-certify")
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert _field(res.stdout, "measured error").startswith("n/a")
    assert _field(res.stdout, "wrote") == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_reduce_unstable_keep_keeps_unstable_pole(files, tmp_path):
    out = tmp_path / "u.npz"
    res = run_cli("reduce", files["unstable"], "--order", "4", "--unstable", "keep", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "within bounds" in res.stdout, res.stdout
    r = np.load(out)
    assert r["A"].shape == (4, 4)
    poles = np.linalg.eigvals(r["A"])
    assert np.min(np.abs(poles - 0.5)) < 1e-10
    assert np.sum(poles.real > 0) == 1


def test_hsv_unstable_keep_reports_inf(files):
    res = run_cli("hsv", files["unstable"], "--unstable", "keep", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["n_unstable"] == 1
    assert data["hsv"][0] is None and all(v is not None for v in data["hsv"][1:])
    assert data["bound"][0] is not None  # keeping the unstable mode, the rest is finite


def test_installed_console_script(files):
    exe = shutil.which("ctrlreduce")
    assert exe is not None, "the console script `ctrlreduce` is not installed (pip install -e .)"
    res = subprocess.run([exe, "reduce", str(files["stable"]), "--order", "2", "--json"],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n_after"] == 2


def test_demo_reduces_cdplayer_and_writes_plots(tmp_path):
    outdir = tmp_path / "demo"
    res = run_cli("demo", "--outdir", outdir)
    assert res.returncode == 0, res.stderr
    rows = {int(line.split()[0]): line.split() for line in res.stdout.splitlines()
            if re.match(r"^\s+\d+\s", line)}
    assert sorted(rows) == [5, 10, 20, 40]
    for r, cols in rows.items():
        lower, measured, bound = (float(c) for c in cols[1:4])
        assert lower * (1 - 1e-8) <= measured <= bound * (1 + 1e-8), r
        assert cols[5] == "yes"
    # published reference (SLICOT collection, shared/data/mor-benchmarks/README.md)
    assert float(rows[20][2]) == pytest.approx(0.7631, rel=2e-4)
    assert float(rows[20][3]) == pytest.approx(4.742, rel=2e-4)
    assert (outdir / "hsv.png").read_bytes()[:8] == PNG_MAGIC
    assert (outdir / "sigma.png").read_bytes()[:8] == PNG_MAGIC
    assert cr.load(outdir / "cdplayer_r20.npz").n_states == 20
    assert sorted(p.name for p in outdir.iterdir()) == ["cdplayer_r20.npz", "hsv.png",
                                                        "sigma.png"]


def test_embedded_cdplayer_is_the_benchmark(monkeypatch, tmp_path):
    embedded = Path(cli.__file__).resolve().parent / "data" / "CDplayer.mat"
    sys_e = cr.load(embedded)
    assert (sys_e.n_states, sys_e.n_inputs, sys_e.n_outputs) == (120, 2, 2)
    shared = BENCH_DIR / "CDplayer.mat"
    if shared.is_file():
        sys_s = cr.load(shared)
        for k in "ABCD":
            np.testing.assert_array_equal(getattr(sys_e, k), getattr(sys_s, k))
    monkeypatch.delenv(cli.BENCHMARK_ENV, raising=False)
    path, source = cli._demo_data()
    assert path == embedded and "shipped" in source
    # a benchmark folder is used only when named by the environment variable
    (tmp_path / "bench").mkdir()
    monkeypatch.setenv(cli.BENCHMARK_ENV, str(tmp_path / "bench"))
    with pytest.raises(cli.CliError, match="holds no CDplayer.mat"):
        cli._demo_data()
    (tmp_path / "bench" / "CDplayer.mat").write_bytes(embedded.read_bytes())
    assert cli._demo_data() == (tmp_path / "bench" / "CDplayer.mat", f"${cli.BENCHMARK_ENV}")


def test_outputs_commit_is_all_or_nothing(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"old")

    def good(tmp: Path) -> None:
        tmp.write_bytes(b"new")

    def bad(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(cli.CliError, match="No space left"):
        cli._Outputs.commit([(tmp_path / "a.npz", good), (tmp_path / "b.png", bad)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    assert (tmp_path / "a.npz").read_bytes() == b"old"


# ------------------------------------------------------------ failure paths
# name: (argv with {placeholders}, exit code, regex the stderr must match).
# Every failure path the issue names runs in a subprocess; the remaining option
# checks (pure argument parsing) run in-process through main(), which must
# return the code rather than raise SystemExit.
SUBPROCESS_FAILURES: dict[str, tuple[list[str], int, str]] = {
    "missing_file": (["reduce", "{dir}/nope.npz", "--order", "2", "-o", "{out}/r.npz"], 1,
                     r"nope\.npz: no such file"),
    "missing_C": (["reduce", "{noC}", "--order", "2", "-o", "{out}/r.npz"], 1,
                  r"lacks matrices C"),
    "not_a_mat_file": (["hsv", "{garbage}", "--plot", "{out}/h.png"], 1,
                       r"not a readable MATLAB file"),
    "order_and_tol": (["reduce", "{stable}", "--order", "2", "--tol", "1e-3", "-o",
                       "{out}/r.npz"], 2, r"--tol: not allowed with argument --order"),
    "neither_order_nor_tol": (["reduce", "{stable}", "-o", "{out}/r.npz"], 2,
                              r"one of the arguments --order --tol is required"),
    "negative_order": (["reduce", "{stable}", "--order=-1", "-o", "{out}/r.npz"], 2,
                       r"--order: must be an integer >= 0, got -1"),
    "order_above_n": (["reduce", "{stable}", "--order", "9", "-o", "{out}/r.npz"], 2,
                      r"--order must be in 0\.\.8 \(the system has 8 states\), got 9"),
    "tol_zero": (["reduce", "{stable}", "--tol", "0", "-o", "{out}/r.npz"], 2,
                 r"--tol: must be a finite number > 0"),
    "tol_negative": (["reduce", "{stable}", "--tol=-1e-3", "-o", "{out}/r.npz"], 2,
                     r"--tol: must be a finite number > 0"),
    "unstable_reduce": (["reduce", "{unstable}", "--order", "3", "-o", "{out}/keep.npz",
                         "--plot", "{out}/keep.png"], 1,
                        r"1 unstable or marginal pole \(need Re\(p\) < 0\): 0\.5.*"
                        r"rerun with --unstable keep"),
    "unstable_hsv": (["hsv", "{unstable}", "--plot", "{out}/h.png"], 1,
                     r"unstable or marginal pole .*--unstable keep"),
    "out_folder_missing": (["reduce", "{stable}", "--order", "2", "-o", "{out}/no/r.npz"], 1,
                           r"-o .*r\.npz: folder .* does not exist"),
    "out_wrong_extension": (["reduce", "{stable}", "--order", "2", "-o", "{out}/r.mat"], 2,
                            r"-o must end in \.npz"),
    "plot_is_folder": (["reduce", "{stable}", "--order", "2", "-o", "{out}/r.npz", "--plot",
                        "{out}/fig.png"], 1, r"--plot .*fig\.png: is a folder"),
}
INPROCESS_FAILURES: dict[str, tuple[list[str], int, str]] = {
    "missing_file_hsv": (["hsv", "{dir}/nope.mat"], 1, r"nope\.mat: no such file"),
    "bad_file_extension": (["hsv", "{txt}"], 2, r"FILE must end in \.mat or \.npz"),
    "file_is_folder": (["hsv", "{dir}/folder.npz"], 1, r"not a regular file"),
    "order_not_integer": (["reduce", "{stable}", "--order", "2.5"], 2,
                          r"--order: must be an integer >= 0, got '2.5'"),
    "tol_nan": (["reduce", "{stable}", "--tol", "nan"], 2, r"--tol: must be a finite number"),
    "tol_inf": (["reduce", "{stable}", "--tol", "inf"], 2, r"--tol: must be a finite number"),
    "tol_not_number": (["reduce", "{stable}", "--tol", "small"], 2,
                       r"--tol: must be a number > 0, got 'small'"),
    "bad_method": (["reduce", "{stable}", "--order", "2", "--method", "qr"], 2,
                   r"argument --method: invalid choice"),
    "alpha_without_keep": (["reduce", "{stable}", "--order", "2", "--alpha", "0.1"], 2,
                           r"--alpha applies only with --unstable keep"),
    "negative_alpha": (["hsv", "{unstable}", "--unstable", "keep", "--alpha=-1"], 2,
                       r"--alpha: must be a finite number >= 0"),
    "out_parent_is_file": (["reduce", "{stable}", "--order", "2", "-o",
                            "{regular_file}/r.npz"], 1, r"does not exist"),
    "plot_bad_extension": (["reduce", "{stable}", "--order", "2", "--plot", "{out}/r.xyz"], 2,
                           r"--plot must end in .*\.png"),
    "plot_hsv_folder_missing": (["hsv", "{stable}", "--plot", "{out}/no/h.png"], 1,
                                r"does not exist"),
    "demo_outdir_is_file": (["demo", "--outdir", "{regular_file}"], 1,
                            r"--outdir .*: exists and is not a folder"),
    "unknown_command": (["shrink", "{stable}"], 2, r"invalid choice: 'shrink'"),
    "no_command": ([], 2, r"the following arguments are required: COMMAND"),
}


def _prepare(name: str, argv: list[str], files: dict[str, Path], out: Path) -> list[str]:
    (files["dir"] / "folder.npz").mkdir(exist_ok=True)
    if name == "plot_is_folder":
        (out / "fig.png").mkdir()
    if name == "unstable_reduce":  # an existing output must survive a failed run
        (out / "keep.npz").write_bytes(b"old")
    subs = {k: str(v) for k, v in files.items()} | {"out": str(out)}
    return [a.format(**subs) for a in argv]


def _check_failure(name, code, pattern, rc, stdout, stderr, out, before) -> None:
    assert rc == code, (rc, stdout, stderr)
    assert "Traceback" not in stderr
    assert re.search(pattern, stderr), stderr
    assert stdout == ""
    lines = [line for line in stderr.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, stderr  # one line of error (after argparse's usage)
    # nothing written, nothing left behind, existing files untouched
    assert sorted(p.name for p in out.iterdir()) == before
    if name == "unstable_reduce":
        assert (out / "keep.npz").read_bytes() == b"old"


@pytest.fixture(scope="module")
def failure_runs(files, tmp_path_factory):
    """Run every subprocess failure case, four at a time, and collect the results."""
    pending = []
    for name, (argv, _, _) in SUBPROCESS_FAILURES.items():
        out = tmp_path_factory.mktemp(name)
        args = _prepare(name, argv, files, out)
        pending.append((name, args, out, sorted(p.name for p in out.iterdir())))
    results, running = {}, []
    while pending or running:
        while pending and len(running) < 4:
            name, args, out, before = pending.pop()
            proc = subprocess.Popen([sys.executable, "-m", "ctrlreduce.cli", *args],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=ENV)
            running.append((name, proc, out, before))
        name, proc, out, before = running.pop(0)
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = (proc.returncode, stdout, stderr, out, before)
    return results


@pytest.mark.parametrize("name", sorted(SUBPROCESS_FAILURES))
def test_failure_paths_subprocess(name, failure_runs):
    _, code, pattern = SUBPROCESS_FAILURES[name]
    _check_failure(name, code, pattern, *failure_runs[name])


@pytest.mark.parametrize("name", sorted(INPROCESS_FAILURES))
def test_failure_paths_in_process(name, files, tmp_path, capsys):
    argv, code, pattern = INPROCESS_FAILURES[name]
    args = _prepare(name, argv, files, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = cli.main(args)
    captured = capsys.readouterr()
    _check_failure(name, code, pattern, rc, captured.out, captured.err, tmp_path, before)


def test_help_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    assert "reduce" in capsys.readouterr().out
    assert cli.main(["reduce", "--help"]) == 0
    assert "--order N" in capsys.readouterr().out
