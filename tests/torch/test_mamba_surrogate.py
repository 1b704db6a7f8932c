"""Mean LTI surrogate and index energies of Mamba mixers (``ctrlreduce_torch.mamba.surrogate``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
from ctrlreduce_torch.mamba import (  # noqa: E402
    IndexEnergy,
    cut_mamba_,
    dropped_fraction,
    exact_energy,
    find_mixers,
    index_energies,
    mean_lti,
    mixer_inputs,
    mixer_signals,
    select_keep,
)
from transformers import MambaConfig, MambaForCausalLM  # noqa: E402

import ctrlreduce as cr  # noqa: E402

N = 8
VOCAB = 20


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model() -> MambaForCausalLM:
    cfg = MambaConfig(vocab_size=VOCAB, hidden_size=16, state_size=N, num_hidden_layers=2)
    torch.manual_seed(0)
    m = MambaForCausalLM(cfg)
    with torch.no_grad():
        for _, mixer in find_mixers(m):
            mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
            mixer.x_proj.weight.normal_(0, 0.5)
            mixer.dt_proj.bias.add_(2.0)  # larger steps: poles spread over (0, 1)
    return m.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 32), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def signals(model, x):
    mixers = dict(find_mixers(model))
    return [mixer_signals(mixers[n], h, n) for n, h in mixer_inputs(model, x).items()]


def test_signals_reproduce_the_mixer(model, x, signals):
    mixers = dict(find_mixers(model))
    inputs = mixer_inputs(model, x)
    assert list(inputs) == [n for n, _ in find_mixers(model)]
    for sig in signals:
        with torch.no_grad():
            ref = mixers[sig.name](inputs[sig.name]).double()
        assert torch.allclose(sig.output(), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
        assert bool((sig.dt > 0).all()) and bool((sig.A < 0).all())


def test_mixer_inputs_restores_mode_and_hooks(model, x):
    model.train()
    try:
        mixer_inputs(model, x)
        assert model.training
        assert all(not m._forward_pre_hooks for _, m in find_mixers(model))
    finally:
        model.eval()


def test_surrogate_gramians_solve_stein_equations(signals):
    lti = mean_lti(signals[0])
    P, Q = lti.gramians()
    lam = lti.lam
    assert bool(((lam > 0) & (lam < 1)).all())
    LPL = lam[:, :, None] * P * lam[:, None, :]
    LQL = lam[:, :, None] * Q * lam[:, None, :]
    assert torch.allclose(LPL + lti.M, P, rtol=1e-12, atol=1e-12 * float(P.abs().max()))
    assert torch.allclose(LQL + lti.K, Q, rtol=1e-12, atol=1e-12 * float(Q.abs().max()))
    # second moments by their definition, from the signals
    sig = signals[0]
    w = (sig.dt.double() * sig.u.double())[..., None] * sig.B.double()[:, :, None, :]  # b L d N
    M = torch.einsum("bldi,bldj->dij", w, w) / w.shape[0] / w.shape[1]
    assert torch.allclose(lti.M, M, rtol=1e-10, atol=1e-14)
    assert torch.allclose(lti.dtbar, sig.dt.double().mean((0, 1)), rtol=1e-12)


@pytest.mark.parametrize("layer", [0, 1])
def test_surrogate_hsv_equal_the_core(signals, layer):
    """Batched surrogate HSVs of each channel = the core's on ``(diag(lam), M^1/2, K^1/2)``."""
    lti = mean_lti(signals[layer])
    hsv = lti.hsv()
    d = hsv.shape[0]
    for c in range(0, d, 5):
        sys = lti.state_space(c)
        assert sys.dt == 1.0 and sys.n_states == N
        np.testing.assert_allclose(sys.A, np.diag(lti.lam[c].numpy()))
        core = cr.hankel_singular_values(sys)
        np.testing.assert_allclose(hsv[c].numpy(), core, rtol=1e-9, atol=1e-9 * core[0])
        # the factored input matrix reproduces the second moments
        np.testing.assert_allclose(sys.B @ sys.B.T, lti.M[c].numpy(), atol=1e-12 * core[0])


def test_hsv_energy_is_the_hsv_energy_of_dropped_subsystems(signals):
    """``1_S^T W 1_S`` of kind "hsv" is the summed squared HSVs of the dropped subsystems."""
    lti = mean_lti(signals[1])
    energy = lti.energy("hsv")
    hsv = lti.hsv()
    assert energy.total == pytest.approx(float((hsv**2).sum()), rel=1e-10)
    keep = [0, 3, 4]
    drop = [n for n in range(N) if n not in keep]
    expected = 0.0
    for c in range(hsv.shape[0]):
        sys = lti.state_space(c)
        sub = cr.StateSpace(sys.A[np.ix_(drop, drop)], sys.B[drop], sys.C[:, drop], dt=1.0)
        expected += float((cr.hankel_singular_values(sub) ** 2).sum())
    assert energy.dropped(keep) == pytest.approx(expected, rel=1e-9)
    P, Q = lti.gramians()
    assert torch.allclose(energy.diag, (torch.diagonal(P, dim1=1, dim2=2)
                                        * torch.diagonal(Q, dim1=1, dim2=2)).sum(0))


