"""In-place balanced truncation of LRU, S5 and S4D layers, with optimizer surgery.

Glossary (G systems, N complex states each, r kept complex states, m inputs, p outputs)
---------------------------------------------------------------------------------------
===============  ==============  ===============================================
``lam, B, C, D``  (G, N), ...     the layer's recurrence as ``to_lti`` returns it,
                                  ``x[k] = lam x[k-1] + B u[k]``,
                                  ``y[k] = Re(C x[k]) + D u[k]``, read below as
                                  the standard system ``S = (diag(lam), B, C, D)``
``z``             (G, 2N)         real coordinates ``[Re x; Im x]``
``Ar, Br, Cr``    real            the real map in ``z``:
                                  ``Ar = [[Re lam, -Im lam], [Im lam, Re lam]]``,
                                  ``Br = [Re B; Im B]``, ``Cr = [Re C, -Im C]``
``s``             (G, n)          HSVs, ``Lo^H Lc = Z diag(s) Y^H``
``V, W``          (G, n, k)       square-root projections, ``W^H V = I_k``
``Ak, Bk, Ck``    k = r or 2r     projected system ``(W^H A V, W^H B, C V)``
``mu``            (G, r)          eigenvalues of the reduced layer
===============  ==============  ===============================================

Why ``S``: with ``s[k] = x[k-1]`` the layer's map is ``G(z) = D + z (S(z) - D)``,
so a truncation of ``S`` that keeps ``D`` (the layer's diagonal feedthrough)
changes the map by ``z (S - S_r)``, of the same H-infinity norm on ``|z| = 1``.

Square-root balanced truncation (Tombs-Postlethwaite), order ``n -> k``::

    V = Lc Y_k diag(s_k)^{-1/2},   W = Lo Z_k diag(s_k)^{-1/2},
    ||S - S_r||_inf <= 2 * sum_{i > k} s_i      (Enns, Glover; discrete alike)

per system; for a layer with several systems (S4D channels act on separate
inputs and outputs) the bound is the maximum over systems.  Two choices of
the system to truncate:

``method="complex"`` (default)
    the complex system ``(diag(lam), B, C)``, order ``N -> r``; ``Ak`` is
    complex, ``Ak X = X diag(mu)`` gives ``(mu, X^{-1} Bk, Ck X)``; a state
    with ``Im mu < 0`` is replaced by its conjugate ``(conj mu, conj b,
    conj c)``, which leaves ``Re(c x)`` unchanged.  The bound in the complex
    HSVs bounds the real map's change too: for real inputs the real output
    error is ``Re(e)`` and ``||Re e||_2 <= ||e||_2``.
``method="real"``
    the real map (``Ar, Br, Cr``), order ``2N -> 2r``; the tighter ranking
    (augmented HSVs, those of the map itself).  ``Ak`` is real, so its
    eigenvalues are real or exact conjugate pairs; with the ``r`` eigenvalues
    ``Im mu > 0`` and eigenvectors ``X_+``, ``X = [X_+, conj X_+]``::

        lam_new = mu_+,   B_new = (X^{-1} Bk)[:r],   C_new = 2 Ck X_+

    whose conjugate-augmented system is exactly the modal form of
    ``(Ak, Bk, Ck)``.  A real eigenvalue (frequent: ``Ak`` is a generic real
    matrix) has no such complex state and the reduction is refused.

In discrete time the truncated system is not itself balanced: its HSVs are
not exactly the kept ones.  They obey Weyl's inequality for Hankel operators,
``|sigma_i(S_r) - sigma_i(S)| <= ||S - S_r||_inf <= error_bound``.

Scale: the truncation is computed on the system with ``B`` and ``C`` divided
by powers of two (:func:`ctrlreduce_torch.hsv.scaled_system`), and ``B_r``,
``C_r``, the HSVs and the bound are multiplied back, so entries anywhere in
float64's range reduce exactly as the unscaled layer does.

Write back: :func:`ctrlreduce_torch.convert.from_lti` on a deep copy first;
the copy's map (``to_lti`` after the parametrization round trip, in the
layer's dtype) is compared with ``(Ak, Bk, Ck)`` at points on the unit circle
before the real layer is touched.

Guards (any failure: nothing changes, ``applied=False``, a RuntimeWarning):
``|mu| > 1 - margin``; ``|arg mu| < min_phase`` (phase zero: not an LRU
eigenvalue), and in ``"real"`` also ``|arg mu| > pi - min_phase`` (any real
eigenvalue of the real reduced system); a
kept HSV at round-off level; a non-finite eigendecomposition or new
parameter; ``from_lti`` refusing; a written-back map that differs from the
reduced model by more than ``map_rtol`` of its gain.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from . import convert  # module reference: convert.from_lti is patched in tests
from ._lti import DiagonalLTI, check_lti
from .hsv import gramian_factors, pow2, scaled_system, unscale_hsv
from .lru import LRU
from .optim import check_rebindable, rebind_optimizer_

__all__ = [
    "ReductionReport",
    "balanced_truncation_lti",
    "reduce_",
]


# ----------------------------------------------------------------- report
@dataclass(frozen=True, eq=False)
class ReductionReport:
    """What :func:`reduce_` did to one layer.

    Attributes
    ----------
    old_order, new_order : int
        The layer's ``d_state`` before and after (equal when not applied).
    hsv : torch.Tensor, float64, CPU
        The HSVs the bound refers to, of the original layer, one row per
        system, descending: ``(G, N)`` HSVs of the complex system for
        ``method == "complex"``, ``(G, 2N)`` HSVs of the real map for
        ``"real"`` (see :func:`ctrlreduce_torch.hankel_singular_values`).
    error_bound : float
        A-priori bound on the H-infinity norm of the change of the layer's
        real input-output map: ``2 * sum`` of the discarded HSVs (with
        multiplicity), maximum over systems; ``0.0`` for a no-op; for a
        refused cut, the bound the cut would have had.  For zero initial
        state it bounds the l2 gain: ``||y - y_r||_2 <= error_bound * ||u||_2``.
    applied : bool
        Whether the layer (and optimizer) were changed.
    reason : str
        Empty when applied; otherwise why not (a guard, or a no-op).
    seconds : float
        Wall time of the call.
    method : str
        ``"complex"`` or ``"real"``: the truncation applied (or last tried).
    realization_error : float
        Largest relative mismatch, on a frequency grid and random probe
        directions, between the map written into the layer and the reduced
        balanced model (round-off of the re-diagonalization and of the
        layer's own parametrization and dtype; ``nan`` when not measured).
        The total change is at most ``error_bound`` plus this (times the gain).
    optimizer_params_rebound : int
        How many Parameter slots in the optimizer's param_groups were rebound.
    """

    old_order: int
    new_order: int
    hsv: torch.Tensor
    error_bound: float
    applied: bool
    reason: str
    seconds: float
    method: str = ""
    realization_error: float = float("nan")
    optimizer_params_rebound: int = 0

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly dict (no tensors)."""
        return {
            "old_order": self.old_order,
            "new_order": self.new_order,
            "error_bound": self.error_bound,
            "applied": self.applied,
            "reason": self.reason,
            "seconds": self.seconds,
            "method": self.method,
            "realization_error": self.realization_error,
            "optimizer_params_rebound": self.optimizer_params_rebound,
        }


class _Refused(Exception):
    """A guard failed; the message is the report's ``reason``."""


# ------------------------------------------------------------ pure numerics
def _real_system(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lam, Br (G, 2N, m), Cr (G, p, 2N))`` of the real map in ``z = [Re x; Im x]``."""
    lam = lti.lam.to(torch.complex128)
    B = lti.B.to(torch.complex128)
    C = lti.C.to(torch.complex128)
    Br = torch.cat([B.real, B.imag], dim=1)
    Cr = torch.cat([C.real, -C.imag], dim=2)
    return lam, Br, Cr


def _apply_Ar(lam: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``Ar @ V`` for ``Ar = [[Re lam, -Im lam], [Im lam, Re lam]]``, V (G, 2N, k)."""
    N = lam.shape[1]
    a, b = lam.real[:, :, None], lam.imag[:, :, None]  # (G, N, 1)
    V1, V2 = V[:, :N], V[:, N:]
    return torch.cat([a * V1 - b * V2, b * V1 + a * V2], dim=1)


def tail_bounds(hsv: torch.Tensor, per_state: int) -> torch.Tensor:
    """``bounds[r] = max_g 2 * sum(hsv[g, per_state * r:])`` for ``r = 0..N``.

    Parameters
    ----------
    hsv : (G, n) descending rows, ``n = per_state * N``.
    per_state : int
        HSVs per complex state: 2 for the real (augmented) map, 1 for the
        complex system.

    Returns
    -------
    (N + 1,) float64: the a-priori bound when every system keeps ``r``
    complex states; ``bounds[N] = 0``.
    """
    G = hsv.shape[0]
    tail = torch.cat([hsv.flip(1).cumsum(1).flip(1), hsv.new_zeros(G, 1)], dim=1)
    return 2.0 * tail[:, 0::per_state].amax(dim=0)


@dataclass(frozen=True, eq=False)
class _Truncation:
    """A reduced model in layer form and the projected system it came from."""

    lti: DiagonalLTI  # re-diagonalized, layer form, complex128
    Ak: torch.Tensor  # (G, k, k) projected system, real ("real") or complex ("complex")
    Bk: torch.Tensor  # (G, k, m)
    Ck: torch.Tensor  # (G, p, k)
    error_bound: float
    method: str


def _square_root_factors(lf: DiagonalLTI, method: str):
    """``(Lc, Lo, Z, s, Yh)`` with ``Lo^H Lc = Z diag(s) Yh`` for the chosen system."""
    Lc, Lo = gramian_factors(lf, augmented=(method == "real"))
    Z, s, Yh = torch.linalg.svd(Lo.mH @ Lc)
    return Lc, Lo, Z, s.to(torch.float64), Yh


def _project(lf: DiagonalLTI, k: int, factors, method: str):
    """Square-root projection to order ``k``: ``(W^H A V, W^H B, C V)``."""
    Lc, Lo, Z, s, Yh = factors
    s_k = s[:, :k]
    # A kept HSV at round-off level: the projection would divide by ~0.
    floor = torch.finfo(torch.float64).eps * s.shape[1] * s[:, :1]
    if bool((s_k <= floor).any()):
        raise _Refused(
            f"a kept Hankel singular value is at round-off level (order {k} exceeds the "
            "numerical rank); choose a smaller order"
        )
    isq = s_k.rsqrt()[:, None, :].to(Lc.dtype)  # (G, 1, k)
    V = Lc @ (Yh[:, :k].mH * isq)  # (G, n, k)
    W = Lo @ (Z[:, :, :k] * isq)  # (G, n, k), W^H V = I
    if method == "real":
        lam, Br, Cr = _real_system(lf)
        return W.mT @ _apply_Ar(lam, V), W.mT @ Br, Cr @ V
    lam = lf.lam.to(torch.complex128)
    return W.mH @ (lam[:, :, None] * V), W.mH @ lf.B.to(torch.complex128), lf.C.to(
        torch.complex128
    ) @ V


def _check_eigs(mu: torch.Tensor, margin: float, min_phase: float, real_map: bool) -> None:
    """Stability and phase guards on the reduced eigenvalues ``mu``.

    Always ``|mu| <= 1 - margin`` and ``|arg mu| >= min_phase`` (a phase-zero
    eigenvalue is not representable in the LRU, whose phase is
    ``exp(theta_log) > 0``).  For the real map (``real_map``) also no real
    eigenvalue (``Im mu == 0`` exactly, as LAPACK returns them, or within
    ``min_phase`` of the real axis): no complex state of ``Re(C x)`` holds one.
    """
    mod = mu.abs()
    if bool((mod > 1.0 - margin).any()):
        raise _Refused(
            f"reduced eigenvalue not strictly stable: max |mu| = {float(mod.max()):.17g} "
            f"> 1 - margin = {1.0 - margin:.17g}"
        )
    phase = mu.angle().abs()
    near_real = (mu.imag == 0) | (phase < min_phase) | (phase > math.pi - min_phase)
    if real_map and bool(near_real.any()):
        raise _Refused(
            "the reduced real system has a real eigenvalue (phase 0 or pi within "
            f"min_phase = {min_phase:g}); a real mode is not one complex state of Re(C x)"
        )
    if bool((phase < min_phase).any()):
        raise _Refused(
            f"a reduced eigenvalue has phase 0 (within min_phase = {min_phase:g}); "
            "not representable in the layer's parametrization"
        )


def _diagonalize_real(Ak, Bk, Ck, r: int, margin: float, min_phase: float):
    """Complex states ``(mu_+, B_new, C_new)`` whose real map is ``(Ak, Bk, Ck)`` (real)."""
    mu, X = torch.linalg.eig(Ak)  # Ak real => eigenvalues real or exact conjugate pairs
    if not bool(torch.isfinite(mu).all() and torch.isfinite(X).all()):
        raise _Refused("the reduced system's eigendecomposition is not finite")
    _check_eigs(mu, margin, min_phase, real_map=True)
    pos = mu.imag > 0
    if not bool((pos.sum(dim=1) == r).all()):
        raise _Refused("the reduced eigenvalues do not form conjugate pairs")
    idx = torch.argsort((~pos).to(torch.int8), dim=1, stable=True)[:, :r]  # Im > 0 first
    neg = torch.argsort(pos.to(torch.int8), dim=1, stable=True)[:, :r]
    mu_p, mu_m = torch.gather(mu, 1, idx), torch.gather(mu, 1, neg)
    gap = (mu_p[:, :, None] - mu_m[:, None, :].conj()).abs().amin(dim=2)
    # geev returns exact conjugates; allow round-off relative to the spectral radius
    if bool((gap > 1e3 * torch.finfo(torch.float64).eps).any()):
        raise _Refused("the reduced eigenvalues do not form conjugate pairs")
    Xp = torch.gather(X, 2, idx[:, None, :].expand(-1, X.shape[1], -1))  # (G, 2r, r)
    Xf = torch.cat([Xp, Xp.conj()], dim=2)  # eigenvector matrix of Ak
    B_new = torch.linalg.solve(Xf, Bk.to(torch.complex128))[:, :r]  # (G, r, m)
    C_new = 2.0 * (Ck.to(torch.complex128) @ Xp)  # (G, p, r)
    return mu_p, B_new, C_new


def _diagonalize_complex(Ak, Bk, Ck, margin: float, min_phase: float):
    """``(mu, B_new, C_new)`` with ``diag(mu) = X^{-1} Ak X``, states with Im < 0 conjugated.

    Conjugating a state, ``(lam, b, c) -> (conj lam, conj b, conj c)``, leaves
    ``Re(c x)`` unchanged, so every phase can be taken in ``[0, pi]``.
    """
    mu, X = torch.linalg.eig(Ak)
    if not bool(torch.isfinite(mu).all() and torch.isfinite(X).all()):
        raise _Refused("the reduced system's eigendecomposition is not finite")
    _check_eigs(mu, margin, min_phase, real_map=False)
    B_new = torch.linalg.solve(X, Bk)  # (G, r, m)
    C_new = Ck @ X  # (G, p, r)
    flip = mu.imag < 0  # (G, r)
    mu = torch.where(flip, mu.conj(), mu)
    B_new = torch.where(flip[:, :, None], B_new.conj(), B_new)
    C_new = torch.where(flip[:, None, :], C_new.conj(), C_new)
    return mu, B_new, C_new


def balanced_truncation_lti(
    lti: DiagonalLTI,
    r: int,
    *,
    method: str = "complex",
    margin: float = 1e-6,
    min_phase: float = 1e-8,
    _factors: tuple | None = None,
) -> _Truncation:
    """Balanced truncation of a diagonal system to ``r`` complex states per system.

    Parameters
    ----------
    lti : DiagonalLTI
        Strictly stable, as :func:`ctrlreduce_torch.to_lti` returns it; its
        tensors are read as the standard system ``(diag(lam), B, C, D)``.
    r : int
        Complex states kept per system, ``1 <= r <= N``.
    method : {"real", "complex"}, keyword-only
        ``"real"``: truncate the real map (order ``2N -> 2r``), bound
        ``2 sum`` of the discarded augmented HSVs; refused when the reduced
        real system has a real eigenvalue.  ``"complex"``: truncate the complex
        system ``(diag(lam), B, C)`` (order ``N -> r``), bound ``2 sum`` of the
        discarded complex HSVs, which also bounds the real map's change
        because ``|Re e| <= |e|``.
    margin, min_phase : float, keyword-only
        Guards on the reduced eigenvalues: ``|mu| <= 1 - margin``,
        ``|arg mu| >= min_phase`` (and no real eigenvalue for ``"real"``).

    Returns
    -------
    _Truncation
        The re-diagonalized reduced system (``to_lti`` convention), the projected system
        and the a-priori bound (max over systems).

    Raises
    ------
    _Refused
        When a guard fails (the message says which).
    """
    factors = _factors if _factors is not None else _square_root_factors(lti, method)
    per = 2 if method == "real" else 1
    Ak, Bk, Ck = _project(lti, per * r, factors, method)
    if method == "real":
        mu, Bn, Cn = _diagonalize_real(Ak, Bk, Ck, r, margin, min_phase)
    else:
        mu, Bn, Cn = _diagonalize_complex(Ak, Bk, Ck, margin, min_phase)
    if not all(bool(torch.isfinite(t).all()) for t in (mu, Bn, Cn)):
        raise _Refused("the re-diagonalized reduced system has non-finite entries")
    new = DiagonalLTI(mu, Bn, Cn, lti.D.to(torch.float64))
    bound = float(tail_bounds(factors[3], per)[r])
    return _Truncation(new, Ak, Bk, Ck, bound, method)


def _probe_points(mu: torch.Tensor, n_uniform: int = 16, n_peaks: int = 8) -> torch.Tensor:
    """(G, K) points on the unit circle: a uniform grid of angles in [0, pi]
    and the angles of the ``n_peaks`` slowest eigenvalues (resonance peaks)."""
    G = mu.shape[0]
    w = torch.linspace(0.0, math.pi, n_uniform, dtype=torch.float64, device=mu.device)
    k = min(n_peaks, mu.shape[1])
    slow = torch.topk(mu.abs(), k, dim=1).indices
    ang = torch.cat([w.expand(G, -1), torch.gather(mu.angle(), 1, slow)], dim=1)
    return torch.polar(torch.ones_like(ang), ang)


def realization_mismatch(trunc: _Truncation, written: DiagonalLTI, n_probes: int = 2) -> float:
    """Relative mismatch between ``written``'s real map and the reduced model.

    ``written`` is ``to_lti`` of the new layer (the layers' convention),
    as is ``trunc``; both read as standard systems.  The reference is
    ``D + Fr(z)`` with ``Fr(z) = (f(z) + conj(f(conj z))) / 2`` and
    ``f(z) = Ck (z - Ak)^{-1} Bk`` (for real ``(Ak, Bk, Ck)``, ``Fr = f``).
    Compared as ``w^T G(z) v`` for seeded random real probes ``v, w`` at the
    points of :func:`_probe_points`, relative to the largest value of the
    reference: a sketch, cheap, that misses a gross error with probability 0.
    """
    dev = trunc.Ak.device
    c = torch.complex128
    G, p, m = written.D.shape
    gen = torch.Generator(device="cpu").manual_seed(1234)
    v = torch.randn(m, n_probes, generator=gen, dtype=torch.float64).to(dev, c)
    w = torch.randn(p, n_probes, generator=gen, dtype=torch.float64).to(dev, c)
    zs = _probe_points(trunc.lti.lam)  # (G, K)
    K, k = zs.shape[1], trunc.Ak.shape[1]
    eye = torch.eye(k, dtype=c, device=dev)
    Ak = trunc.Ak.to(c)[:, None]  # (G, 1, k, k)
    rhs = (trunc.Bk.to(c) @ v)[:, None].expand(-1, 2 * K, -1, -1)  # (G, 2K, k, q)
    pts = torch.cat([zs, zs.conj()], dim=1)  # (G, 2K)
    f = (w.T @ trunc.Ck.to(c))[:, None] @ torch.linalg.solve(
        pts[:, :, None, None] * eye - Ak, rhs
    )  # (G, 2K, q, q)
    Fr = 0.5 * (f[:, :K] + f[:, K:].conj())
    ref = (w.T @ trunc.lti.D.to(c) @ v)[:, None] + Fr  # (G, K, q, q)
    lam_a, B_a, C_a, D_w = written.augmented()
    wc = w.T @ C_a.to(c)  # (G, q, 2N)
    bv = B_a.to(c) @ v  # (G, 2N, q)
    res = 1.0 / (zs[:, :, None] - lam_a.to(c)[:, None, :])  # (G, K, 2N)
    got = torch.einsum("gqn,gkn,gnr->gkqr", wc, res, bv) + (w.T @ D_w.to(c) @ v)[:, None]
    scale = float(ref.abs().amax())
    diff = float((got - ref).abs().amax())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


# ------------------------------------------------------------ public entry point
def _check_layer(layer: object) -> None:
    convert._spec(layer)  # TypeError naming the supported layers
    convert.check_finite_parameters(layer)


def _check_fraction(value: Any, name: str, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not lo <= float(value) < hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}), got {value!r}")


