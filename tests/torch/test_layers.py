"""LRU, S5 and S4D layers: fast forward == sequential recurrence == simulation of the LTI form.

The reference simulation runs ``x[k] = lam x[k-1] + B u[k]``, ``y[k] = Re(C x[k]) + D u[k]``
in NumPy complex128 on the tensors of ``to_lti(layer)``, and, independently, the real-coordinate
standard realisation ``(A_r, A_r B_r, C_r, D + C_r B_r)`` through ``scipy.signal.dlsim``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
from ctrlreduce_torch._scan import diagonal_scan, sequential_scan
from ctrlreduce_torch.convert import resize_to_state_dict, to_lti
from ctrlreduce_torch.lru import LRU
from ctrlreduce_torch.s4d import S4D
from ctrlreduce_torch.s5 import S5

DTYPES = [torch.float32, torch.float64]
# relative tolerance on max|y| (float32: ~100 eps_32 for sums over long sequences)
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}

LAYERS = {
    "lru": lambda H, N: LRU(H, N),
    "lru_ring": lambda H, N: LRU(H, N, r_min=0.5, r_max=0.95, max_phase=math.pi / 4),
    "s5_zoh": lambda H, N: S5(H, N),
    "s5_bilinear": lambda H, N: S5(H, N, discretization="bilinear", dt_min=1e-2, dt_max=0.5),
    "s4d": lambda H, N: S4D(H, 2 * N),
}


def make_layer(kind: str, H: int, N: int, dtype, device, *, seed: int = 0, perturb: float = 0.3):
    """A layer whose every (unconstrained) parameter is perturbed away from its init."""
    torch.manual_seed(seed)
    layer = LAYERS[kind](H, N)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(perturb * torch.randn_like(p))
    return layer.to(device=device, dtype=dtype)


def simulate_lti(lti, u: np.ndarray) -> np.ndarray:
    """``y`` of a DiagonalLTI in the layers' convention; MIMO (G = 1) or SISO channels (G = H)."""
    lam, B, C, D = (t.detach().cpu().numpy() for t in (lti.lam, lti.B, lti.C, lti.D))
    b, L, H = u.shape
    G = lam.shape[0]
    ug = u[:, :, None, :] if G == 1 else u[:, :, :, None]  # (b, L, G, m)
    x = np.zeros((b, G, lam.shape[1]), dtype=complex)
    ys = []
    for k in range(L):
        x = lam * x + np.einsum("gnm,bgm->bgn", B, ug[:, k])
        ys.append(np.einsum("gpn,bgn->bgp", C, x).real + np.einsum("gpm,bgm->bgp", D, ug[:, k]))
    y = np.stack(ys, axis=1)  # (b, L, G, p)
    return y[:, :, 0, :] if G == 1 else y[:, :, :, 0]


def real_standard_realization(lam, B, C, D):
    """Real ``(A, B', C, D')`` with ``s[k+1] = A s[k] + B' u[k]`` for one diagonal system.

    Real coordinates ``[Re x; Im x]`` of ``x[k-1]``: ``A = [[Re L, -Im L], [Im L, Re L]]``,
    ``B' = A [Re B; Im B]``, ``C = [Re C, -Im C]``, ``D' = D + C [Re B; Im B]``.
    """
    Ar = np.block([[np.diag(lam.real), -np.diag(lam.imag)], [np.diag(lam.imag), np.diag(lam.real)]])
    Br = np.vstack([B.real, B.imag])
    Cr = np.hstack([C.real, -C.imag])
    return Ar, Ar @ Br, Cr, D + Cr @ Br


def assert_close(y, ref, dtype):
    y = np.asarray(y, dtype=float)
    ref = np.asarray(ref, dtype=float)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(y - ref).max())
    assert err <= RTOL[dtype] * scale, f"max error {err:.3g} > {RTOL[dtype]:.1e} * {scale:.3g}"