def test_h2_energy_is_the_output_power_of_dropped_subsystems(signals):
    lti = mean_lti(signals[0])
    energy = lti.energy("h2")
    keep = [1, 2, 6, 7]
    drop = [n for n in range(N) if n not in keep]
    expected = 0.0
    for c in range(lti.lam.shape[0]):
        sys = lti.state_space(c)
        Cd, Pd = sys.C[:, drop], lti.gramians()[0][c].numpy()[np.ix_(drop, drop)]
        expected += float(np.trace(Cd @ Pd @ Cd.T))
    assert energy.dropped(keep) == pytest.approx(expected, rel=1e-9)
    assert float(torch.linalg.eigvalsh(energy.W).min()) >= -1e-12 * float(energy.W.abs().max())


@pytest.mark.parametrize("layer", [0, 1])
def test_exact_energy_is_the_mixer_output_change_of_a_cut(model, x, signals, layer):
    """``1_S^T W 1_S`` of kind "exact" is the mean squared change of the mixer's output."""
    sig = signals[layer]
    energy = exact_energy(sig)
    inputs = mixer_inputs(model, x)
    for keep in ([0, 1, 2], [2, 5], [0, 1, 2, 3, 4, 5, 6]):
        cut = copy.deepcopy(model)
        cut_mamba_(cut, keep)
        full_mixer = dict(find_mixers(model))[sig.name]
        cut_mixer = dict(find_mixers(cut))[sig.name]
        with torch.no_grad():
            a = full_mixer(inputs[sig.name]).double()
            b = cut_mixer(inputs[sig.name]).double()
        change = float((a - b).pow(2).sum(-1).mean())
        assert energy.dropped(keep) == pytest.approx(change, rel=1e-4)
    skip = sig.D.double() * sig.u.double() * torch.nn.functional.silu(sig.z.double())
    without_states = skip @ sig.out_weight.double().T  # the output with every state dropped
    assert energy.total == pytest.approx(
        float((sig.output() - without_states).pow(2).sum(-1).mean()), rel=1e-10)


def test_greedy_order_and_selection():
    W = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.5]], dtype=torch.float64)
    e = IndexEnergy("m", "exact", W)
    assert e.order("diag").tolist() == [2, 0, 1]
    # greedy sees that states 0 and 1 add up: dropping both costs 3.8, dropping 0 and 2 costs 2.5
    assert e.order("greedy").tolist()[0] in (0, 1)
    (keep_g,) = select_keep([e], 1, "greedy")
    (keep_d,) = select_keep([e], 1, "diag")
    assert e.dropped(keep_g) == pytest.approx(2.5) and e.dropped(keep_d) == pytest.approx(3.8)
    diag = IndexEnergy("m", "h2", torch.diag(torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)))
    assert diag.order("greedy").tolist() == diag.order("diag").tolist() == [0, 2, 1]
    assert dropped_fraction([e, diag], [[2], [0]]) == pytest.approx((3.8 + 3.0) / (5.3 + 6.0))


@pytest.mark.parametrize("kind", ["hsv", "h2", "exact"])
def test_index_energies_select_a_valid_cut(model, x, kind):
    energies = index_energies(model, x, kind)
    assert [e.name for e in energies] == [n for n, _ in find_mixers(model)]
    keeps = select_keep(energies, 3)
    assert all(k.shape == (3,) and torch.equal(k, torch.sort(k).values) for k in keeps)
    cut = copy.deepcopy(model)
    cut_mamba_(cut, keeps)
    assert cut.config.state_size == 3
    fr = dropped_fraction(energies, keeps)
    assert 0 <= fr <= 1


def test_bad_arguments_named(model, x, signals):
    with pytest.raises(ValueError, match="kind"):
        index_energies(model, x, "hankel")
    with pytest.raises(TypeError, match="input_ids"):
        index_energies(model, x[0], "hsv")
    with pytest.raises(ValueError, match="r"):
        select_keep(index_energies(model, x, "h2"), N + 1)
    with pytest.raises(ValueError, match="method"):
        select_keep(index_energies(model, x, "h2"), 2, "best")
    with pytest.raises(TypeError, match="mixer"):
        mixer_signals(torch.nn.Linear(2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="channel"):
        mean_lti(signals[0]).state_space(10_000)
