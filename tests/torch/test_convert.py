"""to_lti / from_lti: shapes, the output convention, exact round trips, and refusals."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from ctrlreduce_torch._lti import DiagonalLTI
from ctrlreduce_torch.convert import from_lti, to_lti
from ctrlreduce_torch.lru import LRU
from ctrlreduce_torch.s4d import S4D
from ctrlreduce_torch.s5 import S5
from hypothesis import given, settings
from hypothesis import strategies as st

KINDS = ["lru", "s5_zoh", "s5_bilinear", "s4d"]
MIMO = {"lru", "s5_zoh", "s5_bilinear"}
# layers whose eigenvalues decay fast enough for a truncated impulse response
FACTORIES = {
    "lru": lambda H, N: LRU(H, N, r_min=0.3, r_max=0.9),
    "s5_zoh": lambda H, N: S5(H, N, dt_min=0.3, dt_max=1.0),
    "s5_bilinear": lambda H, N: S5(H, N, discretization="bilinear", dt_min=0.3, dt_max=1.0),
    "s4d": lambda H, N: S4D(H, 2 * N, dt_min=0.3, dt_max=1.0),
}


def make_layer(kind, H, N, dtype=torch.float64, device="cpu", *, seed=0, perturb=0.2):
    torch.manual_seed(seed)
    layer = FACTORIES[kind](H, N)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(perturb * torch.randn_like(p))
    return layer.to(device=device, dtype=dtype)


def simulate_lti(lti, u: np.ndarray) -> np.ndarray:
    """``x[k] = lam x[k-1] + B u[k]``, ``y[k] = Re(C x[k]) + D u[k]`` (MIMO G = 1 or SISO G = H)."""
    lam, B, C, D = (t.detach().cpu().numpy() for t in (lti.lam, lti.B, lti.C, lti.D))
    ug = u[:, :, None, :] if lam.shape[0] == 1 else u[:, :, :, None]
    x = np.zeros((u.shape[0], lam.shape[0], lam.shape[1]), dtype=complex)
    ys = []
    for k in range(u.shape[1]):
        x = lam * x + np.einsum("gnm,bgm->bgn", B, ug[:, k])
        ys.append(np.einsum("gpn,bgn->bgp", C, x).real + np.einsum("gpm,bgm->bgp", D, ug[:, k]))
    y = np.stack(ys, axis=1)
    return y[:, :, 0, :] if lam.shape[0] == 1 else y[:, :, :, 0]


def random_lti(kind: str, H: int, N: int, seed: int) -> DiagonalLTI:
    """A random strictly stable diagonal system with the layer's shapes (phases away from 0)."""
    rng = np.random.default_rng(seed)
    G, m = (1, H) if kind in MIMO else (H, 1)
    r = rng.uniform(0.05, 0.97, (G, N))
    phase = rng.uniform(0.05, math.pi - 0.05, (G, N)) * rng.choice([-1, 1], (G, N))
    lam = r * np.exp(1j * phase)
    B = rng.standard_normal((G, N, m)) + 1j * rng.standard_normal((G, N, m))
    C = rng.standard_normal((G, m, N)) + 1j * rng.standard_normal((G, m, N))
    D = np.diag(rng.standard_normal(H))[None] if G == 1 else rng.standard_normal((H, 1, 1))
    return DiagonalLTI(*(torch.from_numpy(a) for a in (lam, B, C, D)))


def snapshot(layer):
    return [(name, p, p.detach().clone()) for name, p in layer.named_parameters()]


def assert_unchanged(layer, snap):
    now = list(layer.named_parameters())
    assert [n for n, _ in now] == [n for n, _, _ in snap]
    for (_, p), (name, p0, v0) in zip(now, snap, strict=True):
        assert p is p0, f"{name} was replaced"
        assert torch.equal(p.detach(), v0), f"{name} was modified"


def max_rel(a, b):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


# ---------------------------------------------------------------------------
# to_lti
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_to_lti_shapes_dtypes_device(device, kind):
    H, N = 3, 4
    layer = make_layer(kind, H, N, torch.float32, device)
    lti = to_lti(layer)
    G, m = (1, H) if kind in MIMO else (H, 1)
    assert lti.lam.shape == (G, N) and lti.B.shape == (G, N, m)
    assert lti.C.shape == (G, m, N) and lti.D.shape == (G, m, m)
    assert lti.lam.dtype == lti.B.dtype == lti.C.dtype == torch.complex128
    assert lti.D.dtype == torch.float64
    assert all(t.device.type == device.type for t in (lti.lam, lti.B, lti.C, lti.D))
    assert not any(t.requires_grad for t in (lti.lam, lti.B, lti.C, lti.D))
    assert float(lti.lam.abs().max()) < 1
    if kind in MIMO:
        torch.testing.assert_close(lti.D[0], torch.diag(layer.D.detach().double()))
    # a snapshot: changing the layer afterwards does not change it
    D0 = lti.D.clone()
    with torch.no_grad():
        layer.D.add_(1.0)
    assert torch.equal(lti.D, D0)


