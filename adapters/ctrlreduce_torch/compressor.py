"""CompreSSM: in-training compression of SSM layers by balanced truncation.

A model starts large, trains for a short while, measures which of its states
matter from the Hankel singular values (HSVs) of each SSM layer's real
complex diagonal system, drops the rest in place, and finishes training at the small
size (Chahine et al., arXiv 2510.02823).

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
                   the complex system ``(diag(lam), B, C)`` in the layer's
                   read-after-update convention,
                   ``hankel_singular_values(layer, augmented=False)``, which
                   :func:`~ctrlreduce_torch.reduce.reduce_` (``method="complex"``)
                   truncates and bounds with, as the CompreSSM reference does
``k``              HSVs per unit of ``d_state`` (LRU and S5: 1, one per
                   complex state; S4D: 1/2, ``d_state / 2`` modes per channel)
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
smallest HSVs go, by :func:`ctrlreduce_torch.reduce.reduce_` with
``method="complex"``: balanced truncation of the complex system, whose
bound ``2 sum(tail)`` also bounds the change of the real map ``Re(C x)``
(truncating the real map directly mostly yields real eigenvalues, which a
complex diagonal layer cannot hold).  The ablations
choose the new size by the same rule but cannot be balanced truncation of
other HSVs; instead they truncate the layer's own diagonal (modal) form:
``"random"`` keeps a uniformly random subset of modes (seeded by ``seed``,
the attempt and the layer index), ``"largest"`` keeps the least dominant
modes, dropping those with the largest modal HSV
``|c_i| |b_i| / (1 - |lambda_i|^2)``.  Their error has no a-priori bound;
``error_bound`` is recorded as ``None``.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import check_bool, check_choice, check_int, check_real, seen
from .convert import check_finite_parameters
from .optim import check_rebindable, rebind_optimizer_

__all__ = ["Compressor", "cut_steps", "find_ssm_layers"]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Kind:
    """How the compressor treats one SSM layer type."""

    name: str
    hsv_per_state: float  # ranked HSVs per unit of d_state (k)
    granularity: int  # d_state moves in steps of this
    min_state: int  # never cut below this


def _registry() -> dict[type[nn.Module], _Kind]:
    """Explicit map from supported layer classes to their treatment."""
    from .lru import LRU
    from .s4d import S4D
    from .s5 import S5

    return {
        # one complex HSV per complex state; S4D has d_state / 2 modes per channel
        LRU: _Kind("lru", hsv_per_state=1, granularity=1, min_state=1),
        S5: _Kind("s5", hsv_per_state=1, granularity=1, min_state=1),
        S4D: _Kind("s4d", hsv_per_state=0.5, granularity=2, min_state=2),
    }


def find_ssm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every supported SSM layer in ``model`` as ``(qualified name, layer)``, in module order.

    Wrappers (``DistributedDataParallel``, ``torch.compile``) are looked
    through: the names are those of the innermost module.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {seen(model)}")
    reg = _registry()
    inner = _unwrap(model)
    return [(name, m) for name, m in inner.named_modules() if type(m) in reg]


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


# --------------------------------------------------------------------------- schedule


def cut_steps(total_steps: int, window: float, attempts: int) -> list[int]:
    """The steps at which the compressor cuts: ``round(j * W / a)``, ``j = 1..a``.

    ``W = floor(window * total_steps)``.  Steps are 1-based counts of
    :meth:`Compressor.step` calls.  Raises ``ValueError`` if the window is too
    short to hold ``attempts`` distinct steps.
    """
    total_steps = check_int(total_steps, "total_steps", minimum=1)
    window = check_real(window, "window", lo=0.0, hi=1.0, lo_open=True)
    attempts = check_int(attempts, "attempts", minimum=1)
    W = math.floor(window * total_steps)
    steps = [round(j * W / attempts) for j in range(1, attempts + 1)]
    if attempts > 0 and (steps[0] < 1 or len(set(steps)) != attempts):
        raise ValueError(
            f"window * total_steps = {window} * {total_steps} = {W} steps cannot hold "
            f"attempts={attempts} distinct cut steps"
        )
    return steps


# --------------------------------------------------------------------------- rank rules


def _hsv_matrix(layer: nn.Module) -> np.ndarray:
    """The layer's HSVs as a float64 array ``(G, n)``, each row descending."""
    from .hsv import hankel_singular_values

    with torch.no_grad():
        # the complex system's HSVs: what reduce_ (method="complex") truncates and bounds with
        s = hankel_singular_values(layer, augmented=False)
    s = s.detach().to("cpu", torch.float64).numpy()
    s = np.atleast_2d(s)
    if not np.all(np.isfinite(s)):
        raise ValueError("the layer's HSVs are not finite")
    return -np.sort(-s, axis=1)


