"""Sequence-classification tasks built locally (no download) for the demo.

Every task returns a :class:`Task` holding float32 tensors
``x_train (n_train, L, d_input)``, ``y_train (n_train,)`` (int64 class
labels), and the same for the test split, built from a fixed seed so that
every run of the demo sees the same data.

Tasks
-----
``digits``
    scikit-learn's bundled ``load_digits`` (1797 images, 8x8, 10 classes),
    read pixel by pixel in raster order as sequences of length 64 with one
    input channel, pixels scaled to ``[0, 1]``; a stratified split with 500
    test images.
``tones``
    A synthetic spectral-memory task where accuracy depends on state size:
    ``F`` frequencies ``omega_j`` lie evenly in ``[0.08 pi, 0.92 pi]``; each of
    the ``K`` classes is a fixed random subset of ``S`` of them; a sample of
    class ``c`` is ``u[t] = sum_{j in S_c} a_j sin(omega_j t + phi_j) + noise``
    with random amplitudes ``a_j ~ U(0.5, 1.5)``, phases ``phi_j ~ U(0, 2 pi)``
    and white noise of standard deviation ``noise``.  Telling the classes
    apart means resolving all ``F`` neighbouring frequencies, which takes
    sharp resonant modes, one pair per frequency: a layer with too few
    states cannot separate them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TASKS", "Task", "digits", "make_task", "tones"]


@dataclass(frozen=True, eq=False)
class Task:
    """A classification data set of sequences, already split."""

    name: str
    x_train: torch.Tensor  # (n_train, L, d_input) float32
    y_train: torch.Tensor  # (n_train,) int64
    x_test: torch.Tensor  # (n_test, L, d_input) float32
    y_test: torch.Tensor  # (n_test,) int64
    n_classes: int

    @property
    def d_input(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def length(self) -> int:
        return int(self.x_train.shape[1])


def digits(*, n_test: int = 500, seed: int = 0) -> Task:
    """Sequential 8x8 digits: ``(1797 - n_test, 64, 1)`` training sequences."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.reshape(-1, 64, 1) / 16.0).astype(np.float32)  # raster order
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=n_test, random_state=seed, stratify=y
    )
    return Task(
        "digits",
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        10,
    )


def tones(
    *,
    n_train: int = 2000,
    n_test: int = 1000,
    length: int = 96,
    n_freqs: int = 24,
    n_classes: int = 16,
    per_class: int = 3,
    noise: float = 1.0,
    seed: int = 0,
) -> Task:
    """The synthetic ``tones`` task (see the module docstring), seeded."""
    if per_class > n_freqs:
        raise ValueError(f"per_class must be <= n_freqs={n_freqs}, got {per_class}")
    rng = np.random.default_rng(seed)
    omegas = np.linspace(0.08 * np.pi, 0.92 * np.pi, n_freqs)  # (F,)
    subsets: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    while len(subsets) < n_classes:  # distinct class signatures
        s = tuple(sorted(rng.choice(n_freqs, per_class, replace=False).tolist()))
        if s not in seen:
            seen.add(s)
            subsets.append(np.array(s))
    masks = np.zeros((n_classes, n_freqs))
    for c, s in enumerate(subsets):
        masks[c, s] = 1.0

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.integers(0, n_classes, n)  # (n,)
        amp = rng.uniform(0.5, 1.5, (n, n_freqs)) * masks[y]  # (n, F)
        phase = rng.uniform(0.0, 2 * np.pi, (n, n_freqs))  # (n, F)
        t = np.arange(length)  # (L,)
        waves = np.sin(omegas[None, None, :] * t[None, :, None] + phase[:, None, :])  # (n, L, F)
        u = (waves * amp[:, None, :]).sum(-1) + noise * rng.standard_normal((n, length))
        return torch.from_numpy(u[..., None].astype(np.float32)), torch.from_numpy(y)

    x_tr, y_tr = sample(n_train)
    x_te, y_te = sample(n_test)
    return Task("tones", x_tr, y_tr, x_te, y_te, n_classes)


TASKS = {"digits": digits, "tones": tones}


def make_task(name: str, **kwargs) -> Task:
    """Build the task called ``name`` (one of ``TASKS``)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name](**kwargs)
