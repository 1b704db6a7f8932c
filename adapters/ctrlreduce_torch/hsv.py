"""Batched Gramians and Hankel singular values of diagonal layers, in torch.

Glossary (G independent systems, N complex states each, m inputs, p outputs)
-------------------------------------------------------------------------
==========  ================  =================================================
``lam``      (G, N)            discrete eigenvalues, ``x[k+1] = lam x[k] + B u[k]``
``B``        (G, N, m)         complex input matrix
``C``        (G, p, N)         complex output matrix, ``y = Re(C x) + D u``
``z``        (G, 2N)           real coordinates ``z = [Re x; Im x]``
``P, Q``     (G, 2N, 2N)       real Gramians of the real map in ``z``
``Lc, Lo``   (G, 2N, 2N)       factors, ``P = Lc Lc^T``, ``Q = Lo Lo^T``
``hsv``      (G, 2N)           ``svdvals(Lo^T Lc)``, descending
==========  ================  =================================================

The real input-output map of ``y = Re(C x) + D u`` is the conjugate-augmented
system of order ``2N`` (see :mod:`ctrlreduce_torch._lti`).  The unitary change
of coordinates ``z = [Re x; Im x] = M [x; conj(x)]``, ``M = [[I, I], [-iI, iI]] / 2``
(``sqrt(2) M`` is unitary) makes it real::

    z[k+1] = [[Re lam, -Im lam], [Im lam, Re lam]] z[k] + [Re B; Im B] u[k]
    y[k]   = [Re C, -Im C] z[k] + D u[k]

and HSVs do not depend on the coordinates.  With the complex closed forms
(discrete Stein equations, ``|lam| < 1``)::

    P1_ij = (B B^H)_ij / (1 - lam_i conj(lam_j))     (= sum_k x_k x_k^H)
    P2_ij = (B B^T)_ij / (1 - lam_i lam_j)           (= sum_k x_k x_k^T)
    Q1_ij = (C^H C)_ij / (1 - conj(lam_i) lam_j)
    Q2_ij = (C^T C)_ij / (1 - lam_i lam_j)

the real Gramians of the real map are::

    P = 1/2 [[Re(P1 + P2), Im(P2 - P1)], [Im(P1 + P2),  Re(P1 - P2)]]
    Q = 1/2 [[Re(Q1 + Q2), -Im(Q1 + Q2)], [Im(Q1 - Q2), Re(Q1 - Q2)]]

solving ``A P A^T - P + B B^T = 0`` and ``A^T Q A - Q + C^T C = 0`` for the real
``(A, B, C)`` above.  Working in real arithmetic makes the factorizations and
the SVD several times cheaper than on the complex augmented Gramians.

The complex (non-augmented) system ``(diag(lam), B, C)`` has Gramians ``P1``
and ``Q1``; its HSVs (``augmented=False``) are what the CompreSSM reference code
ranks by.  They are *not* the HSVs of the map the layer computes: replacing a
state by its conjugate ``(conj lam, conj b, conj c)`` leaves ``Re(C x)`` and
the real-map HSVs unchanged but changes the complex system's.

The tensors of :class:`DiagonalLTI` are read as the standard system above
(``to_lti(layer).to_statespace()``); the layers themselves read the state
after the update, which is the same recurrence with the output taken one
step later (see :func:`standard_form` and ``layer_convention``).

Factors: batched Cholesky of the closed-form Gramians; for systems whose
Gramian is numerically singular or ill-conditioned, Hammarling's method from
``B`` (or ``C``) directly (:func:`hammarling_factor`), which keeps the relative
accuracy of small HSVs.  HSVs: ``svdvals(Lo^H Lc)`` (the square-root method).

Scale: :func:`hankel_singular_values` (and ``reduce_``) first divide ``B`` and
``C`` of each system by powers of two near their largest entries
(:func:`scaled_system`), since the Gramians are quadratic in them and would
over- or underflow float64 beyond about ``1e+-154``; the factors are linear,
so the HSVs scale back exactly (:func:`unscale_hsv`).
"""

from __future__ import annotations

import torch

from ._checks import check_bool
from ._lti import DiagonalLTI, check_lti

__all__ = [
    "layer_form",
    "standard_form",
    "gramian_factors",
    "hammarling_factor",
    "hankel_singular_values",
    "hsv_from_factors",
    "real_gramians",
    "pow2",
    "scaled_system",
    "unscale_hsv",
    "complex_gramians",
]


