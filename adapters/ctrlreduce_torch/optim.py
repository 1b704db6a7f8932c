"""Optimizer surgery: rebinding an optimizer to parameters that were replaced in place.

When a reduction changes the shape of a layer's parameters, new
``nn.Parameter`` objects take the old ones' places in the module.  The
optimizer object (and so every LR scheduler and trainer that holds it) stays
the same; only its ``param_groups`` slots and per-parameter ``state`` move.

State layouts
-------------
=========================  =====================================================
per-parameter tensors       shaped like the parameter (SGD's momentum, Adam's
                            moments, Rprop, Adagrad, ...) or *factored* along
                            its axes (every axis of the parameter's size or 1,
                            e.g. Adafactor's ``row_var``/``col_var``): moved by
                            ``moments`` (default: zeros of the new shape)
scalars                     copied (step counts go on)
``torch.optim.LBFGS``       one *flat* state for all its parameters (the
                            direction ``d``, ``prev_flat_grad`` and the
                            curvature pairs ``old_dirs``/``old_stps``, each a
                            concatenation over the parameters in order):
                            restarted (default) or sliced exactly along the
                            kept entries (with ``moments``); see
                            :func:`rebind_optimizer_`
anything else               refused up front by :func:`check_rebindable`
                            (``ValueError`` naming the optimizer; nothing changed)
=========================  =====================================================
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._checks import check_bool, seen

__all__ = ["check_rebindable", "rebind_optimizer_"]

#: LBFGS keeps a curvature pair only when ``y . s`` exceeds this (its own test).
_LBFGS_MIN_YS = 1e-10


def _follows(shape: tuple[int, ...], pshape: tuple[int, ...]) -> bool:
    """Whether a state tensor of ``shape`` is laid out along the parameter's axes."""
    if len(shape) != len(pshape):
        return False
    return all(s in (q, 1) for s, q in zip(shape, pshape, strict=True))


def _new_shape(shape, old_shape, new_shape) -> tuple[int, ...]:  # noqa: ANN001
    """A factored/param-shaped state's shape for the new parameter (axes of size 1 stay 1)."""
    return tuple(n if s == o else s for s, o, n in zip(shape, old_shape, new_shape, strict=True))


def _has_tensor(val: Any) -> bool:
    if torch.is_tensor(val):
        return val.dim() > 0
    if isinstance(val, (list, tuple)):
        return any(_has_tensor(v) for v in val)
    if isinstance(val, dict):
        return any(_has_tensor(v) for v in val.values())
    return False


