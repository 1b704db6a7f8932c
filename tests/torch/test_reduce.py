"""In-place balanced truncation of layers: bounds, references, guards, optimizer, checkpoints.

References: the a-priori bound on the l2 gain of the change (simulated outputs),
Weyl's inequality for Hankel singular values, ``ctrlreduce.balanced_truncation``
on the same system (transfer functions), bitwise equality when refused.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import ctrlreduce_torch.convert as convert
import numpy as np
import pytest
import torch
from ctrlreduce_torch import family_of, modal_truncate_
from ctrlreduce_torch._lti import DiagonalLTI
from ctrlreduce_torch.convert import from_lti, to_lti
from ctrlreduce_torch.demo.models import SequenceClassifier
from ctrlreduce_torch.hsv import hankel_singular_values
from ctrlreduce_torch.lru import LRU
from ctrlreduce_torch.reduce import ReductionReport, reduce_
from ctrlreduce_torch.s4d import S4D
from ctrlreduce_torch.s5 import S5
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce

KINDS = ("lru", "s5", "s4d")


def make_layer(kind, d_model, d_state, seed, device, dtype=torch.float64):
    torch.manual_seed(seed)
    cls = {"lru": LRU, "s5": S5, "s4d": S4D}[kind]
    kw = {"r_min": 0.5, "r_max": 0.95} if kind == "lru" else {}
    return cls(d_model, d_state, **kw).to(device=device, dtype=dtype)


def weak_mode_layer(kind, d_model, n_strong, n_weak, device, weak=1e-5, seed=0):
    """A layer whose last ``n_weak`` modes barely couple (B and C scaled by ``weak``).

    Modes are complex (phases away from 0 and pi), so both methods apply, and
    the discarded HSVs are tiny: the bound is ~``weak**2`` of the gain.
    """
    g = torch.Generator().manual_seed(seed)
    G = d_model if kind == "s4d" else 1
    m = 1 if kind == "s4d" else d_model
    N = n_strong + n_weak
    r = 0.4 + 0.5 * torch.rand(G, N, generator=g, dtype=torch.float64)
    th = 0.3 + 2.5 * torch.rand(G, N, generator=g, dtype=torch.float64)
    lam = torch.polar(r, th)
    B = torch.randn(G, N, m, generator=g, dtype=torch.complex128)
    C = torch.randn(G, m, N, generator=g, dtype=torch.complex128)
    B[:, n_strong:] *= weak
    C[:, :, n_strong:] *= weak
    D = torch.diag_embed(torch.randn(G, m, generator=g, dtype=torch.float64))
    if kind == "s4d":
        D = torch.randn(G, 1, 1, generator=g, dtype=torch.float64)
    d_state = 2 * N if kind == "s4d" else N
    layer = make_layer(kind, d_model, d_state, seed, device)
    from_lti(layer, DiagonalLTI(lam, B, C, D))
    return layer


def per_state(kind):
    return 2 if kind == "s4d" else 1


def method_hsv(layer, method):
    """The HSVs a method ranks and bounds with: those of the layer's recurrence."""
    return hankel_singular_values(layer, augmented=(method == "real"), form="recurrence")