def _validate_args(order: Any, tol: Any, d_state: int, ratio: int, method: Any) -> None:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if (order is None) == (tol is None):
        raise ValueError(f"give exactly one of order and tol, got order={order!r}, tol={tol!r}")
    if order is not None:
        if isinstance(order, bool) or not isinstance(order, numbers.Integral):
            raise TypeError(f"order must be an int (the new d_state), got {order!r}")
        if not ratio <= int(order) <= d_state or int(order) % ratio:
            what = f"a multiple of {ratio} " if ratio > 1 else ""
            raise ValueError(
                f"order must be {what}in {ratio}..{d_state} (the layer's d_state), got {order}"
            )
    else:
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
            raise TypeError(f"tol must be a positive real number, got {tol!r}")
        if not math.isfinite(float(tol)) or float(tol) <= 0:
            raise ValueError(f"tol must be a finite number > 0, got {tol!r}")


_METHODS = ("auto", "real", "complex")


def _choose_r(order: Any, tol: Any, ratio: int, N: int, hsv: torch.Tensor, per: int) -> int:
    """Complex states per system to keep: ``order // ratio``, or the fewest meeting ``tol``."""
    if order is not None:
        return int(order) // ratio
    bounds = tail_bounds(hsv, per)  # (N + 1,), non-increasing
    ok = torch.nonzero(bounds[1:] <= float(tol)).flatten()
    return int(ok[0]) + 1 if ok.numel() else N