@pytest.mark.parametrize("kind", KINDS)
def test_statespace_poles_equal_lam(kind):
    lti = to_lti(make_layer(kind, 2, 3))
    for export in (lti.to_statespace(), lti.complex_statespace(), lti.recurrence_statespace()):
        assert len(export) == lti.n_systems
        for g, ss in enumerate(export):
            lam = lti.lam[g].numpy()
            np.testing.assert_allclose(
                np.sort_complex(ss.poles()), np.sort_complex(np.r_[lam, lam.conj()]), atol=1e-14
            )
    for ss in lti.to_statespace():  # real, for dlsim and python-control
        assert not ss.is_complex and ss.A.dtype == ss.B.dtype == ss.C.dtype == np.float64
    for export in (lti.complex_statespace(augmented=False),
                   lti.recurrence_statespace(augmented=False)):
        for g, ss in enumerate(export):
            np.testing.assert_allclose(
                np.sort_complex(ss.poles()), np.sort_complex(lti.lam[g].numpy()), atol=1e-14
            )


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_function_convention(kind):
    """The layer's frequency response is ``to_statespace()``'s, and ``D + z (S(z) - D)`` with
    ``S = recurrence_statespace()``; the complex diagonal export has the same map.

    Measured as the DTFT of the layer's impulse response (|lam| <= 0.9^k decays below 1e-12
    within the horizon).
    """
    H, N, L = 2, 3, 400
    layer = make_layer(kind, H, N, seed=4)
    lti = to_lti(layer)
    assert float(lti.lam.abs().max()) ** L < 1e-13
    u = torch.zeros(H, L, H, dtype=torch.float64)
    u[torch.arange(H), 0, torch.arange(H)] = 1.0
    with torch.no_grad():
        y = layer(u).numpy()  # y[j, k, i]: output i at lag k for an impulse on input j
    omega = np.array([0.0, 0.3, 1.0, 2.5, math.pi])
    z = np.exp(1j * omega)
    dtft = np.einsum("jki,wk->wij", y, np.exp(-1j * np.outer(omega, np.arange(L))))
    exports = zip(
        lti.to_statespace(), lti.complex_statespace(), lti.recurrence_statespace(), strict=True
    )
    for g, (real, cplx, rec) in enumerate(exports):
        got = dtft if lti.n_systems == 1 else dtft[:, g : g + 1, g : g + 1]
        np.testing.assert_allclose(real.evaluate(z), got, atol=1e-10)
        np.testing.assert_allclose(cplx.evaluate(z), got, atol=1e-10)
        S = rec.evaluate(z)  # (w, p, m)
        np.testing.assert_allclose(got, rec.D + z[:, None, None] * (S - rec.D), atol=1e-10)
        # the recurrence read as the map (output before the state update) is off by the factor z
        assert np.abs(got - S).max() > 1e-3


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_outputs(device, kind, dtype):
    layer = make_layer(kind, 3, 5, dtype, device, seed=1, perturb=0.5)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        for p in twin.parameters():  # scramble, so the round trip must write everything
            p.mul_(-0.5).add_(0.3)
    ids = [id(p) for p in twin.parameters()]
    from_lti(twin, to_lti(layer))
    assert [id(p) for p in twin.parameters()] == ids  # same shapes: identity kept
    u = torch.randn(2, 37, 3, dtype=dtype, device=device)
    with torch.no_grad():
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert max_rel(twin(u).cpu(), layer(u).cpu()) <= tol
    a, b = to_lti(twin), to_lti(layer)
    for name in ("lam", "B", "C", "D"):
        assert max_rel(getattr(a, name).cpu(), getattr(b, name).cpu()) <= (
            1e-5 if dtype == torch.float32 else 1e-12
        ), name


@pytest.mark.parametrize("kind", ["s5_zoh", "s5_bilinear", "s4d"])
def test_round_trip_parameters_s5_s4d(kind):
    """S5/S4D keep their steps, so every parameter comes back (ZOH: branch of log restored)."""
    layer = make_layer(kind, 3, 6, seed=2, perturb=0.5)
    before = [p.detach().clone() for p in layer.parameters()]
    lti = to_lti(layer)
    with torch.no_grad():  # scramble everything but the steps, which from_lti keeps
        for name, p in layer.named_parameters():
            if name not in ("log_step", "log_dt", "Lambda_im", "A_imag"):
                p.mul_(-0.5).add_(0.3)
            elif name in ("Lambda_im", "A_imag"):  # only the branch reference survives
                p.add_(0.4)
    from_lti(layer, lti)
    for (name, p), q in zip(layer.named_parameters(), before, strict=True):
        assert max_rel(p.detach(), q) <= 1e-9, name