def snapshot(layer, opt=None):
    snap = {
        "params": [(n, p, p.detach().clone()) for n, p in layer.named_parameters()],
        "d_state": int(layer.d_state),
    }
    if opt is not None:
        snap["groups"] = [list(g["params"]) for g in opt.param_groups]
        snap["state"] = {
            id(p): {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
            for p, s in opt.state.items()
        }
    return snap


def assert_unchanged(layer, snap, opt=None):
    assert int(layer.d_state) == snap["d_state"]
    now = list(layer.named_parameters())
    assert [n for n, _ in now] == [n for n, _, _ in snap["params"]]
    for (_, p), (_, p0, v0) in zip(now, snap["params"], strict=True):
        assert p is p0
        torch.testing.assert_close(p.detach(), v0, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(p.detach().isnan(), v0.isnan())
    if opt is not None:
        assert [list(g["params"]) for g in opt.param_groups] == snap["groups"]
        assert {id(p) for p in opt.state} == set(snap["state"])
        for p, s in opt.state.items():
            s0 = snap["state"][id(p)]
            assert set(s) == set(s0)
            for k, v in s.items():
                if torch.is_tensor(v):
                    assert torch.equal(v, s0[k])
                else:
                    assert v == s0[k]


def l2_gain_of_change(y0, y1, u):
    """max over the batch of ||y1 - y0||_2 / ||u||_2 (sequences from zero state)."""
    num = (y1 - y0).pow(2).sum(dim=(1, 2)).sqrt()
    den = u.pow(2).sum(dim=(1, 2)).sqrt()
    return float((num / den).max())


# ------------------------------------------------------------------ bound and HSVs
@pytest.mark.parametrize("kind", KINDS)
def test_output_error_within_bound(kind, device):
    d_model, d_state, order = 6, 16, 6
    layer = make_layer(kind, d_model, d_state, 1, device)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(4, 300, d_model, generator=g, dtype=torch.float64).to(device)
    # add a slow sinusoid: excites the lightly damped modes, where the error concentrates
    t = torch.arange(300, dtype=torch.float64, device=device)
    u = u + torch.sin(0.3 * t)[None, :, None]
    with torch.no_grad():
        y0 = layer(u)
    h0 = method_hsv(layer, "complex")
    h0_real = method_hsv(layer, "real")
    h0_map = hankel_singular_values(layer)  # the layer's map (strict past to future)
    rep = reduce_(layer, order)
    assert isinstance(rep, ReductionReport)
    assert rep.applied, rep.reason
    assert (rep.old_order, rep.new_order, layer.d_state) == (d_state, order, order)
    assert rep.method == "complex"
    assert rep.hsv.device.type == "cpu" and rep.hsv.dtype == torch.float64
    torch.testing.assert_close(rep.hsv, h0.cpu())
    kept = order // per_state(kind)
    expected = float((2 * h0[:, kept:].sum(dim=1)).max())
    assert rep.error_bound == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        y1 = layer(u)
    err = l2_gain_of_change(y0, y1, u)
    assert 0 < err <= rep.error_bound * (1 + 1e-9)
    # Weyl: |sigma_i(S_r) - sigma_i(S)| <= ||S - S_r||_inf <= bound, for both rankings
    h1 = method_hsv(layer, "complex")
    assert float((h1 - h0[:, :kept]).abs().max()) <= rep.error_bound * (1 + 1e-9)
    h1_real = method_hsv(layer, "real")
    assert float((h1_real - h0_real[:, : 2 * kept]).abs().max()) <= rep.error_bound * (1 + 1e-9)
    # and for the map's own Hankel operator (Nehari: ||H_G - H_Gr|| <= ||G - Gr||_inf)
    h1_map = hankel_singular_values(layer)
    assert float((h1_map - h0_map[:, : 2 * kept]).abs().max()) <= rep.error_bound * (1 + 1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["complex", "real"])
def test_kept_hsvs_match_when_tail_is_small(kind, method, device):
    n_strong, n_weak = 4, 5
    layer = weak_mode_layer(kind, 3, n_strong, n_weak, device)
    h0 = method_hsv(layer, method)
    order = n_strong * per_state(kind)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 200, 3, generator=g, dtype=torch.float64).to(device)
    with torch.no_grad():
        y0 = layer(u)
    rep = reduce_(layer, order, method=method)
    assert rep.applied and rep.method == method, rep.reason
    k = n_strong * (2 if method == "real" else 1)
    assert rep.error_bound <= 1e-6 * float(h0[:, 0].max())
    h1 = method_hsv(layer, method)
    torch.testing.assert_close(h1, h0[:, :k], rtol=0, atol=1e-6 * float(h0[:, 0].max()))
    with torch.no_grad():
        assert l2_gain_of_change(y0, layer(u), u) <= rep.error_bound * (1 + 1e-6)


def _real_map_tf(A, B, C, D, z):
    """Transfer function of u -> Re(C x) + D u for a complex (A, B, C), real u."""
    n = A.shape[0]

    def f(s):
        return C @ np.linalg.solve(s * np.eye(n) - A, B)

    return D + 0.5 * (f(z) + np.conj(f(np.conj(z))))


@pytest.mark.parametrize("kind", ["lru", "s4d"])
def test_matches_core_balanced_truncation(kind, device):
    """The reduced layer computes the map of the core's balanced truncation."""
    layer = weak_mode_layer(kind, 2, 4, 4, device, weak=0.3, seed=4)
    with torch.no_grad():
        lti0 = to_lti(layer)
    order = 3 * per_state(kind)
    rep = reduce_(layer, order)
    assert rep.applied, rep.reason
    with torch.no_grad():
        lti1 = to_lti(layer)
    zs = np.exp(1j * np.linspace(0, np.pi, 9))
    for g, sys in enumerate(lti0.recurrence_statespace(augmented=False)):
        red = ctrlreduce.balanced_truncation(sys, 3)
        new = lti1.recurrence_statespace(augmented=False)[g]
        for z in zs:
            ref = _real_map_tf(red.system.A, red.system.B, red.system.C, red.system.D, z)
            got = _real_map_tf(new.A, new.B, new.C, new.D, z)
            np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-9 * np.abs(ref).max())
        assert rep.error_bound >= red.error_bound * (1 - 1e-9)


