"""The ``ctrlreduce`` command line: Hankel singular values, certified reduction, demo.

Usage::

    ctrlreduce hsv FILE [--plot OUT.png] [--unstable keep] [--alpha A] [--json]
    ctrlreduce reduce FILE (--order N | --tol T) [--method sr|bfsr] [--matchdc]
                      [--unstable keep] [--alpha A] [-o OUT.npz] [--plot OUT.png]
                      [--no-certify] [--json]
    ctrlreduce demo [--outdir DIR]

``FILE`` is a ``.mat`` file in the SLICOT benchmark layout (variables ``A``,
``B``, ``C``, optionally ``D`` and ``dt``) or an ``.npz`` written by
:func:`ctrlreduce.save`.  See ``docs/cli.md`` for examples and sample output.

Exit status
-----------
``0`` success; ``2`` a usage error or a bad option value (unknown option,
both or neither of ``--order``/``--tol``, a negative or too large order,
``tol <= 0``, an output name with the wrong extension); ``1`` any other
failure (missing or unreadable file, missing matrices, an unstable system
without ``--unstable keep``, an output folder that cannot be written).
Errors are one line on stderr, never a traceback.  Outputs are written only
after the reduction succeeded, each to a temporary file in the target folder
that is renamed into place at the end, so a failure leaves no partial files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import __version__
from ._balance import balanced_truncation
from ._files import check_target, replacing
from ._gramians import hankel_singular_values
from ._io import load, save
from ._reduction import tail_bound
from .plot import _require_matplotlib, plot_hsv, plot_sigma, supported_formats

__all__ = ["main"]

PROG = "ctrlreduce"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEMO_ORDERS = (5, 10, 20, 40)
DEMO_MAIN_ORDER = 20


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------ option types
def _order_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _real_arg(*, strict: bool) -> Callable[[str], float]:
    """An argparse type: a finite number ``> 0`` (``strict``) or ``>= 0``."""
    what = "> 0" if strict else ">= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {what}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (strict and value == 0):
            raise argparse.ArgumentTypeError(f"must be a finite number {what}, got {text!r}")
        return value

    return parse


_positive_arg = _real_arg(strict=True)
_nonnegative_arg = _real_arg(strict=False)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Balanced truncation with a-priori bounds and measured H-infinity errors.",
        epilog="Exit status: 0 ok, 2 usage error or bad option value, 1 other failure.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add_system_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="system as .mat (SLICOT layout) or .npz")
        p.add_argument("--unstable", choices=("raise", "keep"), default="raise",
                       help="'keep': split off the unstable part and keep it unchanged "
                            "(default 'raise': refuse unstable systems)")
        p.add_argument("--alpha", type=_nonnegative_arg, default=None, metavar="A",
                       help="stability margin for --unstable keep: poles with Re(p) > -A "
                            "(|p| > 1 - A in discrete time) count as unstable")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p_hsv = sub.add_parser("hsv", help="print the Hankel singular values",
                           description="Print the Hankel singular values sigma_k and, for each "
                                       "k, the error bound 2*sum_{j>k} sigma_j of keeping k "
                                       "states.")
    add_system_options(p_hsv)
    p_hsv.add_argument("--plot", metavar="OUT.png", help="also write a bar chart of the HSVs")

    p_red = sub.add_parser("reduce", help="reduce a system by balanced truncation",
                           description="Reduce by balanced truncation (or singular perturbation "
                                       "with --matchdc) and report the a-priori bound and the "
                                       "measured H-infinity error.")
    add_system_options(p_red)
    size = p_red.add_mutually_exclusive_group(required=True)
    size.add_argument("--order", type=_order_arg, metavar="N", help="reduced order")
    size.add_argument("--tol", type=_positive_arg, metavar="T",
                      help="smallest order whose bound 2*sum(tail HSVs) is at most T")
    p_red.add_argument("--method", choices=("sr", "bfsr"), default="sr",
                       help="square root (default) or balancing-free square root")
    p_red.add_argument("--matchdc", action="store_true",
                       help="singular perturbation: keep the DC gain exactly")
    p_red.add_argument("-o", "--output", metavar="OUT.npz",
                       help="write the reduced A, B, C, D (and dt) here")
    p_red.add_argument("--plot", metavar="OUT.png",
                       help="write a 2-panel figure: HSVs with the cut, and the sigma plot")
    p_red.add_argument("--no-certify", action="store_true",
                       help="skip the measured H-infinity error")

    p_demo = sub.add_parser("demo", help="reduce the CD player benchmark and plot it",
                            description="Reduce the CD player benchmark (n = 120) to orders "
                                        f"{', '.join(map(str, DEMO_ORDERS))}, print bounds and "
                                        "measured errors, and write plots for order "
                                        f"{DEMO_MAIN_ORDER}.")
    p_demo.add_argument("--outdir", default="ctrlreduce-demo", metavar="DIR",
                        help="folder for the plots and the reduced model "
                             "(default ./ctrlreduce-demo)")
    return parser


# ------------------------------------------------------------------ inputs
def _load_system(path_text: str) -> Any:
    path = Path(path_text)
    if path.suffix.lower() not in (".mat", ".npz"):
        raise CliError(f"FILE must end in .mat or .npz, got {path_text!r}", EXIT_USAGE)
    if not path.exists():
        raise CliError(f"{path_text}: no such file")
    if not path.is_file():
        raise CliError(f"{path_text}: not a regular file")
    try:
        return load(path)
    except (ValueError, TypeError, OSError) as exc:
        raise CliError(f"{path_text}: {exc}") from None


def _check_stable(sys_: Any, path_text: str, unstable: str) -> None:
    if unstable == "keep":
        return
    bad = sys_.unstable_poles()
    if bad.size:
        shown = ", ".join(f"{complex(z):.4g}" for z in bad[:4])
        more = "" if bad.size <= 4 else ", ..."
        region = "Re(p) < 0" if sys_.dt is None else "|p| < 1"
        raise CliError(
            f"{path_text}: the system has {bad.size} unstable or marginal "
            f"pole{'s' * (bad.size != 1)} (need "
            f"{region}): {shown}{more}; rerun with --unstable keep to reduce the stable part "
            "and keep the unstable part unchanged"
        )


def _alpha(args: argparse.Namespace) -> float:
    if args.alpha is not None and args.unstable != "keep":
        raise CliError("--alpha applies only with --unstable keep", EXIT_USAGE)
    return 0.0 if args.alpha is None else args.alpha


def _require_plotting() -> None:
    try:
        _require_matplotlib()
    except ImportError as exc:
        raise CliError(str(exc)) from None


# ----------------------------------------------------------------- outputs
class _Outputs:
    """Output files written all together, only after everything succeeded.

    ``check`` validates a target path at once (extension, folder), so bad
    names fail before any computation; ``commit`` writes each file to a
    temporary name in its folder and renames all of them into place at the
    end (:func:`ctrlreduce._files.replacing`).  If any write fails, every
    temporary file is removed and no target is touched.
    """

    def __init__(self) -> None:
        self._targets: list[Path] = []

    def check(self, path_text: str, suffixes: Sequence[str], option: str) -> Path:
        try:
            path = check_target(path_text, tuple(suffixes), option)
        except ValueError as exc:
            bad_suffix = Path(path_text).suffix.lower() not in suffixes
            raise CliError(str(exc), EXIT_USAGE if bad_suffix else EXIT_FAILURE) from None
        resolved = path.resolve()
        if any(resolved == p.resolve() for p in self._targets):
            raise CliError(f"{option} {path_text}: the same file is named twice", EXIT_USAGE)
        self._targets.append(path)
        return path

    @staticmethod
    def commit(writers: Sequence[tuple[Path, Callable[[Path], None]]]) -> list[Path]:
        paths = [path for path, _ in writers]
        try:
            with replacing(paths) as staged:
                for tmp, (_, write) in zip(staged, writers, strict=True):
                    write(tmp)
        except OSError as exc:
            raise CliError(
                f"could not write {exc.filename or 'output'}: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:
            raise CliError(f"could not write the outputs: {exc}") from None
        return paths


def _figure_writer(fig: Any) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        fig.savefig(str(tmp), format=tmp.suffix.lstrip(".").lower())

    return write


def _system_writer(system: Any) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        save(tmp, system)

    return write


def _plot_suffixes() -> tuple[str, ...]:
    return tuple(sorted("." + f for f in supported_formats()))


# ------------------------------------------------------------------ format
def _describe(sys_: Any) -> str:
    kind = "continuous" if sys_.dt is None else f"discrete (dt = {sys_.dt:g})"
    field = "complex" if sys_.is_complex else "real"
    m, p = sys_.n_inputs, sys_.n_outputs
    return (f"n = {sys_.n_states}, {m} input{'s' * (m != 1)}, {p} output{'s' * (p != 1)}, "
            f"{kind}, {field}")


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.6e}"


def _json_num(x: float | None) -> float | None:
    """JSON has no infinity: ``inf`` becomes ``null`` (documented)."""
    return None if x is None or not math.isfinite(x) else float(x)


def _print_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------- commands
def _cmd_hsv(args: argparse.Namespace, out: TextIO) -> int:
    alpha = _alpha(args)
    outputs = _Outputs()
    plot_path = None
    if args.plot:
        _require_plotting()
        plot_path = outputs.check(args.plot, _plot_suffixes(), "--plot")
    sys_ = _load_system(args.file)
    _check_stable(sys_, args.file, args.unstable)
    try:
        hsv = hankel_singular_values(sys_, unstable=args.unstable, alpha=alpha)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise CliError(f"{args.file}: {exc}") from None
    _require_no_nan(hsv, args.file, "Hankel singular values")
    bounds = [tail_bound(hsv, k) for k in range(1, hsv.size + 1)]
    written: list[Path] = []
    if plot_path is not None:
        written = outputs.commit([(plot_path, _figure_writer(plot_hsv(hsv)))])
    if args.json:
        _print_json({
            "file": args.file,
            "n": sys_.n_states,
            "dt": sys_.dt,
            "n_unstable": int(np.isinf(hsv).sum()),
            "hsv": [_json_num(v) for v in hsv],
            "bound": [_json_num(b) for b in bounds],
            "outputs": [str(p) for p in written],
        }, out)
        return EXIT_OK
    out.write(f"# {args.file}: {_describe(sys_)}\n")
    out.write("# bound(k) = 2 * sum_{j > k} sigma_j: the H-infinity error bound of keeping k "
              "states\n")
    out.write(f"{'k':>6}  {'sigma_k':>14}  {'bound(k)':>14}\n")
    for k, (v, b) in enumerate(zip(hsv, bounds, strict=True), start=1):
        out.write(f"{k:>6}  {_num(float(v)):>14}  {_num(b):>14}\n")
    for p in written:
        out.write(f"# wrote {p}\n")
    return EXIT_OK


def _reduce(sys_: Any, args: argparse.Namespace, alpha: float) -> tuple[Any, float]:
    t0 = time.perf_counter()
    try:
        red = balanced_truncation(
            sys_, args.order, tol=args.tol, method=args.method,
            elimination="matchdc" if args.matchdc else "truncate",
            unstable=args.unstable, alpha=alpha,
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise CliError(f"{args.file}: reduction failed: {exc}") from None
    return red, time.perf_counter() - t0


def _require_no_nan(values: Any, path_text: str, what: str) -> None:
    """Never report NaN with exit status 0 (JSON would print it as null, like inf)."""
    if np.any(np.isnan(np.asarray(values, dtype=float))):
        raise CliError(f"{path_text}: the {what} came out as NaN; the result is not reported")


def _certify(red: Any) -> tuple[Any, float, str | None]:
    """``(certificate or None, seconds, reason it is missing or None)``."""
    t0 = time.perf_counter()
    try:
        cert = red.certify()
    except (ValueError, np.linalg.LinAlgError, ImportError) as exc:
        return None, time.perf_counter() - t0, str(exc)
    return cert, time.perf_counter() - t0, None


def _reduction_figure(red: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 4.5), layout="constrained")
    ax_hsv, ax_sigma = fig.subplots(1, 2)
    plot_hsv(red.hsv, order=red.order, ax=ax_hsv)
    plot_sigma(red.original, red.system, ax=ax_sigma)
    return fig


def _cmd_reduce(args: argparse.Namespace, out: TextIO) -> int:
    alpha = _alpha(args)
    outputs = _Outputs()
    npz_path = outputs.check(args.output, (".npz",), "-o") if args.output else None
    plot_path = None
    if args.plot:
        _require_plotting()
        plot_path = outputs.check(args.plot, _plot_suffixes(), "--plot")
    sys_ = _load_system(args.file)
    n = sys_.n_states
    if args.order is not None and args.order > n:
        raise CliError(f"--order must be in 0..{n} (the system has {n} states), got "
                       f"{args.order}", EXIT_USAGE)
    _check_stable(sys_, args.file, args.unstable)
    red, t_reduce = _reduce(sys_, args, alpha)
    _require_no_nan([*red.hsv, red.error_bound, red.lower_bound], args.file,
                    "Hankel singular values or bounds")
    cert, t_cert, why = (None, 0.0, "skipped (--no-certify)") if args.no_certify \
        else _certify(red)
    if why is not None and not args.no_certify:
        warnings.warn(f"measured error unavailable: {why}", RuntimeWarning, stacklevel=2)
    elif cert is not None and not cert.ok:
        warnings.warn(
            f"the measured error {cert.error:.6e} is outside [lower bound, bound] = "
            f"[{cert.lower_bound:.6e}, {cert.error_bound:.6e}]", RuntimeWarning, stacklevel=2)
    writers: list[tuple[Path, Callable[[Path], None]]] = []
    if npz_path is not None:
        writers.append((npz_path, _system_writer(red.system)))
    if plot_path is not None:
        writers.append((plot_path, _figure_writer(_reduction_figure(red))))
    written = outputs.commit(writers)
    record = {
        "file": args.file,
        **red.summary(),
        "dt": sys_.dt,
        "tol": args.tol,
        "measured_error": None if cert is None else cert.error,
        "certified": None if cert is None else cert.ok,
        "time_reduce_s": t_reduce,
        "time_certify_s": t_cert,
        "outputs": [str(p) for p in written],
    }
    if args.json:
        _print_json({k: _json_num(v) if isinstance(v, float) else v for k, v in record.items()},
                    out)
        return EXIT_OK
    _write_reduce_table(out, args, sys_, red, cert, why, t_reduce, t_cert, written)
    return EXIT_OK


def _write_reduce_table(out: TextIO, args: argparse.Namespace, sys_: Any, red: Any, cert: Any,
                        why: str | None, t_reduce: float, t_cert: float,
                        written: Sequence[Path]) -> None:
    n, r = sys_.n_states, red.order
    rows = [
        ("file", args.file),
        ("system", _describe(sys_)),
        ("states", f"{n} -> {r}" + (f"  (tol {args.tol:g})" if args.tol is not None else "")),
        ("method", f"{red.method}, {red.elimination}"
                   + (f", {red.n_unstable} unstable modes kept" if red.n_unstable else "")),
        ("lower bound", f"{_num(red.lower_bound)}  (sigma_{r + 1})" if r < n else "0"),
        ("a-priori bound", f"{_num(red.error_bound)}  (2 * sum of the {n - r} discarded HSVs)"),
    ]
    if cert is not None:
        verdict = "within bounds" if cert.ok else "OUTSIDE THE BOUNDS"
        rows.append(("measured error", f"{_num(cert.error)}  (||G - G_r||_inf, {verdict})"))
    else:
        rows.append(("measured error", f"n/a: {why}"))
    timing = f"reduce {t_reduce:.3f} s"
    if cert is not None:
        timing += f", certify {t_cert:.3f} s"
    rows.append(("time", timing))
    for p in written:
        rows.append(("wrote", str(p)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")


# The CD player benchmark ships inside the package; a folder of SLICOT benchmark files
# named by the environment variable below takes precedence (package code never looks
# for the repository's sibling folders).
BENCHMARK_ENV = "CTRLREDUCE_BENCHMARKS"
_EMBEDDED_CDPLAYER = Path(__file__).resolve().parent / "data" / "CDplayer.mat"


def _demo_data() -> tuple[Path, str]:
    """Path of the CD player benchmark and a word on where it came from."""
    folder = os.environ.get(BENCHMARK_ENV)
    if folder:
        path = Path(folder) / "CDplayer.mat"
        if not path.is_file():
            raise CliError(f"${BENCHMARK_ENV} is {folder!r}, which holds no CDplayer.mat")
        return path, f"${BENCHMARK_ENV}"
    if _EMBEDDED_CDPLAYER.is_file():
        return _EMBEDDED_CDPLAYER, "copy shipped with ctrlreduce"
    raise CliError("the CD player benchmark (CDplayer.mat) is missing from this installation")


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    _require_plotting()
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise CliError(f"--outdir {args.outdir}: exists and is not a folder")
    data, source = _demo_data()
    sys_ = load(data)
    out.write(f"CD player benchmark ({source}): {_describe(sys_)}\n")
    out.write(f"{'order':>5}  {'sigma_r+1':>12}  {'measured':>12}  {'bound':>12}  "
              f"{'time (s)':>8}  certified\n")
    reductions = {}
    for r in DEMO_ORDERS:
        t0 = time.perf_counter()
        red = balanced_truncation(sys_, r)
        cert, _, why = _certify(red)
        dt_ = time.perf_counter() - t0
        reductions[r] = red
        measured = _num(cert.error) if cert is not None else "n/a"
        ok = ("yes" if cert.ok else "NO") if cert is not None else f"n/a ({why})"
        out.write(f"{r:>5}  {_num(red.lower_bound):>12}  {measured:>12}  "
                  f"{_num(red.error_bound):>12}  {dt_:>8.3f}  {ok}\n")
    main_red = reductions[DEMO_MAIN_ORDER]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--outdir {args.outdir}: cannot create it: {exc.strerror}") from None
    outputs = _Outputs()
    targets = [
        (outputs.check(str(outdir / "hsv.png"), (".png",), "--outdir"),
         _figure_writer(plot_hsv(main_red.hsv, order=DEMO_MAIN_ORDER))),
        (outputs.check(str(outdir / "sigma.png"), (".png",), "--outdir"),
         _figure_writer(plot_sigma(sys_, main_red.system))),
        (outputs.check(str(outdir / f"cdplayer_r{DEMO_MAIN_ORDER}.npz"), (".npz",), "--outdir"),
         _system_writer(main_red.system)),
    ]
    for p in outputs.commit(targets):
        out.write(f"wrote {p}\n")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "hsv": _cmd_hsv,
    "reduce": _cmd_reduce,
    "demo": _cmd_demo,
}


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: Any = None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 failure, 2 usage).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        warnings.showwarning = _show_warning
        try:
            return _COMMANDS[args.command](args, sys.stdout)
        except CliError as exc:
            print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
