"""Exact index cut of Hugging Face Mamba models (``MambaModel``, ``MambaForCausalLM``).

Glossary (one mixer; ``d = intermediate_size``, ``N = state_size``, ``R = time_step_rank``)
------------------------------------------------------------------------------------------
=================  ==============  ===============================================
``A_log``           (d, N)          ``A = -exp(A_log)``, one real diagonal per channel
``x_proj.weight``   (R + 2N, d)     rows ``[dt | B | C]``, no bias
``dt_proj``         (d, R), (d,)    ``dt_t = softplus(W_dt x_proj(u_t)[:R] + b_dt)``
``D``               (d,)            skip term
``keep``            (r,)            kept state indices, ascending, ``0 <= k < N``
=================  ==============  ===============================================

Per channel ``c`` and token ``t`` the mixer scans (state read *after* the update)::

    h[t, c, n] = exp(dt[t, c] A[c, n]) h[t-1, c, n] + dt[t, c] B[t, n] u[t, c]
    y[t, c]    = sum_n C[t, n] h[t, c, n] + D[c] u[t, c]

with ``B[t] = x_proj.weight[R:R+N] u[t]`` and ``C[t] = x_proj.weight[R+N:] u[t]``
(``u`` is the mixer's signal after its causal convolution and activation).
The state is diagonal and ``B``, ``C``, ``dt`` depend on the input only, never
on ``h``: state ``n`` evolves on its own.  Keeping the indices ``keep`` is
therefore the slice::

    A_log          -> A_log[:, keep]                                 (d, r)
    x_proj.weight  -> x_proj.weight[[0..R-1] + (R + keep) + (R + N + keep)]
                                                                      (R + 2r, d)

and the cut model computes exactly what the full model computes with the
dropped ``B`` rows (``x_proj.weight[R + n]``, ``n`` not kept) set to zero: the
dropped states then stay at zero and add ``C[t, n] * 0`` to ``y``.  (In float
arithmetic the two agree to round-off of the reordered sums, not necessarily
bit for bit; see the tests.)  Because ``B`` and ``C`` are shared by the ``d``
channels, each with its own ``A[c]``, no non-diagonal change of basis can be
written back into these parameters; a selection of indices is the only cut.

Optimizer state of the sliced parameters (Adam's ``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, SGD's momentum, ...) is sliced along the same kept
coordinates, exactly; scalars (``step``) are copied.  ``mixer.ssm_state_size``
and ``config.state_size`` are set to ``r``; the cache of generation takes its
shapes from the tensors, so ``generate``, ``save_pretrained`` and
``from_pretrained`` keep working.  ``from_pretrained`` builds every layer with
``config.state_size``, so every layer must keep the same number ``r`` of
states (the kept indices may differ between layers).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import seen
from ..optim import check_rebindable, rebind_optimizer_

try:
    from transformers.models.mamba.modeling_mamba import MambaMixer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ctrlreduce_torch.mamba needs transformers>=5 (pip install 'ctrlreduce[mamba]')"
    ) from exc

__all__ = ["CutReport", "cut_mamba_", "find_mixers", "normalize_keep", "state_sizes"]


@dataclass(frozen=True)
class CutReport:
    """What :func:`cut_mamba_` did.

    Attributes
    ----------
    layers : tuple of str
        Qualified names of the mixers, in model order.
    old_sizes : tuple of int
        State size ``N`` of each mixer before the cut.
    new_size : int
        ``r``, the state size of every mixer after the cut.
    keep : tuple of tuple of int
        Kept indices per mixer (ascending, into the old states).
    changed : tuple of bool
        Whether each mixer was changed (``False`` when it kept all its states:
        its Parameters, optimizer state and forward pass are untouched).
    params_rebound : int
        Optimizer ``param_groups`` slots moved to new Parameters.
    """

    layers: tuple[str, ...]
    old_sizes: tuple[int, ...]
    new_size: int
    keep: tuple[tuple[int, ...], ...]
    changed: tuple[bool, ...]
    params_rebound: int


def find_mixers(model: Any) -> tuple[tuple[str, MambaMixer], ...]:
    """The ``MambaMixer`` modules of ``model``, with their qualified names, in model order.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module`` or holds no ``MambaMixer``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a transformers MambaModel or MambaForCausalLM, got {seen(model)}"
        )
    mixers = tuple((n, m) for n, m in model.named_modules() if isinstance(m, MambaMixer))
    if not mixers:
        raise TypeError(
            "model must be a transformers MambaModel or MambaForCausalLM (a module holding "
            f"MambaMixer layers), got {type(model).__name__} with none"
        )
    return mixers


