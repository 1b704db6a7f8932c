"""The exported LTI systems mean what they say: simulated by SciPy and python-control they
reproduce the layer, and the default HSVs are those of the layer's own Hankel operator.

References, independent of the adapters' own algebra: ``scipy.signal.dlsim`` and
``control.forced_response`` on the exported (real) ``StateSpace``; the singular values of
the block Hankel matrix built from the layer's impulse response (``layer(impulse)``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
from ctrlreduce_torch import LRU, S4D, S5, DiagonalLTI, from_lti, hankel_singular_values, to_lti

torch.set_num_threads(1)

KINDS = ["lru", "s5_zoh", "s5_bilinear", "s4d"]


def make_layer(kind: str, seed: int = 0) -> torch.nn.Module:
    """A float64 layer (H = 3) with every parameter perturbed away from its initialisation."""
    torch.manual_seed(seed)
    layer = {
        "lru": lambda: LRU(3, 5),
        "s5_zoh": lambda: S5(3, 5, dt_min=0.05, dt_max=0.5),
        "s5_bilinear": lambda: S5(3, 5, discretization="bilinear", dt_min=0.05, dt_max=0.5),
        "s4d": lambda: S4D(3, 10, dt_min=0.05, dt_max=0.5),
    }[kind]().double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer


def simulate(systems, u: np.ndarray, how: str) -> np.ndarray:
    """Simulate the exported systems on ``u (L, H)``: one MIMO system, or one per channel."""
    def run(ss, v):  # v (L, m) -> (L, p)
        if how == "dlsim":
            return scipy.signal.dlsim((ss.A, ss.B, ss.C, ss.D, 1.0), v)[1]
        import control  # optional: python-control

        return control.forced_response(ss.to_control(), U=v.T).outputs.reshape(ss.C.shape[0], -1).T

    if len(systems) == 1:
        return run(systems[0], u)
    return np.column_stack([run(ss, u[:, h : h + 1])[:, 0] for h, ss in enumerate(systems)])


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["dlsim", "control"])
def test_exported_statespace_simulates_to_the_layer(kind, how):
    """Acceptance: ``to_lti(layer).to_statespace()`` (real, float64) simulated by
    ``scipy.signal.dlsim`` (or python-control) matches ``layer(x)`` to 1e-10 relative."""
    if how == "control":
        pytest.importorskip("control")
    layer = make_layer(kind, seed=3)
    u = torch.randn(1, 300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = layer(u)[0].numpy()
    systems = to_lti(layer).to_statespace()
    assert all(ss.A.dtype == np.float64 and ss.dt == 1.0 for ss in systems)
    assert rel_err(simulate(systems, u[0].numpy(), how), y) <= 1e-10
    # the recurrence read as a standard system is *not* the layer (off by one step): the
    # convention matters (the old export's error, 1.6 for an LRU, 0.84 for S4D)
    if how == "dlsim":
        rec = [_real(ss) for ss in to_lti(layer).recurrence_statespace()]
        assert rel_err(simulate(rec, u[0].numpy(), how), y) > 1e-2


def _real(ss):
    """The conjugate-augmented recurrence in real coordinates (so that dlsim takes it)."""
    n = ss.A.shape[0] // 2
    T = np.block([[np.eye(n), np.eye(n)], [-1j * np.eye(n), 1j * np.eye(n)]]) / 2  # z = T x_aug
    Ti = np.linalg.inv(T)

    class R:  # noqa: D106 - a tiny record with the four real matrices
        A = (T @ ss.A @ Ti).real
        B = (T @ ss.B).real
        C = (ss.C @ Ti).real
        D = np.real(ss.D)

    return R


def _fast_layer(kind: str, seed: int = 0) -> torch.nn.Module:
    """A layer holding a random system with |lam| <= 0.5: its impulse response is below
    1e-19 of its start after 64 steps, so a 64-block Hankel matrix is exact to round-off."""
    layer = make_layer(kind, seed)
    rng = np.random.default_rng(seed)
    mimo = kind != "s4d"
    G, m, N = (1, 3, 5) if mimo else (3, 1, 5)
    lam = rng.uniform(0.1, 0.5, (G, N)) * np.exp(1j * rng.uniform(0.2, math.pi - 0.2, (G, N)))
    B = rng.standard_normal((G, N, m)) + 1j * rng.standard_normal((G, N, m))
    C = rng.standard_normal((G, m, N)) + 1j * rng.standard_normal((G, m, N))
    D = np.diag(rng.standard_normal(m))[None] if mimo else rng.standard_normal((G, 1, 1))
    from_lti(layer, DiagonalLTI(*(torch.from_numpy(a) for a in (lam, B, C, D))))
    return layer


@pytest.mark.parametrize("kind", KINDS)
def test_default_hsvs_are_those_of_the_layers_hankel_matrix(kind):
    """Acceptance: ``hankel_singular_values(layer)`` (default) equals the singular values of
    the block Hankel matrix ``[h[i + j + 1]]`` of the layer's own impulse response ``h``, to
    1e-8 relative: each HSV against itself where it is above 1e-6 sigma_1, and all within
    1e-8 sigma_1 (an SVD of the finite Hankel matrix, and S4D's FFT, are accurate only to
    about eps * sigma_1 absolutely; S4D's channels have HSVs down to 1e-12 sigma_1)."""
    layer = _fast_layer(kind)
    K, H = 64, 3
    u = torch.zeros(H, 2 * K, H, dtype=torch.float64)
    u[torch.arange(H), 0, torch.arange(H)] = 1.0  # impulse on input j in batch entry j
    with torch.no_grad():
        y = layer(u).numpy()  # y[j, k, i]: output i at lag k for an impulse on input j
    h = np.transpose(y, (1, 2, 0))  # (lag, p, m) Markov parameters; h[0] is the feedthrough
    assert np.abs(h[2 * K - 1]).max() < 1e-15 * np.abs(h[1]).max()  # decayed to round-off
    hsv = hankel_singular_values(layer).numpy()  # (G, 2N)
    if kind == "s4d":  # one SISO system per channel
        blocks = [h[:, c : c + 1, c : c + 1] for c in range(H)]
    else:
        blocks = [h]
    for g, hg in enumerate(blocks):
        p, m = hg.shape[1:]
        hank = np.block([[hg[i + j + 1] for j in range(K)] for i in range(K)])  # (K p, K m)
        sv = np.linalg.svd(hank, compute_uv=False)[: hsv.shape[1]]
        big = sv >= 1e-6 * sv[0]
        assert big.sum() >= 6
        np.testing.assert_allclose(hsv[g][big], sv[big], rtol=1e-8, atol=0)
        assert np.abs(hsv[g] - sv).max() <= 1e-8 * sv[0]
    # the recurrence's HSVs are another quantity (its Hankel operator includes the present)
    rec = hankel_singular_values(layer, form="recurrence").numpy()
    assert np.abs(rec - hsv).max() > 1e-3 * hsv.max()