def test_real_method_matches_core_on_augmented(device):
    layer = weak_mode_layer("s5", 2, 3, 3, device, weak=0.2, seed=2)
    with torch.no_grad():
        sys = to_lti(layer).recurrence_statespace()[0]  # augmented: its real map
    rep = reduce_(layer, 3, method="real")
    assert rep.applied and rep.method == "real", rep.reason
    red = ctrlreduce.balanced_truncation(sys, 6)
    assert rep.error_bound == pytest.approx(red.error_bound, rel=1e-9)
    with torch.no_grad():
        new = to_lti(layer).recurrence_statespace()[0]
    w = np.linspace(0, np.pi, 11)
    np.testing.assert_allclose(new.freqresp(w), red.system.freqresp(w), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_tol_picks_largest_admissible_cut(kind, device):
    layer = make_layer(kind, 4, 12, 5, device)
    h = method_hsv(layer, "complex")
    tol = float(2 * h[:, 3:].sum(dim=1).max()) * 1.0001  # admits keeping 3 modes, not 2
    rep = reduce_(layer, tol=tol)
    assert rep.applied, rep.reason
    kept = rep.new_order // per_state(kind)
    assert kept == 3 and layer.d_state == rep.new_order
    assert rep.error_bound <= tol
    assert float(2 * h[:, kept - 1 :].sum(dim=1).max()) > tol


def test_float32_layer(device):
    layer = make_layer("lru", 8, 24, 3, device, dtype=torch.float32)
    u = torch.randn(2, 100, 8, device=device)
    with torch.no_grad():
        y0 = layer(u)
    rep = reduce_(layer, 8)
    assert rep.applied, rep.reason
    assert layer.nu_log.dtype == torch.float32 and layer.d_state == 8
    assert rep.realization_error <= 1.2e-3
    with torch.no_grad():
        err = l2_gain_of_change(y0.double(), layer(u).double(), u.double())
    assert err <= rep.error_bound * 1.01


# ------------------------------------------------------------------ no-ops and guards
@pytest.mark.parametrize("kind", KINDS)
def test_same_order_is_noop(kind, device):
    layer = make_layer(kind, 3, 8, 0, device)
    snap = snapshot(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = reduce_(layer, 8)
    assert not rep.applied and "nothing to reduce" in rep.reason
    assert rep.new_order == rep.old_order == 8 and rep.error_bound == 0.0
    assert_unchanged(layer, snap)


def _trained_adam(layer, steps=2):
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    u = torch.randn(2, 20, layer.d_model, dtype=torch.float64, device=layer.D.device)
    for _ in range(steps):
        opt.zero_grad()
        layer(u).pow(2).mean().backward()
        opt.step()
    return opt


def _refused(layer, opt, **kw):
    snap = snapshot(layer, opt)
    with pytest.warns(RuntimeWarning, match="refused"):
        rep = reduce_(layer, 4, optimizer=opt, **kw)
    assert not rep.applied and rep.reason
    assert rep.new_order == rep.old_order
    assert_unchanged(layer, snap, opt)
    return rep


@pytest.mark.parametrize("kind", KINDS)
def test_unstable_reduction_refused_bitwise(kind, device):
    layer = make_layer(kind, 3, 8, 2, device)
    opt = _trained_adam(layer)
    rep = _refused(layer, opt, margin=0.9)  # demands |mu| <= 0.1: the reduced poles fail
    assert "stable" in rep.reason


def test_bad_written_map_refused_bitwise(device):
    layer = make_layer("lru", 3, 8, 2, device)
    opt = _trained_adam(layer)
    rep = _refused(layer, opt, map_rtol=1e-300)
    assert "differs" in rep.reason


def test_from_lti_refusal_refused_bitwise(device, monkeypatch):
    layer = make_layer("s5", 3, 8, 2, device)
    opt = _trained_adam(layer)

    def boom(layer, lti):
        raise ValueError("not representable (test)")

    monkeypatch.setattr(convert, "prepare_writeback", boom)
    rep = _refused(layer, opt)
    assert "from_lti" in rep.reason


def test_real_eigenvalue_refused_and_auto_falls_back(device):
    """The real method refuses when the reduced real system has a real eigenvalue."""
    for seed in range(20):
        layer = make_layer("lru", 4, 10, seed, device)
        snap = snapshot(layer)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            rep = reduce_(layer, 4, method="real")
        if not rep.applied:
            break
    else:
        pytest.fail("no seed gave a real eigenvalue in 20 tries")
    assert "real eigenvalue" in rep.reason
    assert any(issubclass(w.category, RuntimeWarning) for w in rec)
    assert_unchanged(layer, snap)
    rep = reduce_(layer, 4, method="auto")
    assert rep.applied and rep.method == "complex" and layer.d_state == 4


def test_bad_arguments_raise_before_touching(device):
    layer = make_layer("lru", 3, 8, 0, device)
    s4d = make_layer("s4d", 3, 8, 0, device)
    opt = _trained_adam(layer)
    snap, snap4 = snapshot(layer, opt), snapshot(s4d)
    cases = [
        (ValueError, dict(order=0)),
        (ValueError, dict(order=9)),
        (ValueError, dict(order=-2)),
        (TypeError, dict(order=4.0)),
        (TypeError, dict(order=True)),
        (ValueError, dict()),
        (ValueError, dict(order=4, tol=1.0)),
        (ValueError, dict(tol=0.0)),
        (ValueError, dict(tol=-1.0)),
        (ValueError, dict(tol=float("nan"))),
        (TypeError, dict(tol="1")),
        (ValueError, dict(order=4, method="balanced")),
        (TypeError, dict(order=4, optimizer="adam")),
        (ValueError, dict(order=4, margin=1.5)),
        (ValueError, dict(order=4, margin=float("nan"))),
        (TypeError, dict(order=4, min_phase="small")),
        (ValueError, dict(order=4, map_rtol=-1.0)),
    ]
    for exc, kw in cases:
        with pytest.raises(exc):
            reduce_(layer, **{"optimizer": opt, **kw} if "optimizer" not in kw else kw)
        assert_unchanged(layer, snap, opt)
    for bad in (3, 0, 10):  # S4D: even, 2..d_state
        with pytest.raises(ValueError, match="order"):
            reduce_(s4d, bad)
    assert_unchanged(s4d, snap4)
    with pytest.raises(TypeError, match="layer"):
        reduce_(torch.nn.Linear(3, 3), 2)
    with torch.no_grad():
        layer.theta_log[1] = float("nan")
    snap = snapshot(layer, opt)
    with pytest.raises(ValueError, match="theta_log"):
        reduce_(layer, 4, optimizer=opt)
    assert_unchanged(layer, snap, opt)


# ------------------------------------------------------------------ optimizer surgery
OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2),
}


