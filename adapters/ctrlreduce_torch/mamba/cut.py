"""Exact index cut of Hugging Face Mamba and Mamba2 models (``transformers``).

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
dropped states then stay at zero and add ``C[t, n] * 0`` to ``y``.  In float32
the logits agree bit for bit in most cases measured, and otherwise to about
one ulp (``5e-7`` relative): the CPU GEMM of the narrower ``x_proj`` (``R + 2r``
rows) may pick another kernel, with another summation order (seen for ``R +
2r < 12``).  Because ``B`` and ``C`` are shared by the ``d``
channels, each with its own ``A[c]``, no non-diagonal change of basis can be
written back into these parameters; a selection of indices is the only cut.

Mamba2 (``Mamba2Model``/``Mamba2ForCausalLM``; ``I`` inner size, ``G`` groups,
``H`` heads) keeps one scalar ``A`` per head and computes ``B``, ``C`` per group
through ``in_proj`` and a depthwise ``conv1d`` with bias::

    in_proj rows    [z (I) | x (I) | B (G N) | C (G N) | dt (H)]     B/C entry g N + n
    conv1d channels [x (I) | B (G N) | C (G N)]

The cut keeps, in every group, the ``in_proj`` rows and ``conv1d`` channels
(weight and bias) of the kept indices; ``A_log``, ``D``, ``dt_bias`` and the
norm have no state axis.  The cut model equals the full model with the
dropped ``B`` rows of ``in_proj`` *and* their ``conv1d`` bias set to zero
(``silu(0) = 0``).  ``mixer.conv_dim``, the ``conv1d`` channel counts and
``in_proj.out_features`` follow.

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
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "ctrlreduce_torch.mamba needs transformers>=5 (pip install 'ctrlreduce[mamba]')"
    ) from exc

__all__ = ["CutReport", "cut_mamba_", "find_mixers", "normalize_keep", "state_sizes"]

#: The mixer classes :func:`cut_mamba_` knows.
MIXERS = (MambaMixer, Mamba2Mixer)


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


@dataclass(frozen=True)
class _Slice:
    """Keep ``index`` along axis ``dim`` of the mixer's parameter at ``path``."""

    path: str
    dim: int
    index: torch.Tensor


