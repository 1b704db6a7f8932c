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

The functions below read the tensors of a :class:`DiagonalLTI` as the
standard system ``(diag(lam), B, C)`` above.  Two systems are of interest
(see :mod:`ctrlreduce_torch._lti`): the layer's input-output map, whose
standard form is ``(lam, B, C diag(lam), D + Re(C B))``
(:func:`~ctrlreduce_torch._lti.standard_form`; ``form="map"``, the default of
:func:`hankel_singular_values`), and the recurrence ``(lam, B, C, D)`` itself
(``form="recurrence"``), which :func:`ctrlreduce_torch.reduce_` truncates.

Factors: batched Cholesky of the closed-form Gramians; for systems whose
Gramian is numerically singular or ill-conditioned, Hammarling's method from
``B`` (or ``C``) directly (:func:`hammarling_factor`, with pivoting and
underflow-safe pivots), which keeps the relative accuracy of small HSVs.
HSVs: ``svdvals(Lo^H Lc)`` (the square-root method).

Scale: :func:`hankel_singular_values` (and ``reduce_``) first divide ``B`` and
``C`` of each system by powers of two near their largest entries
(:func:`scaled_system`), since the Gramians are quadratic in them and would
over- or underflow float64 beyond about ``1e+-154``; the factors are linear,
so the HSVs scale back exactly (:func:`unscale_hsv`).
"""

from __future__ import annotations

import torch

from ._checks import check_bool, check_choice
from ._lti import DiagonalLTI, check_lti, standard_form
from .convert import to_lti

__all__ = [
    "FORMS",
    "as_lti",
    "complex_gramians",
    "gramian_factors",
    "hammarling_factor",
    "hankel_singular_values",
    "hsv_from_factors",
    "pow2",
    "real_gramians",
    "scaled_system",
    "unscale_hsv",
]

#: The systems whose HSVs :func:`hankel_singular_values` gives (see the module docstring).
FORMS = ("map", "recurrence")


def as_lti(layer_or_lti: object, name: str = "layer_or_lti") -> DiagonalLTI:
    """Return a :class:`DiagonalLTI`, converting a layer with ``convert.to_lti``."""
    if isinstance(layer_or_lti, DiagonalLTI):
        return layer_or_lti
    if isinstance(layer_or_lti, torch.nn.Module):
        return to_lti(layer_or_lti)
    raise TypeError(
        f"{name} must be a registered SSM layer (LRU, S5, S4D, ...) or a DiagonalLTI, "
        f"got {type(layer_or_lti).__name__}"
    )


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


def _ldexp(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``x * 2^e`` exactly (unless the result itself leaves the normal range), ``e`` integer.

    Two factors, so that ``2^e`` itself never over- or underflows for ``|e| <= 2046``.
    """
    h = e // 2
    return x * pow2(h) * pow2(e - h)


