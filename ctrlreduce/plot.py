"""Plots for reductions: Hankel singular values and singular-value (sigma) plots.

matplotlib is an optional dependency (``pip install ctrlreduce[plot]``); it is
imported inside the functions, so ``import ctrlreduce.plot`` always works.

Glossary
--------
==================  ==========================================================
``hsv``             Hankel singular values ``sigma_1 >= ... >= sigma_n``,
                    shape ``(n,)``; ``inf`` marks an unstable mode
``order``           reduced order ``r``: bars ``1..r`` are kept, the cut is
                    drawn between bar ``r`` and bar ``r + 1``
``omega``           frequencies ``w`` (rad per time unit), shape ``(k,)``
``sigma_i(G)``      singular values of ``G(i w)`` (continuous) or
                    ``G(exp(i w dt))`` (discrete), ``0 < w <= pi / dt``
==================  ==========================================================

Every function returns the matplotlib ``Figure`` it drew on.  Figures are
built with :class:`matplotlib.figure.Figure` (not ``pyplot``), so nothing is
opened on screen and no global figure list grows; when ``path`` is given the
figure is written atomically (temporary file in the same folder, then
``os.replace``), so a failed save never leaves a half-written file.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write
from ._reduction import tail_bound
from ._system import StateSpace, check_system
from ._validation import check_hsv

__all__ = ["plot_hsv", "plot_sigma"]

_INSTALL_HINT = "pip install ctrlreduce[plot]"


def _require_matplotlib() -> Any:
    """Import matplotlib or raise an ``ImportError`` naming the extra to install."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"ctrlreduce.plot needs matplotlib, which is not installed; install it with "
            f"`{_INSTALL_HINT}` (or `pip install matplotlib`)"
        ) from exc
    return matplotlib


def _new_axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """Return ``(fig, ax)``: the caller's axes, or a fresh off-screen figure."""
    _require_matplotlib()
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def supported_formats() -> set[str]:
    """File extensions (without dot) that :func:`save_figure` can write."""
    _require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def check_figure_path(path: str | os.PathLike[str]) -> Path:
    """Validate an output path for a figure; return it as a ``Path``.

    The extension must be a format matplotlib writes (``.png``, ``.pdf``,
    ``.svg``, ...).  Raises ``ValueError`` otherwise.
    """
    p = Path(path)
    ext = p.suffix.lower().lstrip(".")
    formats = supported_formats()
    if ext not in formats:
        raise ValueError(
            f"path must end in one of {', '.join('.' + f for f in sorted(formats))}, "
            f"got {str(p)!r}"
        )
    return p


