"""Rank policies of the compressor: pure functions of HSVs, testable without a model.

Glossary
--------
=================  ==========================================================
``hsv``            ``(G, per N)`` float64, rows descending: the HSVs of one
                   layer's ``G`` systems (one for LRU/S5, one per channel
                   for S4D), ``per`` of them per complex mode (1 for the
                   complex system the compressor ranks by, 2 for the real map)
``r``              complex modes kept per system, ``0..N``; the layer's
                   ``d_state`` is ``states_per_mode * r``
``E(r)``           energy kept: ``min_g sum(hsv[g, :per r]) / sum(hsv[g])``
``bounds[r]``      the a-priori bound ``max_g 2 sum(hsv[g, per r:])``
                   (:func:`ctrlreduce_torch._bt.bound_curve`)
``T, W, a``        total steps, ``floor(window * T)``, attempts
=================  ==========================================================

The energy of a layer is the **sum of its HSVs** (not of their squares), so
that the discarded energy is proportional to the a-priori error bound:
``1 - E_g(r) = (2 sum_{i >= per r} hsv[g, i]) / (2 sum_i hsv[g, i])``.  For a
layer of several systems sharing one size, a cut must satisfy every system:
``E(r) = min_g E_g(r)``.

Every function returns a number of *modes*; the compressor turns it into a
``d_state`` with the layer family's ``states_per_mode``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from ._checks import check_int, check_real

__all__ = [
    "cut_steps",
    "kept_energy",
    "modes_for_budget",
    "modes_for_tau",
    "modes_for_tol",
]

#: Round-off allowance of the cumulative sums in :func:`modes_for_tau`.
_TAU_SLACK = 1e-12


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
    if steps[0] < 1 or len(set(steps)) != attempts:
        raise ValueError(
            f"window * total_steps = {window} * {total_steps} = {W} steps cannot hold "
            f"attempts={attempts} distinct cut steps"
        )
    return steps


def kept_energy(hsv: np.ndarray, per: int = 1) -> np.ndarray:
    """``E(r)`` for ``r = 0..N``: the smallest fraction of HSV sum kept over the systems.

    Shape ``(N + 1,)``, non-decreasing, ``E(0) = 0``, ``E(N) = 1`` (0 for a
    layer with a system whose HSVs are all zero: it keeps no energy, and the
    tau rule leaves it alone).
    """
    hsv = np.atleast_2d(np.asarray(hsv, dtype=np.float64))
    total = hsv.sum(axis=1, keepdims=True)  # (G, 1)
    total = np.where(total > 0, total, 1.0)
    csum = np.concatenate([np.zeros((hsv.shape[0], 1)), np.cumsum(hsv, axis=1)], axis=1)
    return (csum / total)[:, ::per].min(axis=0)


def modes_for_tau(energy: np.ndarray, tau: float) -> int:
    """``tau`` rule: the fewest modes ``r >= 1`` with ``E(r) >= 1 - tau`` (``N`` if none).

    ``energy`` is :func:`kept_energy`; a slack of ``1e-12`` absorbs the
    round-off of its cumulative sums.
    """
    N = len(energy) - 1
    ok = np.nonzero(np.asarray(energy)[1:] >= 1.0 - tau - _TAU_SLACK)[0]
    return int(ok[0]) + 1 if ok.size else N


def modes_for_tol(bounds: np.ndarray, tol: float) -> int:
    """``tol`` rule: the fewest modes ``r >= 1`` whose bound ``bounds[r] <= tol`` (``N`` if none).

    ``bounds`` is the bound curve (``bounds[N] = 0``), non-increasing: this is
    the largest cut whose a-priori H-infinity bound stays within ``tol``.
    """
    N = len(bounds) - 1
    ok = np.nonzero(np.asarray(bounds)[1:] <= tol)[0]
    return int(ok[0]) + 1 if ok.size else N


def modes_for_budget(
    energies: Sequence[np.ndarray],
    states_per_mode: Sequence[int],
    current: Sequence[int],
    budget: int,
) -> list[int]:
    """Global allocation of a ``d_state`` budget over layers, greedy in normalized energy.

    Parameters
    ----------
    energies : sequence of (N_l + 1,) arrays
        :func:`kept_energy` of each layer (normalized by the layer's own HSV
        sum, which makes layers with different gains comparable).
    states_per_mode : sequence of int
        ``d_state`` units per mode of each layer.
    current : sequence of int
        Each layer's current number of modes (never exceeded).
    budget : int
        Total ``d_state`` to hand out.

    Returns
    -------
    list of int
        Modes per layer: every layer starts at one mode (or its current
        number, if smaller), then the next mode repeatedly goes to the layer
        whose energy grows most per unit of ``d_state``, while the budget
        allows.
    """
    modes = [min(1, c) for c in current]
    left = budget - sum(k * r for k, r in zip(states_per_mode, modes, strict=True))
    heap: list[tuple[float, int]] = []

    def push(layer: int) -> None:
        r = modes[layer]
        if r + 1 <= current[layer]:
            E = energies[layer]
            gain = (E[r + 1] - E[r]) / states_per_mode[layer]
            heapq.heappush(heap, (-gain, layer))

    for i in range(len(modes)):
        push(i)
    while heap and left > 0:
        _, i = heapq.heappop(heap)
        if states_per_mode[i] > left:
            continue
        modes[i] += 1
        left -= states_per_mode[i]
        push(i)
    return modes