def _kept_energy(sigma: np.ndarray, kind: _Kind, d_max: int) -> np.ndarray:
    """``E(d)`` for ``d = 0..d_max``: ``min_g`` fraction of HSV sum kept, shape ``(d_max+1,)``."""
    total = sigma.sum(axis=1, keepdims=True)  # (G, 1)
    total = np.where(total > 0, total, 1.0)
    csum = np.concatenate([np.zeros((sigma.shape[0], 1)), np.cumsum(sigma, axis=1)], axis=1)
    idx = np.minimum((np.arange(d_max + 1) * kind.hsv_per_state).astype(int), sigma.shape[1])
    return (csum[:, idx] / total).min(axis=0)


def _tail_bound(sigma: np.ndarray, kind: _Kind, d: int) -> float:
    """``max_g 2 sum_{i >= k d} sigma[g, i]``: the a-priori H-infinity bound at ``d``."""
    return float(2.0 * sigma[:, int(d * kind.hsv_per_state) :].sum(axis=1).max())


def _legal(d: int, kind: _Kind, current: int) -> int:
    """Round ``d`` up to the layer's granularity, clipped to ``[min_state, current]``."""
    g = kind.granularity
    d = -(-d // g) * g
    return int(min(max(d, kind.min_state), current))


def _order_tau(sigma: np.ndarray, kind: _Kind, current: int, tau: float) -> int:
    E = _kept_energy(sigma, kind, current)
    ok = np.nonzero(E >= 1.0 - tau - 1e-12)[0]  # 1e-12: round-off in the cumulative sum
    return _legal(int(ok[0]) if ok.size else current, kind, current)


def _order_tol(sigma: np.ndarray, kind: _Kind, current: int, tol: float) -> int:
    for d in range(kind.min_state, current + 1):
        if d % kind.granularity == 0 and _tail_bound(sigma, kind, d) <= tol:
            return d
    return current


def _orders_budget(
    sigmas: Sequence[np.ndarray], kinds: Sequence[_Kind], current: Sequence[int], budget: int
) -> list[int]:
    """Greedy global allocation of ``budget`` state units by normalized energy gain."""
    curves = [_kept_energy(s, k, c) for s, k, c in zip(sigmas, kinds, current, strict=True)]
    orders = [min(k.min_state, c) for k, c in zip(kinds, current, strict=True)]
    left = budget - sum(orders)
    heap: list[tuple[float, int]] = []

    def push(layer: int) -> None:
        k, d = kinds[layer], orders[layer]
        nxt = d + k.granularity
        if nxt <= current[layer]:
            gain = (curves[layer][nxt] - curves[layer][d]) / k.granularity
            heapq.heappush(heap, (-gain, layer))

    for i in range(len(orders)):
        push(i)
    while heap and left > 0:
        _, i = heapq.heappop(heap)
        if kinds[i].granularity > left:
            continue
        orders[i] += kinds[i].granularity
        left -= kinds[i].granularity
        push(i)
    return orders


# --------------------------------------------------------------------------- compressor


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, torch.Tensor):
        return _jsonable(x.detach().cpu().tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


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
        ``model``, a layer with non-finite parameters (named), an optimizer
        whose state cannot follow a cut (see
        :func:`ctrlreduce_torch.optim.check_rebindable`), or
        ``distributed=True`` without an initialized process group.  Every
        message names the argument, the expected type or range, and the value.

    Attributes
    ----------
    history : list of dict
        One JSON-serializable entry per layer and attempt: ``attempt``,
        ``step``, ``layer`` (qualified name), ``old_order``, ``new_order``,
        ``hsv`` (list of rows), ``error_bound``, ``seconds``, ``applied``,
        ``reason``, ``method`` (``reduce_``'s ``"real"``/``"complex"``, or
        ``"modal-random"``/``"modal-largest"``).
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
        from torch.optim.swa_utils import AveragedModel

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
        if distributed:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError(
                    "distributed=True needs an initialized torch.distributed process group "
                    "(call torch.distributed.init_process_group first), got none; pass "
                    "distributed=None to follow the process group when there is one"
                )
        layers = find_ssm_layers(model)
        if not layers:
            raise ValueError(
                "model contains no supported SSM layer (LRU, S5, S4D); nothing to compress"
            )
        for name, layer in layers:
            check_finite_parameters(layer, what=f"layer {name!r}")
            sized = [getattr(layer, n) for n in layer._state_shapes(layer.d_state)]
            check_rebindable(optimizer, sized)

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
        self.schedule = cut_steps(total_steps, self.window, attempts)
        self.layers = layers
        self._kinds = [_registry()[type(m)] for _, m in self.layers]
        self.initial_dims = [int(m.d_state) for _, m in self.layers]
        self.history: list[dict[str, Any]] = []
        self.step_count = 0
        self.reduce_seconds = 0.0
        self._elapsed = 0.0
        self._t_last: float | None = None
        self._method = ""

    # ------------------------------------------------------------------ public

    @property
    def state_dims(self) -> list[int]:
        """Current ``d_state`` of every compressed layer, in module order."""
        return [int(m.d_state) for _, m in self.layers]

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
        for (_, layer), d, kind in zip(self.layers, dims, self._kinds, strict=True):
            if d > layer.d_state:
                raise ValueError(f"cannot grow a layer from d_state={layer.d_state} to {d}")
            if d % kind.granularity:
                raise ValueError(f"state['state_dims'] has d_state={d} for a {kind.name} layer "
                                 f"(must be a multiple of {kind.granularity})")
        held = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        if any(id(p) not in held for _, m in self.layers for p in m.parameters()):
            raise RuntimeError(
                "the optimizer does not hold the SSM layers' current parameters (was "
                "model.load_state_dict called first? it resizes the layers itself); call "
                "compressor.load_state_dict before model.load_state_dict"
            )
        # validated: now resize
        for (_, layer), d in zip(self.layers, dims, strict=True):
            if d < layer.d_state:
                _resize_fresh(layer, d, self.optimizer)
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
        import torch.distributed as dist

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

    def _targets(self, attempt: int) -> tuple[list[int | None], list[np.ndarray | None], list[str]]:
        """New orders (``None`` = leave alone), HSVs and reasons for every layer."""
        n = len(self.layers)
        sigmas: list[np.ndarray | None] = [None] * n
        reasons = [""] * n
        for i, (_, layer) in enumerate(self.layers):
            try:
                sigmas[i] = _hsv_matrix(layer)
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                reasons[i] = f"HSVs unavailable: {exc}"
        current = self.state_dims
        orders: list[int | None] = [None] * n
        if self.mode in ("final_fraction", "state_budget"):
            D0 = sum(self.initial_dims)
            B = self.value if self.mode == "state_budget" else round(self.value * D0)
            target = round(D0 * (B / D0) ** (attempt / self.attempts))
            ok = [i for i in range(n) if sigmas[i] is not None]
            fixed = sum(current[i] for i in range(n) if sigmas[i] is None)
            alloc = _orders_budget(
                [sigmas[i] for i in ok],
                [self._kinds[i] for i in ok],
                [current[i] for i in ok],
                max(target - fixed, 0),
            )
            for i, d in zip(ok, alloc, strict=True):
                orders[i] = d
        else:
            for i in range(n):
                if sigmas[i] is None:
                    continue
                if self.mode == "tau":
                    orders[i] = _order_tau(sigmas[i], self._kinds[i], current[i], self.value)
                else:
                    orders[i] = _order_tol(sigmas[i], self._kinds[i], current[i], self.value)
        last_budget = self.mode in ("final_fraction", "state_budget") and attempt == self.attempts
        for i in range(n):
            d = orders[i]
            if d is None:
                continue
            cut = (current[i] - d) / current[i]
            if d >= current[i]:
                orders[i], reasons[i] = None, "no states to drop"
            elif cut < self.min_reduction and not last_budget:
                orders[i] = None
                reasons[i] = f"cut {current[i]}->{d} is below min_reduction={self.min_reduction}"
        return orders, sigmas, reasons

    def _attempt(self, attempt: int) -> bool:
        dist_on = self._is_distributed()
        orders, sigmas, reasons = self._targets(attempt)
        keeps: list[torch.Tensor | None] = [None] * len(self.layers)
        if self.selection != "smallest":
            for i, (_, layer) in enumerate(self.layers):
                if orders[i] is not None:
                    keeps[i] = _modal_choice(
                        layer, orders[i], self.selection, (self.seed, attempt, i)
                    )
        if dist_on:  # every rank applies rank 0's decision
            from .distributed import broadcast_object

            orders, reasons, keeps = broadcast_object((orders, reasons, keeps))
        changed = False
        for i, (name, layer) in enumerate(self.layers):
            entry: dict[str, Any] = {
                "attempt": attempt,
                "step": self.step_count,
                "layer": name,
                "old_order": int(layer.d_state),
                "new_order": int(layer.d_state),
                "hsv": sigmas[i],
                "error_bound": 0.0,
                "seconds": 0.0,
                "applied": False,
                "reason": reasons[i],
                "method": "",
            }
            if reasons[i].startswith("HSVs unavailable"):
                warnings.warn(
                    f"CompreSSM: {name} not reduced at step {self.step_count}: {reasons[i]}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if orders[i] is not None:
                t0 = time.perf_counter()
                self._method = ""
                applied, new, bound, reason = self._cut(layer, orders[i], keeps[i])
                entry.update(
                    new_order=new,
                    error_bound=bound,
                    applied=applied,
                    reason=reason,
                    seconds=time.perf_counter() - t0,
                    method=self._method,
                )
                if not applied:
                    warnings.warn(
                        f"CompreSSM: cut of {name} at step {self.step_count} "
                        f"({entry['old_order']} -> {orders[i]}) refused: {reason}; "
                        "training continues at the old size",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                changed |= applied
            self.history.append(_jsonable(entry))
        if dist_on:
            from .distributed import sync_after_cut

            changed = sync_after_cut([m for _, m in self.layers], changed)
        if changed:
            for e in self.ema:
                _restart_ema(e, self.module)
        return changed

    def _cut(
        self, layer: nn.Module, order: int, keep: torch.Tensor | None
    ) -> tuple[bool, int, float | None, str]:
        """One layer's cut: ``(applied, new d_state, bound, reason)``; unchanged when refused."""
        old = int(layer.d_state)
        if self.selection == "smallest":
            from .reduce import reduce_

            how: dict[str, Any] = {"tol": self.value} if self.mode == "tol" else {"order": order}
            how["method"] = "complex"  # the system whose HSVs _hsv_matrix ranks by
            try:
                with warnings.catch_warnings():  # re-issued below, with the step and layer
                    warnings.simplefilter("ignore", RuntimeWarning)
                    rep = reduce_(layer, optimizer=self.optimizer, **how)
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                return False, old, None, f"reduce_ raised {type(exc).__name__}: {exc}"
            if not rep.applied:
                return False, old, None, str(rep.reason)
            self._method = str(getattr(rep, "method", ""))
            return True, int(layer.d_state), float(rep.error_bound), ""
        try:
            _modal_truncate_(layer, keep, self.optimizer)
        except (ValueError, RuntimeError) as exc:
            return False, old, None, f"modal truncation failed: {exc}"
        self._method = "modal-" + self.selection
        return True, int(layer.d_state), None, ""


# --------------------------------------------------------------------------- modal truncation


def modal_scores(layer: nn.Module) -> torch.Tensor:
    """Dominance of each complex mode: ``|b_i| |c_i| / (1 - |lam_i|^2)``, float64.

    That is the HSV of mode ``i``'s own one-state system ``(lam_i, b_i, c_i)``
    (its Gramians are ``|b_i|^2 / (1 - |lam_i|^2)`` and
    ``|c_i|^2 / (1 - |lam_i|^2)``).  Shape ``(G, M)``: ``G = 1`` for LRU and
    S5 (``M = d_state``), ``G = d_model`` channels for S4D (``M = d_state / 2``).
    The index ``i`` follows the layer's own parameter order, so a mode keeps
    its identity while training.
    """
    from .convert import to_lti

    with torch.no_grad():
        lti = to_lti(layer)  # the layer's own (read-after-update) recurrence
        lam = lti.lam.to(torch.complex128)  # (G, M)
        b = torch.linalg.vector_norm(lti.B.to(torch.complex128), dim=2)  # (G, M)
        c = torch.linalg.vector_norm(lti.C.to(torch.complex128), dim=1)  # (G, M)
        return (b * c / (1.0 - lam.abs() ** 2)).real.to(torch.float64)


def _state_axes(layer: nn.Module) -> dict[str, int]:
    """For each state-sized parameter of ``layer``, the axis that indexes modes."""
    d = int(layer.d_state)
    step = _registry()[type(layer)].granularity
    a, b = layer._state_shapes(d), layer._state_shapes(d + step)
    axes = {}
    for name in a:
        diff = [i for i, (x, y) in enumerate(zip(a[name], b[name], strict=True)) if x != y]
        if len(diff) != 1:
            raise RuntimeError(f"cannot find the state axis of {name}: {a[name]} vs {b[name]}")
        axes[name] = diff[0]
    return axes


def _modal_choice(
    layer: nn.Module, order: int, selection: str, seed: tuple[int, int, int]
) -> torch.Tensor:
    """Indices of the complex modes to keep (sorted), for the ablation selections.

    ``order`` is the new ``d_state``; for S4D (``d_state / 2`` modes per
    channel) the same mode indices are kept in every channel, ranked by their
    mean dominance over channels.
    """
    scores = modal_scores(layer).mean(dim=0)  # (M,)
    M = int(scores.shape[0])
    keep_n = max(1, (order * M) // int(layer.d_state))
    if selection == "random":
        rng = np.random.default_rng(list(seed))
        idx = rng.choice(M, keep_n, replace=False)
    else:  # "largest": drop the most dominant modes, keep the least
        idx = np.argsort(scores.cpu().numpy(), kind="stable")[:keep_n]
    return torch.as_tensor(np.sort(idx), dtype=torch.long)


def _modal_truncate_(
    layer: nn.Module, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> None:
    """Keep only the complex modes ``keep`` of a diagonal layer, in place.

    Exact selection of the diagonal form's entries (and of the optimizer's
    per-parameter moments, which are indexed the same way).  Nothing changes
    when a new value would be non-finite.
    """
    axes = _state_axes(layer)
    per_mode = 2 if _registry()[type(layer)].granularity == 2 else 1  # S4D: 2 real states/mode
    new_d = per_mode * int(keep.numel())
    old = {n: getattr(layer, n) for n in axes}
    if optimizer is not None:
        check_rebindable(optimizer, old.values())  # before anything changes
    with torch.no_grad():
        vals = {n: p.detach().index_select(axes[n], keep.to(p.device)) for n, p in old.items()}
    if not all(bool(torch.isfinite(v).all()) for v in vals.values()):
        raise ValueError("a kept parameter is not finite")
    layer._resize_state_(new_d)
    with torch.no_grad():
        for n, v in vals.items():
            getattr(layer, n).copy_(v)
    if optimizer is not None:
        rebind_optimizer_(
            optimizer,
            old,
            {n: getattr(layer, n) for n in axes},
            moments=lambda name, t: _select(t, axes[name], old[name].shape, keep),
        )


def _select(t: torch.Tensor, axis: int, shape: torch.Size, keep: torch.Tensor) -> torch.Tensor:
    """The kept modes of optimizer state ``t`` along ``axis``; a factored statistic whose
    ``axis`` has size 1 (averaged over the modes, e.g. Adafactor's) is copied."""
    if t.shape[axis] != shape[axis]:
        return t.clone()
    return t.index_select(axis, keep.to(t.device)).clone()


def _resize_fresh(layer: nn.Module, d_state: int, optimizer: torch.optim.Optimizer) -> None:
    """Shrink a freshly built layer to ``d_state`` (values to be overwritten by a load)."""
    names = list(_state_axes(layer))
    old = {n: getattr(layer, n) for n in names}
    layer._resize_state_(d_state)
    rebind_optimizer_(optimizer, old, {n: getattr(layer, n) for n in names}, keep_state=False)


def _restart_ema(ema: nn.Module, model: nn.Module) -> None:
    """Restart an ``AveragedModel`` from ``model``'s current (reduced) weights.

    ``load_state_dict`` resizes the copy's layers (their size is saved state).
    """
    ema.module.load_state_dict(model.state_dict())
    ema.n_averaged.zero_()
