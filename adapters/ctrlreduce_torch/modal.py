"""Modal truncation: keep a subset of a layer's diagonal modes, in place (sibling of ``reduce_``).

Glossary
--------
==========  ==========  =========================================================
``lam``     (G, M)      the layer's eigenvalues (:func:`ctrlreduce_torch.to_lti`)
``b_i``     (G, M)      ``||B[g, i, :]||``, the input norm of mode ``i``
``c_i``     (G, M)      ``||C[g, :, i]||``, the output norm of mode ``i``
``score``   (G, M)      ``|b_i| |c_i| / (1 - |lam_i|^2)``, the HSV of mode ``i``'s
                        own one-state system (its Gramians are
                        ``|b_i|^2 / (1 - |lam_i|^2)`` and ``|c_i|^2 / (1 - |lam_i|^2)``)
``keep``    (k,)        sorted indices of the modes kept, the same in every system
==========  ==========  =========================================================

Unlike :func:`ctrlreduce_torch.reduce_`, nothing is projected or
re-diagonalized: the kept modes' parameters (every state-sized parameter,
along the axis its family declares) and the optimizer's per-parameter moments
are selected exactly, so the layer computes exactly the sum of its kept
modes.  It needs only a :class:`~ctrlreduce_torch.LayerFamily` (index
selection), so it also applies to families that cannot take a balanced
change of basis.  Its error has no a-priori bound (``error_bound`` is
``None``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_int, seen
from ._layer import family_of
from ._lti import DiagonalLTI
from .convert import check_finite_parameters, to_lti
from .optim import check_rebindable, rebind_optimizer_
from .reduce import ReductionReport

__all__ = ["SELECTIONS", "choose_modes", "modal_scores", "modal_truncate_", "scores_of"]

#: How :func:`choose_modes` picks the modes to keep.
SELECTIONS = ("random", "largest")


def scores_of(lti: DiagonalLTI) -> torch.Tensor:
    """Mode dominance ``|b_i| |c_i| / (1 - |lam_i|^2)`` of a ``DiagonalLTI``, (G, M) float64."""
    lam = lti.lam.to(torch.complex128)
    b = torch.linalg.vector_norm(lti.B.to(torch.complex128), dim=2)  # (G, M)
    c = torch.linalg.vector_norm(lti.C.to(torch.complex128), dim=1)  # (G, M)
    return (b * c / (1.0 - lam.abs() ** 2)).real.to(torch.float64)


def modal_scores(layer: nn.Module) -> torch.Tensor:
    """Dominance of each complex mode of ``layer``: ``|b_i| |c_i| / (1 - |lam_i|^2)``, float64.

    Shape ``(G, M)``: ``G = 1`` for LRU and S5 (``M = d_state``),
    ``G = d_model`` channels for S4D (``M = d_state / 2``).  The index ``i``
    follows the layer's own parameter order, so a mode keeps its identity
    while training.
    """
    with torch.no_grad():
        return scores_of(to_lti(layer))


def choose_modes(
    scores: torch.Tensor, n_keep: int, selection: str, seed: tuple[int, ...] = (0,)
) -> torch.Tensor:
    """Sorted indices of ``n_keep`` modes to keep, the same in every system.

    ``scores`` (G, M) as :func:`scores_of` gives them.  ``"random"``: a
    uniformly random subset (NumPy generator seeded by ``seed``);
    ``"largest"``: the *least* dominant modes, dropping those with the
    largest mean score over the systems (the ablation of the compressor).
    """
    check_choice(selection, "selection", SELECTIONS)
    M = int(scores.shape[-1])
    n_keep = check_int(n_keep, "n_keep", minimum=1, maximum=M)
    if selection == "random":
        idx = np.random.default_rng(list(seed)).choice(M, n_keep, replace=False)
    else:
        mean = scores.reshape(-1, M).mean(dim=0).cpu().numpy()
        idx = np.argsort(mean, kind="stable")[:n_keep]
    return torch.as_tensor(np.sort(idx), dtype=torch.long)


def _check_keep(keep: Any, M: int) -> torch.Tensor:
    if not isinstance(keep, torch.Tensor) or keep.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"keep must be an integer tensor of mode indices, got {seen(keep)}")
    keep = keep.reshape(-1).to(torch.long).cpu()
    if keep.numel() < 1 or bool((keep < 0).any()) or bool((keep >= M).any()):
        raise ValueError(f"keep must hold between 1 and {M} mode indices in 0..{M - 1}")
    if bool((keep[1:] <= keep[:-1]).any()):
        raise ValueError("keep must be sorted and without repeats")
    return keep


def _select(t: torch.Tensor, axis: int, shape: torch.Size, keep: torch.Tensor) -> torch.Tensor:
    """The kept modes of optimizer state ``t`` along ``axis``; a factored statistic whose
    ``axis`` has size 1 (averaged over the modes, e.g. Adafactor's) is copied."""
    if t.shape[axis] != shape[axis]:
        return t.clone()
    return t.index_select(axis, keep.to(t.device)).clone()


def modal_truncate_(
    layer: nn.Module, keep: torch.Tensor, *, optimizer: torch.optim.Optimizer | None = None
) -> ReductionReport:
    """Keep only the modes ``keep`` of a diagonal layer, in place.

    Parameters
    ----------
    layer : LRU, S5, S4D, or any layer with a registered family
    keep : torch.Tensor of int
        Sorted, distinct mode indices in ``0..M-1`` (``M`` modes per system;
        the same modes are kept in every system).
    optimizer : torch.optim.Optimizer, keyword-only, optional
        Rebound in place; the moments of the resized parameters (and the flat
        state of ``LBFGS``) are sliced exactly along the kept modes.

    Returns
    -------
    ReductionReport
        ``method="modal"``, ``error_bound=None``, ``hsv=None``,
        ``realization_error=0.0`` (the selection is exact).

    Raises
    ------
    TypeError, ValueError
        Bad arguments, non-finite parameters, an optimizer whose state cannot
        follow, or a kept value that would be non-finite; nothing changed.
    """
    t0 = time.perf_counter()
    family = family_of(layer)
    check_finite_parameters(layer)
    M = family.n_modes(layer)
    keep = _check_keep(keep, M)
    axes = family.state_axes
    old = family.state_parameters(layer)
    if optimizer is not None:
        check_rebindable(optimizer, old.values())  # before anything changes
    old_order = family.d_state(layer)
    with torch.no_grad():
        vals = {n: p.detach().index_select(axes[n], keep.to(p.device)) for n, p in old.items()}
    if not all(bool(torch.isfinite(v).all()) for v in vals.values()):
        raise ValueError("a kept parameter is not finite")
    family.resize_(layer, family.states_per_mode * int(keep.numel()))
    with torch.no_grad():
        for n, v in vals.items():
            getattr(layer, n).copy_(v)
    n_rebound = 0
    if optimizer is not None:
        n_rebound = rebind_optimizer_(
            optimizer,
            old,
            family.state_parameters(layer),
            moments=lambda name, t: _select(t, axes[name], old[name].shape, keep),
        )
    return ReductionReport(
        old_order=old_order,
        new_order=family.d_state(layer),
        hsv=None,
        error_bound=None,
        applied=True,
        reason="",
        seconds=time.perf_counter() - t0,
        method="modal",
        realization_error=0.0,
        optimizer_params_rebound=n_rebound,
    )
