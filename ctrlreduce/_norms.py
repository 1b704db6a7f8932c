"""System norms: H2 from a Gramian, H-infinity by a level-set method.

Glossary
--------
============  ================================================================
``G(s)``      ``C (s I - A)^{-1} B + D``, shape ``(p, m)``
``gamma``     a level; the H-infinity norm is ``sup_w sigma_max(G)`` on the
              stability boundary (``s = i w`` or ``z = exp(i theta)``)
``theta``     normalised discrete frequency ``w * dt`` in ``(-pi, pi]``
``H``         Hamiltonian matrix, shape ``(2n, 2n)`` (continuous time)
``(M, N)``    extended pencil, shape ``(2n + m + p, 2n + m + p)``; the
              symplectic pencil in discrete time
``T, U``      complex Schur form ``A = U T U^H`` used to evaluate ``G``
============  ================================================================

H2 norm (``P``, ``Q`` the Gramians of :mod:`ctrlreduce._gramians`)::

    continuous:  ||G||_2^2 = trace(C P C^H) = trace(B^H Q B)      (D must be 0)
    discrete:    ||G||_2^2 = trace(C P C^H + D D^H) = trace(B^H Q B + D^H D)

H-infinity norm (Boyd and Balakrishnan 1990, Bruinsma and Steinbuch 1990).
``gamma`` is a singular value of ``G(i w)`` exactly when ``i w`` is an
eigenvalue of the pencil, in the unknowns ``(x, z, u, v)``::

    lambda x = A x + B u                      continuous: lambda = i w
    lambda z = -A^H z - C^H v                 (Hamiltonian)
    0 = C x + D u - gamma v
    0 = B^H z + D^H v - gamma u

and, in discrete time, exactly when ``exp(i theta)`` is an eigenvalue of::

    lambda x = A x + B u                      discrete: lambda = exp(i theta)
    z = lambda (A^H z + C^H v)                (symplectic pencil)
    0 = C x + D u - gamma v
    0 = B^H z + D^H v - gamma u

In continuous time ``u`` and ``v`` are eliminated (the levels tried always
exceed ``||D||``, because ``G(i w) -> D``) to give the ``2n x 2n``
Hamiltonian matrix, with ``R = I - D^H D / gamma^2``::

    F = A + B R^{-1} D^H C / gamma^2
    H = [[ F,                                   B R^{-1} B^H / gamma ],
         [ -C^H (I + D R^{-1} D^H / gamma^2) C / gamma,  -F^H       ]]

When ``gamma`` is within ``1e-6`` relative of ``||D||`` (a peak at or near
infinity) ``R`` is nearly singular and the extended pencil is used instead.
In discrete time the extended pencil is always used, solved by the QZ
algorithm, with no inversion at all: a singular ``A`` (poles at ``z = 0``)
only adds infinite eigenvalues.  Each iteration takes the
boundary eigenvalues at ``gamma = (1 + 2 rtol) gamma_lb``, evaluates
``sigma_max`` at the midpoints of consecutive crossing frequencies, and
raises ``gamma_lb`` to the largest value found; the iteration converges
quadratically and stops when no crossing is left, so that
``gamma_lb <= ||G||_inf < (1 + 2 rtol) gamma_lb``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.optimize

from ._hammarling import checked_factor
from ._scaling import equilibrate
from ._schur import SchurForm, schur_form
from ._stability import require_stable
from ._system import StateSpace, check_system, transfer_evaluator
from ._validation import check_bool, check_choice, check_positive

__all__ = ["h2_norm", "hinf_norm", "reduction_error"]

_EPS = np.finfo(float).eps
# An eigenvalue counts as lying on the boundary when its distance to it is at
# most _AXIS_RTOL relative to its modulus (plus a round-off floor, below).
# Crossing eigenvalues of a Hamiltonian matrix are computed with error about
# kappa * eps * ||H||, and nearly double ones (gamma just above a local peak)
# split off the axis by about sqrt(eps); a false positive only costs one more
# evaluation of G, while a false negative would stop the iteration early, so
# the test is deliberately generous.
_AXIS_RTOL = 1e-7
_MAX_ITER = 60
_N_GRID = 40
_N_POLE_FREQS = 60
_N_EXACT = 8


# ------------------------------------------------------------------ H2 norm
def h2_norm(
    sys: StateSpace, *, gramian: Literal["controllability", "observability"] = "controllability"
) -> float:
    """H2 norm of a stable system from one of its Gramians.

    .. math::

        \\|G\\|_2^2 = \\frac{1}{2\\pi}\\int_{-\\infty}^{\\infty}
        \\|G(i\\omega)\\|_F^2\\,d\\omega = \\operatorname{tr}(C P C^H)
        = \\operatorname{tr}(B^H Q B)

    in continuous time, and
    ``trace(C P C^H + D D^H) = trace(B^H Q B + D^H D)`` in discrete time
    (the sum of the squared Frobenius norms of the Markov parameters).

    Parameters
    ----------
    sys : StateSpace
        Stable, continuous or discrete, real or complex.
    gramian : {"controllability", "observability"}, keyword-only
        Which Gramian to use: ``P`` (``A P + P A^H + B B^H = 0``) or ``Q``
        (``A^H Q + Q A + C^H C = 0``), or their discrete forms.  Both give the
        same value up to round-off; the factor is computed by Hammarling's
        method and the trace as ``||C Lc||_F^2`` or ``||Lo^H B||_F^2``.

    Returns
    -------
    float
        ``||G||_2``.  For a continuous system with ``D != 0`` the integral
        diverges (``||G(i w)||_F -> ||D||_F`` as ``w -> inf``): the result is
        ``math.inf`` and a ``RuntimeWarning`` says so.

    Raises
    ------
    TypeError
        ``sys`` is not a ``StateSpace``.
    ValueError
        ``sys`` is unstable or marginally stable (the poles are named), or
        ``gramian`` is not one of the two names.

    Examples
    --------
    >>> from ctrlreduce import StateSpace
    >>> round(h2_norm(StateSpace([[-1.0]], [[1.0]], [[1.0]])), 12)  # 1/(s+1)
    0.707106781187
    """
    sys = check_system(sys)
    gramian = check_choice(gramian, "gramian", ("controllability", "observability"))
    discrete = sys.dt is not None
    scaled, sc = equilibrate(sys)
    schur = schur_form(scaled.A)
    require_stable(schur, discrete, "h2_norm")
    if not discrete and np.any(sys.D != 0):
        warnings.warn(
            "h2_norm: the continuous-time system has a non-zero feedthrough D "
            f"(||D||_F = {np.linalg.norm(sys.D):.6g}), so ||G(iw)||_F does not decay as "
            "w -> inf and the H2 norm is infinite; returning inf",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.inf
    return float(sc.scale(_h2_scaled(scaled, schur, gramian)))


def _h2_scaled(sys: StateSpace, schur: SchurForm, gramian: str) -> float:
    """``||G||_2`` of an equilibrated stable system from one factor, in Schur coordinates.

    ``trace(C P C^H) = ||(Z^H C^H)^H R_c||_F^2`` with ``P = Z R_c R_c^H Z^H``
    (the basis ``Z`` is never multiplied in); likewise for ``Q``.
    """
    discrete = sys.dt is not None
    Bt, Ch = schur.to_schur(sys.B), schur.to_schur(sys.C.conj().T)
    if gramian == "controllability":
        R = checked_factor(schur.T, Bt, discrete, "h2_norm")
        val = np.linalg.norm(Ch.conj().T @ R) ** 2
    else:
        T = schur.T.conj() if schur.diagonal else schur.T.conj().T[::-1, ::-1]
        R = checked_factor(T, Ch if schur.diagonal else Ch[::-1], discrete, "h2_norm")
        val = np.linalg.norm(R.conj().T @ (Bt if schur.diagonal else Bt[::-1])) ** 2
    if discrete:
        val += np.linalg.norm(sys.D) ** 2
    return float(np.sqrt(val))


# ------------------------------------------------------- frequency response
def _sigma_evaluator(sys: StateSpace, schur: SchurForm) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(lam) -> sigma_max(G(lam))`` for points ``lam``, shape ``(k,)``.

    One Schur form (of the already balanced ``A``), then one triangular
    solve per point (:func:`ctrlreduce._system.transfer_evaluator`);
    ``lam = inf`` gives ``sigma_max(D)``.
    """
    G = transfer_evaluator(sys, schur)

    def sigma(lam: np.ndarray) -> np.ndarray:
        pts = np.atleast_1d(np.asarray(lam, dtype=np.complex128)).ravel()
        return np.linalg.svd(G(pts), compute_uv=False)[:, 0]

    return sigma