def check_rebindable(optimizer: Any, params: Iterable[torch.nn.Parameter]) -> None:
    """Refuse, touching nothing, an optimizer whose state of ``params`` cannot be moved.

    :func:`rebind_optimizer_` carries per-parameter tensors shaped like the
    parameter or factored along its axes, scalars, and the flat state of
    :class:`torch.optim.LBFGS`.  Any other tensor state (a flat vector of a
    custom optimizer, tensors inside lists) has no known layout to resize.

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``torch.optim.Optimizer``.
    ValueError
        Some state cannot be carried; the message names the optimizer class,
        the state key and the shapes.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {seen(optimizer)}")
    if isinstance(optimizer, torch.optim.LBFGS):
        return
    kind = type(optimizer).__name__
    for p in params:
        st = optimizer.state.get(p)
        if not st:
            continue
        for key, val in st.items():
            if torch.is_tensor(val):
                if val.dim() == 0 or _follows(tuple(val.shape), tuple(p.shape)):
                    continue
                what = f"a tensor of shape {tuple(val.shape)}"
            elif _has_tensor(val):
                what = f"a {type(val).__name__} holding tensors"
            else:
                continue
            raise ValueError(
                f"optimizer {kind} keeps state {key!r} as {what} for a parameter of shape "
                f"{tuple(p.shape)}; it cannot be carried across a change of d_state (supported: "
                "tensors shaped like the parameter or factored along its axes, scalars, and "
                "torch.optim.LBFGS); nothing was changed"
            )


def _check_params(value: Any, name: str) -> Mapping[str, torch.nn.Parameter]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of names to Parameters, got {seen(value)}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(
                f"{name} must map names (str) to Parameters, got {seen(k)} -> {seen(v)}"
            )
    return value


def rebind_optimizer_(
    optimizer: torch.optim.Optimizer,
    old_params: Mapping[str, torch.nn.Parameter],
    new_params: Mapping[str, torch.nn.Parameter],
    *,
    moments: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    keep_state: bool = True,
) -> int:
    """Rebind ``optimizer`` in place from ``old_params`` to ``new_params`` (matched by name).

    For every name whose Parameter object changed, each occurrence of the old
    object in ``optimizer.param_groups`` is replaced, at the same position, by
    the new one, and its per-parameter state is moved over:

    * tensors laid out along the parameter's axes (momentum buffers, Adam's
      ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``, and factored statistics
      such as Adafactor's ``row_var``/``col_var``, whose axes have the
      parameter's size or 1) become ``moments(name, tensor)``; by default
      they are **reset to zeros** of the new shape: after a change of basis
      and size, the old moments describe coordinates that no longer exist (a
      selection of states, as in modal truncation, can instead slice them);
    * scalar entries, in particular Adam's ``step``, are **copied**, so step
      counts (and hence bias corrections and anything keyed on them) go on.

    :class:`torch.optim.LBFGS` keeps one flat state for all its parameters.
    By default it is **restarted**: the history (``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``) is
    dropped and ``n_iter`` set to 0, so the next ``step(closure)`` is exactly
    that of a fresh LBFGS on the new parameters (``func_evals`` goes on).
    With ``moments`` (a selection of states), every flat vector is split
    into the parameters' blocks, the changed blocks are passed through
    ``moments`` and the vector is joined again: an exact slice along the
    kept entries; ``ro = 1 / (y . s)`` and ``H_diag`` are recomputed from
    the sliced pairs, and a pair whose ``y . s`` is no longer above LBFGS's
    own threshold (1e-10) is dropped.

    With ``keep_state=False`` the old parameters' state is dropped instead
    (for a freshly built model about to receive a saved optimizer state).
    Parameters whose object did not change (e.g. ``D``, or any parameter whose
    shape the reduction does not touch) keep identity and state.

    Returns
    -------
    int
        Number of param_group slots rebound.

    Raises
    ------
    TypeError
        Arguments of the wrong type.
    ValueError
        Per-parameter state of another layout (see :func:`check_rebindable`);
        raised before anything is changed.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {seen(optimizer)}")
    _check_params(old_params, "old_params")
    _check_params(new_params, "new_params")
    if moments is not None and not callable(moments):
        raise TypeError(f"moments must be callable or None, got {seen(moments)}")
    check_bool(keep_state, "keep_state")
    changed = {}
    for name, old in old_params.items():
        new = new_params.get(name)
        if new is not None and new is not old:
            changed[name] = (old, new)
    if isinstance(optimizer, torch.optim.LBFGS):
        return _rebind_lbfgs(optimizer, changed, moments, keep_state)
    if keep_state:
        check_rebindable(optimizer, [old for old, _ in changed.values()])
    n = 0
    for name, (old, new) in changed.items():
        hit = False
        for group in optimizer.param_groups:
            params = group["params"]
            for i, q in enumerate(params):
                if q is old:
                    params[i] = new
                    n += 1
                    hit = True
        st = optimizer.state.pop(old, None) if hit else None
        if st is None or not keep_state:
            continue
        moved: dict[str, Any] = {}
        for key, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0 and _follows(val.shape, old.shape):
                if moments is None:
                    shape = _new_shape(val.shape, old.shape, new.shape)
                    moved[key] = torch.zeros(shape, dtype=val.dtype, device=val.device)
                else:
                    moved[key] = moments(name, val)
            elif torch.is_tensor(val):
                moved[key] = val.clone()
            else:
                moved[key] = copy.deepcopy(val)
        optimizer.state[new] = moved
    return n


def _rebind_lbfgs(
    optimizer: torch.optim.LBFGS,
    changed: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]],
    moments: Callable[[str, torch.Tensor], torch.Tensor] | None,
    keep_state: bool,
) -> int:
    """LBFGS: rebind its one param group and restart or slice its flat state."""
    params = optimizer.param_groups[0]["params"]  # LBFGS has exactly one group
    before = list(params)
    state = optimizer.state.pop(before[0], None) if before else None
    n = 0
    for old, new in changed.values():
        for i, q in enumerate(params):
            if q is old:
                params[i] = new
                n += 1
    optimizer._numel_cache = None  # LBFGS caches the total number of entries
    if not state or not keep_state or n == 0:
        if state and keep_state:
            optimizer.state[params[0]] = state
        return n
    if moments is None:
        new_state: dict[str, Any] = {"func_evals": state.get("func_evals", 0), "n_iter": 0}
    else:
        new_state = _slice_lbfgs_state(state, before, changed, moments)
    optimizer.state[params[0]] = new_state
    return n


def _slice_lbfgs_state(state, before, changed, moments) -> dict[str, Any]:  # noqa: ANN001
    name_of = {id(old): name for name, (old, _) in changed.items()}
    sizes = [p.numel() for p in before]

    def flat(vec: torch.Tensor) -> torch.Tensor:
        parts = []
        for p, chunk in zip(before, torch.split(vec, sizes), strict=True):
            name = name_of.get(id(p))
            if name is not None:
                chunk = moments(name, chunk.view(p.shape)).reshape(-1)
            parts.append(chunk)
        return torch.cat(parts)

    out = dict(state)
    for key in ("d", "prev_flat_grad"):
        if torch.is_tensor(state.get(key)):
            out[key] = flat(state[key])
    if "old_dirs" in state:
        dirs, stps, ro = [], [], []
        H_diag: Any = 1  # LBFGS's value before any pair; else from the last kept pair
        for y, s in zip(state["old_dirs"], state["old_stps"], strict=True):
            y, s = flat(y), flat(s)
            ys = y.dot(s)
            if ys > _LBFGS_MIN_YS:
                dirs.append(y)
                stps.append(s)
                ro.append(1.0 / ys)
                H_diag = ys / y.dot(y)
        out.update(old_dirs=dirs, old_stps=stps, ro=ro, H_diag=H_diag)
    return out