def as_lti(layer_or_lti: object, name: str = "layer_or_lti") -> DiagonalLTI:
    """Return a :class:`DiagonalLTI`, converting a layer with ``convert.to_lti``."""
    if isinstance(layer_or_lti, DiagonalLTI):
        return layer_or_lti
    if isinstance(layer_or_lti, torch.nn.Module):
        from .convert import to_lti  # local: convert imports the layers

        return to_lti(layer_or_lti)
    raise TypeError(
        f"{name} must be an LRU, S5 or S4D layer or a DiagonalLTI, "
        f"got {type(layer_or_lti).__name__}"
    )


def standard_form(lti: DiagonalLTI) -> DiagonalLTI:
    """The layer's map as a standard realization (state read *before* the update).

    LRU, S5 and S4D compute ``x[k] = lam x[k-1] + B u[k]``,
    ``y[k] = Re(C x[k]) + D u[k]``, and :func:`ctrlreduce_torch.to_lti` returns
    exactly these ``(lam, B, C, D)``.  With ``s[k] = x[k-1]`` the same map is
    the standard system ``s[k+1] = lam s[k] + B u[k]``,
    ``y[k] = Re(C lam s[k]) + (D + Re(C B)) u[k]``; this returns
    ``(lam, B, C diag(lam), D + Re(C B))`` (complex128/float64).  Its
    transfer function is ``G(z) = D + z (F(z) - D)`` with ``F`` that of
    ``(lam, B, C, D)`` read as a standard system.
    """
    lam, B, C = _cast(lti)
    return DiagonalLTI(lam, B, C * lam[:, None, :], lti.D.to(torch.float64) + (C @ B).real)


def layer_form(lti: DiagonalLTI) -> DiagonalLTI:
    """Inverse of :func:`standard_form`: ``(lam, B, C diag(lam)^{-1}, D - Re(C lam^{-1} B))``.

    Requires ``lam != 0``.  Note that :func:`ctrlreduce_torch.to_lti` already
    returns the layer form; this is for systems given in standard form.
    """
    lam, B, C = _cast(lti)
    if bool((lam == 0).any()):
        raise ValueError("layer_form needs every eigenvalue nonzero, got lam == 0")
    Cl = C / lam[:, None, :]
    return DiagonalLTI(lam, B, Cl, lti.D.to(torch.float64) - (Cl @ B).real)


