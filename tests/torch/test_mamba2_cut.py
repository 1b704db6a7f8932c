"""The exact index cut of Hugging Face Mamba2 models (``cut_mamba_`` on ``Mamba2ForCausalLM``).

Mamba2 keeps one scalar ``A`` per head and ``B``, ``C`` per group of heads, produced by
``in_proj`` and passed through the depthwise ``conv1d``; a cut slices, in every group,
the ``in_proj`` rows and ``conv1d`` channels of the dropped state indices.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch

pytest.importorskip("transformers")
from ctrlreduce_torch.mamba import cut_mamba_, find_mixers, state_sizes  # noqa: E402
from transformers import Mamba2Config, Mamba2ForCausalLM  # noqa: E402

N, G, I, H = 8, 2, 32, 4
VOCAB = 20


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_model(seed: int = 0) -> Mamba2ForCausalLM:
    cfg = Mamba2Config(
        vocab_size=VOCAB, hidden_size=16, state_size=N, num_hidden_layers=2, num_heads=H,
        head_dim=8, n_groups=G, expand=2, chunk_size=8,
        pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Mamba2ForCausalLM(cfg)
    with torch.no_grad():
        for _, mixer in find_mixers(model):
            mixer.conv1d.bias.normal_(0, 0.5)
    return model


def tokens(seed: int = 1, b: int = 2, L: int = 20) -> torch.Tensor:
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


def channels(keep) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept conv1d channels and in_proj rows for ``keep`` (the documented layout)."""
    k = torch.tensor(keep)
    per_group = torch.cat([g * N + k for g in range(G)])
    ch = torch.cat([torch.arange(I), I + per_group, I + G * N + per_group])
    rows = torch.cat([torch.arange(I), I + ch, I + I + 2 * G * N + torch.arange(H)])
    return ch, rows


def test_keep_all_is_bit_identical():
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 1)
    x = tokens()
    before = logits(model, x)
    params = dict(model.named_parameters())
    report = cut_mamba_(model, list(range(N)), optimizer=opt)
    assert report.changed == (False, False)
    assert all(p is params[n] for n, p in model.named_parameters())
    assert torch.equal(logits(model, x), before)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("r", [1, 3])
def test_cut_equals_zeroed_b_rows_and_conv_bias(train, r):
    """Dropped states of the cut model behave as full-model states whose ``B`` is 0.

    ``B = silu(conv1d(in_proj rows))`` and ``conv1d`` has a bias, so both the
    ``in_proj`` rows and the ``conv1d`` bias of the dropped ``B`` channels are zeroed.
    """
    model = make_model()
    keep = sorted(torch.randperm(N, generator=torch.Generator().manual_seed(r))[:r].tolist())
    ref = copy.deepcopy(model)
    drop = [n for n in range(N) if n not in keep]
    with torch.no_grad():
        for _, mixer in find_mixers(ref):
            for g in range(G):
                for n in drop:
                    mixer.in_proj.weight[I + I + g * N + n] = 0
                    mixer.conv1d.bias[I + g * N + n] = 0
    cut = copy.deepcopy(model)
    cut_mamba_(cut, keep)
    ref.train(train)
    cut.train(train)
    a, b = logits(ref, tokens()), logits(cut, tokens())
    assert float((a - b).abs().max()) <= 1e-6 * float(a.abs().max())


def test_shapes_and_optimizer_state_sliced_exactly():
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, 2)
    old = dict(model.named_parameters())
    old_state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in old.items()}
    keep = [1, 2, 6]
    report = cut_mamba_(model, keep, optimizer=opt)
    assert report.params_rebound == 6  # in_proj.weight, conv1d.weight, conv1d.bias per layer
    assert state_sizes(model) == (3, 3) and model.config.state_size == 3
    ch, rows = channels(keep)
    new = dict(model.named_parameters())
    for name, mixer in find_mixers(model):
        assert mixer.ssm_state_size == 3 and mixer.conv_dim == I + 2 * G * 3
        assert mixer.conv1d.in_channels == mixer.conv1d.out_channels == mixer.conv1d.groups
        assert mixer.in_proj.out_features == 2 * I + 2 * G * 3 + H
        for pname, index in (("in_proj.weight", rows), ("conv1d.weight", ch),
                             ("conv1d.bias", ch)):
            full = f"{name}.{pname}"
            assert torch.equal(new[full], old[full].detach()[index])
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(opt.state[new[full]][key], old_state[full][key][index])
            assert torch.equal(opt.state[new[full]]["step"], old_state[full]["step"])
    train_steps(model, opt, 1)


def test_save_load_generate_and_cache(tmp_path):
    model = make_model()
    cut_mamba_(model, [[0, 3, 5], [1, 2, 7]])
    model.eval()
    x = tokens()
    model.save_pretrained(tmp_path)
    loaded = Mamba2ForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.state_size == 3
    assert torch.equal(logits(loaded, x), logits(model, x))
    with torch.no_grad():
        pre = model(x[:, :-1], use_cache=True)
        step = model(x[:, -1:], cache=pre.cache, use_cache=True).logits[:, -1]
    assert torch.allclose(step, logits(model, x)[:, -1], rtol=1e-5, atol=1e-5)
    gen = model.generate(x[:, :4], max_new_tokens=5, do_sample=False)
    assert gen.shape == (2, 9)
    assert torch.equal(gen, loaded.generate(x[:, :4], max_new_tokens=5, do_sample=False))


@pytest.mark.parametrize(("keep", "exc"), [([N], ValueError), ([], ValueError),
                                           ([0, 0], ValueError), (["a"], TypeError)])
def test_bad_keep_refused(keep, exc):
    model = make_model()
    state = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.raises(exc, match="keep"):
        cut_mamba_(model, keep)
    assert all(torch.equal(model.state_dict()[n], t) for n, t in state.items())
    assert model.config.state_size == N


def test_non_finite_refused():
    model = make_model()
    with torch.no_grad():
        find_mixers(model)[0][1].conv1d.bias[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        cut_mamba_(model, [0])
    assert model.config.state_size == N


def test_checkpoint_after_cut_resumes_exactly():
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 2)
    cut_mamba_(model, [0, 4, 6], optimizer=opt)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    train_steps(model, opt, 2, seed=30)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = Mamba2ForCausalLM(copy.deepcopy(model.config))
    resumed.load_state_dict(ckpt["model"])
    ropt = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    ropt.load_state_dict(ckpt["opt"])
    train_steps(resumed, ropt, 2, seed=30)
    a, b = model.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