def _mixer_size(name: str, mixer: MambaMixer) -> int:
    """``N`` of a mixer, after checking that its parameters have the documented layout."""
    d, R = mixer.intermediate_size, mixer.time_step_rank
    A_log, W = mixer.A_log, mixer.x_proj.weight
    N = A_log.shape[-1] if A_log.dim() == 2 else -1
    if A_log.dim() != 2 or A_log.shape[0] != d or tuple(W.shape) != (R + 2 * N, d):
        raise ValueError(
            f"model: mixer {name} has A_log {tuple(A_log.shape)} and x_proj.weight "
            f"{tuple(W.shape)}; expected (d, N) and (R + 2N, d) with d = {d}, R = {R}"
        )
    if mixer.ssm_state_size != N:
        raise ValueError(
            f"model: mixer {name} has ssm_state_size {mixer.ssm_state_size} but A_log has "
            f"{N} states"
        )
    return N


def state_sizes(model: Any) -> tuple[int, ...]:
    """State size ``N`` of every mixer of ``model``, in model order."""
    return tuple(_mixer_size(n, m) for n, m in find_mixers(model))


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _as_index_rows(keep: Any, n_layers: int) -> list[Any]:
    """``keep`` as one row of indices per layer (rows not yet checked)."""
    if isinstance(keep, (torch.Tensor, np.ndarray)):
        kind = keep.dtype
        integral = (
            not keep.dtype.is_floating_point and not keep.dtype.is_complex
            and keep.dtype != torch.bool
            if isinstance(keep, torch.Tensor)
            else np.issubdtype(keep.dtype, np.integer)
        )
        if not integral:
            raise TypeError(f"keep must hold integer indices, got an array of dtype {kind}")
        if keep.ndim == 1:
            return [keep.tolist()] * n_layers
        if keep.ndim == 2:
            return [row.tolist() for row in keep]
        raise ValueError(
            f"keep must be 1-D (the same indices for every layer) or 2-D (one row per "
            f"layer), got shape {tuple(keep.shape)}"
        )
    if isinstance(keep, Sequence) and not isinstance(keep, (str, bytes)):
        items = list(keep)
        if all(_is_int(v) for v in items):
            return [items] * n_layers
        if all(
            isinstance(v, (Sequence, torch.Tensor, np.ndarray)) and not isinstance(v, (str, bytes))
            for v in items
        ):
            rows = []
            for i, v in enumerate(items):
                row = v.tolist() if isinstance(v, (torch.Tensor, np.ndarray)) else list(v)
                if isinstance(v, (torch.Tensor, np.ndarray)) and (
                    v.ndim != 1 or not all(_is_int(x) for x in row)
                ):
                    raise TypeError(f"keep[{i}] must be a 1-D sequence of ints, got {seen(v)}")
                rows.append(row)
            return rows
    raise TypeError(
        "keep must be a sequence of ints (the same indices for every layer) or one such "
        f"sequence per layer, got {seen(keep)}"
    )


