"""In-place balanced truncation of a layer (``reduce_``), planned once and applied once.

Glossary
--------
==============  ==============  ==================================================
``plan``        :class:`CutPlan` everything one cut needs, computed once per layer:
                                the recurrence ``(lam, B, C, D)`` (one
                                :func:`~ctrlreduce_torch.to_lti`), its Gramian
                                factors and their one SVD, the HSVs and the
                                bound curve
``r``           int             complex modes kept per system; the new
                                ``d_state`` is ``states_per_mode * r``
``bounds[r]``   float           a-priori bound of keeping ``r`` modes,
                                ``max_g 2 sum`` of the discarded HSVs
``method``      str             ``"complex"`` or ``"real"`` (see
                                :mod:`ctrlreduce_torch._bt`)
==============  ==============  ==================================================

The truncated system is the layer's *recurrence* ``S = (diag(lam), B, C, D)``
read as a standard system, not its input-output map ``G(z) = D + z (S(z) - D)``
(:mod:`ctrlreduce_torch._lti`): a truncation of ``S`` keeps the layer's diagonal
``D``, so it can be written back, and changes the map by
``G - G_r = z (S - S_r)``, of the same H-infinity norm on ``|z| = 1``, so
``2 sum(tail HSVs of S)`` bounds the change of the layer's map exactly.

One cut (:func:`reduce_`, or the :class:`~ctrlreduce_torch.Compressor` through
:func:`plan_cut` and :func:`apply_plan`):

1. **plan** (:func:`plan_cut`): ``to_lti`` once; ``B`` and ``C`` scaled by
   powers of two (:func:`~ctrlreduce_torch.hsv.scaled_system`: Gramians of
   entries beyond ``1e+-154`` would over- or underflow; factors, HSVs and the
   truncation scale back exactly); Gramian factors once; one SVD
   ``Lo^H Lc = Z diag(s) Yh``; the HSVs ``s`` (unscaled) and the bound curve
   ``bounds[r]`` for every ``r``;
2. **choose** ``r``: given (``order``), or by a rank policy on the plan's
   bound curve or HSVs (:mod:`ctrlreduce_torch._policy`; ``tol``: the fewest
   modes with ``bounds[r] <= tol``);
3. **apply** (:func:`apply_plan`): project with the plan's factors,
   re-diagonalize, prepare the write-back (the family's inverse map, the new
   parameters rounded to the layer's dtype and their recurrence evaluated once,
   :func:`~ctrlreduce_torch.convert.prepare_writeback`), compare that
   recurrence with the reduced model (:func:`~ctrlreduce_torch._bt.realization_mismatch`),
   and only then write the parameters (once) and rebind the optimizer.

Guards (any failure: nothing changes, ``applied=False``, a RuntimeWarning):
``|mu| > 1 - margin``; ``|arg mu| < min_phase`` (the family's default: e.g.
phase zero is not an LRU eigenvalue), and in ``"real"`` also
``|arg mu| > pi - min_phase`` (any real eigenvalue of the real reduced
system); a kept HSV at round-off level; a non-finite eigendecomposition or new
parameter; the family's inverse map refusing; a written-back map that differs
from the reduced model by more than ``map_rtol`` of its gain.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrlreduce._validation import check_order, check_order_or_tol

from . import _bt, _policy, convert  # module references: tests patch functions in them
from ._checks import check_choice, check_real, seen
from ._layer import LayerFamily, family_of
from ._lti import DiagonalLTI, check_lti
from .hsv import scaled_system, unscale_hsv
from .optim import check_rebindable, rebind_optimizer_

__all__ = ["CutPlan", "ReductionReport", "apply_plan", "plan_cut", "reduce_"]

#: ``reduce_``'s methods: the two systems of :mod:`ctrlreduce_torch._bt`, or both in turn.
METHODS = ("complex", "real", "auto")


# ----------------------------------------------------------------- report
def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True, eq=False)
class ReductionReport:
    """What one cut (:func:`reduce_`, :func:`apply_plan`, ``modal_truncate_``) did to a layer.

    Attributes
    ----------
    old_order, new_order : int
        The layer's ``d_state`` before and after (equal when not applied).
    hsv : torch.Tensor or None
        float64, CPU, one row per system, descending: the HSVs the bound is
        made of, of the original layer's recurrence (:class:`CutPlan`):
        ``(G, N)`` of the complex system for ``method == "complex"``,
        ``(G, 2N)`` of its real map for ``"real"`` (i.e.
        ``hankel_singular_values(layer, augmented=..., form="recurrence")``).
        ``None`` when no HSVs were computed (a modal cut).
    error_bound : float or None
        A-priori bound on the H-infinity norm of the change of the layer's
        real input-output map: ``2 * sum`` of the discarded HSVs (with
        multiplicity), maximum over systems; ``0.0`` for a no-op; for a
        refused cut, the bound the cut would have had; ``None`` for a modal
        cut (no bound).  For zero initial state it bounds the l2 gain:
        ``||y - y_r||_2 <= error_bound * ||u||_2``.
    applied : bool
        Whether the layer (and optimizer) were changed.
    reason : str
        Empty when applied; otherwise why not (a guard, or a no-op).
    seconds : float
        Wall time of planning and applying the cut.
    method : str
        ``"complex"`` or ``"real"`` (the truncation applied, or last tried),
        ``"modal"`` for :func:`~ctrlreduce_torch.modal_truncate_`; the
        compressor's modal cuts say ``"modal-random"``/``"modal-largest"``.
    realization_error : float
        Largest relative mismatch, on a frequency grid and random probe
        directions, between the map written into the layer and the reduced
        balanced model (round-off of the re-diagonalization and of the
        layer's own parametrization and dtype; ``nan`` when not measured,
        ``0.0`` for an exact selection).  The total change is at most
        ``error_bound`` plus this (times the gain).
    optimizer_params_rebound : int
        How many Parameter slots in the optimizer's param_groups were rebound.
    """

    old_order: int
    new_order: int
    hsv: torch.Tensor | None
    error_bound: float | None
    applied: bool
    reason: str
    seconds: float
    method: str = ""
    realization_error: float = float("nan")
    optimizer_params_rebound: int = 0

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a dict (no tensors), e.g. for logging."""
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

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-serializable: ``hsv`` as a list of rows (or ``None``),
        non-finite floats as ``None``.  The compressor's history entries are this
        plus ``attempt``, ``step`` and ``layer``."""
        out = self.summary()
        out["error_bound"] = _json_float(self.error_bound)
        out["realization_error"] = _json_float(self.realization_error)
        out["hsv"] = None if self.hsv is None else self.hsv.detach().cpu().tolist()
        return out


# ----------------------------------------------------------------- plan
def _stamp(layer: nn.Module) -> tuple[tuple[str, int, int], ...]:
    """Identity and in-place version counter of every parameter: changes on any write."""
    return tuple((n, id(p), p._version) for n, p in layer.named_parameters())


@dataclass(frozen=True, eq=False)
class CutPlan:
    """Everything one balanced-truncation cut of one layer needs, computed once.

    Attributes
    ----------
    layer : nn.Module
        The layer planned for; the plan goes stale (``apply_plan`` refuses it)
        as soon as any of its parameters is written or replaced.
    family : LayerFamily
        The layer's family.
    method : str
        ``"complex"`` or ``"real"``: the system whose HSVs and factors these are.
    d_state : int
        The layer's ``d_state``.
    lti : DiagonalLTI
        The layer's recurrence, :func:`~ctrlreduce_torch.to_lti` (computed once).
    scaled : DiagonalLTI
        ``lti`` with ``B = 2^eB B_s``, ``C = 2^eC C_s`` per system.
    eB, eC : torch.Tensor
        ``(G,)`` int64 scaling exponents.
    factors : Factors
        Gramian factors of ``scaled`` and their one SVD.
    hsv : torch.Tensor
        ``(G, per N)`` float64, CPU: the HSVs of ``lti`` (unscaled), descending.
    bounds : numpy.ndarray
        ``(N + 1,)``: ``bounds[r] = max_g 2 sum(hsv[g, per r:])``.
    seconds : float
        Wall time of planning.
    """

    layer: nn.Module
    family: LayerFamily
    method: str
    d_state: int
    lti: DiagonalLTI
    scaled: DiagonalLTI
    eB: torch.Tensor
    eC: torch.Tensor
    factors: _bt.Factors
    hsv: torch.Tensor
    bounds: np.ndarray
    seconds: float
    stamp: tuple[tuple[str, int, int], ...]

    @property
    def n_modes(self) -> int:
        """Modes per system ``N`` (before the cut)."""
        return self.lti.n_states

    @property
    def per(self) -> int:
        """HSVs per mode: 2 for ``"real"``, 1 for ``"complex"``."""
        return _bt.per_state(self.method)


def _plan(layer: nn.Module, family: LayerFamily, lti: DiagonalLTI, method: str) -> CutPlan:
    """:class:`CutPlan` of ``layer`` from its (checked) recurrence ``lti``."""
    t0 = time.perf_counter()
    with torch.no_grad():
        scaled, eB, eC = scaled_system(lti)
        factors = _bt.square_root_factors(scaled, method)
        hsv = unscale_hsv(factors.s, eB, eC, name="layer").to("cpu", torch.float64)
        bounds = _bt.bound_curve(hsv.numpy(), _bt.per_state(method))
    return CutPlan(
        layer, family, method, family.d_state(layer), lti, scaled, eB, eC, factors, hsv, bounds,
        time.perf_counter() - t0, _stamp(layer),
    )


def _checked_lti(layer: nn.Module) -> DiagonalLTI:
    with torch.no_grad():
        lti = convert.to_lti(layer)
    check_lti(lti, name="layer")  # strictly stable, finite
    return lti


def plan_cut(layer: nn.Module, *, method: str = "complex") -> CutPlan:
    """Plan a balanced-truncation cut of ``layer``: its LTI form, factors, SVD, HSVs, bounds.

    Parameters
    ----------
    layer : LRU, S5, S4D, or any layer with a registered family
    method : {"complex", "real"}, keyword-only
        The system whose HSVs rank the states (see :func:`reduce_`).

    Returns
    -------
    CutPlan
        Read ``plan.hsv`` and ``plan.bounds`` to choose an order, then
        :func:`apply_plan` (or throw the plan away: nothing was changed).

    Raises
    ------
    TypeError
        Unregistered layer, or ``method`` not a str.
    ValueError
        Unknown ``method``, non-finite parameters (named), an eigenvalue with
        ``|lam| >= 1``, HSVs beyond float64.
    """
    family = family_of(layer)
    convert.check_finite_parameters(layer)
    check_choice(method, "method", _bt.METHODS)
    t0 = time.perf_counter()
    lti = _checked_lti(layer)
    plan = _plan(layer, family, lti, method)
    return _with_seconds(plan, time.perf_counter() - t0)


def _with_seconds(plan: CutPlan, seconds: float) -> CutPlan:
    return replace(plan, seconds=seconds)


# ----------------------------------------------------------------- apply
def _default_map_rtol(layer: nn.Module) -> float:
    # Parameters in dtype ``dt`` round the reduced model by ~eps(dt) relative,
    # amplified near resonances by up to 1 / (1 - |lam|); 1e4 eps leaves room
    # for that in float32 (1.2e-3) and for the conditioning of the
    # re-diagonalization in float64 (floor 1e-7).  In the 16-bit dtypes 1e4 eps
    # exceeds 1 and would accept anything; their write-backs measured up to
    # 14 eps (float16) and 10 eps (bfloat16), so 64 eps (0.0625, 0.5) there.
    dt = next((q.dtype for q in layer.parameters() if q.is_floating_point()), torch.float64)
    factor = 64.0 if dt.itemsize == 2 else 1e4
    return max(factor * torch.finfo(dt).eps, 1e-7)


@dataclass(frozen=True)
class _Guards:
    margin: float
    min_phase: float
    map_rtol: float


def _guards(layer: nn.Module, family: LayerFamily, margin: Any, min_phase: Any, map_rtol: Any):
    """Checked guard settings, with the family's and the dtype's defaults."""
    margin = check_real(margin, "margin", lo=0.0, hi=1.0, hi_open=True)
    if min_phase is None:
        min_phase = family.min_phase
    min_phase = check_real(min_phase, "min_phase", lo=0.0, hi=math.pi / 2, hi_open=True)
    if map_rtol is None:
        map_rtol = _default_map_rtol(layer)
    map_rtol = check_real(map_rtol, "map_rtol", lo=0.0)
    return _Guards(margin, min_phase, map_rtol)


def _cut(plan: CutPlan, r: int, optimizer: Any, guards: _Guards) -> ReductionReport:
    """Truncate to ``r`` modes, check, write back once; a refusal changes nothing."""
    t0 = time.perf_counter()
    layer, d = plan.layer, plan.d_state
    bound = float(plan.bounds[r])
    try:
        trunc = _bt.truncate(
            plan.scaled, r, plan.factors, plan.method,
            margin=guards.margin, min_phase=guards.min_phase,
        )
        trunc = _bt.unscaled(trunc, plan.eB, plan.eC)
        try:
            wb = convert.prepare_writeback(layer, trunc.lti)
        except ValueError as exc:
            raise _bt.Refused(f"from_lti refused the reduced system: {exc}") from None
        mismatch = _bt.realization_mismatch(trunc, wb.lti)
        if not mismatch <= guards.map_rtol:
            raise _bt.Refused(
                f"the map written back differs from the reduced model by {mismatch:.3g} "
                f"(relative), more than map_rtol = {guards.map_rtol:.3g}"
            )
    except _bt.Refused as exc:
        spent = plan.seconds + time.perf_counter() - t0
        return ReductionReport(d, d, plan.hsv, bound, False, str(exc), spent, method=plan.method)
    old = dict(layer.named_parameters())
    convert.commit_writeback(wb)
    n_rebound = 0
    if optimizer is not None:
        n_rebound = rebind_optimizer_(optimizer, old, dict(layer.named_parameters()))
    return ReductionReport(
        old_order=d,
        new_order=wb.d_state,
        hsv=plan.hsv,
        error_bound=bound,
        applied=True,
        reason="",
        seconds=plan.seconds + time.perf_counter() - t0,
        method=plan.method,
        realization_error=mismatch,
        optimizer_params_rebound=n_rebound,
    )


def _noop(plan: CutPlan, reason: str) -> ReductionReport:
    d = plan.d_state
    return ReductionReport(d, d, plan.hsv, 0.0, False, reason, plan.seconds, method=plan.method)


def _check_order(order: Any, family: LayerFamily, d_state: int, name: str = "order") -> int:
    """An ``order`` in ``k..d_state``, a multiple of ``k = states_per_mode`` (after the core's
    check of an order in ``0..d_state``)."""
    k = family.states_per_mode
    if order < k or order % k:
        what = f"a multiple of {k} " if k > 1 else ""
        raise ValueError(
            f"{name} must be {what}in {k}..{d_state} (the layer's d_state), got {order}"
        )
    return order


def apply_plan(
    plan: CutPlan,
    order: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    margin: float = 1e-6,
    min_phase: float | None = None,
    map_rtol: float | None = None,
) -> ReductionReport:
    """Cut ``plan.layer`` to ``d_state = order`` with the plan's factors, in place.

    The arguments after ``order`` are those of :func:`reduce_`.  ``order ==
    plan.d_state`` is a no-op report.  A refused cut (a guard) warns and
    leaves layer and optimizer exactly as they were.

    Raises
    ------
    TypeError, ValueError
        Bad arguments (before anything is changed), or a stale plan: the
        layer's parameters were written or replaced since :func:`plan_cut`.
    """
    if not isinstance(plan, CutPlan):
        raise TypeError(f"plan must be a CutPlan from plan_cut, got {seen(plan)}")
    order = _check_order(check_order(order, plan.d_state), plan.family, plan.d_state)
    if _stamp(plan.layer) != plan.stamp:
        raise ValueError(
            "plan is stale: the layer's parameters were changed or replaced after plan_cut; "
            "plan again"
        )
    guards = _guards(plan.layer, plan.family, margin, min_phase, map_rtol)
    if optimizer is not None:
        check_rebindable(optimizer, plan.family.state_parameters(plan.layer).values())
    r = order // plan.family.states_per_mode
    if r == plan.n_modes:
        return _noop(plan, "order equals the current d_state; nothing to reduce")
    report = _cut(plan, r, optimizer, guards)
    if not report.applied:
        warnings.warn(
            f"apply_plan refused ({report.reason}); layer left unchanged", RuntimeWarning, 2
        )
    return report


def reduce_(
    layer: nn.Module,
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
    layer : LRU, S5, S4D, or any layer whose registered family is a ``BalancedFamily``
    order : int, optional
        The layer's new ``d_state``: ``1..d_state`` for LRU and S5, an even
        number in ``2..d_state`` for S4D (each channel keeps ``order / 2``
        complex modes); in general a multiple of the family's
        ``states_per_mode``.  Exactly one of ``order`` and ``tol``.
    tol : float, keyword-only, optional
        Make the largest cut whose a-priori bound is ``<= tol``.
    optimizer : torch.optim.Optimizer, keyword-only, optional
        Rebound in place to the new parameters (see :func:`rebind_optimizer_`):
        moments of resized parameters reset to zero, step counts kept,
        untouched parameters keep identity and state.
    method : {"complex", "real", "auto"}, keyword-only
        ``"complex"`` (default): truncate the complex recurrence
        ``(diag(lam), B, C)`` to ``r`` states; the bound is ``2 sum`` of its
        discarded HSVs (``hankel_singular_values(layer, augmented=False,
        form="recurrence")``), valid for the real map because ``|Re e| <= |e|``.
        Always representable (states with ``Im mu < 0`` are conjugated).
        ``"real"``: truncate the real map of the recurrence, order
        ``2N -> 2r``, bound in its augmented HSVs
        (``hankel_singular_values(layer, form="recurrence")``), the tighter
        ranking; but the reduced real system usually has some real
        eigenvalues, which one complex state of ``Re(C x)`` cannot hold, and
        the reduction is then refused.  ``"auto"``: ``"real"``, then
        ``"complex"`` if refused.  The report's ``method`` and ``hsv`` say
        which was applied and what the bound is made of.
    margin : float, keyword-only
        Guard ``|mu| <= 1 - margin`` on the reduced eigenvalues ``mu``.
    min_phase : float, keyword-only, optional
        Guard ``|arg mu| >= min_phase``.  Default: the family's
        ``min_phase`` (``1e-8`` for the LRU, whose phase ``exp(theta_log)``
        cannot be 0; ``0`` for S5 and S4D, which represent real eigenvalues).
    map_rtol : float, keyword-only, optional
        Largest accepted relative mismatch between the map written into the
        layer and the reduced model (:attr:`ReductionReport.realization_error`).
        Default ``max(1e4 * eps, 1e-7)`` of the layer's parameter dtype
        (``64 eps`` for 16-bit dtypes).

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
    Plans once (one ``to_lti``, one set of factors and one SVD per method
    tried), chooses the order from the plan's bound curve, and writes back
    once (see the module docstring).  Bound: ``max_g 2 * sum`` of the
    discarded HSVs of the recurrence over the layer's systems ``g`` (one for
    LRU and S5, one per channel for S4D).
    """
    t0 = time.perf_counter()
    family = convert.balanced_family_of(layer)
    convert.check_finite_parameters(layer)
    d_state = family.d_state(layer)
    check_choice(method, "method", METHODS)
    order, tol = check_order_or_tol(order, tol, d_state)
    if order is not None:
        order = _check_order(order, family, d_state)
    guards = _guards(layer, family, margin, min_phase, map_rtol)
    if optimizer is not None:  # TypeError, or ValueError for state it cannot carry
        check_rebindable(optimizer, family.state_parameters(layer).values())
    lti = _checked_lti(layer)
    tries = ("real", "complex") if method == "auto" else (method,)
    reasons: list[str] = []
    report = None
    for meth in tries:
        plan = _with_seconds(_plan(layer, family, lti, meth), time.perf_counter() - t0)
        if order is not None:
            r = order // family.states_per_mode
        else:
            r = _policy.modes_for_tol(plan.bounds, tol)
        if r == plan.n_modes:
            why = (
                "order equals the current d_state; nothing to reduce"
                if order is not None
                else f"no cut has an error bound <= tol = {tol:g}"
            )
            return _noop(plan, why)
        report = _cut(plan, r, optimizer, guards)
        if report.applied:
            return report
        reasons.append(f"{meth}: {report.reason}")
    reason = "; ".join(reasons)
    warnings.warn(f"reduce_ refused ({reason}); layer left unchanged", RuntimeWarning, 2)
    return ReductionReport(
        d_state, d_state, report.hsv, report.error_bound, False, reason,
        time.perf_counter() - t0, method=report.method,
    )
