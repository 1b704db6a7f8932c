"""Mixed precision: autocast and half-precision parameters in LRU, S5 and S4D.

The recurrence (and S4D's FFT) always runs in float32/complex64 or better; the
output is in the autocast dtype inside ``torch.autocast``, else in the
parameters' dtype.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from ctrlreduce_torch import LRU, S4D, S5, hankel_singular_values, reduce_, to_lti

torch.set_num_threads(1)

LAYERS = {"lru": lambda H, N: LRU(H, N), "s5": lambda H, N: S5(H, N), "s4d": lambda H, N: S4D(H, N)}

# (device, autocast dtype): CPU bf16 always; CUDA fp16 and bf16 where a GPU is present
AMP_CASES = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    *(
        pytest.param(
            "cuda",
            dt,
            id=f"cuda-{name}",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        )
        for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16))
    ),
]


def _tiny_model(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    H = 8
    return torch.nn.Sequential(
        torch.nn.Linear(2, H), LAYERS[kind](H, 8), torch.nn.GELU(), torch.nn.Linear(H, 1)
    )


def _train(kind: str, device: str, amp_dtype: torch.dtype | None, steps: int = 20) -> float:
    """Final loss of 20 Adam steps on a fixed regression task (cumulative sum of one input)."""
    model = _tiny_model(kind, seed=0).to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 32, 2, generator=g).to(device)
    y = 0.3 * torch.cumsum(x[..., :1], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = torch.zeros(())
    on = amp_dtype is not None
    for _ in range(steps):
        with torch.autocast(device, dtype=amp_dtype or torch.bfloat16, enabled=on):
            out = model(x)
            if amp_dtype is not None:
                assert out.dtype == amp_dtype
            loss = torch.nn.functional.mse_loss(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return float(loss.detach())


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize(("device", "amp_dtype"), AMP_CASES)
def test_training_under_autocast_matches_float32(kind, device, amp_dtype):
    """Acceptance: 20 steps under autocast end within 1e-2 (relative) of the float32 run."""
    ref = _train(kind, device, None)
    got = _train(kind, device, amp_dtype)
    assert abs(got - ref) <= 1e-2 * abs(ref), (got, ref)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize(("device", "amp_dtype"), AMP_CASES)
def test_autocast_output_dtype_and_float32_accuracy(kind, device, amp_dtype):
    """Inside autocast the layer returns the autocast dtype, computed in float32: the output is
    the float32 output rounded once (to a few eps of the half dtype), for a half-precision or a
    float32 input alike."""
    torch.manual_seed(0)
    layer = LAYERS[kind](4, 6).to(device)
    u = torch.randn(3, 50, 4, device=device)
    ref = layer(u)
    assert ref.dtype == torch.float32
    for inp in (u, u.to(amp_dtype)):
        with torch.autocast(device, dtype=amp_dtype):
            y = layer(inp)
        assert y.dtype == amp_dtype
        exact = layer(inp.float())  # the same (possibly rounded) input, in float32
        err = float((y.detach().float() - exact.detach()).abs().max())
        assert err <= 2 * torch.finfo(amp_dtype).eps * float(exact.detach().abs().max())
    # gradients reach the float32 parameters, finite
    with torch.autocast(device, dtype=amp_dtype):
        loss = layer(u).float().pow(2).mean()
    loss.backward()
    for p in layer.parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32
        assert bool(torch.isfinite(p.grad).all())


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_parameters_compute_in_float32(kind, dtype):
    """``layer.half()`` / ``.bfloat16()``: the recurrence runs in float32 on the rounded
    parameters and the output is in the parameter dtype; gradients are finite."""
    torch.manual_seed(0)
    layer = LAYERS[kind](4, 6)
    half = LAYERS[kind](4, 6).to(dtype)
    with torch.no_grad():  # the float32 twin holds exactly the rounded parameters
        for p, q in zip(layer.parameters(), half.parameters(), strict=True):
            p.copy_(q.float())
    u = torch.randn(2, 40, 4)
    y = half(u.to(dtype))
    assert y.dtype == dtype
    exact = layer(u.to(dtype).float())
    err = float((y.detach().float() - exact.detach()).abs().max())
    assert err <= 2 * torch.finfo(dtype).eps * float(exact.detach().abs().max())
    y.float().pow(2).mean().backward()
    for p in half.parameters():
        assert p.grad is not None and p.grad.dtype == dtype
        assert bool(torch.isfinite(p.grad).all())
    # the LTI form and the HSVs (float64) are those of the rounded parameters
    torch.testing.assert_close(to_lti(half).lam, to_lti(layer).lam, rtol=0, atol=0)
    torch.testing.assert_close(hankel_singular_values(half), hankel_singular_values(layer))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_half_precision_layer_reduces_with_a_meaningful_guard(kind):
    """reduce_ works on a bfloat16 layer, and its default write-back tolerance still means
    something (below 1; 1e4 eps of bfloat16 would be 78)."""
    torch.manual_seed(0)
    layer = LAYERS[kind](4, 8).to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rep = reduce_(layer, 4)
    assert rep.applied and layer.d_state == 4
    assert rep.realization_error <= 0.5
    assert all(p.dtype == torch.bfloat16 for p in layer.parameters())
    assert layer(torch.randn(2, 10, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    import ctrlreduce_torch.reduce as rmod

    assert rmod._default_map_rtol(layer) <= 0.5
    assert rmod._default_map_rtol(LAYERS[kind](4, 8).half()) <= 0.07


@pytest.mark.parametrize("kind", list(LAYERS))
def test_float64_layer_is_left_alone_by_autocast(kind):
    """Autocast leaves float64 ops alone; so does a float64 layer (computes and returns float64)."""
    torch.manual_seed(0)
    layer = LAYERS[kind](4, 6).double()
    u = torch.randn(2, 30, 4, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(u)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, layer(u), rtol=0, atol=0)