def _regression(kind, device):
    teacher = make_layer(kind, 4, 6, 100, device)
    student = make_layer(kind, 4, 12, 101, device)
    g = torch.Generator().manual_seed(3)
    u = torch.randn(8, 40, 4, generator=g, dtype=torch.float64).to(device)
    with torch.no_grad():
        target = teacher(u)
    return student, u, target


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["lru", "s4d"])
def test_optimizer_rebound_in_place(opt_name, kind, device):
    layer, u, target = _regression(kind, device)
    opt = OPTIMIZERS[opt_name](layer.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def step():
        opt.zero_grad()
        loss = (layer(u) - target).pow(2).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(3):
        step()
    sched.step()
    D_before, D_state = layer.D, {k: v.clone() for k, v in opt.state[layer.D].items()}
    old = dict(layer.named_parameters())
    old_steps = {n: opt.state[p].get("step") for n, p in old.items()}
    rep = reduce_(layer, 6, optimizer=opt)
    assert rep.applied, rep.reason
    new = dict(layer.named_parameters())
    # the optimizer holds exactly the layer's parameters, in the same slots
    assert [id(p) for g in opt.param_groups for p in g["params"]] == [id(p) for p in new.values()]
    assert layer.D is D_before
    assert all(torch.equal(v, D_state[k]) for k, v in opt.state[layer.D].items())
    changed = [n for n in new if new[n] is not old[n]]
    assert changed and rep.optimizer_params_rebound == len(changed)
    for n in changed:
        assert old[n] not in opt.state
        st = opt.state[new[n]]
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0:
                assert v.shape == new[n].shape and not bool(v.any()), (n, k)
        if old_steps[n] is not None:
            assert torch.equal(torch.as_tensor(st["step"]), torch.as_tensor(old_steps[n]))
    # training goes on with the same optimizer object and scheduler
    lr = opt.param_groups[0]["lr"]
    losses = [step() for _ in range(6)]
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr / 2)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