# ---------------------------------------------------------------------------
# the scan itself
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 2, 31, 32, 33, 97, 1100])
@pytest.mark.parametrize("chunk", [4, 32])
def test_diagonal_scan_matches_loop(device, L, chunk):
    """Chunked scan == Python loop, incl. lengths off the chunk grid and two recursion levels."""
    g = torch.Generator().manual_seed(L + chunk)
    S, b = 5, 3
    r = 0.3 + 0.69 * torch.rand(S, generator=g, dtype=torch.float64)
    log_lam = torch.complex(torch.log(r), 6 * torch.rand(S, generator=g, dtype=torch.float64) - 3)
    X = torch.randn(S, b, L, generator=g, dtype=torch.complex128)
    log_lam, X = log_lam.to(device), X.to(device)
    x = diagonal_scan(log_lam, X, chunk=chunk)
    ref = sequential_scan(log_lam, X)
    assert x.shape == (S, b, L)
    assert float((x - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    # and against a direct double loop in NumPy
    lam = np.exp(log_lam.cpu().numpy())
    Xn = X.cpu().numpy()
    xn = np.zeros((S, b), dtype=complex)
    for k in range(L):
        xn = lam[:, None] * xn + Xn[..., k]
    np.testing.assert_allclose(x[..., -1].cpu().numpy(), xn, rtol=0, atol=1e-12 * np.abs(xn).max())


# ---------------------------------------------------------------------------
# layers: equivalence
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("L", [1, 7, 33, 130])
def test_fast_matches_sequential_and_lti(device, kind, dtype, L):
    H, N = 3, 5
    layer = make_layer(kind, H, N, dtype, device, seed=L)
    u = torch.randn(2, L, H, dtype=dtype, generator=torch.Generator().manual_seed(L)).to(device)
    with torch.no_grad():
        y = layer(u)
        ys = layer.forward_sequential(u)
        lti = to_lti(layer)
    assert y.shape == u.shape and y.dtype == dtype and y.device == u.device
    assert_close(y.cpu(), ys.cpu(), dtype)
    ref = simulate_lti(lti, u.cpu().double().numpy())
    assert_close(y.cpu(), ref, dtype)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_matches_dlsim_of_standard_realization(kind):
    """Independent check of the convention with scipy's simulator on a real realisation."""
    H, N, L = 2, 3, 40
    layer = make_layer(kind, H, N, torch.float64, "cpu", seed=3)
    u = torch.randn(1, L, H, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = layer(u)[0].numpy()
        lti = to_lti(layer)
    lam, B, C, D = (t.numpy() for t in (lti.lam, lti.B, lti.C, lti.D))
    un = u[0].numpy()
    if lam.shape[0] == 1:
        sys = real_standard_realization(lam[0], B[0], C[0], D[0])
        ref = scipy.signal.dlsim((*sys, 1.0), un)[1]
    else:  # one SISO system per channel
        ref = np.column_stack(
            [
                scipy.signal.dlsim(
                    (*real_standard_realization(lam[h], B[h], C[h], D[h]), 1.0), un[:, h]
                )[1][:, 0]
                for h in range(H)
            ]
        )
    assert_close(y, ref, torch.float64)


def test_long_sequence_two_recursion_levels():
    """Length > 32^2 exercises the scan of chunk carries of chunk carries."""
    layer = make_layer("lru_ring", 2, 3, torch.float64, "cpu", seed=5)
    u = torch.randn(1, 1100, 2, dtype=torch.float64)
    with torch.no_grad():
        assert_close(layer(u), layer.forward_sequential(u), torch.float64)


def test_s4d_scan_path_matches_fft():
    layer = make_layer("s4d", 3, 4, torch.float64, "cpu", seed=2)
    u = torch.randn(2, 70, 3, dtype=torch.float64)
    with torch.no_grad():
        assert_close(layer._forward_scan(u), layer(u), torch.float64)
        K = layer.kernel(70)
    # the kernel is the impulse response of each channel, minus D at lag 0
    lti = to_lti(layer)
    imp = np.zeros((1, 70, 3))
    imp[0, 0] = 1.0
    h = simulate_lti(lti, imp)[0]
    h[0] -= lti.D[:, 0, 0].numpy()
    np.testing.assert_allclose(K.T.numpy(), h, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LAYERS))
def test_gradients_match_sequential(device, kind):
    """Backward of the fast path == backward of the loop (float64), finite and nonzero."""
    H, N, L = 3, 4, 45
    layer = make_layer(kind, H, N, torch.float64, device, seed=7)
    u = torch.randn(2, L, H, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(2, L, H, dtype=torch.float64, device=device)

    def grads(fwd):
        layer.zero_grad()
        u.grad = None
        (fwd(u) * w).sum().backward()
        return [u.grad.clone()] + [p.grad.clone() for p in layer.parameters()]

    g_fast = grads(layer)
    g_seq = grads(layer.forward_sequential)
    for (name, _), a, b in zip(
        [("u", None), *layer.named_parameters()], g_fast, g_seq, strict=True
    ):
        assert torch.isfinite(a).all(), name
        scale = max(1.0, float(b.abs().max()))
        assert float((a - b).abs().max()) <= 1e-10 * scale, name
    assert all(float(g.abs().max()) > 0 for g in g_fast)


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
def test_float32_training_step(device, kind):
    layer = make_layer(kind, 4, 6, torch.float32, device, perturb=0.0)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    u = torch.randn(4, 50, 4, device=device)
    target = torch.roll(u, 1, dims=1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = (layer(u) - target).square().mean()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


# ---------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------


def test_lru_ring_init():
    torch.manual_seed(0)
    layer = LRU(8, 2000, r_min=0.4, r_max=0.9, max_phase=1.0).double().requires_grad_(False)
    mod = torch.exp(-torch.exp(layer.nu_log))
    phase = torch.exp(layer.theta_log)
    assert float(mod.min()) >= 0.4 - 1e-12 and float(mod.max()) <= 0.9 + 1e-12
    assert float(phase.min()) >= 0 and float(phase.max()) <= 1.0
    # |lam|^2 uniform on [r_min^2, r_max^2]: mean (r_min^2 + r_max^2) / 2
    assert abs(float((mod**2).mean()) - (0.16 + 0.81) / 2) < 0.02
    torch.testing.assert_close(torch.exp(layer.gamma_log), torch.sqrt(1 - mod**2))
    assert layer.B_re.shape == (2000, 8) and layer.C_re.shape == (8, 2000) and layer.D.shape == (8,)
    assert abs(float(layer.B_re.var()) - 1 / 16) < 0.01
    assert abs(float(layer.C_im.var()) - 1 / 2000) < 2e-4


def test_s5_s4d_init_is_s4d_lin():
    torch.manual_seed(0)
    s5 = S5(4, 6, dt_min=0.01, dt_max=0.02).double().requires_grad_(False)
    Lam = torch.complex(-torch.exp(s5.Lambda_re_log), s5.Lambda_im)
    torch.testing.assert_close(
        Lam,
        torch.complex(
            torch.full((6,), -0.5, dtype=torch.float64),
            math.pi * torch.arange(6.0, dtype=torch.float64),
        ),
    )
    step = torch.exp(s5.log_step)
    assert float(step.min()) >= 0.01 - 1e-12 and float(step.max()) <= 0.02 + 1e-12
    s4 = S4D(4, 6).double().requires_grad_(False)
    assert s4.d_state == 6 and s4.log_A_real.shape == (4, 3)
    torch.testing.assert_close(s4.A_imag[2], math.pi * torch.arange(3.0, dtype=torch.float64))
    assert float(s4.B_re.min()) == 1.0 and float(s4.B_im.abs().max()) == 0.0


# ---------------------------------------------------------------------------
# state size: resize, extra state, state_dict across sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
def test_resize_state(device, kind):
    layer = make_layer(kind, 3, 4, torch.float64, device)
    D = layer.D
    keep = {"D"} | ({"log_dt"} if kind == "s4d" else set())
    before = dict(layer.named_parameters())
    new = 4 if kind == "s4d" else 2
    layer._resize_state_(new)
    assert layer.d_state == new
    for name, p in layer.named_parameters():
        assert p.dtype == torch.float64 and p.device.type == device.type
        if name in keep:
            assert p is before[name]
        else:
            assert p is not before[name] and float(p.detach().abs().max()) == 0.0
            assert p.requires_grad
    assert layer.D is D
    y = layer(torch.randn(2, 9, 3, dtype=torch.float64, device=device))
    assert y.shape == (2, 9, 3)


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s5_bilinear", "s4d"])
def test_state_dict_across_sizes(device, kind):
    """A smaller saved layer loads into a full-size fresh one (plain load_state_dict)."""
    small = make_layer(kind, 3, 2, torch.float32, device, seed=1)
    sd = small.state_dict()
    assert sd["_extra_state"] == {"d_state": small.d_state}
    model = torch.nn.Sequential(make_layer(kind, 3, 5, torch.float32, device, seed=2))
    model.load_state_dict({f"0.{k}": v for k, v in sd.items()})
    assert model[0].d_state == small.d_state
    u = torch.randn(2, 20, 3, device=device)
    torch.testing.assert_close(model(u), small(u), rtol=0, atol=0)
    # a state dict without extra state: resize first with the helper
    fresh = torch.nn.Sequential(make_layer(kind, 3, 5, torch.float32, device, seed=3))
    bare = {f"0.{k}": v for k, v in sd.items() if not k.endswith("_extra_state")}
    old = fresh[0].d_state
    assert resize_to_state_dict(fresh, bare) == {"0": (old, small.d_state)}
    fresh.load_state_dict(bare, strict=False)
    torch.testing.assert_close(fresh(u), small(u), rtol=0, atol=0)


def test_set_extra_state_rejects_garbage():
    layer = S4D(2, 4)
    with pytest.raises(ValueError, match="d_state"):
        layer.set_extra_state({"d_state": 3})
    with pytest.raises(ValueError, match="extra state"):
        layer.set_extra_state(5)
    assert layer.d_state == 4


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
def test_bad_input(kind):
    layer = make_layer(kind, 3, 2, torch.float32, "cpu")
    with pytest.raises(ValueError, match=r"u must have shape \(batch, length, d_model=3\)"):
        layer(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"got shape \(2, 5, 4\)"):
        layer(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match="u must be a real floating"):
        layer(torch.ones(2, 5, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        layer(np.ones((2, 5, 3)))
    # an empty sequence gives an empty output
    for fwd in (layer, layer.forward_sequential):
        assert fwd(torch.randn(2, 0, 3)).shape == (2, 0, 3)
    # a floating input of another dtype is cast to the layer's dtype
    assert layer(torch.randn(2, 5, 3, dtype=torch.float64)).dtype == torch.float32


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
@pytest.mark.parametrize("shape", [(0, 7, 3), (2, 0, 3), (0, 0, 3), (0, 40, 3)])
def test_empty_batch_or_sequence(kind, shape):
    """An empty batch ``(0, L, H)`` or sequence ``(B, 0, H)`` gives an empty output, by every
    path (FFT, chunked scan, sequential loop), and backward runs."""
    layer = make_layer(kind, 3, 2, torch.float32, "cpu")
    u = torch.randn(*shape, requires_grad=True)
    paths = [layer, layer.forward_sequential]
    if kind == "s4d":
        paths.append(layer._forward_scan)
    for fwd in paths:
        y = fwd(u)
        assert y.shape == shape and y.dtype == torch.float32
        y.sum().backward()
    # the scan itself, with an empty batch
    X = torch.zeros(4, 0, 40, dtype=torch.complex64)
    assert diagonal_scan(torch.full((4,), -0.1 + 0.5j), X).shape == (4, 0, 40)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="d_state must be even"):
        S4D(3, 5)
    with pytest.raises(ValueError, match="d_state must be >= 2"):
        S4D(3, 0)
    for cls in (LRU, S5):
        with pytest.raises(ValueError, match="d_state must be >= 1"):
            cls(3, 0)
        with pytest.raises(ValueError, match="d_model must be >= 1"):
            cls(0, 3)
        with pytest.raises(TypeError, match="d_state must be an int"):
            cls(3, 2.0)
    with pytest.raises(ValueError, match="r_min"):
        LRU(2, 2, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="max_phase"):
        LRU(2, 2, max_phase=0.0)
    with pytest.raises(ValueError, match="discretization"):
        S5(2, 2, discretization="euler")
    with pytest.raises(ValueError, match="dt_min"):
        S4D(2, 2, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="new_d_state must be even"):
        S4D(2, 4)._resize_state_(3)


# ---------------------------------------------------------------------------
# failed loads leave the layer as it was
# ---------------------------------------------------------------------------


def _params_snapshot(layer):
    return layer.d_state, {n: (p, p.detach().clone()) for n, p in layer.named_parameters()}


def _assert_same(layer, snap):
    d_state, params = snap
    assert layer.d_state == d_state
    now = dict(layer.named_parameters())
    assert now.keys() == params.keys()
    for n, (obj, val) in params.items():
        assert now[n] is obj, n  # the same Parameter objects: an optimizer stays valid
        assert torch.equal(now[n].detach(), val), n


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
def test_failed_load_leaves_layer_unchanged(kind):
    layer = make_layer(kind, 3, 4, torch.float32, "cpu")
    other = make_layer(kind, 3, 3, torch.float32, "cpu", seed=1)  # another size
    sd = other.state_dict()
    n_other = other.d_state
    bad_cases = {
        # extra state says one size, the tensors have another
        "inconsistent extra state": {**sd, "_extra_state": {"d_state": layer.d_state + 2}},
        "size says other, tensors this": {
            **layer.state_dict(), "_extra_state": {"d_state": n_other}
        },
        # a resize with a state-sized tensor missing (it would stay zero)
        "missing tensor": {k: v for k, v in sd.items() if not k.startswith("C_re")},
        # consistent sizes, but an unexpected key (strict): torch would have copied the rest
        "unexpected key": {**sd, "junk": torch.zeros(1)},
        "wrong D shape": {**sd, "D": torch.zeros(5)},
    }
    for case, bad in bad_cases.items():
        snap = _params_snapshot(layer)
        with pytest.raises(RuntimeError):
            layer.load_state_dict(bad)
        _assert_same(layer, snap)
        assert case
    snap = _params_snapshot(layer)
    with pytest.raises(ValueError, match="extra state"):
        layer.load_state_dict({**sd, "_extra_state": 7})
    _assert_same(layer, snap)
    # nested in a model: an inconsistent state for the layer still leaves it untouched
    model = torch.nn.Sequential(layer)
    snap = _params_snapshot(layer)
    with pytest.raises(RuntimeError, match="d_state"):
        bad = bad_cases["inconsistent extra state"]
        model.load_state_dict({f"0.{k}": v for k, v in bad.items()})
    _assert_same(layer, snap)
    # and a good load still works, across sizes
    layer.load_state_dict(sd)
    assert layer.d_state == n_other
    u = torch.randn(2, 9, 3)
    torch.testing.assert_close(layer(u), other(u), rtol=0, atol=0)