def _default_map_rtol(layer: torch.nn.Module) -> float:
    # Parameters in dtype ``dt`` round the reduced model by ~eps(dt) relative,
    # amplified near resonances by up to 1 / (1 - |lam|); 1e4 eps leaves room
    # for that in float32 (1.2e-3) and for the conditioning of the
    # re-diagonalization in float64 (floor 1e-7).  In the 16-bit dtypes 1e4 eps
    # exceeds 1 and would accept anything; their write-backs measured up to
    # 14 eps (float16) and 10 eps (bfloat16), so 64 eps (0.0625, 0.5) there.
    dt = next((q.dtype for q in layer.parameters() if q.is_floating_point()), torch.float64)
    factor = 64.0 if dt.itemsize == 2 else 1e4
    return max(factor * torch.finfo(dt).eps, 1e-7)


def _unscaled(trunc: _Truncation, eB: torch.Tensor, eC: torch.Tensor, bound: float) -> _Truncation:
    """The truncation of the original system from that of :func:`scaled_system`'s.

    ``B_r`` and ``Bk`` times ``2^eB``, ``C_r`` and ``Ck`` times ``2^eC`` (exact
    powers of two), per system; ``bound`` is the bound in the original HSVs.
    """
    sB = pow2(eB.to(trunc.Ak.device))[:, None, None]
    sC = pow2(eC.to(trunc.Ak.device))[:, None, None]
    lti = DiagonalLTI(trunc.lti.lam, trunc.lti.B * sB, trunc.lti.C * sC, trunc.lti.D)
    return _Truncation(lti, trunc.Ak, trunc.Bk * sB, trunc.Ck * sC, bound, trunc.method)