def test_cosine_scheduler_and_optimizer_state_dict_after_cut(device):
    layer, u, target = _regression("lru", device)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(2):
        opt.zero_grad()
        (layer(u) - target).pow(2).mean().backward()
        opt.step()
        sched.step()
    assert reduce_(layer, 5, optimizer=opt).applied
    lrs = []
    for _ in range(3):
        opt.zero_grad()
        (layer(u) - target).pow(2).mean().backward()
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] > lrs[1] > lrs[2]
    buf = io.BytesIO()
    torch.save({"model": layer.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=False)
    fresh = make_layer("lru", 4, 12, 999, device)
    fresh.load_state_dict(ck["model"])
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["opt"])
    for p, q in zip(layer.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)
        for k, v in opt.state[p].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state[q][k]))


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("use_helper", [False, True])
def test_save_reduce_save_load_identical(kind, use_helper, device):
    torch.manual_seed(0)
    kw = dict(d_model=6, d_state=10, n_layers=2, layer=kind)
    model = SequenceClassifier(3, 2, **kw).double().to(device)
    u = torch.randn(2, 30, 3, dtype=torch.float64, device=device)
    buf0 = io.BytesIO()
    torch.save(model.state_dict(), buf0)
    for block, order in zip(model.blocks, (4, 6), strict=True):
        assert reduce_(block.ssm, order).applied
    assert model.state_dims == [4, 6]
    buf1 = io.BytesIO()
    torch.save(model.state_dict(), buf1)
    with torch.no_grad():
        y = model(u)
    for buf, dims in ((buf1, [4, 6]), (buf0, [10, 10])):
        buf.seek(0)
        sd = torch.load(buf, weights_only=False)
        torch.manual_seed(123)
        fresh = SequenceClassifier(3, 2, **kw).double().to(device)
        if use_helper:
            convert.resize_to_state_dict(fresh, sd)
        fresh.load_state_dict(sd)
        assert fresh.state_dims == dims
        if dims == [4, 6]:
            with torch.no_grad():
                assert torch.equal(fresh(u), y)


