"""Fuzz: bad input to any public entry point of ctrlreduce_torch raises TypeError or ValueError.

Every entry point is called with valid arguments except one, replaced by a value drawn from
a pool of bad and edge values (wrong types, bool for int, strings for numbers, NaN and
infinities, negative and zero sizes, NumPy scalars, tensors of wrong shape or dtype, ...).
The call must either succeed, returning nothing non-finite for finite input, or raise a
``TypeError``/``ValueError`` (whose message names something); no other exception type may
escape.  Layer sizes are drawn from a small range (huge sizes are an allocation failure of
torch, not an argument error); everything else is unbounded.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from ctrlreduce_torch import (
    LRU,
    S4D,
    S5,
    Compressor,
    CutPlan,
    DiagonalLTI,
    apply_plan,
    cut_steps,
    family_of,
    find_ssm_layers,
    from_lti,
    hankel_singular_values,
    modal_truncate_,
    plan_cut,
    rebind_optimizer_,
    reduce_,
    register_family,
    resize_to_state_dict,
    to_lti,
)
from ctrlreduce_torch import _layer as registry
from ctrlreduce_torch.demo.models import SequenceClassifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch.set_num_threads(1)

NAN, INF = float("nan"), float("inf")

BAD = st.one_of(
    st.none(),
    st.booleans(),
    st.just(np.bool_(True)),
    st.sampled_from(["", "0.5", "1", "nan", "lru", "complex", "zoh"]),
    st.integers(-(10**20), 10**20),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1e-320, 1e308, -1.0, 0.5, 2.0]),
    st.sampled_from([np.int64(3), np.int32(-1), np.float64(0.5), np.float32(NAN), np.float64(INF)]),
    st.lists(st.integers(-2, 5), max_size=3),
    st.tuples(st.integers(-2, 5)),
    st.dictionaries(st.sampled_from(["d_state", "a"]), st.integers(-2, 5), max_size=2),
    st.sampled_from(
        [
            torch.tensor(0.5),
            torch.tensor(NAN),
            torch.zeros(2, 3),
            torch.ones(3, dtype=torch.int64),
            torch.zeros(0),
            torch.ones(2, 5, 3, dtype=torch.bool),
            torch.full((2, 5, 3), NAN),
            torch.full((2, 5, 3), INF),
            torch.ones(2, 5, 3, dtype=torch.complex64),
            np.ones(3),
            object(),
            torch.nn.Linear(2, 2),
            print,
        ]
    ),
)
SIZE = st.one_of(BAD.filter(lambda v: not (isinstance(v, int) and abs(v) > 64)), st.just(4))

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _finite(x) -> bool:
    """True unless ``x`` holds a NaN or infinity (tensors, floats, containers, reports)."""
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x).all()) if (x.is_floating_point() or x.is_complex()) else True
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, DiagonalLTI):
        return all(_finite(getattr(x, f)) for f in ("lam", "B", "C", "D"))
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    return True


def _call(fn, *args, **kwargs):
    """Run ``fn``; allow only TypeError/ValueError with a message; return the result or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # refusals warn (RuntimeWarning); that is allowed
            return fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return None