def _cast(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = torch.complex128
    return lti.lam.to(c), lti.B.to(c), lti.C.to(c)


def complex_gramians(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor]:
    """Gramians ``(P1, Q1)``, each (G, N, N) complex128, of ``(diag(lam), B, C)``.

    ``P1_ij = (B B^H)_ij / (1 - lam_i conj(lam_j))`` and
    ``Q1_ij = (C^H C)_ij / (1 - conj(lam_i) lam_j)``, the solutions of
    ``A P A^H - P + B B^H = 0`` and ``A^H Q A - Q + C^H C = 0``.
    """
    lam, B, C = _cast(lti)
    li, lj = lam[:, :, None], lam[:, None, :]  # (G, N, 1), (G, 1, N)
    P1 = (B @ B.mH) / (1.0 - li * lj.conj())  # (G, N, N)
    Q1 = (C.mH @ C) / (1.0 - li.conj() * lj)  # (G, N, N)
    return P1, Q1


def real_gramians(lti: DiagonalLTI) -> tuple[torch.Tensor, torch.Tensor]:
    """Real Gramians ``(P, Q)``, each (G, 2N, 2N) float64, of the real map in ``z``.

    See the module docstring for the equations and coordinates.
    """
    P1, Q1 = complex_gramians(lti)  # sum x x^H, and its dual
    lam, B, C = _cast(lti)
    pair = 1.0 - lam[:, :, None] * lam[:, None, :]  # (G, N, N): 1 - lam_i lam_j
    P2 = (B @ B.mT) / pair  # sum x x^T
    Q2 = (C.mT @ C) / pair
    Sp, Dp = P1 + P2, P1 - P2
    Sq, Dq = Q1 + Q2, Q1 - Q2
    P = 0.5 * torch.cat(
        [torch.cat([Sp.real, -Dp.imag], 2), torch.cat([Sp.imag, Dp.real], 2)], 1
    )
    Q = 0.5 * torch.cat(
        [torch.cat([Sq.real, -Sq.imag], 2), torch.cat([Dq.imag, Dq.real], 2)], 1
    )
    # Symmetrize: the closed forms are symmetric up to round-off only.
    return 0.5 * (P + P.mT), 0.5 * (Q + Q.mT)


def hammarling_factor(lam: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Upper-triangular ``R`` (G, n, n) with ``R R^H = P`` for diagonal Stein equations.

    ``diag(lam) P diag(lam)^H - P + B B^H = 0`` per system.

    Hammarling's method for a diagonal ``A`` (the recursion of
    ``ctrlreduce._lyapunov.hammarling_diagonal``), batched over ``G``: the
    factor is built from ``B`` without forming ``P``, so small HSVs keep
    their relative accuracy when ``P`` is numerically singular (e.g. one
    input and fast-decaying HSVs).  ``O(n^2 m)`` work in ``n`` sequential
    steps, each a batched vector operation.
    """
    G, n, m = B.shape
    lam = lam.to(torch.complex128)
    W = B.to(torch.complex128).clone()  # (G, n, m)
    R = torch.zeros(G, n, n, dtype=torch.complex128, device=B.device)
    for j in range(n - 1, -1, -1):
        tau = lam[:, j]  # (G,)
        b = W[:, j]  # (G, m)
        denom = (1.0 - tau.abs()) * (1.0 + tau.abs())  # 1 - |tau|^2, accurately
        mu = torch.linalg.vector_norm(b, dim=1) / denom.sqrt()  # (G,)
        R[:, j, j] = mu
        if j == 0:
            continue
        w = b.conj() / torch.where(mu > 0, mu, 1.0)[:, None]  # (G, m); 0 where b = 0
        B1 = W[:, :j]  # (G, j, m)
        Bw = (B1 @ w[:, :, None])[..., 0]  # (G, j)
        u = Bw / (1.0 - tau.conj()[:, None] * lam[:, :j])
        v = lam[:, :j] * u
        coef = v - ((1.0 + tau) / denom)[:, None] * Bw  # (G, j)
        W[:, :j] = B1 + coef[:, :, None] * w.conj()[:, None, :]
        R[:, :j, j] = u
    return R


def _realify(L: torch.Tensor) -> torch.Tensor:
    """Real ``R`` (G, n, n) with ``R R^T = L L^H`` when ``L L^H`` is real.

    ``[Re L, Im L] [Re L, Im L]^T = Re(L L^H)``; a QR of the transpose
    compresses the ``n x 2n`` factor back to ``n x n``.
    """
    Lr = torch.cat([L.real, L.imag], dim=2)  # (G, n, 2n), Lr Lr^T = Re(L L^H)
    Rq = torch.linalg.qr(Lr.mT, mode="r")[1]  # (G, 2n, n) -> R (G, n, n)
    return Rq.mT.contiguous()


def _direct_factors(lti: DiagonalLTI, augmented: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gramian factors by Hammarling's method (used where Cholesky fails).

    Complex system: ``Lc = R(lam, B)``, ``Lo = R(conj lam, C^H)``.  Real map:
    the same for the augmented system ``(lam_aug, B_aug, C_aug)``, then into
    ``z = M [x; conj x]`` (``P_z = M P_aug M^H``, ``Q_z = M^{-H} Q_aug M^{-1}``
    with ``M^{-H} = 2 M``) and made real.
    """
    if not augmented:
        lam, B, C = _cast(lti)
        return hammarling_factor(lam, B), hammarling_factor(lam.conj(), C.mH)
    lam, B, C, _ = lti.augmented()
    lam, B, C = lam.to(torch.complex128), B.to(torch.complex128), C.to(torch.complex128)
    N = lti.n_states

    def to_z(L: torch.Tensor, scale: float) -> torch.Tensor:
        L1, L2 = L[:, :N], L[:, N:]
        return _realify(scale * torch.cat([L1 + L2, 1j * (L2 - L1)], dim=1))

    return to_z(hammarling_factor(lam, B), 0.5), to_z(hammarling_factor(lam.conj(), C.mH), 1.0)


def _ill_conditioned(L: torch.Tensor) -> torch.Tensor:
    """(G,) bool: the Cholesky factor's diagonal spans more than 1e5.

    ``min |L_ii| / max |L_ii|`` estimates ``1 / sqrt(cond(P))``; beyond 1e5
    (``cond > 1e10``) the closed-form Gramian has lost the small HSVs' digits
    to its own round-off, and the direct factor is used instead.
    """
    d = torch.diagonal(L, dim1=-2, dim2=-1).abs()
    return ~(d.amin(dim=-1) > 1e-5 * d.amax(dim=-1))


def gramian_factors(
    lti: DiagonalLTI, *, augmented: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Gramian factors ``(Lc, Lo)``, ``P = Lc Lc^H``, ``Q = Lo Lo^H``.

    ``augmented=True``: the real Gramians of :func:`real_gramians` (real
    factors, (G, 2N, 2N)); ``False``: those of :func:`complex_gramians`
    (complex, (G, N, N)).  Cholesky of the closed-form Gramian where it
    succeeds and the Gramian is not ill-conditioned (fast, backward stable);
    for the other systems (a numerically singular Gramian, typical of one
    input and fast-decaying HSVs) Hammarling's method from ``B`` (or ``C``)
    directly, which keeps the relative accuracy of the small HSVs.  No jitter.
    """
    P, Q = real_gramians(lti) if augmented else complex_gramians(lti)
    Lc, info_c = torch.linalg.cholesky_ex(P)
    Lo, info_o = torch.linalg.cholesky_ex(Q)
    bad = (info_c != 0) | (info_o != 0) | _ill_conditioned(Lc) | _ill_conditioned(Lo)
    if bool(bad.any()):
        sub = DiagonalLTI(lti.lam[bad], lti.B[bad], lti.C[bad], lti.D[bad])
        Lc_b, Lo_b = _direct_factors(sub, augmented)
        Lc, Lo = Lc.clone(), Lo.clone()
        Lc[bad], Lo[bad] = Lc_b.to(Lc.dtype), Lo_b.to(Lo.dtype)
    return Lc, Lo


#: Scaling exponents are clamped to this range so that ``2^-e`` stays a
#: normal float64 (subnormal inputs are still brought up by ``2^1000``).
_MAX_EXP = 1000


def _pow2_exponent(X: torch.Tensor) -> torch.Tensor:
    """(G,) int64 ``e`` with ``2^e`` within a factor 2 of ``max |X[g]|`` (0 for a zero block)."""
    m = X.abs().flatten(1).amax(dim=1).to(torch.float64)  # (G,)
    _, e = torch.frexp(m)  # m = f 2^e, f in [0.5, 1); e = 0 for m = 0
    return e.to(torch.int64).clamp(-_MAX_EXP, _MAX_EXP)


def scaled_system(lti: DiagonalLTI) -> tuple[DiagonalLTI, torch.Tensor, torch.Tensor]:
    """``(lti_s, eB, eC)``: ``B = 2^eB B_s``, ``C = 2^eC C_s`` per system, ``max |B_s|, |C_s| ~ 1``.

    Gramians are quadratic in ``B`` and ``C`` and over- or underflow
    float64 for entries beyond about ``1e+-154``; their factors are linear
    (``L(a B) = a L(B)``), so the HSVs of the original are
    ``2^(eB + eC)`` times those of the scaled system and a balanced
    truncation of the scaled system, with ``B_r, C_r`` multiplied back by
    ``2^eB``, ``2^eC``, is that of the original.  Powers of two make the
    scaling exact.  ``lam`` and ``D`` are unchanged.
    """
    eB, eC = _pow2_exponent(lti.B), _pow2_exponent(lti.C)
    Bs = lti.B.to(torch.complex128) * pow2(-eB)[:, None, None]
    Cs = lti.C.to(torch.complex128) * pow2(-eC)[:, None, None]
    return DiagonalLTI(lti.lam, Bs, Cs, lti.D), eB, eC


def pow2(e: torch.Tensor) -> torch.Tensor:
    """``2^e`` in float64 (exact for integer ``|e| <= 1022``), on ``e``'s device."""
    return torch.exp2(e.to(torch.float64))


def unscale_hsv(
    hsv: torch.Tensor, eB: torch.Tensor, eC: torch.Tensor, name: str = "layer_or_lti"
) -> torch.Tensor:
    """``2^(eB + eC) * hsv`` per system (float64); ``ValueError`` if that overflows float64."""
    e = (eB + eC).to(hsv.device)[:, None]
    out = hsv.to(torch.float64) * pow2(e // 2) * pow2(e - e // 2)  # two factors: 2^e may overflow
    if not bool(torch.isfinite(out).all()):
        big = float(torch.log10(hsv.amax().clamp(min=1e-300))) + float((eB + eC).max()) * 0.30103
        raise ValueError(
            f"{name}: the Hankel singular values are not representable in float64 "
            f"(about 1e{big:.0f}); B and C are too large"
        )
    return out


def hsv_from_factors(Lc: torch.Tensor, Lo: torch.Tensor) -> torch.Tensor:
    """``svdvals(Lo^H Lc)``, descending, (..., n) float64."""
    return torch.linalg.svdvals(Lo.mH @ Lc).to(torch.float64)


def hankel_singular_values(
    layer_or_lti: object, *, augmented: bool = True, layer_convention: bool = True
) -> torch.Tensor:
    """Hankel singular values of a layer (or :class:`DiagonalLTI`), batched.

    Parameters
    ----------
    layer_or_lti : LRU, S5, S4D or DiagonalLTI
        A layer is converted with :func:`ctrlreduce_torch.convert.to_lti`.
    augmented : bool, keyword-only
        ``True`` (default): HSVs of the layer's real input-output map
        ``u -> Re(C x) + D u``, i.e. of the conjugate-augmented system of order
        ``2N``.  These are the numbers the a-priori bound
        ``||G - G_r||_inf <= 2 sum(tail)`` of :func:`ctrlreduce_torch.reduce_`
        refers to.  ``False``: HSVs of the complex system
        ``(diag(lam), B, C)`` of order ``N`` (before the real part is taken),
        the ranking used by the CompreSSM reference code.
    layer_convention : bool, keyword-only
        ``True`` (default): HSVs of the recurrence as the layers run it and
        :func:`ctrlreduce_torch.to_lti` returns it, ``x[k] = lam x[k-1] + B u[k]``,
        ``y[k] = Re(C x[k]) + D u[k]``, i.e. of
        ``to_lti(layer).to_statespace()`` (they agree with
        ``ctrlreduce.hankel_singular_values`` on it).  Its Hankel operator maps
        inputs up to and including time ``k`` to outputs from time ``k`` on.
        These are what :func:`ctrlreduce_torch.reduce_` ranks by and bounds
        with: truncating this recurrence keeps the layer's diagonal ``D``, and
        changes the layer's map by the same H-infinity norm.  ``False``: HSVs
        of the strict past-to-future Hankel operator of the layer's map, i.e.
        of :func:`standard_form` (the recurrence with ``C -> C diag(lam)``).

    Returns
    -------
    hsv : torch.Tensor, shape (G, 2N) (or (G, N) with ``augmented=False``)
        float64, on the layer's device, each row descending.  Always 2-D,
        one row per independent system: ``G = 1`` for LRU and S5 (one MIMO
        system), ``G = d_model`` for S4D (one SISO system per channel).

    Raises
    ------
    TypeError
        ``layer_or_lti`` is neither a supported layer nor a ``DiagonalLTI``.
    ValueError
        Non-finite parameters (the message names the parameter), an
        eigenvalue with ``|lam| >= 1``, or HSVs beyond float64's range.

    Notes
    -----
    ``B`` and ``C`` are first scaled by powers of two per system
    (:func:`scaled_system`), so entries anywhere in float64's range give
    correct HSVs (or a ``ValueError`` when the HSVs themselves overflow),
    never NaN.  Closed-form Gramians (module docstring), factors by batched Cholesky
    (Hammarling's method for the systems where it fails), then the square-root method
    ``hsv = svdvals(Lo^T Lc)``, all batched over ``G`` in float64/complex128.
    No Python loop over systems or states.
    """
    check_bool(augmented, "augmented")
    check_bool(layer_convention, "layer_convention")
    with torch.no_grad():
        lti = as_lti(layer_or_lti)
        check_lti(lti, "layer_or_lti")
        if not layer_convention:
            lti = standard_form(lti)
        lti_s, eB, eC = scaled_system(lti)
        hsv = hsv_from_factors(*gramian_factors(lti_s, augmented=augmented))
        return unscale_hsv(hsv, eB, eC)
