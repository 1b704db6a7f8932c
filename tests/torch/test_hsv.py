"""Batched Hankel singular values of diagonal layers against the NumPy core.

References: ``ctrlreduce.hankel_singular_values`` (Hammarling factors, dense SVD)
on the exported systems (``DiagonalLTI.to_statespace()`` for the layer's map,
``recurrence_statespace()`` for the recurrence); the Stein equations themselves;
invariance under state permutation, scaling and conjugation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ctrlreduce_torch._lti import DiagonalLTI, layer_form, standard_form
from ctrlreduce_torch.convert import to_lti
from ctrlreduce_torch.hsv import (
    _pivot,
    complex_gramians,
    hammarling_factor,
    hankel_singular_values,
    real_gramians,
)
from ctrlreduce_torch.lru import LRU
from ctrlreduce_torch.s4d import S4D
from ctrlreduce_torch.s5 import S5
from hypothesis import given, settings
from hypothesis import strategies as st

import ctrlreduce

RTOL = 1e-10  # relative to sigma_1, as the issue asks


def random_lti(seed, G, N, m, p, *, rmin=0.3, rmax=0.99, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = rmin + (rmax - rmin) * torch.rand(G, N, generator=g, dtype=torch.float64)
    th = 2 * math.pi * torch.rand(G, N, generator=g, dtype=torch.float64)
    lam = torch.polar(r, th)
    B = torch.randn(G, N, m, generator=g, dtype=torch.complex128)
    C = torch.randn(G, p, N, generator=g, dtype=torch.complex128)
    D = torch.randn(G, p, m, generator=g, dtype=torch.float64)
    return DiagonalLTI(*(t.to(device) for t in (lam, B, C, D)))


FORMS = [(aug, form) for aug in (True, False) for form in ("map", "recurrence")]


def exported(lti, augmented=True, form="map"):
    """The exported systems whose HSVs ``hankel_singular_values(lti, ...)`` gives."""
    if form == "recurrence":
        return lti.recurrence_statespace(augmented=augmented)
    return lti.to_statespace() if augmented else lti.complex_statespace(augmented=False)


def core_hsv(lti, augmented=True, form="map"):
    return [ctrlreduce.hankel_singular_values(s) for s in exported(lti, augmented, form)]


def assert_match_core(h, lti, augmented=True, form="map"):
    refs = core_hsv(lti, augmented, form)
    assert h.shape == (len(refs), refs[0].size)
    for g, ref in enumerate(refs):
        err = np.abs(h[g].cpu().numpy() - ref).max()
        assert err <= RTOL * ref[0], (g, err, ref[0])


def make_layer(kind, d_model, d_state, seed, device):
    torch.manual_seed(seed)
    cls = {"lru": LRU, "s5": S5, "s4d": S4D}[kind]
    kw = {"r_min": 0.4, "r_max": 0.99} if kind == "lru" else {}
    return cls(d_model, d_state, **kw).double().to(device)


# ------------------------------------------------------------------ references
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    G=st.integers(1, 3),
    N=st.integers(1, 24),
    m=st.integers(1, 5),
    p=st.integers(1, 5),
)
def test_hand_built_matches_core(seed, G, N, m, p):
    lti = random_lti(seed, G, N, m, p)
    assert_match_core(hankel_singular_values(lti), lti)  # default: the real map
    for aug, form in FORMS:
        h = hankel_singular_values(lti, augmented=aug, form=form)
        assert_match_core(h, lti, augmented=aug, form=form)


@pytest.mark.parametrize(
    "kind,d_model,d_state",
    [("lru", 4, 6), ("lru", 16, 40), ("s5", 4, 8), ("s5", 12, 32), ("s4d", 5, 8), ("s4d", 3, 24)],
)
def test_layers_match_core(kind, d_model, d_state, device):
    layer = make_layer(kind, d_model, d_state, 7, device)
    h = hankel_singular_values(layer)
    assert h.device.type == device.type and h.dtype == torch.float64
    with torch.no_grad():
        lti = to_lti(layer)
    G = d_model if kind == "s4d" else 1
    N = d_state // 2 if kind == "s4d" else d_state
    assert h.shape == (G, 2 * N)
    assert_match_core(h, lti)
    for aug, form in FORMS:
        hf = hankel_singular_values(layer, augmented=aug, form=form)
        assert hf.shape == (G, 2 * N if aug else N)
        assert_match_core(hf, lti, augmented=aug, form=form)


def test_float32_layer_uses_float64(device):
    torch.manual_seed(3)
    layer = LRU(6, 10, r_min=0.5, r_max=0.95).to(device)  # float32 parameters
    h = hankel_singular_values(layer)
    assert h.dtype == torch.float64
    with torch.no_grad():
        assert_match_core(h, to_lti(layer))


def test_map_and_recurrence_forms(device):
    """``form="map"`` gives the HSVs of the layer's map, realized as the standard form
    ``(lam, B, C lam, D + Re(C B))`` (its tensors read as a standard system); that
    realization has the layer's transfer function ``G(z) = D + z (S(z) - D)``, with ``S``
    the recurrence read as a standard system; ``form="recurrence"`` those of ``S``."""
    lti = random_lti(11, 2, 6, 3, 2, device=device)
    std = standard_form(lti)
    assert_match_core(hankel_singular_values(lti), std, form="recurrence")
    assert_match_core(hankel_singular_values(lti, form="recurrence"), lti, form="recurrence")
    for s_map, s_rec, s_std in zip(
        lti.to_statespace(), lti.recurrence_statespace(), std.recurrence_statespace(), strict=True
    ):
        for z in np.exp(1j * np.array([0.1, 1.0, 2.5])):
            G_layer = s_rec.D + z * (s_rec.evaluate(z) - s_rec.D)
            np.testing.assert_allclose(s_std.evaluate(z), G_layer, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(s_map.evaluate(z), G_layer, rtol=1e-12, atol=1e-12)
    back = layer_form(std)
    for name in ("lam", "B", "C", "D"):
        want = getattr(lti, name).to(getattr(back, name).dtype)
        torch.testing.assert_close(getattr(back, name), want)
    with pytest.raises(ValueError, match="form"):
        hankel_singular_values(lti, form="layer")
    with pytest.raises(TypeError, match="form"):
        hankel_singular_values(lti, form=True)


# ------------------------------------------------------------------ invariants
def _real_matrices(lti):
    lam, B, C = lti.lam[0], lti.B[0], lti.C[0]
    a, b = torch.diag(lam.real), torch.diag(lam.imag)
    A = torch.cat([torch.cat([a, -b], 1), torch.cat([b, a], 1)], 0)
    return A, torch.cat([B.real, B.imag], 0), torch.cat([C.real, -C.imag], 1)


def test_real_gramians_solve_stein(device):
    lti = random_lti(5, 1, 9, 3, 4, device=device)
    P, Q = real_gramians(lti)
    A, Br, Cr = _real_matrices(lti)
    rp = A @ P[0] @ A.T - P[0] + Br @ Br.T
    rq = A.T @ Q[0] @ A - Q[0] + Cr.T @ Cr
    assert float(rp.abs().max()) <= 1e-12 * float(P.abs().max())
    assert float(rq.abs().max()) <= 1e-12 * float(Q.abs().max())
    # and the real map really is Re(C x): compare one simulated step response
    u = torch.randn(30, 3, dtype=torch.float64, device=device)
    x = torch.zeros(9, dtype=torch.complex128, device=device)
    z = torch.zeros(18, dtype=torch.float64, device=device)
    for k in range(30):
        y1 = (lti.C[0] @ x).real
        y2 = Cr @ z
        torch.testing.assert_close(y1, y2)
        x = lti.lam[0] * x + lti.B[0] @ u[k].to(torch.complex128)
        z = A @ z + Br @ u[k]


def test_complex_gramians_solve_stein(device):
    lti = random_lti(6, 2, 7, 2, 3, device=device)
    P, Q = complex_gramians(lti)
    for g in range(2):
        A = torch.diag(lti.lam[g])
        rp = A @ P[g] @ A.mH - P[g] + lti.B[g] @ lti.B[g].mH
        rq = A.mH @ Q[g] @ A - Q[g] + lti.C[g].mH @ lti.C[g]
        assert float(rp.abs().max()) <= 1e-12 * float(P.abs().max())
        assert float(rq.abs().max()) <= 1e-12 * float(Q.abs().max())


def test_invariant_under_permutation_scaling_and_conjugation(device):
    lti = random_lti(21, 1, 10, 3, 3, device=device)
    h = hankel_singular_values(lti)
    hc = hankel_singular_values(lti, augmented=False)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(10, generator=g).to(device)
    scale = torch.polar(
        torch.rand(10, generator=g, dtype=torch.float64) + 0.5,
        torch.rand(10, generator=g, dtype=torch.float64) * 6,
    ).to(device)
    other = DiagonalLTI(
        lti.lam[:, perm],
        lti.B[:, perm] * scale[None, :, None],
        lti.C[:, :, perm] / scale[None, None, :],
        lti.D,
    )
    torch.testing.assert_close(hankel_singular_values(other), h, rtol=1e-10, atol=1e-10 * h[0, 0])
    torch.testing.assert_close(
        hankel_singular_values(other, augmented=False), hc, rtol=1e-10, atol=1e-10 * hc[0, 0]
    )
    # conjugating some states leaves Re(C x) and hence the real map's HSVs unchanged,
    # but not the complex system's: the two rankings are different quantities
    flip = torch.zeros(10, dtype=torch.bool, device=device)
    flip[:5] = True
    conj = DiagonalLTI(
        torch.where(flip, lti.lam.conj(), lti.lam),
        torch.where(flip[None, :, None], lti.B.conj(), lti.B),
        torch.where(flip[None, None, :], lti.C.conj(), lti.C),
        lti.D,
    )
    torch.testing.assert_close(hankel_singular_values(conj), h, rtol=1e-10, atol=1e-10 * h[0, 0])
    hcc = hankel_singular_values(conj, augmented=False)
    assert float((hcc - hc).abs().max()) > 1e-3 * float(hc[0, 0])


def test_systems_are_independent(device):
    lti = random_lti(8, 4, 5, 1, 1, device=device)
    h = hankel_singular_values(lti)
    for g in range(4):
        one = DiagonalLTI(lti.lam[g : g + 1], lti.B[g : g + 1], lti.C[g : g + 1], lti.D[g : g + 1])
        torch.testing.assert_close(hankel_singular_values(one)[0], h[g], rtol=1e-12, atol=1e-14)


def test_rank_deficient_gramian_falls_back(device):
    """Two identical modes: P is singular, Cholesky fails, the eigh factor is used."""
    lti = random_lti(9, 1, 4, 1, 1, device=device)
    lam = torch.cat([lti.lam, lti.lam[:, :1]], 1)
    B = torch.cat([lti.B, lti.B[:, :1]], 1)
    C = torch.cat([lti.C, lti.C[:, :, :1]], 2)
    dup = DiagonalLTI(lam, B, C, lti.D)
    h = hankel_singular_values(dup)
    assert bool(torch.isfinite(h).all())
    ref = core_hsv(dup)[0]
    # the duplicated state is invisible in the map: its HSVs are (near) zero
    assert float(h[0, -2:].max()) <= 1e-6 * float(h[0, 0])
    np.testing.assert_allclose(h[0, :8].cpu().numpy(), ref[:8], rtol=0, atol=1e-7 * ref[0])


def test_descending_nonnegative(device):
    h = hankel_singular_values(random_lti(2, 3, 12, 2, 2, device=device))
    assert bool((h >= 0).all())
    assert bool((h[:, :-1] >= h[:, 1:]).all())


# ------------------------------------------------------------------ bad input
def test_bad_input():
    with pytest.raises(TypeError, match="layer_or_lti"):
        hankel_singular_values(np.eye(3))
    with pytest.raises(TypeError, match="augmented"):
        hankel_singular_values(random_lti(0, 1, 2, 1, 1), augmented=1)
    lti = random_lti(0, 1, 3, 1, 1)
    unstable = DiagonalLTI(lti.lam / lti.lam.abs() * 1.0, lti.B, lti.C, lti.D)
    with pytest.raises(ValueError, match="stable"):
        hankel_singular_values(unstable)
    nan = DiagonalLTI(lti.lam, lti.B * float("nan"), lti.C, lti.D)
    with pytest.raises(ValueError, match="non-finite"):
        hankel_singular_values(nan)
    with pytest.raises(TypeError):
        hankel_singular_values(torch.nn.Linear(2, 2))


def test_single_input_fast_decay_keeps_small_hsvs(device):
    """One input, slowly decaying modes: the Gramians are numerically singular and the
    small HSVs come from Hammarling factors, still matching the core to 1e-10."""
    lti = random_lti(87, 3, 30, 1, 1, rmin=0.2, rmax=0.999, device=device)
    for aug, form in FORMS:
        h = hankel_singular_values(lti, augmented=aug, form=form)
        assert float(h[:, -1].min()) < 1e-12 * float(h[:, 0].max())  # really ill-conditioned
        assert_match_core(h, lti, augmented=aug, form=form)


def _assert_pivoted_triangular(L):
    """``L = P R J``: some row order makes ``L J`` (columns reversed) upper triangular."""
    for Lg in L:
        R = Lg.flip(-1)
        nz = (R != 0).sum(dim=1)  # row i of an upper-triangular R has n - i entries or fewer
        rows = torch.argsort(nz, descending=True, stable=True)
        assert bool((R[rows].tril(-1) == 0).all())


def test_hammarling_factor_solves_stein(device):
    lti = random_lti(4, 2, 12, 2, 3, device=device)
    R = hammarling_factor(lti.lam, lti.B)
    P, _ = complex_gramians(lti)
    _assert_pivoted_triangular(R)
    assert float((R @ R.mH - P).abs().max()) <= 1e-13 * float(P.abs().max())
    # largest pivot first: the last pivot (first column's own diagonal entry) is the largest
    d = R.abs().amax(dim=1)  # largest entry of each column
    assert bool((R.abs()[:, :, 0].amax(dim=1) >= d[:, -1]).all())


def _clustered_lti(device, n=24, seed=11, decades=10.0):
    """One input, eigenvalues clustered near 0.99 (radii 0.99 +- 0.009, phases +- 0.009),
    input rows graded over ``decades`` decades, the smallest last: without pivoting the
    recursion meets the nearly uncontrollable states first, and HSVs around 1e-8 sigma_1
    were accurate only to eps * sigma_1 (1.3e-9 relative, measured)."""
    g = torch.Generator().manual_seed(seed)
    spread = 0.9 * (1 - 0.99)
    r = 0.99 + spread * (2 * torch.rand(1, n, generator=g, dtype=torch.float64) - 1)
    th = spread * (2 * torch.rand(1, n, generator=g, dtype=torch.float64) - 1)
    lam = torch.polar(r, th)
    B = torch.randn(1, n, 1, generator=g, dtype=torch.complex128)
    C = torch.randn(1, 1, n, generator=g, dtype=torch.complex128)
    B = B * torch.logspace(0, -decades, n, dtype=torch.float64)[None, :, None]
    D = torch.zeros(1, 1, 1, dtype=torch.float64)
    return DiagonalLTI(*(t.to(device) for t in (lam, B, C, D)))


def test_clustered_single_input_hsvs_keep_relative_accuracy(device):
    """Pivoted Hammarling: the HSVs above 1e-8 sigma_1 of a clustered one-input system match
    the core's to 1e-10 relative, each to itself (the unpivoted recursion gave 1.3e-9)."""
    lti = _clustered_lti(device)
    P, Q = complex_gramians(lti)
    for M, lam, B in ((P, lti.lam, lti.B), (Q, lti.lam.conj(), lti.C.mH)):
        R = hammarling_factor(lam, B)
        _assert_pivoted_triangular(R)
        assert float((R @ R.mH - M).abs().max()) <= 1e-13 * float(M.abs().max())
    # tolerance per system: 1e-10 for the complex system (the recursion itself); the real
    # map's factor goes through a QR (realification) that measured 4.7e-11, before and after
    for aug, rtol in ((False, 1e-10), (True, 2e-10)):
        h = hankel_singular_values(lti, augmented=aug, form="recurrence")[0].cpu().numpy()
        ref = core_hsv(lti, aug, "recurrence")[0]
        big = ref >= 1e-8 * ref[0]
        assert big.sum() >= 8 and h.shape == ref.shape
        np.testing.assert_allclose(h[big], ref[big], rtol=rtol, atol=0)