def find_mixers(model: Any) -> tuple[tuple[str, nn.Module], ...]:
    """The Mamba mixers of ``model`` (``MambaMixer``, ``Mamba2Mixer``) with their names, in order.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module`` or holds no Mamba mixer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a transformers Mamba or Mamba2 model, got {seen(model)}"
        )
    mixers = tuple((n, m) for n, m in model.named_modules() if isinstance(m, MIXERS))
    if not mixers:
        raise TypeError(
            "model must be a transformers Mamba or Mamba2 model (a module holding MambaMixer "
            f"or Mamba2Mixer layers), got {type(model).__name__} with none"
        )
    return mixers


def _mixer_size(name: str, mixer: nn.Module) -> int:
    """``N`` of a mixer, after checking that its parameters have the documented layout."""
    if isinstance(mixer, MambaMixer):
        d, R = mixer.intermediate_size, mixer.time_step_rank
        A_log, W = mixer.A_log, mixer.x_proj.weight
        N = A_log.shape[-1] if A_log.dim() == 2 else -1
        if A_log.dim() != 2 or A_log.shape[0] != d or tuple(W.shape) != (R + 2 * N, d):
            raise ValueError(
                f"model: mixer {name} has A_log {tuple(A_log.shape)} and x_proj.weight "
                f"{tuple(W.shape)}; expected (d, N) and (R + 2N, d) with d = {d}, R = {R}"
            )
    else:
        I, G, H = mixer.intermediate_size, mixer.n_groups, mixer.num_heads
        conv = mixer.conv1d.weight.shape[0]
        N = (conv - I) // (2 * G)
        rows = mixer.in_proj.weight.shape[0]
        if conv != I + 2 * G * N or rows != I + conv + H or mixer.conv_dim != conv:
            raise ValueError(
                f"model: mixer {name} has in_proj.weight {tuple(mixer.in_proj.weight.shape)} "
                f"and conv1d.weight {tuple(mixer.conv1d.weight.shape)}; expected "
                f"(2 I + 2 G N + H, hidden) and (I + 2 G N, 1, K) with I = {I}, G = {G}, H = {H}"
            )
    if mixer.ssm_state_size != N:
        raise ValueError(
            f"model: mixer {name} has ssm_state_size {mixer.ssm_state_size} but its "
            f"parameters hold {N} states"
        )
    return N


def _slices(mixer: nn.Module, keep: torch.Tensor, N: int) -> list[_Slice]:
    """Which parameter entries of ``mixer`` a cut to ``keep`` keeps."""
    if isinstance(mixer, MambaMixer):
        R = mixer.time_step_rank
        rows = torch.cat([torch.arange(R), R + keep, R + N + keep])
        return [_Slice("A_log", 1, keep), _Slice("x_proj.weight", 0, rows)]
    I, G, H = mixer.intermediate_size, mixer.n_groups, mixer.num_heads
    per_group = torch.cat([g * N + keep for g in range(G)])  # B (or C) channel g N + n
    ch = torch.cat([torch.arange(I), I + per_group, I + G * N + per_group])
    conv = I + 2 * G * N
    rows = torch.cat([torch.arange(I), I + ch, I + conv + torch.arange(H)])
    out = [_Slice("in_proj.weight", 0, rows), _Slice("conv1d.weight", 0, ch)]
    if mixer.in_proj.bias is not None:
        out.append(_Slice("in_proj.bias", 0, rows))
    if mixer.conv1d.bias is not None:
        out.append(_Slice("conv1d.bias", 0, ch))
    return out


def _resize(mixer: nn.Module, r: int) -> None:
    """Set the size attributes of a mixer whose parameters were sliced to ``r`` states."""
    mixer.ssm_state_size = r
    if isinstance(mixer, MambaMixer):
        mixer.x_proj.out_features = mixer.x_proj.weight.shape[0]
    else:
        conv = mixer.conv1d.weight.shape[0]
        mixer.conv_dim = conv
        mixer.conv1d.in_channels = mixer.conv1d.out_channels = mixer.conv1d.groups = conv
        mixer.in_proj.out_features = mixer.in_proj.weight.shape[0]


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


def _check_finite(mixers: Sequence[tuple[str, nn.Module]]) -> None:
    for name, mixer in mixers:
        for pname, p in mixer.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                raise ValueError(
                    f"model has non-finite weights in {name}.{pname}; refusing to cut a "
                    "diverged model (nothing was changed)"
                )


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

    For each Mamba mixer (``d`` channels, ``N`` states, time-step rank ``R``)
    and its kept indices ``k`` (``r`` of them)::

        A_log          (d, N)        -> A_log[:, k]                         (d, r)
        x_proj.weight  (R + 2N, d)   -> x_proj.weight[[0..R-1, R + k, R + N + k]]
                                                                             (R + 2r, d)
        mixer.ssm_state_size = r;  config.state_size = r

    and for each Mamba2 mixer the ``in_proj`` rows and ``conv1d`` channels of
    ``B`` and ``C`` in every group (see the module notes).  The cut model's
    output equals the full model's with the dropped ``B`` rows set to zero.  A mixer whose
    ``k`` is all its states is left untouched (same Parameter objects), so
    keeping every state leaves the model, the optimizer and the forward pass
    bit-identical.

    Parameters
    ----------
    model : Mamba(2)Model or Mamba(2)ForCausalLM (any ``nn.Module`` holding their mixers)
        Changed in place: the sliced tensors of each changed mixer become new
        ``nn.Parameter`` objects (same dtype, device and ``requires_grad``; a
        present ``.grad`` is sliced alike).
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
        ``model`` holds no Mamba mixer; ``keep`` is not made of integers;
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
    plan = []  # (mixer name, mixer, slices) of the mixers that change
    for (name, mixer), k, N in zip(mixers, keeps, sizes, strict=True):
        if r == N and torch.equal(k, torch.arange(N)):
            continue
        plan.append((name, mixer, _slices(mixer, k, N)))
    if optimizer is not None:
        check_rebindable(
            optimizer, [m.get_parameter(s.path) for _, m, sl in plan for s in sl]
        )
    # everything checked: from here on nothing can fail half-way
    old_params: dict[str, nn.Parameter] = {}
    new_params: dict[str, nn.Parameter] = {}
    index_of: dict[str, _Slice] = {}
    for name, mixer, slices in plan:
        pre = f"{name}." if name else ""
        for sl in slices:
            owner, _, leaf = sl.path.rpartition(".")
            module = mixer.get_submodule(owner) if owner else mixer
            old = getattr(module, leaf)
            new = _sliced(old, sl.index, sl.dim)
            old_params[pre + sl.path], new_params[pre + sl.path] = old, new
            index_of[pre + sl.path] = sl
            setattr(module, leaf, new)
        _resize(mixer, r)
    configs = {id(m.config): m.config for _, m in mixers if hasattr(m, "config")}
    if getattr(model, "config", None) is not None:
        configs[id(model.config)] = model.config
    for cfg in configs.values():
        if hasattr(cfg, "state_size"):
            cfg.state_size = r
    n_rebound = 0
    if optimizer is not None and plan:

        def moments(pname: str, t: torch.Tensor) -> torch.Tensor:
            sl = index_of[pname]
            return t.index_select(sl.dim, sl.index.to(t.device)).clone()

        n_rebound = rebind_optimizer_(optimizer, old_params, new_params, moments=moments)
    changed_ids = {id(m) for _, m, _ in plan}
    return CutReport(
        layers=tuple(n for n, _ in mixers),
        old_sizes=tuple(sizes),
        new_size=r,
        keep=tuple(tuple(int(v) for v in k) for k in keeps),
        changed=tuple(id(m) in changed_ids for _, m in mixers),
        params_rebound=n_rebound,
    )