def normalize_keep(keep: Any, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Check ``keep`` against the layers' state sizes; one ascending int64 tensor per layer.

    Parameters
    ----------
    keep : sequence of int, or sequence of sequences of int, or int tensor (1-D or 2-D)
        The kept indices: one set for every layer, or one set per layer.
    sizes : sequence of int
        ``N`` of each layer.

    Returns
    -------
    list of Tensor, each shape (r,), int64, CPU
        The kept indices of each layer, sorted ascending; the same ``r`` for all.

    Raises
    ------
    TypeError
        ``keep`` is not made of integers.
    ValueError
        Wrong number of rows, an index out of ``[0, N)`` (negative included), a
        duplicate, an empty set, or sets of different sizes; the message names
        ``keep`` (and the row, ``keep[i]``, when per layer).
    """
    rows = _as_index_rows(keep, len(sizes))
    per_layer = not (len(rows) == len(sizes) and all(r is rows[0] for r in rows))
    if len(rows) != len(sizes):
        raise ValueError(
            f"keep must have one row per layer ({len(sizes)} layers), got {len(rows)} rows"
        )
    out = []
    for i, (row, N) in enumerate(zip(rows, sizes, strict=True)):
        name = f"keep[{i}]" if per_layer else "keep"
        for v in row:
            if not _is_int(v):
                raise TypeError(f"{name} must hold ints, got {seen(v)}")
        r = len(row)
        if not 1 <= r <= N:
            raise ValueError(
                f"{name} must keep between 1 and N = {N} states (r out of range), got r = {r}"
            )
        bad = [int(v) for v in row if not 0 <= int(v) < N]
        if bad:
            raise ValueError(f"{name} must hold indices in 0..{N - 1}, got {bad[:5]}")
        if len(set(int(v) for v in row)) != r:
            raise ValueError(f"{name} must not repeat an index, got {seen(row)}")
        out.append(torch.tensor(sorted(int(v) for v in row), dtype=torch.int64))
    rs = sorted({len(k) for k in out})
    if len(rs) > 1:
        raise ValueError(
            "keep must keep the same number of states in every layer (config.state_size is "
            f"one number, and from_pretrained builds every layer with it), got sizes "
            f"{[len(k) for k in out]}"
        )
    return out


def _check_finite(mixers: Sequence[tuple[str, MambaMixer]]) -> None:
    for name, mixer in mixers:
        for pname, p in mixer.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                raise ValueError(
                    f"model has non-finite weights in {name}.{pname}; refusing to cut a "
                    "diverged model (nothing was changed)"
                )


def _x_proj_rows(keep: torch.Tensor, R: int, N: int) -> torch.Tensor:
    """Row indices of ``x_proj.weight`` kept: ``[0..R-1, R + keep, R + N + keep]``."""
    return torch.cat([torch.arange(R), R + keep, R + N + keep])


def _sliced(p: nn.Parameter, index: torch.Tensor, dim: int) -> nn.Parameter:
    """A new Parameter ``p[index]`` along ``dim`` (gradient sliced alike when present)."""
    index = index.to(p.device)
    new = nn.Parameter(p.detach().index_select(dim, index).clone(), requires_grad=p.requires_grad)
    if p.grad is not None:
        new.grad = p.grad.detach().index_select(dim, index).clone()
    return new


def cut_mamba_(
    model: nn.Module,
    keep: Any,
    optimizer: torch.optim.Optimizer | None = None,
) -> CutReport:
    """Keep the state indices ``keep`` in every Mamba mixer of ``model``, in place.

    For each mixer (``d`` channels, ``N`` states, time-step rank ``R``) and
    its kept indices ``k`` (``r`` of them)::

        A_log          (d, N)        -> A_log[:, k]                         (d, r)
        x_proj.weight  (R + 2N, d)   -> x_proj.weight[[0..R-1, R + k, R + N + k]]
                                                                             (R + 2r, d)
        mixer.ssm_state_size = r;  config.state_size = r

    The cut model's output equals the full model's with the dropped ``B``
    rows of ``x_proj`` set to zero (see the module notes).  A mixer whose
    ``k`` is all its states is left untouched (same Parameter objects), so
    keeping every state leaves the model, the optimizer and the forward pass
    bit-identical.

    Parameters
    ----------
    model : MambaModel or MambaForCausalLM (any ``nn.Module`` holding ``MambaMixer``)
        Changed in place: the two sliced tensors of each changed mixer become
        new ``nn.Parameter`` objects (same dtype, device and
        ``requires_grad``; a present ``.grad`` is sliced alike).
    keep : sequence of int, sequence of sequences of int, or int tensor
        Kept state indices: one set used for every layer, or one set per
        layer (model order, see :func:`find_mixers`).  Every layer must keep
        the same number ``1 <= r <= N`` of distinct indices.  Order does not
        matter; the kept states stay in ascending order.
    optimizer : torch.optim.Optimizer, optional
        Rebound in place to the new Parameters: every per-parameter state
        tensor laid out along the parameter (``exp_avg``, ``exp_avg_sq``,
        ``max_exp_avg_sq``, ``momentum_buffer``) is sliced along the kept
        coordinates, exactly; scalars such as ``step`` are copied.  Parameters
        not touched keep their object and state.

    Returns
    -------
    CutReport

    Raises
    ------
    TypeError
        ``model`` holds no ``MambaMixer``; ``keep`` is not made of integers;
        ``optimizer`` is not an optimizer.
    ValueError
        ``keep`` out of range, repeated, empty, of unequal sizes or of the
        wrong number of rows; non-finite weights in a mixer; an unexpected
        parameter layout; optimizer state that cannot be sliced.  All checks
        run before anything changes: on an error the model and the optimizer
        are untouched.

    Examples
    --------
    >>> import torch
    >>> from transformers import MambaConfig, MambaForCausalLM
    >>> from ctrlreduce_torch.mamba import cut_mamba_
    >>> model = MambaForCausalLM(MambaConfig(vocab_size=16, hidden_size=16, state_size=8,
    ...                                      num_hidden_layers=2))
    >>> report = cut_mamba_(model, [0, 3, 5])
    >>> model.config.state_size, tuple(model.backbone.layers[0].mixer.A_log.shape)
    (3, (32, 3))
    """
    mixers = find_mixers(model)
    sizes = [_mixer_size(n, m) for n, m in mixers]
    keeps = normalize_keep(keep, sizes)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {seen(optimizer)}")
    _check_finite(mixers)
    r = len(keeps[0])
    prefix = {id(m): n for n, m in mixers}
    plan = []  # (mixer name, mixer, keep, rows) of the mixers that change
    for (name, mixer), k, N in zip(mixers, keeps, sizes, strict=True):
        if r == N and torch.equal(k, torch.arange(N)):
            continue
        plan.append((name, mixer, k, _x_proj_rows(k, mixer.time_step_rank, N)))
    if optimizer is not None:
        check_rebindable(
            optimizer, [p for _, m, _, _ in plan for p in (m.A_log, m.x_proj.weight)]
        )
    # everything checked: from here on nothing can fail half-way
    old_params: dict[str, nn.Parameter] = {}
    new_params: dict[str, nn.Parameter] = {}
    index_of: dict[str, tuple[torch.Tensor, int]] = {}
    for name, mixer, k, rows in plan:
        pre = f"{name}." if name else ""
        new_A = _sliced(mixer.A_log, k, 1)
        new_W = _sliced(mixer.x_proj.weight, rows, 0)
        old_params[pre + "A_log"] = mixer.A_log
        old_params[pre + "x_proj.weight"] = mixer.x_proj.weight
        new_params[pre + "A_log"] = new_A
        new_params[pre + "x_proj.weight"] = new_W
        index_of[pre + "A_log"] = (k, 1)
        index_of[pre + "x_proj.weight"] = (rows, 0)
        mixer.A_log = new_A
        mixer.x_proj.weight = new_W
        mixer.x_proj.out_features = new_W.shape[0]
        mixer.ssm_state_size = r
    configs = {id(m.config): m.config for _, m in mixers}
    if getattr(model, "config", None) is not None:
        configs[id(model.config)] = model.config
    for cfg in configs.values():
        if hasattr(cfg, "state_size"):
            cfg.state_size = r
    n_rebound = 0
    if optimizer is not None and plan:

        def moments(pname: str, t: torch.Tensor) -> torch.Tensor:
            index, dim = index_of[pname]
            return t.index_select(dim, index.to(t.device)).clone()

        n_rebound = rebind_optimizer_(optimizer, old_params, new_params, moments=moments)
    changed_ids = {id(m) for _, m, _, _ in plan}
    return CutReport(
        layers=tuple(prefix[id(m)] for _, m in mixers),
        old_sizes=tuple(sizes),
        new_size=r,
        keep=tuple(tuple(int(v) for v in k) for k in keeps),
        changed=tuple(id(m) in changed_ids for _, m in mixers),
        params_rebound=n_rebound,
    )