def _attempt(layer, lf, r, method, factors, margin, min_phase, map_rtol, scales, bound):
    """Reduce a deep copy of ``layer``; return ``(truncation, mismatch)`` or raise _Refused.

    ``lf`` and ``factors`` are those of the scaled system; ``scales = (eB, eC)``
    (see :func:`ctrlreduce_torch.hsv.scaled_system`) and ``bound`` the
    a-priori bound of the original.
    """
    trunc = balanced_truncation_lti(
        lf, r, method=method, margin=margin, min_phase=min_phase, _factors=factors
    )
    trunc = _unscaled(trunc, *scales, bound)
    trial = copy.deepcopy(layer)
    try:
        convert.from_lti(trial, trunc.lti)
    except ValueError as exc:
        raise _Refused(f"from_lti refused the reduced system: {exc}") from None
    for name, prm in trial.named_parameters():
        if not bool(torch.isfinite(prm).all()):
            raise _Refused(f"new parameter {name!r} is not finite")
    mismatch = realization_mismatch(trunc, convert.to_lti(trial))
    if not mismatch <= map_rtol:
        raise _Refused(
            f"the map written back differs from the reduced model by {mismatch:.3g} "
            f"(relative), more than map_rtol = {map_rtol:.3g}"
        )
    return trunc, mismatch