def save_figure(fig: Any, path: str | os.PathLike[str], *, fmt: str | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically; return the path.

    The image is rendered to a new temporary file in the same folder and
    renamed over ``path`` (:mod:`ctrlreduce._files`); on any failure ``path``
    is left as it was.  ``fmt`` defaults to the
    extension of ``path``; rendering of raster formats uses the Agg backend.
    """
    p = Path(path)
    if fmt is None:
        fmt = check_figure_path(p).suffix.lower().lstrip(".")

    def write(tmp: Path) -> None:
        fig.savefig(str(tmp), format=fmt)

    return atomic_write(p, write)


# ---------------------------------------------------------------- HSV chart
def _hsv_limits(hsv: np.ndarray) -> tuple[float, float]:
    """Log-axis limits ``(bottom, top)`` spanning the finite positive values."""
    pos = hsv[np.isfinite(hsv) & (hsv > 0)]
    if pos.size == 0:
        return 0.1, 10.0
    lo, hi = float(pos.min()), float(pos.max())
    return lo / 10.0, hi * 10.0


def plot_hsv(
    hsv: Any,
    *,
    order: int | None = None,
    ax: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Bar chart of Hankel singular values on a log scale, with the cut marked.

    Parameters
    ----------
    hsv : array_like, shape (n,)
        Hankel singular values, ``>= 0``, ``inf`` allowed (one per unstable
        mode, as :func:`ctrlreduce.hankel_singular_values` reports with
        ``unstable="keep"``).  Bar ``k`` (1-based) shows ``sigma_k``.
    order : int, optional, keyword-only
        Reduced order ``r`` in ``0..n``: bars ``1..r`` are drawn as kept, the
        rest as discarded, and a dashed vertical line (``gid="cut"``) at
        ``r + 0.5`` marks the cut; its label gives the a-priori bound
        ``2 * sum_{k > r} sigma_k``.
    ax : matplotlib Axes, optional, keyword-only
        Draw into these axes; a new figure is made otherwise.
    path : str or path-like, optional, keyword-only
        Also save the figure here (format from the extension), atomically.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    ``inf`` values are drawn as hatched red bars reaching the top of the
    axes; exact zeros (or values below the axis) as grey triangles on the
    bottom edge, so the log scale never sees a non-positive value.
    """
    values = check_hsv(hsv, descending=False, nonempty=True)
    n = values.size
    if order is not None:
        if isinstance(order, bool) or not isinstance(order, numbers.Integral):
            raise TypeError(f"order must be None or an integer in 0..{n}, got {order!r}")
        if not 0 <= int(order) <= n:
            raise ValueError(f"order must be in 0..{n}, got {order}")
        order = int(order)
    fig, ax = _new_axes(ax, (7.0, 4.0))
    bottom, top = _hsv_limits(values)
    idx = np.arange(1, n + 1)
    finite = np.isfinite(values) & (values > bottom)
    kept = idx <= (order if order is not None else n)
    for mask, colour, label in (
        (finite & kept, "C0", "kept" if order is not None else "Hankel singular values"),
        (finite & ~kept, "C1", "discarded"),
    ):
        if mask.any():
            ax.bar(idx[mask], values[mask] - bottom, bottom=bottom, color=colour, width=0.8,
                   label=label)
    inf = np.isinf(values)
    if inf.any():
        ax.bar(idx[inf], top - bottom, bottom=bottom, color="none", edgecolor="C3",
               hatch="///", width=0.8, label=f"unstable (inf), {int(inf.sum())}", gid="inf")
    tiny = ~np.isinf(values) & (values <= bottom)
    if tiny.any():
        ax.plot(idx[tiny], np.full(int(tiny.sum()), bottom * 1.3), linestyle="none", marker="v",
                color="0.4", label="zero", gid="zero")
    if order is not None:

        bound = tail_bound(values, order)
        ax.axvline(order + 0.5, color="k", linestyle="--", linewidth=1.2, gid="cut",
                   label=f"cut r = {order}, bound {bound:.3g}")
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    ax.set_xlim(0.3, n + 0.7)
    ax.set_xlabel("index k")
    ax.set_ylabel(r"Hankel singular value $\sigma_k$")
    ax.set_title(f"Hankel singular values (n = {n})")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    if path is not None:
        save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- sigma plot
def _continuous_poles(sys: StateSpace) -> np.ndarray:
    """Poles as continuous-time frequencies: ``s`` itself, or ``log(z) / dt``."""
    p = sys.poles()
    if sys.dt is None:
        return p
    p = p[np.abs(p) > 0]  # z = 0 has no continuous equivalent (a pure delay)
    return np.log(p) / sys.dt


def frequency_grid(*systems: StateSpace, num: int = 400) -> np.ndarray:
    """A log-spaced frequency grid (rad per time unit) suited to the systems' poles.

    The grid spans two decades below the slowest and above the fastest
    nonzero pole magnitude ``|s|`` (``s = log(z) / dt`` in discrete time),
    capped at the Nyquist frequency ``pi / dt`` for discrete systems, and is
    refined at each lightly damped pole: ``|Im s| * (1 + k zeta)`` for
    ``k = -2..2`` with ``zeta = |Re s| / |s|``, so resonance peaks are sampled.
    """
    if not systems:
        raise ValueError("frequency_grid needs at least one system")
    dts = {s.dt for s in systems}
    if len(dts) != 1:
        raise ValueError(f"systems must share one dt, got {sorted(map(str, dts))}")
    dt = dts.pop()
    s = np.concatenate([_continuous_poles(sys) for sys in systems])
    mag = np.abs(s)
    scale = max(float(mag.max(initial=0.0)), 1.0)
    mag = mag[mag > 1e-12 * scale]
    wmax_ = np.pi / dt if dt is not None else None
    if mag.size == 0:
        lo, hi = 1e-2, 1e2
    else:
        lo, hi = float(mag.min()) / 100.0, float(mag.max()) * 100.0
    if wmax_ is not None:
        hi = wmax_
        lo = min(max(lo, hi * 1e-8), hi * 1e-3)
    base = np.geomspace(lo, hi, num)
    # Refine around lightly damped poles, at most 200 of them (the least damped).
    with np.errstate(divide="ignore", invalid="ignore"):
        zeta = np.abs(s.real) / np.abs(s)
    # a complex system's poles at negative frequencies are drawn mirrored at |w|
    sel = (s.imag != 0) & (zeta < 0.5)
    res, z = np.abs(s.imag[sel]), zeta[sel]
    keep = np.argsort(z)[:200]
    res, z = res[keep], z[keep]
    extra = (res[:, None] * (1.0 + np.outer(z, np.arange(-2, 3)))).ravel()
    grid = np.unique(np.concatenate([base, extra]))
    return grid[(grid >= lo) & (grid <= hi)]


def _check_omega(omega: Any, dt: float | None) -> np.ndarray:
    w = np.asarray(omega, dtype=float)
    if w.ndim != 1 or w.size < 2:
        raise ValueError(f"omega must be a 1-D array of at least 2 frequencies, got shape "
                         f"{w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("omega must hold finite frequencies > 0 (the axes are logarithmic)")
    if dt is not None and np.any(w > np.pi / dt * (1 + 1e-12)):
        raise ValueError(
            f"omega must not exceed the Nyquist frequency pi/dt = {np.pi / dt:.6g} for a "
            f"discrete system, got max {w.max():.6g}"
        )
    return np.sort(w)


def _response(sys: StateSpace, w: np.ndarray) -> np.ndarray:
    """``G`` at ``w``, shape ``(k, p, m)``; NaN at frequencies that hit a pole."""
    try:
        return sys.freqresp(w)
    except ValueError:  # a pole on the axis: evaluate one by one
        out = np.full((w.size, sys.n_outputs, sys.n_inputs), np.nan, dtype=np.complex128)
        for k, wk in enumerate(w):
            try:
                out[k] = sys.freqresp(wk)[0]
            except ValueError:
                pass
        return out


def _singular_values(G: np.ndarray) -> np.ndarray:
    """Singular values of each ``G[k]``, shape ``(k, min(p, m))``, descending.

    Zeros and NaN become NaN, which matplotlib leaves out of a log plot.
    """
    bad = ~np.all(np.isfinite(G), axis=(1, 2))
    G = np.where(bad[:, None, None], 0.0, G)
    sv = np.linalg.svd(G, compute_uv=False)
    sv[bad] = np.nan
    sv[sv <= 0] = np.nan
    return sv


def plot_sigma(
    full: StateSpace,
    reduced: StateSpace | None,
    *,
    omega: Any = None,
    all_sv: bool = False,
    ax: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Sigma plot of a full model, its reduction and the error, on log-log axes.

    Draws ``sigma_max(G(i w))``, ``sigma_max(G_r(i w))`` and
    ``sigma_max(G(i w) - G_r(i w))`` against ``w``
    (``z = exp(i w dt)`` in discrete time, ``0 < w <= pi / dt``).  For a
    complex system, whose response at ``-w`` is not the mirror image of the
    response at ``w``, the negative frequencies are drawn as well, as dotted
    lines at ``|w|`` (``gid`` ending in ``"_neg"``).

    Parameters
    ----------
    full : StateSpace
        The original system ``G``.
    reduced : StateSpace or None
        The reduced system ``G_r`` (same inputs, outputs and ``dt``); with
        ``None`` only ``G`` is drawn.
    omega : array_like, shape (k,), optional, keyword-only
        Frequencies ``> 0`` (rad per time unit; at most ``pi / dt`` for a
        discrete system).  Chosen from the poles when omitted (see
        :func:`frequency_grid`).
    all_sv : bool, keyword-only
        Also draw the other singular values (thin lines) of ``G`` and ``G_r``.
    ax : matplotlib Axes, optional, keyword-only
    path : str or path-like, optional, keyword-only
        Also save the figure here, atomically.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The error is ``G - G_r`` evaluated pointwise (no error system is formed).
    Where a value is exactly zero (e.g. the DC gain kept by
    ``elimination="matchdc"``) it is left out of the log plot rather than
    raising.  The peak of the error curve is a lower estimate of
    ``||G - G_r||_inf``; use :meth:`ctrlreduce.Reduction.certify` for the
    certified value.
    """
    full = check_system(full, "full")
    systems = [full]
    if reduced is not None:
        reduced = check_system(reduced, "reduced")
        full._check_compatible(reduced, "compare")
        systems.append(reduced)
    w = frequency_grid(*systems) if omega is None else _check_omega(omega, full.dt)
    fig, ax = _new_axes(ax, (7.0, 4.5))
    # A complex system has G(-i w) != conj(G(i w)): its negative frequencies are
    # drawn too, mirrored at |w| as dotted lines (gid suffix "_neg").
    signs = [1.0, -1.0] if any(sys_.is_complex for sys_ in systems) else [1.0]
    for sign in signs:
        G = _response(full, sign * w)
        suffix, tag = ("", "") if sign > 0 else (r" ($\omega < 0$)", "_neg")
        curves = [("full", f"full (n = {full.n_states})", G, "C0", "-")]
        if reduced is not None:
            Gr = _response(reduced, sign * w)
            curves.append(("reduced", f"reduced (r = {reduced.n_states})", Gr, "C1", "--"))
            curves.append(("error", "error G - G_r", G - Gr, "C3", "-"))
        for gid, label, resp, colour, style in curves:
            style = style if sign > 0 else ":"
            sv = _singular_values(resp)
            ax.plot(w, sv[:, 0], color=colour, linestyle=style, linewidth=1.5,
                    label=label + suffix, gid=gid + tag)
            if all_sv and gid != "error" and sv.shape[1] > 1:
                ax.plot(w, sv[:, 1:], color=colour, linestyle=style, linewidth=0.6, alpha=0.6)
    if full.dt is not None:
        ax.axvline(np.pi / full.dt, color="0.5", linestyle=":", linewidth=1.0,
                   label=r"Nyquist $\pi/dt$", gid="nyquist")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(float(w[0]), float(w[-1]))
    unit = "rad/s" if full.dt is None else "rad per time unit"
    ax.set_xlabel(f"frequency $\\omega$ ({unit})")
    ax.set_ylabel(r"$\sigma_{\max}$")
    kind = "continuous" if full.dt is None else f"discrete, dt = {full.dt:g}"
    ax.set_title(f"Sigma plot ({kind})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        save_figure(fig, path)
    return fig