def _pivot(b: torch.Tensor, denom: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Hammarling pivot ``mu = ||b|| / sqrt(denom)``, ``w = b^H / mu``, ``||w||^2 = denom``.

    ``b`` (G, m) complex128, ``denom`` (G,) float64 ``> 0``.  The rows of the
    updated right-hand side shrink geometrically along the recursion (products
    of Blaschke factors) and reach 1e-170 and below, where ``sum |b_k|^2``
    underflows and a plain ``vector_norm(b)`` returns 0 or a denormal with a
    few correct bits; ``w`` would then have the wrong length and the factor
    be silently wrong.  So ``b`` is first scaled by an exact power of two
    (``max |b| in [1/2, 1)``), its norm and direction taken at that size, and
    only ``mu`` (which may underflow harmlessly) carries the scale, as in
    ``ctrlreduce._hammarling._pivot``.  Where ``b`` is exactly zero,
    ``mu = 0`` and ``w = 0`` (the step changes nothing).
    """
    big = b.abs().amax(dim=1)  # (G,)
    _, e = torch.frexp(big)  # big = f 2^e, f in [1/2, 1); e = 0 for big = 0
    e = e.to(torch.int64)
    bs = _ldexp(b, -e[:, None])  # (G, m), max |bs| in [1/2, 1)
    ns = torch.linalg.vector_norm(bs, dim=1)  # (G,) in [1/2, sqrt(m)]: no over- or underflow
    root = denom.sqrt()
    zero = big == 0
    safe = torch.where(zero, 1.0, ns)
    mu = torch.where(zero, 0.0, _ldexp(ns / root, e))
    w = torch.where(zero[:, None], 0.0, bs.conj() * (root / safe)[:, None])
    return mu, w


def hammarling_factor(lam: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Factor ``L`` (G, n, n) with ``L L^H = P`` for diagonal Stein equations, with pivoting.

    ``diag(lam) P diag(lam)^H - P + B B^H = 0`` per system, ``|lam| < 1``.

    Hammarling's method for a diagonal ``A`` (the recursion of
    ``ctrlreduce._hammarling.hammarling_diagonal``), batched over ``G``: the
    factor is built from ``B`` without forming ``P``, so small HSVs keep
    their relative accuracy when ``P`` is numerically singular (e.g. one
    input and clustered or slowly decaying modes).  Each of the ``n`` steps
    peels off the remaining state with the largest remaining Gramian
    diagonal, ``max_k |W_pk| / sqrt(1 - |lam_p|^2)`` (pivoted Cholesky of the
    Cauchy-like Gramian): without it a nearly uncontrollable state met early
    gives a tiny pivot and an ``O(1)`` column above it, and small HSVs are
    accurate only to ``eps * sigma_1``.  The pivots are underflow-safe
    (:func:`_pivot`).  ``L = P R J``: ``R`` upper triangular in the pivot
    order, its rows returned in the original state order (``P``) and its
    columns reversed (``J``), largest pivot first, so that ``Lo^H Lc`` is
    graded from the top left.  ``O(n^2 m)`` work in ``n`` sequential steps,
    each a batched vector operation.
    """
    G, n, m = B.shape
    dev = B.device
    lam = lam.to(torch.complex128).clone()  # (G, n), permuted along the way
    W = B.to(torch.complex128).clone()  # (G, n, m), the updated right-hand side
    mod = lam.abs()
    denoms = (1.0 - mod) * (1.0 + mod)  # (G, n): 1 - |lam|^2, accurately
    order = torch.arange(n, device=dev).expand(G, n).clone()  # original index of each position
    L = torch.zeros(G, n, n, dtype=torch.complex128, device=dev)
    g = torch.arange(G, device=dev)
    for j in range(n - 1, -1, -1):
        size = W[:, : j + 1].abs().amax(dim=2) / denoms[:, : j + 1].sqrt()  # (G, j + 1)
        p = size.argmax(dim=1)  # (G,)
        idx = torch.arange(j + 1, device=dev).expand(G, j + 1).clone()
        idx[g, p] = j
        idx[g, j] = p  # swap positions p and j of every system
        gi = g[:, None]
        W[:, : j + 1] = W[gi, idx]
        lam[:, : j + 1] = lam[gi, idx]
        denoms[:, : j + 1] = denoms[gi, idx]
        order[:, : j + 1] = order[gi, idx]
        tau, denom = lam[:, j], denoms[:, j]  # (G,)
        mu, w = _pivot(W[:, j], denom)
        L[g, order[:, j], j] = mu.to(torch.complex128)  # rows written in the original order
        if j == 0:
            continue
        B1 = W[:, :j]  # (G, j, m)
        Bw = (B1 @ w[:, :, None])[..., 0]  # (G, j)
        u = Bw / (1.0 - tau.conj()[:, None] * lam[:, :j])
        v = lam[:, :j] * u
        coef = v - ((1.0 + tau) / denom)[:, None] * Bw  # (G, j)
        W[:, :j] = B1 + coef[:, :, None] * w.conj()[:, None, :]
        L[gi, order[:, :j], j] = u
    return L.flip(-1)  # largest pivot first


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
    layer_or_lti: object, *, augmented: bool = True, form: str = "map"
) -> torch.Tensor:
    """Hankel singular values of a layer (or :class:`DiagonalLTI`), batched.

    Parameters
    ----------
    layer_or_lti : LRU, S5, S4D (any registered layer) or DiagonalLTI
        A layer is converted with :func:`ctrlreduce_torch.to_lti`; a
        ``DiagonalLTI`` is read in that convention (the recurrence).
    augmented : bool, keyword-only
        ``True`` (default): HSVs of the **real** system (the real part of the
        output is taken), i.e. of the conjugate-augmented system of order
        ``2N``.  ``False``: HSVs of the complex system of order ``N`` before
        the real part is taken, the ranking of the CompreSSM reference code
        (with ``form="recurrence"``).  Conjugating a state changes the latter,
        not the former: they are different quantities.
    form : {"map", "recurrence"}, keyword-only
        ``"map"`` (default): the layer's input-output map, i.e. its Hankel
        operator from strict past inputs to future outputs; the system of
        ``to_lti(layer).to_statespace()``, realized as
        ``(lam, B, C diag(lam), D + Re(C B))``.  With ``augmented=True`` these
        are the singular values of the block Hankel matrix
        ``[h[i + j + 1]]_{i, j >= 0}`` of the layer's own impulse response
        ``h``.  ``"recurrence"``: the recurrence ``(lam, B, C, D)`` read as a
        standard system (``to_lti(layer).recurrence_statespace()``), whose
        Hankel operator maps inputs up to and including time ``k`` to outputs
        from time ``k`` on: what :func:`ctrlreduce_torch.reduce_` truncates
        and bounds with, because its truncation keeps the layer's diagonal
        ``D`` and changes the layer's map by the same H-infinity norm.

    Returns
    -------
    hsv : torch.Tensor, shape (G, 2N) (or (G, N) with ``augmented=False``)
        float64, on the layer's device, each row descending.  Always 2-D,
        one row per independent system: ``G = 1`` for LRU and S5 (one MIMO
        system), ``G = d_model`` for S4D (one SISO system per channel).

    Raises
    ------
    TypeError
        ``layer_or_lti`` is neither a registered layer nor a ``DiagonalLTI``;
        ``augmented`` not a bool; ``form`` not a str.
    ValueError
        Unknown ``form``; non-finite parameters (the message names the
        parameter), an eigenvalue with ``|lam| >= 1``, or HSVs beyond
        float64's range.

    Notes
    -----
    ``B`` and ``C`` are first scaled by powers of two per system
    (:func:`scaled_system`), so entries anywhere in float64's range give
    correct HSVs (or a ``ValueError`` when the HSVs themselves overflow),
    never NaN.  Closed-form Gramians (module docstring), factors by batched
    Cholesky (Hammarling's method for the systems where it fails), then the
    square-root method ``hsv = svdvals(Lo^T Lc)``, all batched over ``G`` in
    float64/complex128.  No Python loop over systems or states.
    """
    check_bool(augmented, "augmented")
    check_choice(form, "form", FORMS)
    with torch.no_grad():
        lti = as_lti(layer_or_lti)
        check_lti(lti, "layer_or_lti")
        if form == "map":
            lti = standard_form(lti)
        lti_s, eB, eC = scaled_system(lti)
        hsv = hsv_from_factors(*gramian_factors(lti_s, augmented=augmented))
        return unscale_hsv(hsv, eB, eC)
