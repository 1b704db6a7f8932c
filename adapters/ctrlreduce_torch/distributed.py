"""Data-parallel training with CompreSSM: agreeing on cuts, and rewrapping DDP.

Every rank must make the same cut at the same step and end with identical
shapes and weights.  :class:`ctrlreduce_torch.Compressor` (with
``torch.distributed`` initialized and more than one rank) does this in three
steps at each cut:

1. rank 0 computes the new orders from its HSVs and broadcasts them
   (:func:`broadcast_object`), so every rank asks for the same sizes;
2. every rank reduces its own copy (the copies are equal, since DDP keeps the
   parameters in sync);
3. :func:`sync_after_cut` checks that every rank ended with the same sizes
   (a ``RuntimeError`` otherwise) and broadcasts the reduced layers'
   parameters from rank 0, so that round-off differences cannot drift apart.

``DistributedDataParallel`` registers its gradient buckets on the parameter
objects it was built with; after a cut replaces them the wrapper must be
built again::

    loss.backward(); optimizer.step()
    if compressor.step():          # True when a shape changed
        model = rewrap(model)      # same options, new parameters
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["broadcast_object", "rewrap", "sync_after_cut"]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sync_after_cut(layers: Sequence[nn.Module], changed: bool) -> bool:
    """Check that all ranks agree on the layers' sizes, then broadcast their parameters.

    Returns ``True`` when any rank changed a shape (then all did).  Raises
    ``RuntimeError`` when the ranks disagree on sizes.
    """
    dims = [int(m.d_state) for m in layers]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (dims, bool(changed)))
    if any(g[0] != dims for g in gathered):
        seen = [g[0] for g in gathered]
        raise RuntimeError(f"ranks disagree on the SSM sizes after a cut: {seen}")
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                dist.broadcast(p.data, src=0)
            for b in layer.buffers():
                dist.broadcast(b.data, src=0)
    return any(g[1] for g in gathered)


def rewrap(ddp: DistributedDataParallel, **overrides: Any) -> DistributedDataParallel:
    """A new ``DistributedDataParallel`` around ``ddp.module`` with the same options.

    ``overrides`` replace constructor arguments (``device_ids``,
    ``output_device``, ``broadcast_buffers`` (passed on only when
    ``False``), ``find_unused_parameters``,
    ``process_group``, ``gradient_as_bucket_view``, ``static_graph``).
    """
    if not isinstance(ddp, DistributedDataParallel):
        raise TypeError(f"ddp must be a DistributedDataParallel, got {type(ddp).__name__}")
    kwargs: dict[str, Any] = {
        "device_ids": ddp.device_ids,
        "output_device": ddp.output_device,
        "find_unused_parameters": ddp.find_unused_parameters,
        "process_group": ddp.process_group,
        "gradient_as_bucket_view": ddp.gradient_as_bucket_view,
        "static_graph": getattr(ddp, "static_graph", False),
    }
    if not getattr(ddp, "broadcast_buffers", True):
        # only the non-default is passed on: the keyword is deprecated in
        # recent torch, but still the way to keep buffers rank-local
        kwargs["broadcast_buffers"] = False
    kwargs.update(overrides)
    return DistributedDataParallel(ddp.module, **kwargs)