def _points(freqs: np.ndarray, discrete: bool) -> np.ndarray:
    """``i w`` (continuous) or ``exp(i theta)`` (discrete); ``w = inf`` maps to ``inf``."""
    freqs = np.asarray(freqs, dtype=float)
    if discrete:
        return np.exp(1j * freqs)
    fin = np.isfinite(freqs)
    return np.where(fin, 1j * np.where(fin, freqs, 0.0), np.inf)


def _modal_form(sys: StateSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition ``A = V diag(lam) V^{-1}``: ``(lam, C V, V^{-1} B, score)``.

    Pole ``lam_i`` adds the residue ``R_i = (C v_i) (V^{-1} B)_i`` to ``G``,
    whose peak on the boundary is about ``score_i = ||R_i|| / dist(lam_i,
    boundary)``.  Used only to choose and screen test frequencies, so a badly
    conditioned ``V`` (defective ``A``) can cost iterations but never accuracy.
    """
    lam, V = np.linalg.eig(sys.A)
    with np.errstate(all="ignore"):  # defective A: huge V^{-1}, meaningless numbers
        try:
            WB = np.linalg.solve(V, sys.B)  # rows w_i^H B, (n, m)
        except np.linalg.LinAlgError:
            WB = np.full(sys.B.shape, np.nan)
        CV = sys.C @ V  # (p, n)
        res = np.linalg.norm(CV, axis=0) * np.linalg.norm(WB, axis=1)
        dist = 1.0 - np.abs(lam) if sys.dt is not None else -lam.real
        score = np.nan_to_num(res / np.maximum(dist, 1e-300), nan=0.0, posinf=0.0)
    return lam, CV, WB, score


def _modal_sigma(sys: StateSpace, modal, pts: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Cheap ``sigma_max(G(pts))`` from the modal form, ``O(k n p m)``; NaN-free, screening only."""
    lam, CV, WB, _ = modal
    with np.errstate(all="ignore"):
        fin = np.isfinite(pts)
        Rinv = 1.0 / (np.where(fin, pts, 0.0)[:, None] - lam[None, :])  # (k, n)
        Rinv[~fin] = 0.0
        G = np.einsum("pn,kn,nm->kpm", CV, Rinv, WB) + sys.D  # (k, p, m)
        out = np.linalg.svd(np.nan_to_num(G), compute_uv=False)[:, 0]
    return np.nan_to_num(out, nan=0.0, posinf=0.0)


def _test_frequencies(sys: StateSpace, modal) -> np.ndarray:  # noqa: ANN001
    """Frequencies for the initial lower bound (after Bruinsma and Steinbuch).

    DC, infinity (continuous) or Nyquist (discrete), the resonance
    frequencies of the ``_N_POLE_FREQS`` poles with the largest resonance
    score, and a coarse grid over the band of the poles; negative
    frequencies too for complex systems.  Sorted, unique.
    """
    lam, score = modal[0], modal[3]
    dom = lam[np.argsort(-score)[:_N_POLE_FREQS]]
    if sys.dt is not None:
        grid = np.linspace(-np.pi, np.pi, 2 * _N_GRID + 1)
        freqs = np.concatenate([[0.0, np.pi], np.angle(dom[dom != 0]), grid])
    else:
        mag = np.abs(lam)
        lo, hi = max(mag.min(), 1e-300), max(mag.max(), 1e-300)
        grid = np.geomspace(lo / 10, hi * 10, _N_GRID)
        freqs = np.concatenate([[0.0, np.inf], dom.imag, grid, -grid])
    if not sys.is_complex:
        freqs = np.abs(freqs)
    return np.unique(freqs)


def _refine(sigma, a: float, b: float, discrete: bool) -> tuple[float, float]:  # noqa: ANN001
    """Local maximum of ``sigma_max`` on ``[a, b]`` (bounded Brent); ``(value, freq)``.

    Near a smooth peak ``sigma`` is quadratic in the frequency, so a
    frequency accurate to ``1e-7`` (relative to the bracket) gives the peak
    value to about ``1e-14`` relative; a non-smooth peak (two singular values
    crossing) is left to the level tests, which stay exact.
    """
    if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
        return -np.inf, a

    def f(w: float) -> float:
        return -float(sigma(_points(np.array([w]), discrete))[0])

    xatol = 1e-7 * max(abs(a), abs(b), 1e-300)
    r = scipy.optimize.minimize_scalar(
        f, bounds=(a, b), method="bounded", options={"xatol": xatol, "maxiter": 80}
    )
    return -float(r.fun), float(r.x)


# -------------------------------------------------------- level-set tests
def _hamiltonian(A, B, C, D, gamma: float) -> np.ndarray:  # noqa: ANN001
    """The ``2n x 2n`` Hamiltonian matrix of the module docstring, ``gamma > ||D||``."""
    if np.any(D != 0):
        m = D.shape[1]
        R = np.eye(m) - (D.conj().T @ D) / gamma**2  # (m, m), positive definite
        RiB = np.linalg.solve(R, B.conj().T)  # R^{-1} B^H, (m, n)
        RiDC = np.linalg.solve(R, D.conj().T @ C) / gamma**2  # (m, n)
        F = A + B @ RiDC
        G = (B @ RiB) / gamma
        # C^H (I + D R^{-1} D^H / gamma^2) C
        Hq = (C.conj().T @ C + (C.conj().T @ D) @ RiDC) / gamma
    else:
        F = A
        G = (B @ B.conj().T) / gamma
        Hq = (C.conj().T @ C) / gamma
    return np.block([[F, G], [-Hq, -F.conj().T]])


def _extended_pencil(A, B, C, D, gamma: float, discrete: bool):  # noqa: ANN001, ANN202
    """``(M, N)`` of size ``2n + m + p``: the extended Hamiltonian / symplectic pencil."""
    n, m, p = A.shape[0], B.shape[1], C.shape[0]
    dtype = np.result_type(A, B, C, D)
    In = np.eye(n)
    Z = np.zeros
    Ah, Bh, Ch = A.conj().T, B.conj().T, C.conj().T
    # rows 3 and 4 are divided by gamma, which leaves the eigenvalues unchanged
    r3 = np.hstack([C / gamma, Z((p, n)), D / gamma, -np.eye(p)])
    r4 = np.hstack([Z((m, n)), Bh / gamma, -np.eye(m), D.conj().T / gamma])
    if discrete:
        M = np.vstack([np.hstack([A, Z((n, n)), B, Z((n, p))]),
                       np.hstack([Z((n, n)), In, Z((n, m)), Z((n, p))]), r3, r4])
        N = np.zeros_like(M)
        N[:n, :n] = In
        N[n:2 * n, n:2 * n] = Ah
        N[n:2 * n, 2 * n + m:] = Ch
    else:
        M = np.vstack([np.hstack([A, Z((n, n)), B, Z((n, p))]),
                       np.hstack([Z((n, n)), -Ah, Z((n, m)), -Ch]), r3, r4])
        N = np.zeros_like(M)
        N[:2 * n, :2 * n] = np.eye(2 * n)
    return M.astype(dtype), N.astype(dtype)


def _crossings(sys: StateSpace, gamma: float, sD: float) -> np.ndarray:
    """Frequencies (``w``, or ``theta`` in discrete time) where ``gamma`` is a singular value.

    Tolerance: an eigenvalue ``lam`` is on the imaginary axis when
    ``|Re lam| <= _AXIS_RTOL * |lam| + 100 * k * eps * ||H||_1`` (``k`` the
    matrix size; the second term is the round-off in eigenvalues of a
    balanced matrix of that norm), and on the unit circle when
    ``| |lam| - 1 | <= _AXIS_RTOL + min(100 * k * eps * (||M||_1 + ||N||_1), 1e-4)``.
    False hits are harmless (they only add evaluation points); a missed
    crossing would stop the iteration early, hence the generous test.
    """
    A, B, C, D = sys.A, sys.B, sys.C, sys.D
    if sys.dt is None:
        # gamma > ||D||; use the Hamiltonian matrix unless R is ill conditioned
        if sD <= gamma * (1.0 - 1e-6):
            H = _hamiltonian(A, B, C, D, gamma)
            lam = scipy.linalg.eigvals(H, check_finite=False)
            scale = np.linalg.norm(scipy.linalg.matrix_balance(H, permute=False)[0], 1)
            floor = 100 * H.shape[0] * _EPS * scale
        else:
            M, N = _extended_pencil(A, B, C, D, gamma, discrete=False)
            ab = scipy.linalg.eigvals(M, N, homogeneous_eigvals=True, check_finite=False)
            lam = _finite(ab)
            floor = 100 * M.shape[0] * _EPS * np.linalg.norm(M, 1)
        on = np.abs(lam.real) <= _AXIS_RTOL * np.abs(lam) + floor
        return np.sort(lam.imag[on])
    M, N = _extended_pencil(A, B, C, D, gamma, discrete=True)
    ab = scipy.linalg.eigvals(M, N, homogeneous_eigvals=True, check_finite=False)
    lam = _finite(ab)
    floor = 100 * M.shape[0] * _EPS * (np.linalg.norm(M, 1) + np.linalg.norm(N, 1))
    tol = _AXIS_RTOL + min(floor, 1e-4)  # capped: a huge floor would only add false hits
    on = np.abs(np.abs(lam) - 1.0) <= tol
    return np.sort(np.angle(lam[on]))


def _finite(ab: np.ndarray) -> np.ndarray:
    """Finite eigenvalues ``alpha / beta`` from homogeneous pairs, shape ``(2, k)`` in."""
    alpha, beta = ab[0], ab[1]
    big = np.abs(beta) > 1e3 * _EPS * np.abs(alpha)
    return alpha[big] / beta[big]


def _interval_edges(cross: np.ndarray, real: bool, discrete: bool) -> np.ndarray:
    """Sorted edges of the candidate intervals between crossing frequencies.

    Real systems have ``sigma(G)`` even in frequency, so crossings are folded
    to ``w >= 0`` (``theta in [0, pi]``) with the ends added.  Complex
    discrete systems wrap around the circle: the first crossing is repeated
    at ``+ 2 pi`` (use :func:`_wrap` on points of the last interval).
    """
    if real:
        ends = [0.0, np.pi] if discrete else [0.0]
        return np.unique(np.concatenate([ends, np.abs(cross)]))
    c = np.unique(cross)
    if discrete and c.size:
        c = np.append(c, c[0] + 2 * np.pi)
    return c


def _wrap(theta, discrete: bool):  # noqa: ANN001, ANN202
    """Map frequencies to ``(-pi, pi]`` in discrete time (identity in continuous time)."""
    if not discrete:
        return theta
    return np.pi - np.mod(np.pi - np.asarray(theta, dtype=float), 2 * np.pi)


# -------------------------------------------------------- H-infinity norm
def hinf_norm(sys: StateSpace, *, rtol: float = 1e-10, return_frequency: bool = False):
    """H-infinity norm ``sup_w sigma_max(G)`` of a stable system, by a level-set method.

    .. math::

        \\|G\\|_\\infty = \\sup_{\\omega \\in \\mathbb{R}} \\sigma_{\\max}(G(i\\omega))
        \\quad\\text{or}\\quad
        \\sup_{|\\theta| \\le \\pi} \\sigma_{\\max}(G(e^{i\\theta}))

    Parameters
    ----------
    sys : StateSpace
        Stable; continuous or discrete, real or complex, any ``D``.
    rtol : float, keyword-only
        Relative accuracy: the result ``g`` satisfies
        ``g <= ||G||_inf <= (1 + 2 rtol) g`` (up to round-off in ``G``).
    return_frequency : bool, keyword-only
        Also return the frequency of the peak.

    Returns
    -------
    norm : float
    peak : float, only with ``return_frequency=True``
        Frequency in rad/s with ``sigma_max(G(peak)) == norm``.  Real
        systems: ``>= 0`` (in ``[0, pi/dt]`` in discrete time); complex
        systems: signed (in ``(-pi/dt, pi/dt]`` in discrete time).
        ``inf`` when the supremum is ``||D||``, approached as ``w -> inf``
        (continuous time).  ``0.0`` for a static gain.

    Raises
    ------
    TypeError
        ``sys`` is not a ``StateSpace``.
    ValueError
        ``sys`` is unstable or marginally stable (the poles are named), or
        ``rtol`` is not a number in ``(0, 1)``.

    Notes
    -----
    Bruinsma-Steinbuch iteration (see the module docstring): a lower bound
    from DC, infinity or Nyquist, pole resonances and a coarse grid, then
    level tests with the Hamiltonian matrix (continuous; the extended pencil
    when ``gamma`` is within ``1e-6`` relative of ``||D||``) or the symplectic
    pencil (discrete).  Complex systems are searched over negative
    frequencies too.  An eigenvalue counts as a crossing when
    ``|Re lam| <= 1e-7 |lam| + 100 k eps ||H_balanced||_1`` (``k`` the matrix
    size), or ``| |lam| - 1 | <= 1e-7 + min(100 k eps (||M||_1 + ||N||_1),
    1e-4)`` in discrete time: generous on purpose, since a false crossing
    only adds an evaluation point while a missed one would stop early.
    Cost: a Schur form and an eigendecomposition of ``A``, then usually a
    single eigenvalue problem of size ``2n`` (QZ of size ``2n + m + p`` in
    discrete time), the one that proves no crossing is left.

    Examples
    --------
    >>> from ctrlreduce import StateSpace
    >>> sys = StateSpace([[-1.0, 10.0], [-10.0, -1.0]], [[1.0], [0.0]], [[1.0, 0.0]])
    >>> g, w = hinf_norm(sys, return_frequency=True)
    >>> round(g, 8), round(w, 6)
    (0.50246939, 10.0489)
    """
    sys = check_system(sys)
    rtol = check_positive(rtol, "rtol")
    if rtol >= 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    return_frequency = check_bool(return_frequency, "return_frequency")
    scaled, sc = equilibrate(sys)
    schur = schur_form(scaled.A)
    require_stable(schur, sys.dt is not None, "hinf_norm")
    g, w = _hinf(scaled, rtol, _modal_form(scaled), schur)
    g = float(sc.scale(g))
    if not np.isfinite(g):
        raise ValueError("hinf_norm: the norm overflows float64 (> 1.8e308)")
    if sys.dt is not None:
        w = w / sys.dt
    return (g, w) if return_frequency else g


def _hinf(sys: StateSpace, rtol: float, modal, schur: SchurForm) -> tuple[float, float]:  # noqa: ANN001
    """``(norm, peak)`` of an equilibrated stable system; ``peak`` in rad/s or ``theta``."""
    discrete, real = sys.dt is not None, not sys.is_complex
    sD = float(np.linalg.norm(sys.D, 2))
    if not np.any(sys.B) or not np.any(sys.C):  # a static gain G = D
        return sD, 0.0
    sigma = _sigma_evaluator(sys, schur)
    freqs = _test_frequencies(sys, modal)
    # screen all test points with the modal form, evaluate the best few and
    # the ends (DC, infinity or Nyquist) exactly
    approx = _modal_sigma(sys, modal, _points(freqs, discrete))
    ends = np.flatnonzero((freqs == 0) | (np.abs(freqs) == (np.pi if discrete else np.inf)))
    pick = np.unique(np.concatenate([np.argsort(-approx)[:_N_EXACT], ends]))
    vals = sigma(_points(freqs[pick], discrete))
    k = int(np.argmax(vals))
    g_lb, w_peak = float(vals[k]), float(freqs[pick[k]])
    if g_lb == 0.0:
        # G is rational with numerator degree < n per entry: zero at n + 1
        # distinct points means G == D == 0 (D is zero, or g_lb would be > 0).
        extra = np.linspace(-1.0, 1.0, sys.n_states + 1) * (np.pi if discrete else 1.0)
        vals = sigma(_points(extra, discrete))
        if vals.max() == 0.0:
            return 0.0, 0.0
        freqs, k = extra, int(np.argmax(vals))
        g_lb, w_peak = float(vals[k]), float(extra[k])
    # polish the best test point between its neighbours: a good start often
    # leaves a single level test, the one that proves no crossing is left
    if np.isfinite(w_peak):
        fin = freqs[np.isfinite(freqs)]
        kk = int(np.searchsorted(fin, w_peak))
        v, w = _refine(sigma, fin[max(kk - 1, 0)], fin[min(kk + 1, fin.size - 1)], discrete)
        if v > g_lb:
            g_lb, w_peak = v, w
    for _ in range(_MAX_ITER):
        gamma = (1.0 + 2.0 * rtol) * g_lb
        cross = _crossings(sys, gamma, sD)
        edges = _interval_edges(cross, real, discrete)
        if edges.size < 2:
            return g_lb, w_peak
        mids = 0.5 * (edges[:-1] + edges[1:])
        vals = sigma(_points(_wrap(mids, discrete), discrete))
        if vals.max() <= gamma:
            # no interval with sigma > gamma: the norm is below gamma
            k = int(np.argmax(vals))
            if vals[k] > g_lb:
                g_lb, w_peak = float(vals[k]), float(_wrap(mids[k], discrete))
            return g_lb, w_peak
        # Bruinsma-Steinbuch step, then a local polish of the best intervals
        for k in np.argsort(-vals)[:3]:
            if vals[k] > g_lb:
                g_lb, w_peak = float(vals[k]), float(_wrap(mids[k], discrete))
            if vals[k] > gamma:
                v, w = _refine(sigma, edges[k], edges[k + 1], discrete)
                if v > g_lb:
                    g_lb, w_peak = v, float(_wrap(w, discrete))
    warnings.warn(
        f"hinf_norm: no convergence to rtol={rtol:g} in {_MAX_ITER} level tests; "
        f"returning the lower bound {g_lb:.12g}",
        RuntimeWarning,
        stacklevel=3,
    )
    return g_lb, w_peak


def reduction_error(full: StateSpace, reduced: StateSpace, *, rtol: float = 1e-10) -> float:
    """Measured reduction error ``||G - G_r||_inf`` (see :func:`hinf_norm`).

    Both systems must be stable and have the same inputs, outputs and ``dt``;
    the error system stacks their states (``n + r`` of them).
    """
    full = check_system(full, "full")
    reduced = check_system(reduced, "reduced")
    return float(hinf_norm(full - reduced, rtol=rtol))