def test_round_trip_parameters_lru():
    """Fresh LRU (gamma normalised, phases in (0, 2 pi)): every parameter comes back.

    A perturbed one comes back up to the documented normalisation: ``gamma B`` equal,
    ``gamma = sqrt(1 - |lam|^2)``, phase modulo ``2 pi``.
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # so that the init's gamma is exact in float64
    try:
        layer = make_layer("lru", 3, 6, perturb=0.0)
    finally:
        torch.set_default_dtype(default)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    from_lti(twin, to_lti(layer))
    for (name, p), q in zip(twin.named_parameters(), layer.parameters(), strict=True):
        assert max_rel(p.detach(), q.detach()) <= 1e-9, name

    layer = make_layer("lru", 3, 6, perturb=0.7, seed=3)
    twin = copy.deepcopy(layer)
    from_lti(twin, to_lti(layer))
    t, l_ = twin.requires_grad_(False), layer.requires_grad_(False)
    for name in ("nu_log", "C_re", "C_im", "D"):
        assert max_rel(getattr(t, name), getattr(l_, name)) <= 1e-9, name
    phase_diff = torch.exp(t.theta_log) - torch.exp(l_.theta_log)
    assert float((torch.remainder(phase_diff + 1, 2 * math.pi) - 1).abs().max()) <= 1e-9
    assert float(torch.exp(t.theta_log).max()) < 2 * math.pi
    mod = torch.exp(-torch.exp(l_.nu_log))
    assert max_rel(t.gamma_log, torch.log(torch.sqrt(1 - mod**2))) <= 1e-12
    for part in ("B_re", "B_im"):
        assert (
            max_rel(
                getattr(t, part) * torch.exp(t.gamma_log)[:, None],
                getattr(l_, part) * torch.exp(l_.gamma_log)[:, None],
            )
            <= 1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_from_lti_writes_any_valid_system(device, kind, seed):
    """Any stable system of any size: to_lti(layer) gives it back, the outputs simulate it."""
    H, N_new = 3, [2, 5, 7][seed]
    layer = make_layer(kind, H, 4, torch.float64, device, seed=seed)
    keep = {"D"} | ({"log_dt"} if kind == "s4d" else set())
    before = dict(layer.named_parameters())
    lti = random_lti(kind, H, N_new, seed)  # on the CPU: moved to the layer's device
    from_lti(layer, lti)
    assert layer.d_state == (2 * N_new if kind == "s4d" else N_new)
    for name, p in layer.named_parameters():
        assert (p is before[name]) == (name in keep or N_new == 4), name
        assert p.device.type == device.type and p.dtype == torch.float64
    back = to_lti(layer)
    for name in ("lam", "B", "C", "D"):
        assert max_rel(getattr(back, name).cpu(), getattr(lti, name)) <= 1e-12, name
    u = torch.randn(2, 40, H, dtype=torch.float64)
    with torch.no_grad():
        y = layer(u.to(device)).cpu()
    assert max_rel(y, torch.from_numpy(simulate_lti(lti, u.numpy()))) <= 1e-11


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    H=st.integers(1, 3),
    N_old=st.integers(1, 4),
    N_new=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_to_lti_inverts_from_lti(kind, H, N_old, N_new, seed):
    """``to_lti(from_lti(layer, lti)) == lti`` for random stable systems of any size."""
    layer = make_layer(kind, H, N_old, seed=seed % 1000)
    lti = random_lti(kind, H, N_new, seed)
    from_lti(layer, lti)
    back = to_lti(layer)
    for name in ("lam", "B", "C", "D"):
        assert max_rel(getattr(back, name), getattr(lti, name)) <= 1e-11, name


def test_from_lti_float32_layer():
    layer = make_layer("lru", 3, 4, torch.float32)
    lti = random_lti("lru", 3, 3, 7)
    from_lti(layer, lti)
    assert layer.d_state == 3 and layer.nu_log.dtype == torch.float32
    back = to_lti(layer)
    assert max_rel(back.lam, lti.lam) <= 1e-6


# ---------------------------------------------------------------------------
# refusals: clear error, layer untouched
# ---------------------------------------------------------------------------


def _edit(lti, **fields):
    parts = {name: getattr(lti, name).clone() for name in ("lam", "B", "C", "D")}
    parts.update(fields)
    return DiagonalLTI(**parts)


def _bad_cases(kind, lti):
    lam, B, C, D = lti.lam, lti.B, lti.C, lti.D
    nan_lam = lam.clone()
    nan_lam[0, 1] = float("nan")
    inf_B = B.clone()
    inf_B[0, 0, 0] = float("inf")
    unit = lam.clone()
    unit[0, 0] = 1j
    big = lam.clone()
    big[0, 2] = 1.2
    cases = {
        "non-finite lam": (_edit(lti, lam=nan_lam), "lti.lam has non-finite"),
        "non-finite B": (_edit(lti, B=inf_B), "lti.B has non-finite"),
        "|lam| = 1": (_edit(lti, lam=unit), "strictly stable"),
        "|lam| > 1": (_edit(lti, lam=big), "strictly stable"),
        "B shape": (
            _edit(lti, B=B[..., :1] if kind in MIMO else torch.cat([B, B], 2)),
            "inputs|lti.D must have shape|lti.B must have shape",
        ),
        "C rank": (_edit(lti, C=C[0]), "lti.C must have shape"),
    }
    if kind in MIMO:
        Dn = D.clone()
        Dn[0, 0, 1] = 0.5
        cases["D not diagonal"] = (_edit(lti, D=Dn), "must be diagonal")
        cases["G = 2"] = (DiagonalLTI(*(torch.cat([t, t]) for t in (lam, B, C, D))), "one system")
    else:
        cases["G = 1"] = (DiagonalLTI(lam[:1], B[:1], C[:1], D[:1]), "SISO systems")
    if kind == "lru":
        real = lam.clone()
        real[0, 1] = 0.5
        zero = lam.clone()
        zero[0, 1] = 0.0
        cases["phase 0"] = (_edit(lti, lam=real), "phase 0")
        cases["lam = 0"] = (_edit(lti, lam=zero), "phase 0|non-finite")
    return cases


@pytest.mark.parametrize("kind", KINDS)
def test_from_lti_refuses_and_leaves_layer_untouched(device, kind):
    layer = make_layer(kind, 3, 4, torch.float64, device)
    lti = random_lti(kind, 3, 3, 0)  # a different size: nothing may be resized either
    for case, (bad, msg) in _bad_cases(kind, lti).items():
        snap = snapshot(layer)
        with pytest.raises(ValueError, match=msg):
            from_lti(layer, bad)
        assert_unchanged(layer, snap)
        assert layer.d_state == (8 if kind == "s4d" else 4), case


@pytest.mark.parametrize("kind", ["lru", "s5_zoh", "s4d"])
def test_from_lti_refuses_what_float32_cannot_hold(kind):
    """|lam| = 1 - 1e-12 is fine in float64 but rounds to the unit circle in float32."""
    layer = make_layer(kind, 2, 3, torch.float32)
    lti = random_lti(kind, 2, 3, 1)
    lam = lti.lam.clone()
    lam[0, 0] = (1 - 1e-12) * lam[0, 0] / lam[0, 0].abs()
    snap = snapshot(layer)
    with pytest.raises(ValueError, match="not representable"):
        from_lti(layer, _edit(lti, lam=lam))
    assert_unchanged(layer, snap)
    layer64 = make_layer(kind, 2, 3, torch.float64)
    from_lti(layer64, _edit(lti, lam=lam))  # representable in float64
    assert float(to_lti(layer64).lam.abs().max()) < 1


def test_lru_negative_phase_is_mapped():
    layer = make_layer("lru", 2, 3)
    lti = random_lti("lru", 2, 3, 5)
    lam = lti.lam.clone()
    lam[0] = lam[0].abs() * torch.exp(-0.25j * torch.ones(3, dtype=torch.float64))
    from_lti(layer, _edit(lti, lam=lam))
    phase = torch.exp(layer.theta_log.detach())
    torch.testing.assert_close(phase, torch.full((3,), 2 * math.pi - 0.25, dtype=torch.float64))
    assert max_rel(to_lti(layer).lam, lam) <= 1e-12


def test_type_errors():
    with pytest.raises(TypeError, match=r"layer must be one of LRU, S4D, S5 \(or a class given "
                       r"to register_family\), got Linear"):
        to_lti(torch.nn.Linear(2, 2))
    lti = to_lti(make_layer("lru", 2, 3))
    with pytest.raises(TypeError, match="got Linear"):
        from_lti(torch.nn.Linear(2, 2), lti)
    with pytest.raises(TypeError, match="lti must be a DiagonalLTI"):
        from_lti(make_layer("lru", 2, 3), (lti.lam, lti.B, lti.C, lti.D))
