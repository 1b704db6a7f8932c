"""CompreSSM: in-training compression of SSM layers by balanced truncation (orchestration).

A model starts large, trains for a short while, measures which of its states
matter from the Hankel singular values (HSVs) of each SSM layer's complex
diagonal recurrence, drops the rest in place, and finishes training at the
small size (Chahine et al., arXiv 2510.02823).

This module only orchestrates: the schedule and the rank rules are pure
functions in :mod:`ctrlreduce_torch._policy`, a cut is planned and applied by
:mod:`ctrlreduce_torch.reduce` (:func:`~ctrlreduce_torch.plan_cut`,
:func:`~ctrlreduce_torch.apply_plan`) or :mod:`ctrlreduce_torch.modal`, and
what each layer class is comes from its registered family.  At every attempt
each layer is planned **once** (one LTI form, one set of Gramian factors, one
SVD, one bound curve); its order is chosen once from that plan; the chosen
cut is applied with the plan's factors and written back once.

Glossary
--------
=================  ==========================================================
``T``              ``total_steps``: the number of ``optimizer.step()`` calls
                   the run will make
``W``              ``floor(window * T)``: the reduction window, in steps
``a``              ``attempts``
``s_j``            the cut steps ``round(j * W / a)``, ``j = 1..a``: the
                   reduction runs inside the ``s_j``-th call of
                   :meth:`Compressor.step` (1-based, i.e. after ``s_j``
                   optimizer steps)
``sigma[g, i]``    HSVs of layer system ``g`` (one system for LRU/S5, one per
                   channel for S4D), descending, ``i = 0..n-1``: those of
                   the complex recurrence ``(diag(lam), B, C)`` as the layer
                   runs it, ``hankel_singular_values(layer, augmented=False,
                   form="recurrence")`` (the plan's ``hsv``), which
                   :func:`~ctrlreduce_torch.reduce_` (``method="complex"``)
                   truncates and bounds with, as the CompreSSM reference does
``k``              HSVs per unit of ``d_state``: ``1 / states_per_mode`` of the
                   layer's family (LRU and S5: 1; S4D: 1/2, ``d_state / 2``
                   modes per channel)
``E_g(d)``         the energy kept at ``d_state = d``:
                   ``sum_{i < k d} sigma[g, i] / sum_i sigma[g, i]``
=================  ==========================================================

Energy
------
The energy of a layer is the **sum of its HSVs** (not of their squares), so
that the discarded energy is proportional to the a-priori error bound:
``1 - E_g(d) = (2 sum_{i >= k d} sigma[g, i]) / (2 sum_i sigma[g, i])``, the
bound on ``||G - G_d||_inf`` as a fraction of the largest bound possible.  For
S4D, whose channels are independent systems sharing one ``d_state``, a cut
must satisfy every channel: ``E(d) = min_g E_g(d)``.

Modes
-----
``tau``
    (reference) each layer's new ``d_state`` is the smallest ``d`` with
    ``E(d) >= 1 - tau``.
``tol``
    (certified) the smallest ``d`` whose bound
    ``max_g 2 sum_{i >= k d} sigma[g, i] <= tol``, the largest cut whose
    H-infinity bound stays below ``tol`` for that layer and attempt.
``final_fraction`` / ``state_budget``
    (budget) the total state ``sum_l d_l`` shrinks geometrically to
    ``B = state_budget`` (or ``round(final_fraction * sum_l d_l(0))``):
    attempt ``j`` aims at ``B_j = round(D0 * (B / D0) ** (j / a))``.  The
    kept units are chosen globally: start every layer at its minimum and
    repeatedly grant one unit to the layer whose normalized energy
    ``E_l`` grows most (normalizing by each layer's own total makes layers
    with different gains comparable), never above its current size.

In every mode a layer's cut is skipped when it would remove less than
``min_reduction`` of its current ``d_state`` (in budget mode, except at the
last attempt, so that the budget is met).  Cuts compound: each attempt
starts from the sizes the previous one left.

Selection
---------
``"smallest"`` (default) is balanced truncation: the states with the
smallest HSVs go, by the planned cut (:func:`ctrlreduce_torch.apply_plan`,
``reduce_``'s ``method="complex"``): balanced truncation of the complex system, whose
bound ``2 sum(tail)`` also bounds the change of the real map ``Re(C x)``
(truncating the real map directly mostly yields real eigenvalues, which a
complex diagonal layer cannot hold).  The ablations
choose the new size by the same rule but cannot be balanced truncation of
other HSVs; instead they truncate the layer's own diagonal (modal) form
(:func:`ctrlreduce_torch.modal_truncate_`):
``"random"`` keeps a uniformly random subset of modes (seeded by ``seed``,
the attempt and the layer index), ``"largest"`` keeps the least dominant
modes, dropping those with the largest modal HSV
``|c_i| |b_i| / (1 - |lambda_i|^2)``.  Their error has no a-priori bound;
``error_bound`` is recorded as ``None``.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import _policy
from ._checks import check_bool, check_choice, check_int, check_real, seen
from ._layer import LayerFamily, family_of
from .convert import check_finite_parameters
from .distributed import broadcast_object, sync_after_cut
from .modal import choose_modes, modal_truncate_, scores_of
from .optim import check_rebindable, rebind_optimizer_
from .reduce import CutPlan, ReductionReport, apply_plan, plan_cut

__all__ = ["Compressor", "find_ssm_layers"]

#: Errors that make a layer's plan or cut fail without stopping training.
_SOFT_ERRORS = (ValueError, RuntimeError, np.linalg.LinAlgError)


def find_ssm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every registered SSM layer in ``model`` as ``(qualified name, layer)``, in module order.

    A layer is any module whose class (or a base class) has a registered
    family (:func:`ctrlreduce_torch.register_family`); a registered layer
    inside another one is not listed again.  Wrappers
    (``DistributedDataParallel``, ``torch.compile``) are looked through: the
    names are those of the innermost module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {seen(model)}")
    found: list[tuple[str, nn.Module]] = []
    for name, m in _unwrap(model).named_modules():
        if any(outer == "" or name.startswith(f"{outer}.") for outer, _ in found):
            continue
        try:
            family_of(m)
        except TypeError:
            continue
        found.append((name, m))
    return found


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


class Compressor:
    """Reduce every SSM layer of ``model`` in place at a fixed schedule during training.

    Call :meth:`step` once after each ``optimizer.step()``.

    Parameters
    ----------
    model : nn.Module
        The model (may be wrapped by ``DistributedDataParallel`` or
        ``torch.compile``).  An ``AveragedModel`` is refused: pass the live
        model and give EMA copies as ``ema=``.
    optimizer : torch.optim.Optimizer
        Rebound in place to the new parameters at every cut (so LR
        schedulers and trainer references stay valid).
    total_steps : int
        Planned number of optimizer steps ``T``.
    tau, tol, final_fraction, state_budget : float or int, keyword-only
        Exactly one selects the mode (see the module docstring): ``tau`` in
        ``(0, 1)``, the energy fraction each layer may drop; ``tol > 0``, the
        per-layer H-infinity bound; ``final_fraction`` in ``(0, 1]`` or
        ``state_budget >= 1``, the final total ``d_state`` over all layers.
    window : float
        Fraction of training within which the cuts happen, in ``(0, 1]``.
    attempts : int
        Number of cuts, evenly spaced in the window (see :func:`cut_steps`).
    min_reduction : float
        A layer is left alone when its cut would remove less than this
        fraction of its current ``d_state``.
    selection : {"smallest", "random", "largest"}
        Which states go (see the module docstring).
    seed : int
        Seed of ``selection="random"``.
    ema : sequence of torch.optim.swa_utils.AveragedModel
        EMA/SWA copies of ``model``; after each cut they restart from the
        reduced weights (their running average cannot be carried across a
        change of basis).
    distributed : bool or None
        Agree on every cut across ranks (decision on rank 0, broadcast, then
        parameters broadcast from rank 0).  ``None``: on when
        ``torch.distributed`` is initialized with more than one rank.
        ``True`` needs an initialized process group at construction.

    Raises
    ------
    TypeError
        An argument of the wrong type (``bool`` is not a number, strings are
        not numbers; NumPy integer and floating scalars are accepted).
    ValueError
        An argument out of range, not exactly one mode, no SSM layer in
        ``model``, ``selection="smallest"`` for a layer whose family takes
        only an index selection, a layer with non-finite parameters (named), an optimizer
        whose state cannot follow a cut (see
        :func:`ctrlreduce_torch.optim.check_rebindable`), or
        ``distributed=True`` without an initialized process group.  Every
        message names the argument, the expected type or range, and the value.

    Attributes
    ----------
    history : list of dict
        One JSON-serializable entry per layer and attempt: ``attempt``,
        ``step``, ``layer`` (qualified name), then the cut's
        :meth:`ReductionReport.to_dict`: ``old_order``, ``new_order``,
        ``hsv`` (the ranked HSVs before the cut, list of rows, ``None`` when
        they could not be computed), ``error_bound`` (``None`` for modal
        cuts), ``seconds``, ``applied``, ``reason``, ``method``
        (``"complex"``, or ``"modal-random"``/``"modal-largest"``; empty when
        no cut was tried), ``realization_error``, ``optimizer_params_rebound``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        tau: float | None = None,
        tol: float | None = None,
        final_fraction: float | None = None,
        state_budget: int | None = None,
        window: float = 0.1,
        attempts: int = 4,
        min_reduction: float = 0.05,
        selection: str = "smallest",
        seed: int = 0,
        ema: Sequence[nn.Module] = (),
        distributed: bool | None = None,
    ) -> None:
        if isinstance(model, AveragedModel):
            raise TypeError(
                "model must be the live model, got an AveragedModel (EMA/SWA copy); "
                "pass the live model and give the copy as ema=[...]"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {seen(model)}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {seen(optimizer)}")
        total_steps = check_int(total_steps, "total_steps", minimum=1)
        modes = {
            "tau": tau,
            "tol": tol,
            "final_fraction": final_fraction,
            "state_budget": state_budget,
        }
        given = [k for k, v in modes.items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"exactly one of tau, tol, final_fraction, state_budget must be given, got {given}"
            )
        self.mode = given[0]
        value: float | int
        if self.mode == "tau":
            value = check_real(tau, "tau", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        elif self.mode == "tol":
            value = check_real(tol, "tol", lo=0.0, lo_open=True)
        elif self.mode == "final_fraction":
            value = check_real(final_fraction, "final_fraction", lo=0.0, hi=1.0, lo_open=True)
        else:
            value = check_int(state_budget, "state_budget", minimum=1)
        window = check_real(window, "window", lo=0.0, hi=1.0, lo_open=True)
        attempts = check_int(attempts, "attempts", minimum=1)
        min_reduction = check_real(min_reduction, "min_reduction", lo=0.0, hi=1.0, hi_open=True)
        selection = check_choice(selection, "selection", ("smallest", "random", "largest"))
        seed = check_int(seed, "seed", minimum=0)  # numpy's SeedSequence needs seed >= 0
        if isinstance(ema, (nn.Module, str, bytes)) or not isinstance(ema, Iterable):
            raise TypeError(f"ema must be a sequence of AveragedModel, got {seen(ema)}")
        ema = list(ema)
        for e in ema:
            if not isinstance(e, AveragedModel):
                raise TypeError(f"ema entries must be AveragedModel, got {seen(e)}")
        distributed = check_bool(distributed, "distributed", allow_none=True)
        if distributed and not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True needs an initialized torch.distributed process group "
                "(call torch.distributed.init_process_group first), got none; pass "
                "distributed=None to follow the process group when there is one"
            )
        layers = find_ssm_layers(model)
        if not layers:
            raise ValueError(
                "model contains no supported SSM layer (LRU, S5, S4D, or a registered "
                "family); nothing to compress"
            )
        families = [family_of(m) for _, m in layers]
        for (name, layer), family in zip(layers, families, strict=True):
            check_finite_parameters(layer, what=f"layer {name!r}")
            check_rebindable(optimizer, family.state_parameters(layer).values())
            if selection == "smallest" and not family.balanced_writeback:
                raise ValueError(
                    f"selection='smallest' needs a balanced write-back, but layer {name!r} "
                    f"(family {family.name!r}) takes only an index selection; use "
                    "selection='largest' or 'random'"
                )

        self.model = model
        self.module = _unwrap(model)
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.value = value
        self.window = window
        self.attempts = attempts
        self.min_reduction = min_reduction
        self.selection = selection
        self.seed = seed
        self.ema = ema
        self._distributed = distributed
        self.schedule = _policy.cut_steps(total_steps, self.window, attempts)
        self.layers = layers
        self._families: list[LayerFamily] = families
        self.initial_dims = self.state_dims
        self.history: list[dict[str, Any]] = []
        self.step_count = 0
        self.reduce_seconds = 0.0
        self._elapsed = 0.0
        self._t_last: float | None = None

    # ------------------------------------------------------------------ public

    @property
    def state_dims(self) -> list[int]:
        """Current ``d_state`` of every compressed layer, in module order."""
        return [f.d_state(m) for (_, m), f in zip(self.layers, self._families, strict=True)]

    def step(self) -> bool:
        """Count one optimizer step; cut if this is a scheduled step.

        Returns ``True`` when at least one layer changed shape (a
        ``DistributedDataParallel`` wrapper must then be rebuilt, see
        :func:`ctrlreduce_torch.distributed.rewrap`).
        """
        now = time.perf_counter()
        if self._t_last is not None:
            self._elapsed += now - self._t_last
        self.step_count += 1
        changed = False
        if self.step_count in self.schedule:
            attempt = self.schedule.index(self.step_count) + 1
            t0 = time.perf_counter()
            changed = self._attempt(attempt)
            self.reduce_seconds += time.perf_counter() - t0
        self._t_last = time.perf_counter()
        return changed

    def overhead(self) -> dict[str, float]:
        """Time spent reducing against wall time between the first and latest :meth:`step`."""
        total = max(self._elapsed, 1e-12)
        return {
            "reduce_seconds": self.reduce_seconds,
            "train_seconds": self._elapsed,
            "fraction": self.reduce_seconds / total,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step count, history, current sizes, timings."""
        return {
            "step_count": self.step_count,
            "state_dims": self.state_dims,
            "history": copy.deepcopy(self.history),
            "reduce_seconds": self.reduce_seconds,
            "elapsed": self._elapsed,
            "config": self._config(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; resizes the layers to its sizes first.

        Call it **before** ``model.load_state_dict`` and
        ``optimizer.load_state_dict`` when the checkpoint was taken after a
        cut: the layers of a freshly built model are shrunk to the saved
        sizes (fresh parameters, the optimizer rebound to them) so that the
        model and optimizer states then load as usual.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict from Compressor.state_dict, got {seen(state)}")
        keys = ("step_count", "state_dims", "history", "reduce_seconds", "elapsed", "config")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state must be a dict from Compressor.state_dict; it lacks {missing}")
        cfg = self._config()
        if state["config"] != cfg:
            raise ValueError(
                f"state was saved by a compressor configured as {state['config']}, "
                f"this one is configured as {cfg}"
            )
        raw = state["state_dims"]
        if not isinstance(raw, (list, tuple)):
            raise TypeError(f"state['state_dims'] must be a list of ints, got {seen(raw)}")
        dims = [check_int(d, "state['state_dims'] entries", minimum=1) for d in raw]
        step_count = check_int(state["step_count"], "state['step_count']", minimum=0)
        if not isinstance(state["history"], (list, tuple)):
            raise TypeError(f"state['history'] must be a list, got {seen(state['history'])}")
        reduce_seconds = check_real(state["reduce_seconds"], "state['reduce_seconds']", lo=0.0)
        elapsed = check_real(state["elapsed"], "state['elapsed']", lo=0.0)
        if len(dims) != len(self.layers):
            raise ValueError(f"state has {len(dims)} layers, the model has {len(self.layers)}")
        for (_, layer), d, family in zip(self.layers, dims, self._families, strict=True):
            now = family.d_state(layer)
            if d > now:
                raise ValueError(f"cannot grow a layer from d_state={now} to {d}")
            k = family.states_per_mode
            if d % k:
                raise ValueError(f"state['state_dims'] has d_state={d} for a {family.name} layer "
                                 f"(must be a multiple of {k})")
        held = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        if any(id(p) not in held for _, m in self.layers for p in m.parameters()):
            raise RuntimeError(
                "the optimizer does not hold the SSM layers' current parameters (was "
                "model.load_state_dict called first? it resizes the layers itself); call "
                "compressor.load_state_dict before model.load_state_dict"
            )
        # validated: now resize
        for (_, layer), d, family in zip(self.layers, dims, self._families, strict=True):
            if d < family.d_state(layer):
                _resize_fresh(layer, family, d, self.optimizer)
        self.step_count = step_count
        self.history = copy.deepcopy(list(state["history"]))
        self.reduce_seconds = reduce_seconds
        self._elapsed = elapsed
        self._t_last = None
        for e in self.ema:
            _restart_ema(e, self.module)

    # ------------------------------------------------------------------ internals

    def _config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "value": self.value,
            "total_steps": self.total_steps,
            "window": self.window,
            "attempts": self.attempts,
            "min_reduction": self.min_reduction,
            "selection": self.selection,
            "seed": self.seed,
            "initial_dims": self.initial_dims,
        }

    def _is_distributed(self) -> bool:
        if self._distributed is False:
            return False
        up = dist.is_available() and dist.is_initialized()
        if self._distributed:  # checked at construction; the group may have gone since
            if not up:
                raise RuntimeError(
                    "distributed=True, but the torch.distributed process group is no longer "
                    "initialized (was it destroyed before training ended?)"
                )
            return True
        return up and dist.get_world_size() > 1

    def _plans(self) -> tuple[list[CutPlan | None], list[str]]:
        """One plan per layer (the complex recurrence's factors, SVD, HSVs and bounds)."""
        plans: list[CutPlan | None] = []
        reasons: list[str] = []
        for _, layer in self.layers:
            try:
                plans.append(plan_cut(layer, method="complex"))
                reasons.append("")
            except _SOFT_ERRORS as exc:
                plans.append(None)
                reasons.append(f"HSVs unavailable: {exc}")
        return plans, reasons

    def _orders(
        self, attempt: int, plans: list[CutPlan | None], reasons: list[str]
    ) -> list[int | None]:
        """New ``d_state`` per layer (``None``: leave alone, with ``reasons[i]`` set)."""
        n = len(self.layers)
        current = self.state_dims
        k = [f.states_per_mode for f in self._families]
        modes: list[int | None] = [None] * n
        ok = [i for i in range(n) if plans[i] is not None]
        if self.mode in ("final_fraction", "state_budget"):
            D0 = sum(self.initial_dims)
            B = self.value if self.mode == "state_budget" else round(self.value * D0)
            target = round(D0 * (B / D0) ** (attempt / self.attempts))
            fixed = sum(current[i] for i in range(n) if plans[i] is None)
            alloc = _policy.modes_for_budget(
                [_policy.kept_energy(plans[i].hsv.numpy()) for i in ok],
                [k[i] for i in ok],
                [plans[i].n_modes for i in ok],
                max(target - fixed, 0),
            )
            for i, r in zip(ok, alloc, strict=True):
                modes[i] = r
        elif self.mode == "tau":
            for i in ok:
                energy = _policy.kept_energy(plans[i].hsv.numpy())
                modes[i] = _policy.modes_for_tau(energy, self.value)
        else:
            for i in ok:
                modes[i] = _policy.modes_for_tol(plans[i].bounds, self.value)
        last_budget = self.mode in ("final_fraction", "state_budget") and attempt == self.attempts
        orders: list[int | None] = [None] * n
        for i in ok:
            d = k[i] * modes[i]
            cut = (current[i] - d) / current[i]
            if d >= current[i]:
                reasons[i] = "no states to drop"
            elif cut < self.min_reduction and not last_budget:
                reasons[i] = f"cut {current[i]}->{d} is below min_reduction={self.min_reduction}"
            else:
                orders[i] = d
        return orders

    def _attempt(self, attempt: int) -> bool:
        dist_on = self._is_distributed()
        plans, reasons = self._plans()
        orders = self._orders(attempt, plans, reasons)
        keeps: list[torch.Tensor | None] = [None] * len(self.layers)
        if self.selection != "smallest":
            for i, plan in enumerate(plans):
                if orders[i] is not None:
                    n_keep = orders[i] // self._families[i].states_per_mode
                    keeps[i] = choose_modes(
                        scores_of(plan.lti), n_keep, self.selection, (self.seed, attempt, i)
                    )
        if dist_on:  # every rank applies rank 0's decision
            orders, reasons, keeps = broadcast_object((orders, reasons, keeps))
        changed = False
        for i, (name, _) in enumerate(self.layers):
            if reasons[i].startswith("HSVs unavailable"):
                warnings.warn(
                    f"CompreSSM: {name} not reduced at step {self.step_count}: {reasons[i]}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if orders[i] is None:
                report = self._skipped(i, plans[i], reasons[i])
            else:
                report = self._cut(plans[i], orders[i], keeps[i])
                if not report.applied:
                    warnings.warn(
                        f"CompreSSM: cut of {name} at step {self.step_count} "
                        f"({report.old_order} -> {orders[i]}) refused: {report.reason}; "
                        "training continues at the old size",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                changed |= report.applied
            entry = {"attempt": attempt, "step": self.step_count, "layer": name}
            self.history.append({**entry, **report.to_dict()})
        if dist_on:
            changed = sync_after_cut([m for _, m in self.layers], changed)
        if changed:
            for e in self.ema:
                _restart_ema(e, self.module)
        return changed

    def _skipped(self, i: int, plan: CutPlan | None, reason: str) -> ReductionReport:
        """The report of a layer left alone (gate, nothing to drop, HSVs unavailable)."""
        d = self.state_dims[i]
        hsv = None if plan is None else plan.hsv
        return ReductionReport(d, d, hsv, 0.0, False, reason, 0.0)

    def _cut(self, plan: CutPlan, order: int, keep: torch.Tensor | None) -> ReductionReport:
        """One layer's cut from its plan; a refusal (or error) leaves everything unchanged."""
        d = plan.d_state
        if self.selection == "smallest":
            try:
                with warnings.catch_warnings():  # re-issued by _attempt, with the step and layer
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return apply_plan(plan, order, optimizer=self.optimizer)
            except _SOFT_ERRORS as exc:
                reason = f"apply_plan raised {type(exc).__name__}: {exc}"
                return ReductionReport(d, d, plan.hsv, None, False, reason, plan.seconds, "complex")
        method = "modal-" + self.selection
        try:
            report = modal_truncate_(plan.layer, keep, optimizer=self.optimizer)
        except (ValueError, RuntimeError) as exc:
            reason = f"modal truncation failed: {exc}"
            return ReductionReport(d, d, plan.hsv, None, False, reason, plan.seconds, method)
        # the history keeps the HSVs the order was chosen from, and the ablation's name
        return replace(report, hsv=plan.hsv, method=method, seconds=plan.seconds + report.seconds)


# --------------------------------------------------------------------------- helpers


def _resize_fresh(
    layer: nn.Module, family: LayerFamily, d_state: int, optimizer: torch.optim.Optimizer
) -> None:
    """Shrink a freshly built layer to ``d_state`` (values to be overwritten by a load)."""
    old = family.state_parameters(layer)
    family.resize_(layer, d_state)
    rebind_optimizer_(optimizer, old, family.state_parameters(layer), keep_state=False)


def _restart_ema(ema: nn.Module, model: nn.Module) -> None:
    """Restart an ``AveragedModel`` from ``model``'s current (reduced) weights.

    ``load_state_dict`` resizes the copy's layers (their size is saved state).
    """
    ema.module.load_state_dict(model.state_dict())
    ema.n_averaged.zero_()