def test_model_level_optimizer_with_two_groups(device):
    """Only the reduced layer's resized parameters are rebound; everything else keeps
    identity, position and state (two param groups, one without weight decay)."""
    torch.manual_seed(0)
    model = SequenceClassifier(3, 2, d_model=6, d_state=10, n_layers=2, layer="lru")
    model = model.double().to(device)
    ssm = model.blocks[0].ssm
    no_decay = [ssm.D, ssm.gamma_log]
    rest = [p for p in model.parameters() if all(p is not q for q in no_decay)]
    opt = torch.optim.AdamW(
        [{"params": rest}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3
    )
    u = torch.randn(4, 20, 3, dtype=torch.float64, device=device)
    labels = torch.tensor([0, 1, 0, 1], device=device)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(u), labels).backward()
        opt.step()
    before = [list(g["params"]) for g in opt.param_groups]
    others = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    old_ssm = dict(ssm.named_parameters())
    rep = reduce_(ssm, 4, optimizer=opt)
    assert rep.applied, rep.reason
    new_ssm = dict(ssm.named_parameters())
    changed = {id(old_ssm[n]): new_ssm[n] for n in new_ssm if new_ssm[n] is not old_ssm[n]}
    after = [list(g["params"]) for g in opt.param_groups]
    for g0, g1 in zip(before, after, strict=True):
        assert len(g0) == len(g1)
        for p0, p1 in zip(g0, g1, strict=True):
            assert p1 is changed.get(id(p0), p0)
    assert {id(p) for g in after for p in g} == {id(p) for p in model.parameters()}
    for p in model.parameters():
        if id(p) in others:  # kept identity: kept state
            for k, v in opt.state[p].items():
                assert torch.equal(v, others[id(p)][k])
    assert opt.param_groups[1]["params"][1] is ssm.gamma_log  # resized, same slot
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(u), labels).backward()
    opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    half=st.integers(2, 6),
    frac=st.floats(0.1, 0.9),
    seed=st.integers(0, 1000),
)
def test_bound_or_refusal_property(kind, half, frac, seed):
    """Whatever the sizes: applied => within the bound; refused => unchanged."""
    d_state = 2 * half
    step = per_state(kind)
    order = max(step, min(d_state - step, int(frac * d_state) // step * step))
    layer = make_layer(kind, 3, d_state, seed, "cpu")
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(2, 120, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y0 = layer(u)
    snap = snapshot(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = reduce_(layer, order, method="auto")
    if rep.applied:
        assert layer.d_state == order
        with torch.no_grad():
            assert l2_gain_of_change(y0, layer(u), u) <= rep.error_bound * (1 + 1e-9)
    else:
        assert_unchanged(layer, snap)


def _near_real_lti(G, m, phase, seed=0):
    """Modes with (almost) real eigenvalues and real B, C: the reduced poles stay real."""
    g = torch.Generator().manual_seed(seed)
    N = 4
    r = torch.tensor([0.9, 0.7, 0.5, 0.3], dtype=torch.float64).expand(G, N)
    lam = torch.polar(r, torch.full((G, N), phase, dtype=torch.float64))
    B = torch.randn(G, N, m, generator=g, dtype=torch.float64).to(torch.complex128)
    C = torch.randn(G, m, N, generator=g, dtype=torch.float64).to(torch.complex128)
    B[:, 1:] *= 1e-3
    return DiagonalLTI(lam, B, C, torch.zeros(G, m, m, dtype=torch.float64))


def test_real_poles_kept_where_representable(device):
    """S4D represents a real eigenvalue (Im A = 0): the cut is applied.  The LRU's phase
    exp(theta_log) cannot be 0: the same cut is refused with the phase guard."""
    s4d = make_layer("s4d", 2, 8, 0, device)
    lti = _near_real_lti(2, 1, 0.0)
    from_lti(s4d, DiagonalLTI(lti.lam, lti.B, lti.C, lti.D[:, :1, :1]))
    u = torch.randn(2, 100, 2, dtype=torch.float64, device=device)
    with torch.no_grad():
        y0 = s4d(u)
    rep = reduce_(s4d, 2)
    assert rep.applied, rep.reason
    with torch.no_grad():
        assert l2_gain_of_change(y0, s4d(u), u) <= rep.error_bound * (1 + 1e-9)
        assert float(to_lti(s4d).lam.imag.abs().max()) < 1e-6  # the kept pole is real

    lru = make_layer("lru", 2, 4, 0, device)
    lti = _near_real_lti(1, 2, 1e-12)
    from_lti(lru, DiagonalLTI(lti.lam, lti.B, lti.C, torch.diag_embed(torch.ones(1, 2))))
    snap = snapshot(lru)
    with pytest.warns(RuntimeWarning, match="phase 0"):
        rep = reduce_(lru, 1)
    assert not rep.applied
    assert_unchanged(lru, snap)


# ------------------------------------------------------------------ non-finite and extreme scales
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_parameter_refused_before_touching(kind):
    layer = make_layer(kind, 3, 8, 0, "cpu")
    opt = _trained_adam(layer)
    with torch.no_grad():
        layer.D[0] = float("inf")
    snap = snapshot(layer, opt)
    with pytest.raises(ValueError, match=rf"{type(layer).__name__}\) parameter 'D'"):
        reduce_(layer, 4, optimizer=opt)
    assert_unchanged(layer, snap, opt)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", [1e160, 1e-170])
def test_huge_and_tiny_parameters_reduce_exactly(kind, scale):
    """``B = 1e160`` (its Gramian overflows float64) or ``1e-170`` (underflows): the reduction
    is that of the unscaled layer with B scaled back: same HSVs times the scale, the same bound
    times the scale, the same reduced map times the scale."""
    ref = make_layer(kind, 3, 8, 0, "cpu")
    big = make_layer(kind, 3, 8, 0, "cpu")
    with torch.no_grad():
        big.B_re.mul_(scale)
        big.B_im.mul_(scale)
    r0 = reduce_(ref, 4)
    r1 = reduce_(big, 4)
    assert r0.applied and r1.applied, (r0.reason, r1.reason)
    torch.testing.assert_close(r1.hsv / scale, r0.hsv, rtol=1e-12, atol=0)
    assert r1.error_bound / scale == pytest.approx(r0.error_bound, rel=1e-9)
    # the reduced maps: strictly proper parts F(z) = C (z - lam)^-1 B on the unit circle
    ang = torch.linspace(0, 3.1, 7, dtype=torch.float64)
    z = torch.polar(torch.ones_like(ang), ang)

    def F(layer):
        lti = to_lti(layer)
        res = 1 / (z[:, None, None] - lti.lam[None])  # (K, G, N)
        return torch.einsum("gpn,kgn,gnm->kgpm", lti.C, res, lti.B)

    f0, f1 = F(ref), F(big)
    torch.testing.assert_close(f1 / scale, f0, rtol=0, atol=1e-9 * float(f0.abs().max()))


def test_unrepresentable_hsvs_raise_before_touching():
    layer = make_layer("lru", 3, 8, 0, "cpu")
    opt = _trained_adam(layer)
    with torch.no_grad():
        for n in ("B_re", "B_im", "C_re", "C_im"):
            getattr(layer, n).mul_(1e200)
    snap = snapshot(layer, opt)
    with pytest.raises(ValueError, match="not representable"):
        reduce_(layer, 4, optimizer=opt)
    assert_unchanged(layer, snap, opt)


# ------------------------------------------------------------------ LBFGS, factored and odd states
def _lbfgs_setup(kind, first_is_layer, seed=0):
    """A layer (alone, or after a Linear) trained 3 LBFGS steps on a regression task."""
    layer, u, target = _regression(kind, "cpu")
    model = layer if first_is_layer else torch.nn.Sequential(torch.nn.Linear(4, 4), layer).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=5)

    def closure():
        opt.zero_grad()
        loss = (model(u) - target).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return model, layer, opt, closure, (u, target)


@pytest.mark.parametrize("kind", ["lru", "s4d"])
@pytest.mark.parametrize("first_is_layer", [True, False])
def test_lbfgs_restarts_exactly_after_a_cut(kind, first_is_layer):
    """LBFGS keeps flat vectors over all its parameters; after reduce_ its history is restarted,
    so the next step is bit-identical to that of a fresh LBFGS on the new parameters (it
    crashed with a size mismatch before)."""
    model, layer, opt, closure, (u, target) = _lbfgs_setup(kind, first_is_layer)
    evals = opt.state[opt.param_groups[0]["params"][0]]["func_evals"]
    rep = reduce_(layer, 6, optimizer=opt)
    assert rep.applied, rep.reason
    twin = copy.deepcopy(model)
    fresh = torch.optim.LBFGS(twin.parameters(), lr=0.5, max_iter=4, history_size=5)
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state == {"func_evals": evals, "n_iter": 0}
    loss = opt.step(closure)

    def closure_twin():
        fresh.zero_grad()
        out = (twin(u) - target).pow(2).mean()
        out.backward()
        return out

    loss_twin = fresh.step(closure_twin)
    assert torch.equal(loss, loss_twin)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    for _ in range(3):
        assert math.isfinite(float(opt.step(closure).detach()))


def test_lbfgs_state_is_sliced_exactly_by_a_modal_cut():
    """A selection of modes (the compressor's ablations) slices every flat LBFGS vector along
    the kept entries; ro and H_diag follow from the sliced pairs."""
    model, layer, opt, closure, _ = _lbfgs_setup("lru", first_is_layer=False)
    params = list(opt.param_groups[0]["params"])
    names = {id(p): n for n, p in layer.named_parameters()}
    axes = family_of(layer).state_axes
    keep = torch.tensor([0, 2, 3, 7, 9])
    state = opt.state[params[0]]
    old = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state.items()}
    old_dirs = [v.clone() for v in state["old_dirs"]]
    old_stps = [v.clone() for v in state["old_stps"]]

    def expect(vec):
        parts = torch.split(vec, [p.numel() for p in params])
        out = []
        for p, chunk in zip(params, parts, strict=True):
            n = names.get(id(p))
            chunk = chunk.view(p.shape)
            if n in axes:
                chunk = chunk.index_select(axes[n], keep)
            out.append(chunk.reshape(-1))
        return torch.cat(out)

    rep = modal_truncate_(layer, keep, optimizer=opt)
    assert layer.d_state == 5
    assert (rep.applied, rep.old_order, rep.new_order, rep.error_bound) == (True, 12, 5, None)
    new = opt.state[opt.param_groups[0]["params"][0]]
    assert torch.equal(new["d"], expect(old["d"]))
    assert torch.equal(new["prev_flat_grad"], expect(old["prev_flat_grad"]))
    pairs = [(expect(y), expect(s)) for y, s in zip(old_dirs, old_stps, strict=True)]
    pairs = [(y, s) for y, s in pairs if y.dot(s) > 1e-10]
    assert len(new["old_dirs"]) == len(pairs)
    for (y, s), y1, s1, r1 in zip(pairs, new["old_dirs"], new["old_stps"], new["ro"], strict=True):
        assert torch.equal(y1, y) and torch.equal(s1, s)
        assert torch.equal(r1, 1.0 / y.dot(s))
    assert new["n_iter"] == old["n_iter"] and new["t"] == old["t"]
    total = sum(p.numel() for p in opt.param_groups[0]["params"])
    assert new["d"].numel() == total
    for _ in range(3):
        assert math.isfinite(float(opt.step(closure).detach()))


@pytest.mark.parametrize("kind", ["lru", "s4d"])
def test_adafactor_factored_state_follows_the_cut(kind):
    """Adafactor's row_var/col_var are laid out along the parameter's axes with size 1 on one:
    reset to zeros of the new shapes (they were copied at the old size before)."""
    layer, u, target = _regression(kind, "cpu")
    opt = torch.optim.Adafactor(layer.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        (layer(u) - target).pow(2).mean().backward()
        opt.step()
    rep = reduce_(layer, 6, optimizer=opt)
    assert rep.applied
    for p in layer.parameters():
        state = opt.state[p]
        for k in ("row_var", "col_var", "variance"):
            if k in state:
                assert state[k].dim() == p.dim() and all(
                    s in (q, 1) for s, q in zip(state[k].shape, p.shape, strict=True)
                )
    for _ in range(3):
        opt.zero_grad()
        loss = (layer(u) - target).pow(2).mean()
        loss.backward()
        opt.step()
        assert math.isfinite(float(loss.detach()))


class _FlatStateSGD(torch.optim.SGD):
    """An optimizer with a flat per-parameter state vector (no known layout)."""

    def step(self, closure=None):
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["flat"] = p.detach().reshape(-1).clone()[:1].repeat(3)
        return out


def test_unknown_optimizer_state_refused_bit_identically():
    layer, u, target = _regression("lru", "cpu")
    opt = _FlatStateSGD(layer.parameters(), lr=1e-2, momentum=0.9)
    opt.zero_grad()
    (layer(u) - target).pow(2).mean().backward()
    opt.step()
    snap = snapshot(layer, opt)
    sd = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="_FlatStateSGD keeps state 'flat'"):
        reduce_(layer, 6, optimizer=opt)
    assert_unchanged(layer, snap, opt)
    after = opt.state_dict()
    assert after["param_groups"] == sd["param_groups"]
    for i, state in sd["state"].items():
        for k, v in state.items():
            now = after["state"][i][k]
            assert torch.equal(now, v) if torch.is_tensor(v) else now == v