def _layer(kind: str = "lru", d_state: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return {"lru": LRU, "s5": S5, "s4d": S4D}[kind](3, d_state).double()


# ------------------------------------------------------------------ layers


CONSTRUCTORS = {
    LRU: dict(d_model=3, d_state=4, r_min=0.0, r_max=1.0, max_phase=6.0),
    S5: dict(d_model=3, d_state=4, discretization="zoh", dt_min=1e-3, dt_max=1e-1),
    S4D: dict(d_model=3, d_state=4, dt_min=1e-3, dt_max=1e-1),
}


@SETTINGS
@given(cls=st.sampled_from(list(CONSTRUCTORS)), data=st.data())
def test_layer_constructors(cls, data):
    kwargs = dict(CONSTRUCTORS[cls])
    name = data.draw(st.sampled_from(list(kwargs)))
    kwargs[name] = data.draw(SIZE if name in ("d_model", "d_state") else BAD)
    layer = _call(cls, **kwargs)
    if layer is not None:
        assert _finite(list(layer.parameters()))
        y = layer(torch.randn(2, 6, layer.d_model))
        assert _finite(y), (name, kwargs[name])


@SETTINGS
@given(kind=st.sampled_from(["lru", "s5", "s4d"]), u=BAD, length=SIZE)
def test_layer_forward_and_kernel(kind, u, length):
    layer = _layer(kind)
    y = _call(layer, u)
    if y is not None and _finite(u):
        assert _finite(y)
    if kind == "s4d":
        k = _call(layer.kernel, length)
        assert k is None or _finite(k)


@SETTINGS
@given(data=st.data())
def test_sequence_classifier(data):
    kwargs = dict(d_input=1, n_classes=3, d_model=4, d_state=4, n_layers=2, layer="lru",
                  dropout=0.0, mixer="glu")
    name = data.draw(st.sampled_from(list(kwargs)))
    size = name in ("d_input", "n_classes", "d_model", "d_state", "n_layers")
    kwargs[name] = data.draw(SIZE if size else BAD)
    d_input, n_classes = kwargs.pop("d_input"), kwargs.pop("n_classes")
    _call(SequenceClassifier, d_input, n_classes, **kwargs)


# ------------------------------------------------------------------ conversions and HSVs


def _bad_lti(data) -> DiagonalLTI:
    lti = to_lti(_layer(data.draw(st.sampled_from(["lru", "s4d"]))))
    fields = {f: getattr(lti, f) for f in ("lam", "B", "C", "D")}
    name = data.draw(st.sampled_from(list(fields)))
    how = data.draw(st.sampled_from(["bad", "nan", "shape", "int", "unstable"]))
    t = fields[name]
    if how == "bad":
        fields[name] = data.draw(BAD)
    elif how == "nan":
        t = t.clone()
        t.view(-1)[0] = NAN
        fields[name] = t
    elif how == "shape":
        fields[name] = t[..., :0] if data.draw(st.booleans()) else t[0]
    elif how == "int":
        fields[name] = torch.ones(t.shape, dtype=torch.int64)
    else:
        fields["lam"] = fields["lam"] * 2
    return DiagonalLTI(**fields)


@SETTINGS
@given(data=st.data())
def test_hsv_to_lti_from_lti(data):
    lti = _bad_lti(data)
    aug = data.draw(st.one_of(st.booleans(), BAD))
    form = data.draw(st.one_of(st.sampled_from(["map", "recurrence"]), BAD))
    h = _call(hankel_singular_values, lti, augmented=aug, form=form)
    assert h is None or _finite(h)
    layer = _layer(data.draw(st.sampled_from(["lru", "s5", "s4d"])))
    target = data.draw(st.one_of(st.just(layer), BAD))
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    if _call(from_lti, target, lti) is None and target is layer:
        for n, p in layer.named_parameters():  # a refusal leaves the layer as it was
            assert torch.equal(p.detach(), before[n])
    h = _call(hankel_singular_values, data.draw(BAD))
    assert h is None or _finite(h)
    out = _call(to_lti, data.draw(BAD))
    assert out is None or _finite(out)


@SETTINGS
@given(kind=st.sampled_from(["lru", "s5", "s4d"]), name=st.sampled_from(
    ["B_re", "C_im", "D", "nu_log", "log_step", "log_dt"]), value=st.sampled_from(
    [NAN, INF, -INF, 1e300, -1e300, 1e-300, 1e160, 1e-170, 0.0, 700.0, -700.0]))
def test_extreme_parameters_never_give_nan(kind, name, value):
    """Whatever finite extreme a parameter holds, HSVs and reduce_ give finite answers or a
    ValueError; non-finite parameters are refused."""
    layer = _layer(kind, d_state=4)
    if not hasattr(layer, name):
        return
    with torch.no_grad():
        getattr(layer, name).view(-1)[0] = value
    h = _call(hankel_singular_values, layer)
    assert h is None or _finite(h)
    rep = _call(reduce_, layer, 2)
    if rep is not None:
        assert _finite(rep.hsv) and math.isfinite(rep.error_bound)


# ------------------------------------------------------------------ reduce_


@SETTINGS
@given(kind=st.sampled_from(["lru", "s5", "s4d"]), data=st.data())
def test_reduce(kind, data):
    layer = _layer(kind, d_state=4)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    kwargs = dict(order=2, tol=None, optimizer=opt, method="complex", margin=1e-6,
                  min_phase=None, map_rtol=None)
    name = data.draw(st.sampled_from(list(kwargs)))
    kwargs[name] = data.draw(BAD)
    if name == "tol" and kwargs["tol"] is not None:
        kwargs["order"] = None
    target = data.draw(st.one_of(st.just(layer), st.just(layer), BAD))
    order = kwargs.pop("order")
    rep = _call(reduce_, target, order, **kwargs)
    if rep is not None:
        assert _finite(rep.hsv) and math.isfinite(rep.error_bound)
        assert _finite(list(layer.parameters()))


@SETTINGS
@given(kind=st.sampled_from(["lru", "s5", "s4d"]), data=st.data())
def test_plan_apply_and_modal_truncate(kind, data):
    """The plan/apply pair and the modal verb: one bad argument at a time."""
    layer = _layer(kind, d_state=4)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    plan = _call(plan_cut, data.draw(st.one_of(st.just(layer), BAD)),
                 method=data.draw(st.one_of(st.just("complex"), st.just("real"), BAD)))
    if isinstance(plan, CutPlan):
        kwargs = dict(optimizer=opt, margin=1e-6, min_phase=None, map_rtol=None)
        name = data.draw(st.sampled_from(["order", *kwargs]))
        order = data.draw(BAD) if name == "order" else 2
        if name != "order":
            kwargs[name] = data.draw(BAD)
        rep = _call(apply_plan, plan, order, **kwargs)
        if rep is not None:
            assert _finite(rep.hsv) and math.isfinite(rep.error_bound)
            assert _finite(list(layer.parameters()))
    layer = _layer(kind, d_state=4)
    keep = data.draw(st.one_of(st.just(torch.tensor([0, 1])), BAD))
    rep = _call(modal_truncate_, data.draw(st.one_of(st.just(layer), BAD)), keep,
                optimizer=data.draw(st.one_of(st.just(None), st.just(opt), BAD)))
    if rep is not None:
        assert _finite(list(layer.parameters()))


@SETTINGS
@given(data=st.data())
def test_register_family(data):
    """``register_family`` refuses anything but a module class and a family instance, and
    never leaves a half-registered entry."""
    before = dict(registry._FAMILIES)
    try:
        cls = data.draw(st.one_of(st.just(type("Layer", (torch.nn.Module,), {})), BAD))
        fam = data.draw(st.one_of(st.just(family_of(_layer("lru"))), BAD))
        _call(register_family, cls, fam, replace=data.draw(st.one_of(st.booleans(), BAD)))
        after = dict(registry._FAMILIES)
        assert after == before or (set(after) - set(before) == {cls} and after[cls] is fam)
    finally:
        registry._FAMILIES.clear()
        registry._FAMILIES.update(before)


# ------------------------------------------------------------------ compressor and helpers


@SETTINGS
@given(data=st.data())
def test_compressor_and_helpers(data):
    model = SequenceClassifier(1, 3, d_model=3, d_state=4, n_layers=1, layer="s4d")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    kwargs = dict(total_steps=10, tau=0.1, window=0.5, attempts=2, min_reduction=0.05,
                  selection="smallest", seed=0, ema=(), distributed=None)
    name = data.draw(st.sampled_from([*kwargs, "tol", "final_fraction", "state_budget"]))
    value = data.draw(BAD)
    if name in ("tol", "final_fraction", "state_budget"):
        kwargs.pop("tau")
    kwargs[name] = value
    comp = _call(Compressor, data.draw(st.sampled_from([model, model, None, opt])), opt, **kwargs)
    if comp is not None:
        comp.step()
        _call(comp.load_state_dict, data.draw(st.one_of(BAD, st.just(comp.state_dict()))))
    _call(cut_steps, data.draw(BAD), 0.5, 2)
    _call(cut_steps, 10, data.draw(BAD), data.draw(BAD))
    _call(find_ssm_layers, data.draw(BAD))
    _call(resize_to_state_dict, data.draw(st.sampled_from([model, None, 3])),
          data.draw(st.one_of(BAD, st.dictionaries(
              st.sampled_from(["blocks.0.ssm._extra_state", "blocks.0.ssm.log_A_real"]),
              BAD, max_size=2))))
    old = dict(model.named_parameters())
    new = {n: torch.nn.Parameter(p.detach().clone()) for n, p in old.items()}
    args = [opt, old, new]
    i = data.draw(st.integers(0, 2))
    args[i] = data.draw(BAD)
    extra = data.draw(st.sampled_from([{}, {"keep_state": "yes"}, {"moments": 3},
                                       {"keep_state": False}]))
    _call(rebind_optimizer_, *args, **extra)


def test_pool_reaches_every_kind_of_bad_value():
    """The pool is not vacuous: a few of its values, each refused with the right type."""
    with pytest.raises(TypeError, match="d_state"):
        LRU(3, True)
    with pytest.raises(TypeError, match="dt_min"):
        S4D(3, 4, dt_min="0.1")
    with pytest.raises(ValueError, match="max_phase"):
        LRU(3, 4, max_phase=NAN)
    with pytest.raises(TypeError, match="augmented"):
        hankel_singular_values(_layer(), augmented=np.float64(1.0))
    with pytest.raises(TypeError, match="lti.lam must be a torch.Tensor"):
        from_lti(_layer(), DiagonalLTI(None, None, None, None))
    with pytest.raises(TypeError, match="old_params"):
        rebind_optimizer_(torch.optim.SGD(_layer().parameters(), lr=0.1), [1], {})
    with pytest.raises(ValueError, match="state_dims|d_state"):
        resize_to_state_dict(torch.nn.Sequential(_layer()), {"0._extra_state": {"d_state": -1}})
