"""Optimizer surgery: rebinding an optimizer to parameters that were replaced in place.

When a reduction changes the shape of a layer's parameters, new
``nn.Parameter`` objects take the old ones' places in the module.  The
optimizer object (and so every LR scheduler and trainer that holds it) stays
the same; only its ``param_groups`` slots and per-parameter ``state`` move.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["rebind_optimizer_"]


def rebind_optimizer_(
    optimizer: torch.optim.Optimizer,
    old_params: dict[str, torch.nn.Parameter],
    new_params: dict[str, torch.nn.Parameter],
    *,
    moments: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    keep_state: bool = True,
) -> int:
    """Rebind ``optimizer`` in place from ``old_params`` to ``new_params`` (matched by name).

    For every name whose Parameter object changed, each occurrence of the old
    object in ``optimizer.param_groups`` is replaced, at the same position, by
    the new one, and its per-parameter state is moved over:

    * tensors shaped like the parameter (momentum buffers, Adam's
      ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``) become
      ``moments(name, tensor)``; by default they are **reset to zeros** of
      the new shape: after a change of basis and size, the old moments
      describe coordinates that no longer exist (a selection of states, as in
      modal truncation, can instead slice them);
    * scalar entries, in particular Adam's ``step``, are **copied**, so step
      counts (and hence bias corrections and anything keyed on them) go on.

    With ``keep_state=False`` the old parameters' state is dropped instead
    (for a freshly built model about to receive a saved optimizer state).
    Parameters whose object did not change (e.g. ``D``, or any parameter whose
    shape the reduction does not touch) keep identity and state.

    Returns
    -------
    int
        Number of param_group slots rebound.
    """
    n = 0
    for name, old in old_params.items():
        new = new_params.get(name)
        if new is None or new is old:
            continue
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
            if torch.is_tensor(val) and val.dim() > 0 and val.shape == old.shape:
                if moments is None:
                    moved[key] = torch.zeros(new.shape, dtype=val.dtype, device=val.device)
                else:
                    moved[key] = moments(name, val)
            elif torch.is_tensor(val):
                moved[key] = val.clone()
            else:
                moved[key] = copy.deepcopy(val)
        optimizer.state[new] = moved
    return n