def reduce_(
    layer: torch.nn.Module,
    order: int | None = None,
    *,
    tol: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    method: str = "complex",
    margin: float = 1e-6,
    min_phase: float | None = None,
    map_rtol: float | None = None,
) -> ReductionReport:
    """Balanced truncation of a layer's real input-output map, in place.

    Parameters
    ----------
    layer : LRU, S5 or S4D
    order : int, optional
        The layer's new ``d_state``: ``1..d_state`` for LRU and S5, an even
        number in ``2..d_state`` for S4D (each channel keeps ``order / 2``
        complex modes).  Exactly one of ``order`` and ``tol``.
    tol : float, keyword-only, optional
        Make the largest cut whose a-priori bound is ``<= tol``.
    optimizer : torch.optim.Optimizer, keyword-only, optional
        Rebound in place to the new parameters (see :func:`rebind_optimizer_`):
        moments of resized parameters reset to zero, step counts kept,
        untouched parameters keep identity and state.
    method : {"complex", "real", "auto"}, keyword-only
        ``"complex"`` (default): truncate the complex system
        ``(diag(lam), B, C)`` to ``r`` states; the bound is ``2 sum`` of its
        discarded HSVs (``hankel_singular_values(layer, augmented=False)``),
        valid for the real map because ``|Re e| <= |e|``.  Always
        representable (states with ``Im mu < 0`` are conjugated).
        ``"real"``: truncate the real map, order ``2N -> 2r``, bound in the
        augmented HSVs (``hankel_singular_values(layer)``), the tighter
        ranking for the map the layer computes; but the reduced real system
        usually has some real eigenvalues, which one complex state of
        ``Re(C x)`` cannot hold, and the reduction is then refused.
        ``"auto"``: ``"real"``, then ``"complex"`` if refused.  The report's
        ``method`` and ``hsv`` say which was applied and what the bound
        refers to.
    margin : float, keyword-only
        Guard ``|mu| <= 1 - margin`` on the reduced eigenvalues ``mu``.
    min_phase : float, keyword-only, optional
        Guard ``|arg mu| >= min_phase``.  Default ``1e-8`` for the LRU (its
        phase ``exp(theta_log)`` cannot be 0) and ``0`` for S5 and S4D, which
        represent real eigenvalues (``Im Lambda = 0``).
    map_rtol : float, keyword-only, optional
        Largest accepted relative mismatch between the map written into the
        layer and the reduced model (:attr:`ReductionReport.realization_error`).
        Default ``max(1e4 * eps, 1e-7)`` of the layer's parameter dtype.

    Returns
    -------
    ReductionReport
        ``applied=False`` with a ``reason`` (and a RuntimeWarning) when a
        guard refused the reduction; the layer and optimizer are then exactly
        as before.  ``order == d_state`` (or a ``tol`` that allows no cut) is a
        no-op report without warning.

    Raises
    ------
    TypeError
        Unsupported layer type, non-integer ``order``, non-numeric ``tol``, or
        ``optimizer`` not a ``torch.optim.Optimizer``.
    ValueError
        Both or neither of ``order``/``tol``; ``order`` out of range; ``tol <= 0``;
        unknown ``method``; non-finite layer parameters (named); HSVs beyond
        float64; an optimizer whose state cannot be carried across the resize
        (see :func:`ctrlreduce_torch.optim.check_rebindable`; LBFGS can).
        All raised before anything is changed.

    Notes
    -----
    The layers read their state after the update, ``y[k] = Re(C x[k]) + D u[k]``
    with diagonal ``D``; the truncated system is that recurrence
    ``(diag(lam), B, C)`` read as a standard system ``S`` (what
    :func:`ctrlreduce_torch.to_lti` returns), so ``D`` is kept and the change
    of the layer's map is ``z (S - S_r)``, of the same H-infinity norm as
    ``S - S_r`` on the unit circle.  Bound: ``max_g 2 * sum`` of the discarded HSVs of
    that recurrence over the layer's systems ``g`` (one for LRU and S5, one
    per channel for S4D); see the module docstring for the method.
    """
    t0 = time.perf_counter()
    _check_layer(layer)
    d_state = int(layer.d_state)
    if optimizer is not None:  # TypeError, or ValueError for state it cannot carry
        check_rebindable(optimizer, [getattr(layer, n) for n in layer._state_shapes(d_state)])
    with torch.no_grad():
        lti = convert.to_lti(layer)
        check_lti(lti, name="layer")
        N = lti.n_states
        ratio = d_state // N
        _validate_args(order, tol, d_state, ratio, method)
        _check_fraction(margin, "margin", 0.0, 1.0)
        if min_phase is None:
            min_phase = 1e-8 if isinstance(layer, LRU) else 0.0
        _check_fraction(min_phase, "min_phase", 0.0, math.pi / 2)
        if map_rtol is not None:
            _check_fraction(map_rtol, "map_rtol", 0.0, math.inf)
        rt = _default_map_rtol(layer) if map_rtol is None else float(map_rtol)
        # B and C scaled by powers of two (exact): Gramians of entries beyond
        # ~1e+-154 would over- or underflow; factors, HSVs and the truncation scale back
        lf, eB, eC = scaled_system(lti)
        tries = ("real", "complex") if method == "auto" else (method,)
        reasons: list[str] = []
        result = None
        for meth in tries:
            per = 2 if meth == "real" else 1
            factors = _square_root_factors(lf, meth)
            s_full = unscale_hsv(factors[3], eB, eC, name="layer")  # ValueError on overflow
            hsv = s_full.detach().to("cpu", torch.float64)
            r = _choose_r(order, tol, ratio, N, s_full, per)
            if r == N:
                why = (
                    "order equals the current d_state; nothing to reduce"
                    if order is not None
                    else f"no cut has an error bound <= tol = {float(tol):g}"
                )
                return ReductionReport(
                    d_state, d_state, hsv, 0.0, False, why, time.perf_counter() - t0, method=meth
                )
            try:
                bound = float(tail_bounds(s_full, per)[r])
                result = _attempt(
                    layer, lf, r, meth, factors, margin, min_phase, rt, (eB, eC), bound
                )
                break
            except _Refused as exc:
                reasons.append(f"{meth}: {exc}")
        if result is None:
            reason = "; ".join(reasons)
            warnings.warn(f"reduce_ refused ({reason}); layer left unchanged", RuntimeWarning, 2)
            bound = float(tail_bounds(s_full, per)[r])
            return ReductionReport(
                d_state, d_state, hsv, bound, False, reason, time.perf_counter() - t0, method=meth
            )
        trunc, mismatch = result
        old_params = dict(layer.named_parameters())
        convert.from_lti(layer, trunc.lti)
        n_rebound = 0
        if optimizer is not None:
            n_rebound = rebind_optimizer_(optimizer, old_params, dict(layer.named_parameters()))
    return ReductionReport(
        old_order=d_state,
        new_order=r * ratio,
        hsv=hsv,
        error_bound=trunc.error_bound,
        applied=True,
        reason="",
        seconds=time.perf_counter() - t0,
        method=trunc.method,
        realization_error=mismatch,
        optimizer_params_rebound=n_rebound,
    )
