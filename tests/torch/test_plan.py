"""Each cut is planned once: one LTI form, one set of factors, one SVD, one bound curve, one
order choice and one write-back per layer (counted through a counting layer family, a test
double registered for subclasses of the built-in layers), and the plan object itself."""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from ctrlreduce_torch import (
    LRU,
    S4D,
    BalancedFamily,
    Compressor,
    CutPlan,
    _bt,
    _layer,
    _policy,
    apply_plan,
    convert,
    family_of,
    hankel_singular_values,
    plan_cut,
    reduce_,
)
from ctrlreduce_torch.demo.models import SequenceClassifier

torch.set_num_threads(1)


class CountingFamily(BalancedFamily):
    """Delegates to a built-in family and counts the calls of its two maps."""

    def __init__(self, inner: BalancedFamily) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return "counting-" + self.inner.name

    @property
    def states_per_mode(self) -> int:
        return self.inner.states_per_mode

    @property
    def state_axes(self):
        return self.inner.state_axes

    @property
    def min_phase(self) -> float:
        return self.inner.min_phase

    def lti(self, layer, params):
        self.calls["lti"] += 1
        return self.inner.lti(layer, params)

    def params_from_lti(self, layer, lti):
        self.calls["params_from_lti"] += 1
        return self.inner.params_from_lti(layer, lti)


class CountedLRU(LRU):
    pass


class CountedS4D(S4D):
    pass


@pytest.fixture
def counters(monkeypatch):
    """Register the counting families (removed after the test) and count the numerics."""
    fams = {}
    for cls, base in ((CountedLRU, LRU), (CountedS4D, S4D)):
        fams[cls] = CountingFamily(family_of(base(1, 2)))
        monkeypatch.setitem(_layer._FAMILIES, cls, fams[cls])
    calls: Counter[str] = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(_bt, "gramian_factors", counted("factors", _bt.gramian_factors))
    monkeypatch.setattr(torch.linalg, "svd", counted("svd", torch.linalg.svd))
    monkeypatch.setattr(torch.linalg, "svdvals", counted("svdvals", torch.linalg.svdvals))
    monkeypatch.setattr(convert, "to_lti", counted("to_lti", convert.to_lti))
    monkeypatch.setattr(convert, "commit_writeback", counted("write", convert.commit_writeback))
    monkeypatch.setattr(_policy, "modes_for_tol", counted("tol_rule", _policy.modes_for_tol))
    monkeypatch.setattr(_policy, "modes_for_tau", counted("tau_rule", _policy.modes_for_tau))
    real_deepcopy = copy.deepcopy

    def deepcopy(obj, *args, **kwargs):
        if isinstance(obj, torch.nn.Module):
            calls["deepcopy_module"] += 1
        return real_deepcopy(obj, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", deepcopy)
    return fams, calls


def _model(layer: str, seed: int = 0):
    torch.manual_seed(seed)
    model = SequenceClassifier(1, 3, d_model=4, d_state=12, n_layers=2, layer=layer)
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


@pytest.mark.parametrize("cls", [CountedLRU, CountedS4D])
@pytest.mark.parametrize("mode", [{"tau": 0.2}, {"tol": 1e9}])
def test_one_compressor_cut_plans_each_layer_once(counters, cls, mode):
    """Acceptance 4: one cut per layer computes the LTI form, the factors and the SVD once,
    chooses the order once (one rule, the plan's), and writes back once; no deep copy."""
    fams, calls = counters
    fam = fams[cls]
    model, opt = _model(fam.name)
    assert all(type(b.ssm) is cls for b in model.blocks)
    comp = Compressor(model, opt, total_steps=2, window=1.0, attempts=2, min_reduction=0.0,
                      **mode)
    assert comp.schedule == [1, 2]
    fam.calls.clear()
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing refused
        assert comp.step() is True  # the first cut, both layers
    n = len(model.blocks)
    assert all(h["applied"] for h in comp.history) and len(comp.history) == n
    assert calls["to_lti"] == n  # one LTI form per layer
    assert calls["factors"] == n and calls["svd"] == n and calls["svdvals"] == 0
    assert calls["write"] == n and fam.calls["params_from_lti"] == n  # one write-back
    # the family's forward map: once for the LTI form, once for the written-back recurrence
    # (where the write-back check reads it)
    assert fam.calls["lti"] == 2 * n
    rule = "tau_rule" if "tau" in mode else "tol_rule"
    assert calls[rule] == n and calls["tau_rule" if rule == "tol_rule" else "tol_rule"] == 0
    assert calls["deepcopy_module"] == 0
    # the history entry is the report's own serialisation plus attempt, step and layer
    for h in comp.history:
        assert set(h) == {
            "attempt", "step", "layer", "old_order", "new_order", "hsv", "error_bound",
            "applied", "reason", "seconds", "method", "realization_error",
            "optimizer_params_rebound",
        }


def test_reduce_plans_once(counters):
    fams, calls = counters
    torch.manual_seed(0)
    layer = CountedLRU(3, 8).double()
    fams[CountedLRU].calls.clear()
    calls.clear()
    rep = reduce_(layer, tol=1e9)  # tol: the order comes from the plan's bound curve
    assert rep.applied and rep.new_order == 1
    assert (calls["to_lti"], calls["factors"], calls["svd"], calls["svdvals"]) == (1, 1, 1, 0)
    assert calls["tol_rule"] == 1 and calls["write"] == 1
    assert dict(fams[CountedLRU].calls) == {"lti": 2, "params_from_lti": 1}
    assert calls["deepcopy_module"] == 0


def test_plan_holds_what_the_cut_uses():
    torch.manual_seed(0)
    layer = S4D(3, 10).double()
    plan = plan_cut(layer)
    assert isinstance(plan, CutPlan) and plan.method == "complex" and plan.d_state == 10
    # the HSVs the bound is made of, and the bound curve over kept modes
    ref = hankel_singular_values(layer, augmented=False, form="recurrence")
    torch.testing.assert_close(plan.hsv, ref, rtol=1e-12, atol=1e-15)
    want = [2 * float(ref[:, r:].sum(1).max()) for r in range(6)]
    np.testing.assert_allclose(plan.bounds, want, rtol=1e-12, atol=0)
    rep = apply_plan(plan, 4)
    assert rep.applied and layer.d_state == 4
    assert rep.hsv is plan.hsv and rep.error_bound == pytest.approx(plan.bounds[2], rel=0)
    # a plan is used once: the write made it stale
    with pytest.raises(ValueError, match="stale"):
        apply_plan(plan, 2)


def test_stale_plan_is_refused_before_touching():
    torch.manual_seed(0)
    layer = LRU(3, 6).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    plan = plan_cut(layer)
    layer(torch.randn(2, 5, 3, dtype=torch.float64)).sum().backward()
    opt.step()  # the parameters moved since planning
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    with pytest.raises(ValueError, match="stale"):
        apply_plan(plan, 3, optimizer=opt)
    assert all(torch.equal(p, before[n]) for n, p in layer.named_parameters())
    with pytest.raises(TypeError, match="plan"):
        apply_plan("plan", 3)
    with pytest.raises(ValueError, match="order"):
        apply_plan(plan_cut(layer), 7)
    with pytest.raises(ValueError, match="method"):
        plan_cut(layer, method="auto")  # a plan is for one system
