"""CompreSSM compressor: schedule, rank rules, modes, selections, guards, resume."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
from ctrlreduce_torch import _bt, _policy, cut_steps, modal_scores
from ctrlreduce_torch.compressor import Compressor, find_ssm_layers
from ctrlreduce_torch.convert import to_lti
from ctrlreduce_torch.demo.models import SequenceClassifier
from ctrlreduce_torch.hsv import hankel_singular_values

torch.set_num_threads(1)

# ranked (complex-system) HSVs per unit of d_state: one per complex state; S4D has
# d_state / 2 complex modes per channel
K_PER_STATE = {"lru": 1, "s5": 1, "s4d": 0.5}


def make(layer: str = "s4d", d_state: int = 16, seed: int = 0, n_layers: int = 2):
    torch.manual_seed(seed)
    model = SequenceClassifier(1, 3, d_model=4, d_state=d_state, n_layers=n_layers, layer=layer)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(8, 24, 1, generator=g)
    return x, (x[:, :8, 0].sum(1) > 0).long() + (x[:, -8:, 0].sum(1) > 0).long()


def train(model, opt, comp, start: int, stop: int, record=None) -> None:
    for step in range(start, stop):
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if comp is not None:
            comp.step()
        if record is not None:
            record.append(list(model.state_dims))


def all_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# --------------------------------------------------------------------------- schedule


def test_cut_steps_evenly_spaced_in_window():
    assert cut_steps(1000, 0.1, 4) == [25, 50, 75, 100]
    assert cut_steps(40, 0.5, 2) == [10, 20]
    assert cut_steps(7, 1.0, 7) == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="attempts=4"):
        cut_steps(20, 0.1, 4)


def test_cuts_happen_only_at_scheduled_steps_and_compound():
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=40, tau=0.15, window=0.5, attempts=4)
    assert comp.schedule == [5, 10, 15, 20]
    dims: list[list[int]] = []
    train(model, opt, comp, 0, 40, dims)
    changed_at = {i + 1 for i in range(1, 40) if dims[i] != dims[i - 1]}
    if dims[0] != [16, 16]:
        changed_at.add(1)
    assert changed_at and changed_at <= set(comp.schedule)
    assert changed_at == {h["step"] for h in comp.history if h["applied"]}
    # one history entry per layer and attempt, in order, and sizes compound
    assert [(h["attempt"], h["step"]) for h in comp.history] == [
        (a, s) for a, s in zip(range(1, 5), comp.schedule, strict=True) for _ in range(2)
    ]
    for name in ("blocks.0.ssm", "blocks.1.ssm"):
        hs = [h for h in comp.history if h["layer"] == name]
        for prev, nxt in zip(hs, hs[1:], strict=False):
            assert nxt["old_order"] == prev["new_order"]
        assert hs[0]["applied"], hs[0]["reason"]  # the first cut of each layer happens
        assert hs[-1]["new_order"] <= hs[0]["new_order"] < 16
        # nothing refused: every entry is a cut or has nothing to drop
        assert all(h["applied"] or h["reason"] == "no states to drop" for h in hs)
    assert sum(h["applied"] for h in comp.history) >= 4
    assert model.state_dims == comp.state_dims == [h["new_order"] for h in comp.history[-2:]]
    assert all_finite(model)
    json.dumps(comp.history)  # JSON-serializable


def _smallest_tau_order(hsv: np.ndarray, k: float, g: int, current: int, tau: float) -> int:
    """Independent reading of the documented rule: smallest legal d keeping 1 - tau."""
    for d in range(g, current + 1, g):
        kept = hsv[:, : int(k * d)].sum(1) / hsv.sum(1)
        if np.all(kept >= 1 - tau - 1e-12):
            return d
    return current


@pytest.mark.parametrize("layer", ["s4d", "lru", "s5"])
def test_tau_rule_matches_energy_definition(layer):
    model, opt = make(layer, 12)
    comp = Compressor(model, opt, total_steps=20, tau=0.1, window=0.5, attempts=2,
                      min_reduction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a refused cut fails the test
        train(model, opt, comp, 0, 20)
    g = 2 if layer == "s4d" else 1
    assert all(h["applied"] for h in comp.history[:2])  # the first attempt cuts both layers
    for h in comp.history:
        hsv = np.asarray(h["hsv"])
        want = _smallest_tau_order(hsv, K_PER_STATE[layer], g, h["old_order"], 0.1)
        assert h["new_order"] == want
        assert h["applied"] == (want < h["old_order"])
        if not h["applied"]:
            assert h["reason"] == "no states to drop"


def test_min_reduction_gate():
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=20, tau=0.1, window=0.5, attempts=2,
                      min_reduction=0.999)
    train(model, opt, comp, 0, 20)
    assert model.state_dims == [16, 16]
    assert all(not h["applied"] and "min_reduction" in h["reason"] for h in comp.history)
    # unit level: a cut of 1 of 20 states (5%) passes at 0.05 but not at 0.06
    sigma = np.array([[1.0] * 19 + [1e-9]])
    assert _policy.modes_for_tau(_policy.kept_energy(sigma), 1e-6) == 19


def _layer_gain_check(before, after, bound):
    """||y - y_r||_2 <= bound ||u||_2 on random inputs (zero initial state)."""
    g = torch.Generator().manual_seed(5)
    u = torch.randn(4, 200, before.d_model, generator=g, dtype=torch.float64)
    dy = (before.double()(u) - after.double()(u)).norm(dim=1)  # (batch, H) per channel
    un = u.norm(dim=1)
    if before.__class__.__name__ == "S4D":  # independent channels: per channel
        assert bool((dy <= bound * un * (1 + 1e-6) + 1e-9).all())
    else:
        assert float(dy.norm(dim=1).max()) <= bound * float(un.norm(dim=1).min()) * 1.000001 + 1e-9


def test_tol_mode_certified_bound_holds():
    model, opt = make("s4d", 16)
    train(model, opt, None, 0, 9)
    with torch.no_grad():  # the ranked HSVs: the complex recurrence's, one per mode
        hsv = hankel_singular_values(
            model.blocks[0].ssm, augmented=False, form="recurrence"
        ).numpy()
    tol = 2.0 * float(hsv[:, 4:].sum(1).max()) * 1.01  # admits keeping 4 of layer 0's 8 modes
    comp = Compressor(model, opt, total_steps=2, tol=tol, window=0.5, attempts=1,
                      min_reduction=0.0)
    assert comp.schedule == [1]
    layers = [copy.deepcopy(m) for _, m in find_ssm_layers(model)]
    train(model, opt, comp, 9, 10)  # the cut
    assert comp.history[0]["applied"] and comp.history[0]["new_order"] <= 8
    for h, before in zip(comp.history, layers, strict=True):
        assert h["error_bound"] <= tol
        if h["applied"]:
            assert h["method"] == "complex"
            after = dict(find_ssm_layers(model))[h["layer"]]
            _layer_gain_check(before, after, h["error_bound"])
            # the bound is the recorded HSVs' tail, and the next smaller legal order (one
            # mode fewer per channel) would break tol: the largest cut whose bound <= tol
            ranked = np.asarray(h["hsv"])  # (G, M): one complex HSV per mode
            kept = h["new_order"] // 2
            assert h["error_bound"] == pytest.approx(2 * ranked[:, kept:].sum(1).max(), rel=1e-12)
            if kept >= 2:
                assert 2 * ranked[:, kept - 1 :].sum(1).max() > tol


def test_budget_mode_meets_budget_and_allocates_globally():
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=20, final_fraction=0.5, window=0.5, attempts=2)
    train(model, opt, comp, 0, 20)
    assert sum(model.state_dims) == 16  # round(0.5 * 32)
    # the allocation: fast-decaying layer 0 needs few states, flat layer 1 many
    fast = np.array([[2.0**-i for i in range(10)]])
    flat = np.array([[1.0] * 10])
    energies = [_policy.kept_energy(fast), _policy.kept_energy(flat)]
    orders = _policy.modes_for_budget(energies, [1, 1], [10, 10], 8)
    assert sum(orders) == 8 and orders[0] < orders[1]
    # state_budget: same with an absolute total
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=20, state_budget=12, window=0.5, attempts=2)
    train(model, opt, comp, 0, 20)
    assert sum(model.state_dims) == 12


@pytest.mark.parametrize("layer", ["lru", "s4d"])
def test_largest_selection_is_modal_truncation_of_least_dominant(layer):
    model, opt = make(layer, 12)
    comp = Compressor(model, opt, total_steps=40, tau=0.2, window=0.5, attempts=2,
                      selection="largest")
    train(model, opt, comp, 0, 9)
    _, ssm = find_ssm_layers(model)[0]
    lam0 = to_lti(ssm).lam.detach().clone()  # (G, M)
    scores = modal_scores(ssm).mean(0).numpy()  # (M,)
    comp.step()  # step 10: the first cut, no parameter update in between
    h = comp.history[0]
    assert h["applied"] and h["error_bound"] is None and h["method"] == "modal-largest"
    m_new = to_lti(ssm).lam.shape[1]
    keep = np.sort(np.argsort(scores, kind="stable")[:m_new])
    torch.testing.assert_close(to_lti(ssm).lam.detach(), lam0[:, keep], rtol=1e-6, atol=1e-7)
    # the optimizer holds exactly the model's parameters, with sliced moments
    opt_params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in model.parameters()}
    for p in model.parameters():
        if p in opt.state:
            assert opt.state[p]["exp_avg"].shape == p.shape
    train(model, opt, comp, 10, 40)
    assert all_finite(model)


def _random_run(seed: int):
    """A random-selection run: the first cut's kept modes (as indices into the modes before
    it) and the final sizes."""
    model, opt = make("lru", 12)
    comp = Compressor(model, opt, total_steps=40, tau=0.2, window=0.5, attempts=2,
                      selection="random", seed=seed)
    assert comp.schedule == [10, 20]
    train(model, opt, comp, 0, 9)
    ssm = find_ssm_layers(model)[0][1]
    lam0 = to_lti(ssm).lam.detach().clone()[0]  # (12,)
    comp.step()  # step 10: the first cut, no parameter update in between
    assert comp.history[0]["applied"] and comp.history[0]["method"] == "modal-random"
    lam1 = to_lti(ssm).lam.detach()[0]
    # an exact selection: every kept eigenvalue is one of the old ones, bit for bit
    keep = [int(torch.nonzero(lam0 == mu).flatten()[0]) for mu in lam1]
    assert keep == sorted(set(keep)) and len(keep) == ssm.d_state
    train(model, opt, comp, 10, 20)
    return keep, model.state_dims


def test_random_selection_is_seeded():
    keep_a, dims_a = _random_run(3)
    keep_b, dims_b = _random_run(3)
    keep_c, dims_c = _random_run(4)
    assert keep_a == keep_b and dims_a == dims_b  # same seed: the same run
    assert dims_a[0] < 12 and dims_c[0] < 12
    # another seed keeps another subset (of the same size: the tau rule does not depend on
    # the seed before the first cut)
    assert len(keep_c) == len(keep_a) and keep_c != keep_a


# --------------------------------------------------------------------------- guards


def test_refused_cut_leaves_model_training_at_old_size(monkeypatch):
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=40, tau=0.2, window=0.5, attempts=2)
    train(model, opt, comp, 0, 9)
    assert comp.schedule == [10, 20] and not comp.history
    before = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    groups = [list(g["params"]) for g in opt.param_groups]
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}

    def refuse(*args, **kwargs):  # the eigenvalue guard of the real cut path refuses
        raise _bt.Refused("guard: reduced eigenvalue not strictly stable (test)")

    monkeypatch.setattr(_bt, "_check_eigs", refuse)
    with pytest.warns(RuntimeWarning, match="refused: guard"):
        assert comp.step() is False  # step 10: the scheduled cut, refused
    assert model.state_dims == [16, 16]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [list(g["params"]) for g in opt.param_groups] == groups
    assert {id(p) for p in opt.state} == set(state)
    for p, s in opt.state.items():
        assert all(torch.equal(v, state[id(p)][k]) for k, v in s.items())
    assert [h["applied"] for h in comp.history] == [False, False]
    assert all("guard" in h["reason"] and h["method"] == "complex" for h in comp.history)
    assert all(h["new_order"] == h["old_order"] == 16 for h in comp.history)
    monkeypatch.undo()
    train(model, opt, comp, 10, 12)
    assert all_finite(model)


def test_nan_layer_is_refused_and_others_still_cut():
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=40, tau=0.2, window=0.5, attempts=2)
    train(model, opt, comp, 0, 9)
    assert comp.schedule == [10, 20] and not comp.history
    bad = model.blocks[0].ssm
    with torch.no_grad():
        next(bad.parameters())[0] = float("nan")
    with pytest.warns(RuntimeWarning, match="blocks.0.ssm"):
        comp.step()  # step 10: a scheduled cut
    h0, h1 = comp.history
    assert not h0["applied"] and h0["new_order"] == 16 and h0["reason"]
    assert h1["applied"] and model.state_dims[1] < 16
    assert all(bool(torch.isfinite(p).all()) for p in model.blocks[1].parameters())


def test_bad_arguments():
    model, opt = make("s4d", 8)
    with pytest.raises(ValueError, match="exactly one of"):
        Compressor(model, opt, total_steps=100)
    with pytest.raises(ValueError, match="exactly one of"):
        Compressor(model, opt, total_steps=100, tau=0.1, tol=0.1)
    with pytest.raises(ValueError, match="tau"):
        Compressor(model, opt, total_steps=100, tau=1.5)
    with pytest.raises(ValueError, match="selection"):
        Compressor(model, opt, total_steps=100, tau=0.1, selection="median")
    with pytest.raises(ValueError, match="no supported SSM layer"):
        Compressor(torch.nn.Linear(2, 2), opt, total_steps=100, tau=0.1)
    ema = torch.optim.swa_utils.AveragedModel(model)
    with pytest.raises(TypeError, match="AveragedModel"):
        Compressor(ema, opt, total_steps=100, tau=0.1)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("k", [3, 15, 33])  # before, between and after the cuts
def test_resume_from_checkpoint_is_exact(k):
    N, kw = 36, dict(total_steps=36, tau=0.1, window=0.75, attempts=3)  # cuts 9, 18, 27
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, **kw)
    train(model, opt, comp, 0, N)
    assert model.state_dims != [16, 16]

    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, **kw)
    train(model, opt, comp, 0, k)
    ckpt = copy.deepcopy(
        {"model": model.state_dict(), "opt": opt.state_dict(), "comp": comp.state_dict()}
    )
    json.dumps(ckpt["comp"]["history"])
    # a fresh process: new objects, different initial weights
    model2, opt2 = make("s4d", 16, seed=99)
    comp2 = Compressor(model2, opt2, **kw)
    comp2.load_state_dict(ckpt["comp"])
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    train(model2, opt2, comp2, k, N)

    ref_model, _ = make("s4d", 16)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    ref = Compressor(ref_model, ref_opt, **kw)
    train(ref_model, ref_opt, ref, 0, N)
    assert model2.state_dims == ref_model.state_dims
    sd, sr = model2.state_dict(), ref_model.state_dict()
    for key in sr:
        if torch.is_tensor(sr[key]):
            assert torch.equal(sd[key], sr[key]), key
    assert [
        {k2: v for k2, v in h.items() if k2 != "seconds"} for h in comp2.history
    ] == [{k2: v for k2, v in h.items() if k2 != "seconds"} for h in ref.history]


def test_overhead_is_reported():
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, total_steps=20, tau=0.2, window=0.5, attempts=2)
    train(model, opt, comp, 0, 20)
    o = comp.overhead()
    assert o["reduce_seconds"] > 0 and o["train_seconds"] > o["reduce_seconds"]
    assert 0 < o["fraction"] < 1


# --------------------------------------------------------------------------- wrappers


def test_ema_copies_restart_from_reduced_weights():
    model, opt = make("s4d", 16)
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
    )
    comp = Compressor(model, opt, total_steps=20, tau=0.2, window=0.5, attempts=2, ema=[ema])
    for step in range(20):
        train(model, opt, comp, step, step + 1)
        ema.update_parameters(model)
    assert ema.module.state_dims == model.state_dims != [16, 16]
    x, _ = batch(0)
    assert torch.isfinite(ema(x)).all()


def test_torch_compile_keeps_working_after_a_cut():
    model, opt = make("s4d", 16)
    compiled = torch.compile(model, backend="aot_eager")
    comp = Compressor(compiled, opt, total_steps=12, tau=0.2, window=0.5, attempts=2)
    assert [n for n, _ in comp.layers] == ["blocks.0.ssm", "blocks.1.ssm"]
    for step in range(12):
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(compiled(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        comp.step()
    assert model.state_dims != [16, 16]
    x, _ = batch(0)
    torch.testing.assert_close(compiled(x), model(x))


def test_resume_in_the_wrong_order_is_refused():
    kw = dict(total_steps=20, tau=0.2, window=0.5, attempts=2)
    model, opt = make("s4d", 16)
    comp = Compressor(model, opt, **kw)
    train(model, opt, comp, 0, 12)
    assert model.state_dims != [16, 16]
    sd, cs = model.state_dict(), comp.state_dict()
    model2, opt2 = make("s4d", 16)
    comp2 = Compressor(model2, opt2, **kw)
    model2.load_state_dict(sd)  # resizes the layers behind the optimizer's back
    with pytest.raises(RuntimeError, match="before model.load_state_dict"):
        comp2.load_state_dict(cs)


# --------------------------------------------------------------------------- LBFGS


@pytest.mark.parametrize("selection", ["smallest", "random"])
def test_lbfgs_trains_through_the_cuts(selection):
    """LBFGS's flat state is restarted (balanced truncation) or sliced (modal selection) at
    each cut; the next ``opt.step(closure)`` used to crash with a size mismatch."""
    torch.manual_seed(0)
    model = SequenceClassifier(1, 3, d_model=4, d_state=12, n_layers=2, layer="lru")
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3, history_size=4)
    comp = Compressor(model, opt, total_steps=12, tau=0.2, window=0.5, attempts=2,
                      selection=selection)
    losses = []
    for step in range(12):
        x, y = batch(step)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(float(opt.step(closure).detach()))
        comp.step()
    assert any(h["applied"] for h in comp.history), [h["reason"] for h in comp.history]
    assert sum(model.state_dims) < 24
    assert all(np.isfinite(losses)) and all_finite(model)
    total = sum(p.numel() for p in model.parameters())
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state["d"].numel() == total


# --------------------------------------------------------------------------- argument table

_I64, _F64, _F32 = np.int64, np.float64, np.float32
# argument -> (accepted values, [(bad value, exception type)]); modes are given alone
ARG_TABLE = {
    "total_steps": (
        [100, _I64(100), np.int32(40)],
        [(0, ValueError), (-5, ValueError), (1.5, TypeError), (100.0, TypeError),
         (True, TypeError), ("100", TypeError), (None, TypeError), (np.bool_(True), TypeError)],
    ),
    "tau": (
        [0.05, _F64(0.05), _F32(0.5), 1e-9],
        [(0.0, ValueError), (1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
         (float("inf"), ValueError), ("0.05", TypeError), (True, TypeError),
         (torch.tensor(0.05), TypeError)],
    ),
    "tol": (
        [0.1, 3, _F64(1e-3), _I64(2)],
        [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
         (float("nan"), ValueError), (True, TypeError), ("1e-3", TypeError), ([0.1], TypeError)],
    ),
    "final_fraction": (
        [0.5, 1.0, _F64(0.25), 1],
        [(0.0, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.5", TypeError),
         (False, TypeError)],
    ),
    "state_budget": (
        [8, _I64(8), 1],
        [(0, ValueError), (-3, ValueError), (True, TypeError), (8.0, TypeError),
         ("8", TypeError)],
    ),
    "window": (
        [0.5, 1.0, _F64(0.5), 1],
        [(0.0, ValueError), (1.01, ValueError), (float("nan"), ValueError), ("0.5", TypeError),
         (True, TypeError), (None, TypeError)],
    ),
    "attempts": (
        [2, _I64(2)],
        [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError),
         ("2", TypeError)],
    ),
    "min_reduction": (
        [0.0, 0.5, _F64(0.05)],
        [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("0", TypeError),
         (True, TypeError)],
    ),
    "selection": (
        ["smallest", "random", "largest"],
        [("median", ValueError), ("", ValueError), (None, TypeError), (1, TypeError),
         (["smallest"], TypeError)],
    ),
    "seed": (
        [0, 7, _I64(3), 2**40],
        [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError),
         (None, TypeError)],
    ),
    "ema": (
        [(), []],
        [(5, TypeError), ("ema", TypeError), ([5], TypeError), (torch.nn.Linear(2, 2), TypeError)],
    ),
    "distributed": (
        [None, False, np.bool_(False)],
        [(1, TypeError), ("yes", TypeError), (True, ValueError)],
    ),
}
MODES = ("tau", "tol", "final_fraction", "state_budget")


def _kwargs(name, value):
    kw = {"total_steps": 100, "window": 0.5, "attempts": 2}
    if name not in MODES:
        kw["tau"] = 0.1
    kw[name] = value
    return kw


@pytest.mark.parametrize("name", list(ARG_TABLE))
def test_every_argument_is_checked_by_type_and_range(name):
    """Bools are not numbers, strings are not numbers, NumPy scalars are; every refusal names
    the argument and shows the value seen with its type; distributed=True without a process
    group fails at construction."""
    model, opt = make("s4d", 8)
    good, bad = ARG_TABLE[name]
    for value in good:
        comp = Compressor(model, opt, **_kwargs(name, value))
        if name in ("total_steps", "attempts", "state_budget", "seed"):
            assert type(getattr(comp, "value" if name == "state_budget" else name)) is int
        if name in ("tau", "tol", "final_fraction", "window", "min_reduction"):
            assert type(getattr(comp, "value" if name in MODES else name)) is float
    for value, exc in bad:
        with pytest.raises(exc) as info:
            Compressor(model, opt, **_kwargs(name, value))
        msg = str(info.value)
        assert name in msg, (value, msg)
        if name == "distributed" and value is True:
            assert "init_process_group" in msg
        elif name == "ema" and isinstance(value, list):
            assert "int" in msg  # the entry seen
        else:
            assert type(value).__name__ in msg, (value, msg)


def test_model_and_optimizer_arguments():
    model, opt = make("s4d", 8)
    for bad in (None, "model", torch.nn.Linear):
        with pytest.raises(TypeError, match="model must be"):
            Compressor(bad, opt, total_steps=100, tau=0.1)
    for bad in (None, "adam", [opt]):
        with pytest.raises(TypeError, match="optimizer must be"):
            Compressor(model, bad, total_steps=100, tau=0.1)
    with pytest.raises(TypeError, match="total_steps"):
        Compressor(model, opt, tau=0.1, total_steps=None)


def test_non_finite_layer_refused_at_construction():
    model, opt = make("lru", 8)
    with torch.no_grad():
        model.blocks[1].ssm.nu_log[2] = float("inf")
    with pytest.raises(ValueError, match=r"layer 'blocks.1.ssm' \(LRU\) parameter 'nu_log'"):
        Compressor(model, opt, total_steps=100, tau=0.1)


def test_load_state_dict_refuses_bad_state_before_touching():
    model, opt = make("s4d", 8)
    comp = Compressor(model, opt, total_steps=40, tau=0.2, window=0.5, attempts=2)
    good = comp.state_dict()
    dims = list(model.state_dims)
    cases = [
        (None, TypeError, "state"),
        ([1, 2], TypeError, "state"),
        ({k: v for k, v in good.items() if k != "history"}, ValueError, "history"),
        ({**good, "state_dims": [4, "x"]}, TypeError, "state_dims"),
        ({**good, "state_dims": [4, 3]}, ValueError, "multiple of 2"),
        ({**good, "state_dims": 4}, TypeError, "state_dims"),
        ({**good, "step_count": -1}, ValueError, "step_count"),
        ({**good, "elapsed": "1s"}, TypeError, "elapsed"),
    ]
    for bad, exc, what in cases:
        with pytest.raises(exc, match=what):
            comp.load_state_dict(bad)
        assert model.state_dims == dims