def test_hammarling_pivot_does_not_underflow(device):
    """The pivot ``mu = ||b|| / sqrt(denom)``, ``w = b^H / mu`` keeps ``||w||^2 = denom`` for rows
    ``b`` far below 1e-154, where ``sum |b_k|^2`` underflows (``vector_norm`` returned 0 or a
    denormal with a few correct bits, and the factor was silently wrong)."""
    c = torch.complex128
    b = torch.tensor(
        [[1e-160, 1e-160], [3e-300, 4e-300j], [5e-324, 0.0], [0.0, 0.0], [1e300, 1e300j],
         [1e-155, 2e-160]], dtype=c, device=device,
    )
    denom = torch.tensor([0.02, 0.5, 0.9, 0.3, 1e-6, 0.0199], dtype=torch.float64, device=device)
    mu, w = _pivot(b, denom)
    nb = torch.tensor(
        [math.sqrt(2) * 1e-160, 5e-300, 5e-324, 0.0, math.sqrt(2) * 1e300,
         math.hypot(1e-155, 2e-160)], dtype=torch.float64,
    )
    torch.testing.assert_close(mu.cpu(), nb / denom.cpu().sqrt(), rtol=1e-15, atol=0)
    lw = torch.linalg.vector_norm(w, dim=1).cpu() ** 2
    ok = [0, 1, 2, 4, 5]
    torch.testing.assert_close(lw[ok], denom.cpu()[ok], rtol=1e-15, atol=0)
    assert float(lw[3]) == 0.0 and float(mu[3]) == 0.0  # b = 0: nothing
    # and a factor with such a row next to O(1) rows: two inputs, the tiny row last (the
    # unpivoted recursion peeled it first, with a norm of 2 denormal squares: residual 1e-6)
    lam = torch.tensor([[0.5 * np.exp(1j), 0.3 * np.exp(-2j), 0.99 * np.exp(0.1j)]], dtype=c)
    B = torch.tensor([[[0.7, -0.2j], [0.1 + 0.4j, 1.0], [1e-160, 1e-160]]], dtype=c)
    lti = DiagonalLTI(lam.to(device), B.to(device), B.mH.to(device) / 2,
                      torch.zeros(1, 2, 2, dtype=torch.float64, device=device))
    P, _ = complex_gramians(lti)
    R = hammarling_factor(lti.lam, lti.B)
    assert float((R @ R.mH - P).abs().max()) <= 1e-15 * float(P.abs().max())


