"""The exact index cut of Hugging Face Mamba models (``ctrlreduce_torch.mamba.cut_mamba_``).

Models are tiny and built from a config (nothing is downloaded); CPU only.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch

pytest.importorskip("transformers")
from ctrlreduce_torch.mamba import cut_mamba_, find_mixers, state_sizes  # noqa: E402
from transformers import MambaConfig, MambaForCausalLM, MambaModel  # noqa: E402

N = 8
VOCAB = 20


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_model(seed: int = 0, use_mambapy: bool = False, n_layers: int = 2) -> MambaForCausalLM:
    """A tiny Mamba LM whose states differ per channel and whose B, C are not small."""
    cfg = MambaConfig(
        vocab_size=VOCAB, hidden_size=16, state_size=N, num_hidden_layers=n_layers,
        use_mambapy=use_mambapy, pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    torch.manual_seed(seed)
    model = MambaForCausalLM(cfg)
    with torch.no_grad():
        for _, mixer in find_mixers(model):
            mixer.A_log.add_(0.3 * torch.randn_like(mixer.A_log))
            mixer.x_proj.weight.normal_(0, 0.5)
    return model


def tokens(seed: int = 1, b: int = 2, L: int = 24) -> torch.Tensor:
    return torch.randint(0, VOCAB, (b, L), generator=torch.Generator().manual_seed(seed))


def logits(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x, use_cache=False).logits


def train_steps(model, opt, n: int, seed: int = 5) -> None:
    model.train()
    for i in range(n):
        x = tokens(seed + i)
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def snapshot(model, opt=None):
    """Every tensor of the model and the optimizer, cloned, plus Parameter identities."""
    params = {n: p for n, p in model.named_parameters()}
    state = {n: t.detach().clone() for n, t in model.state_dict().items()}
    osd = copy.deepcopy(opt.state_dict()) if opt is not None else None
    groups = [list(g["params"]) for g in opt.param_groups] if opt is not None else None
    return params, state, osd, groups, model.config.state_size


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality that counts NaN == NaN at the same place."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def assert_unchanged(model, opt, snap) -> None:
    params, state, osd, groups, size = snap
    assert model.config.state_size == size
    now = dict(model.named_parameters())
    assert now.keys() == params.keys()
    assert all(now[n] is params[n] for n in params)
    sd = model.state_dict()
    assert sd.keys() == state.keys()
    assert all(same_tensor(sd[n], state[n]) for n in state)
    if opt is not None:
        assert [list(g["params"]) for g in opt.param_groups] == groups
        new = opt.state_dict()
        assert new["param_groups"] == osd["param_groups"]
        assert new["state"].keys() == osd["state"].keys()
        for i, st in osd["state"].items():
            assert st.keys() == new["state"][i].keys()
            for k, v in st.items():
                w = new["state"][i][k]
                assert same_tensor(v, w) if torch.is_tensor(v) else v == w


# (a) keeping all states ------------------------------------------------------------


@pytest.mark.parametrize("use_mambapy", [False, True])
def test_keep_all_is_bit_identical(use_mambapy):
    model = make_model(use_mambapy=use_mambapy)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 2)
    x = tokens()
    model.eval()
    before = logits(model, x)
    snap = snapshot(model, opt)
    report = cut_mamba_(model, list(range(N))[::-1], optimizer=opt)  # order does not matter
    assert report.changed == (False, False) and report.params_rebound == 0
    assert report.new_size == N and report.old_sizes == (N, N)
    assert_unchanged(model, opt, snap)
    assert torch.equal(logits(model, x), before)


# (b) the cut equals the full model with the dropped B rows zeroed -------------------


def zero_dropped_b(model, keeps) -> None:
    with torch.no_grad():
        for (_, mixer), keep in zip(find_mixers(model), keeps, strict=True):
            R = mixer.time_step_rank
            drop = [n for n in range(N) if n not in keep]
            mixer.x_proj.weight[[R + n for n in drop]] = 0


@pytest.mark.parametrize("use_mambapy", [False, True])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("r", [1, 3, 6])
def test_cut_equals_zeroed_b_rows(use_mambapy, train, r):
    """The cut model computes what the full model computes with dropped B rows zeroed.

    Mathematically identical (a dropped state stays 0 and adds ``C * 0``).  In
    float32 the logits agree to 1e-6 relative, and bit for bit in most cases
    measured: where they differ (r = 1 here, by about 1 ulp of the logits) it
    is because the CPU GEMM of ``x_proj`` picks a different kernel, with a
    different summation order, for the narrower weight (``R + 2r`` rows).
    """
    model = make_model(use_mambapy=use_mambapy)
    g = torch.Generator().manual_seed(r)
    keeps = [sorted(torch.randperm(N, generator=g)[:r].tolist()) for _ in range(2)]
    ref = copy.deepcopy(model)
    zero_dropped_b(ref, keeps)
    cut = copy.deepcopy(model)
    cut_mamba_(cut, keeps)
    cut.train(train)
    ref.train(train)
    x = tokens(b=3, L=40)
    a, b = logits(ref, x), logits(cut, x)
    scale = float(a.abs().max())
    assert float((a - b).abs().max()) <= 1e-6 * scale


# (c) shapes of parameters and optimizer state ----------------------------------------


@pytest.mark.parametrize("amsgrad", [False, True])
def test_shapes_and_optimizer_state_sliced_exactly(amsgrad):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, amsgrad=amsgrad)
    train_steps(model, opt, 2)
    x = tokens()
    model.zero_grad(set_to_none=True)
    model(x, labels=x).loss.backward()  # a pending gradient is sliced too
    mixers = find_mixers(model)
    R = mixers[0][1].time_step_rank
    d = mixers[0][1].intermediate_size
    old = {n: p for n, p in model.named_parameters()}
    old_state = {n: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[p].items()}
                 for n, p in old.items()}
    old_grad = {n: p.grad.clone() for n, p in old.items()}
    keeps = [[1, 4, 6], [0, 2, 7]]
    report = cut_mamba_(model, keeps, optimizer=opt)
    r = 3
    assert report.new_size == r and report.keep == ((1, 4, 6), (0, 2, 7))
    assert report.changed == (True, True) and report.params_rebound == 4
    assert model.config.state_size == r and state_sizes(model) == (r, r)
    new = dict(model.named_parameters())
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert len(in_groups) == len(new) and all(id(p) in in_groups for p in new.values())
    assert set(map(id, opt.state)) == in_groups  # no stale entries
    for (name, mixer), keep in zip(mixers, keeps, strict=True):
        assert mixer.ssm_state_size == r
        assert tuple(mixer.A_log.shape) == (d, r)
        assert tuple(mixer.x_proj.weight.shape) == (R + 2 * r, d)
        assert mixer.x_proj.out_features == R + 2 * r
        k = torch.tensor(keep)
        rows = torch.cat([torch.arange(R), R + k, R + N + k])
        for pname, index, dim in (("A_log", k, 1), ("x_proj.weight", rows, 0)):
            full = f"{name}.{pname}"
            p = new[full]
            assert p is not old[full]
            assert torch.equal(p, old[full].detach().index_select(dim, index))
            assert torch.equal(p.grad, old_grad[full].index_select(dim, index))
            st = opt.state[p]
            assert st.keys() == old_state[full].keys()
            for key, v in old_state[full].items():
                if torch.is_tensor(v) and v.dim() > 0:
                    assert st[key].shape == p.shape
                    assert torch.equal(st[key], v.index_select(dim, index))
                else:
                    assert torch.equal(torch.as_tensor(st[key]), torch.as_tensor(v))  # step
    for name, p in new.items():  # everything else: same object, same state
        if name.endswith(("A_log", "x_proj.weight")):
            continue
        assert p is old[name]
        for key, v in old_state[name].items():
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(v))
    train_steps(model, opt, 1)  # and training goes on


def test_keep_as_tensor_and_per_layer_rows():
    a, b = make_model(), make_model()
    cut_mamba_(a, torch.tensor([[5, 1], [2, 3]]))
    cut_mamba_(b, [[1, 5], (3, 2)])
    x = tokens()
    assert torch.equal(logits(a, x), logits(b, x))
    c = make_model()
    cut_mamba_(c, torch.tensor([2, 7]))  # one set for every layer
    assert [tuple(m.A_log.shape) for _, m in find_mixers(c)] == [(32, 2), (32, 2)]


def test_backbone_alone_is_cut():
    model = MambaModel(make_model().config)
    cut_mamba_(model, [0, 1])
    assert model.config.state_size == 2
    out = model(tokens(), use_cache=False).last_hidden_state
    assert torch.isfinite(out).all()


# (d) save_pretrained / from_pretrained / generate -----------------------------------


@pytest.mark.parametrize("use_mambapy", [False, True])
def test_save_load_and_generate_after_cut(tmp_path, use_mambapy):
    model = make_model(use_mambapy=use_mambapy)
    cut_mamba_(model, [[0, 3, 5], [1, 2, 7]])
    model.eval()
    x = tokens()
    model.save_pretrained(tmp_path)
    loaded = MambaForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.state_size == 3
    assert torch.equal(logits(loaded, x), logits(model, x))
    # the cache follows the cut: one cached step equals the full forward pass
    with torch.no_grad():
        pre = model(x[:, :-1], use_cache=True)
        step = model(x[:, -1:], cache=pre.cache, use_cache=True).logits[:, -1]
    full = logits(model, x)[:, -1]
    assert torch.allclose(step, full, rtol=1e-5, atol=1e-5)
    gen = model.generate(x[:, :5], max_new_tokens=6, do_sample=False)
    gen2 = loaded.generate(x[:, :5], max_new_tokens=6, do_sample=False)
    assert gen.shape == (2, 11) and torch.equal(gen, gen2)
    assert torch.equal(gen[:, :5], x[:, :5])


# (e) refusals leave model and optimizer bit-identical -----------------------------------


BAD = [
    ([], ValueError, "keep"),  # r = 0
    (list(range(N + 1)), ValueError, "keep"),  # r = N + 1
    ([0, N], ValueError, "keep"),  # index out of range
    ([-1, 2], ValueError, "keep"),  # negative
    ([1, 1, 2], ValueError, "keep"),  # duplicate
    ([[0, 1], [0, 1, 2]], ValueError, "keep"),  # unequal sizes across layers
    ([[0, 1], [2, 3], [4, 5]], ValueError, "keep"),  # wrong number of rows
    ([[0, 1], [2, 2]], ValueError, r"keep\[1\]"),  # duplicate in one row
    ([0.0, 1.0], TypeError, "keep"),
    ([True, False], TypeError, "keep"),
    (torch.tensor([0.0, 1.0]), TypeError, "keep"),
    ("01", TypeError, "keep"),
    (3, TypeError, "keep"),
]


@pytest.mark.parametrize(("keep", "exc", "match"), BAD)
def test_bad_keep_refused_nothing_changed(keep, exc, match):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 1)
    snap = snapshot(model, opt)
    with pytest.raises(exc, match=match):
        cut_mamba_(model, keep, optimizer=opt)
    assert_unchanged(model, opt, snap)


def test_non_mamba_model_refused():
    lin = torch.nn.Linear(3, 3)
    before = {n: t.clone() for n, t in lin.state_dict().items()}
    with pytest.raises(TypeError, match="model"):
        cut_mamba_(lin, [0])
    assert all(torch.equal(lin.state_dict()[n], t) for n, t in before.items())
    with pytest.raises(TypeError, match="model"):
        cut_mamba_("not a model", [0])


@pytest.mark.parametrize("where", ["A_log", "x_proj", "out_proj"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_refused(where, value):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 1)
    mixer = find_mixers(model)[1][1]
    with torch.no_grad():
        {"A_log": mixer.A_log, "x_proj": mixer.x_proj.weight,
         "out_proj": mixer.out_proj.weight}[where].view(-1)[3] = value
    snap = snapshot(model, opt)
    with pytest.raises(ValueError, match="model.*non-finite"):
        cut_mamba_(model, [0, 1], optimizer=opt)
    assert_unchanged(model, opt, snap)


def test_bad_optimizer_refused():
    model = make_model()
    snap = snapshot(model)
    with pytest.raises(TypeError, match="optimizer"):
        cut_mamba_(model, [0, 1], optimizer="adam")
    assert_unchanged(model, None, snap)


# (f) checkpoint resume across a cut -------------------------------------------------------


@pytest.mark.parametrize("via", ["state_dict", "pretrained"])
def test_checkpoint_after_cut_resumes_exactly(tmp_path, via):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_steps(model, opt, 3)
    cut_mamba_(model, [[0, 2, 3, 6], [1, 4, 5, 7]], optimizer=opt)
    train_steps(model, opt, 1, seed=20)  # a step after the cut, before the checkpoint
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    if via == "pretrained":
        model.save_pretrained(tmp_path)
    # the run that goes on without reloading
    train_steps(model, opt, 2, seed=30)
    # the run resumed from the checkpoint
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    if via == "pretrained":
        resumed = MambaForCausalLM.from_pretrained(tmp_path)
    else:
        resumed = MambaForCausalLM(copy.deepcopy(model.config))
        resumed.load_state_dict(ckpt["model"])
    ropt = torch.optim.AdamW(resumed.parameters(), lr=1e-2, weight_decay=0.1)
    ropt.load_state_dict(ckpt["opt"])
    train_steps(resumed, ropt, 2, seed=30)
    a, b = model.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = opt.state_dict()["state"], ropt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i])