# ------------------------------------------------------------------ non-finite and extreme scales
@pytest.mark.parametrize("kind", ["lru", "s5", "s4d"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_parameter_refused_naming_it(kind, bad):
    """``nu_log = inf`` has a finite LTI form in the arithmetic (lam = 0) but is not a layer:
    to_lti and the HSVs refuse every non-finite parameter, naming the layer and parameter."""
    layer = make_layer(kind, 3, 4, 0, "cpu")
    for name, prm in layer.named_parameters():
        with torch.no_grad():
            old = prm.view(-1)[0].clone()
            prm.view(-1)[0] = bad
        for fn in (to_lti, hankel_singular_values):
            with pytest.raises(ValueError, match=rf"{type(layer).__name__}\) parameter '{name}'"):
                fn(layer)
        with torch.no_grad():
            prm.view(-1)[0] = old


def _scaled_layer(kind, b, c, seed=0):
    """A float64 layer with B and C multiplied by ``b`` and ``c`` (through the parameters)."""
    layer = make_layer(kind, 3, 6, seed, "cpu")
    with torch.no_grad():
        for n in ("B_re", "B_im"):
            getattr(layer, n).mul_(b)
        for n in ("C_re", "C_im"):
            getattr(layer, n).mul_(c)
    return layer


@pytest.mark.parametrize("kind", ["lru", "s5", "s4d"])
@pytest.mark.parametrize(
    ("b", "c"), [(1e160, 1.0), (1.0, 1e-170), (1e-200, 1e200), (1e150, 1e150)]
)
def test_hsvs_scale_exactly_with_b_and_c(kind, b, c):
    """HSVs of ``(lam, b B, c C)`` are ``b c`` times those of ``(lam, B, C)``, far beyond the
    range where the Gramians (quadratic in B, C) over- or underflow float64."""
    layer = _scaled_layer(kind, b, c)
    for aug in (True, False):
        h = hankel_singular_values(layer, augmented=aug)
        r = hankel_singular_values(_scaled_layer(kind, 1.0, 1.0), augmented=aug)
        assert bool(torch.isfinite(h).all())
        top = r[:, :1]  # relative to each system's sigma_1, as everywhere in this file
        assert bool(((h / (b * c) - r).abs() <= 1e-12 * top).all())


@pytest.mark.parametrize("kind", ["lru", "s4d"])
def test_hsvs_beyond_float64_raise_value_error(kind):
    """When the HSVs themselves are not representable (B, C ~ 1e200): a ValueError, never NaN,
    inf or a LinAlgError."""
    layer = _scaled_layer(kind, 1e200, 1e200)
    with pytest.raises(ValueError, match="not representable in float64"):
        hankel_singular_values(layer)


@pytest.mark.parametrize("form", ["recurrence", "map"])
def test_complex_hsvs_match_slycot_on_the_real_realization(form):
    """Independent reference for the complex systems' HSVs (``augmented=False``): SLICOT's
    AB09AD (slycot) on the real ``2N`` realization ``[[Re A, -Im A], [Im A, Re A]]`` (and the
    same for ``B``, ``C``), which realifies the complex map ``u -> y`` of ``C^m -> C^p``; its
    HSVs are the complex ones, each twice."""
    slycot = pytest.importorskip("slycot")
    lti = random_lti(31, 3, 7, 2, 3)
    sys = standard_form(lti) if form == "map" else lti
    h = hankel_singular_values(lti, augmented=False, form=form).numpy()
    for g in range(lti.n_systems):
        A = np.diag(sys.lam[g].numpy())
        B, C = sys.B[g].numpy(), sys.C[g].numpy()

        def real(M):
            return np.block([[M.real, -M.imag], [M.imag, M.real]])

        n, m, p = 2 * A.shape[0], 2 * B.shape[1], 2 * C.shape[0]
        *_, ref = slycot.ab09ad("D", "B", "N", n, m, p, real(A), real(B), real(C), nr=1)
        ref = np.sort(ref)[::-1]
        np.testing.assert_allclose(ref[0::2], ref[1::2], rtol=1e-10, atol=0)  # pairs
        np.testing.assert_allclose(h[g], ref[0::2], rtol=0, atol=1e-10 * ref[0])
