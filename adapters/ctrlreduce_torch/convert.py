"""The exact map between the layers and their diagonal LTI form, both ways.

Convention
----------
Every layer updates its state *before* reading the output::

    x[k] = lam * x[k-1] + B u[k],      y[k] = Re(C x[k]) + D u[k],

and :func:`to_lti` returns exactly these ``(lam, B, C, D)`` (any input
normalisation, discretisation and factor 2 folded in).  As a standard
discrete system ``s[k+1] = A s[k] + B' u[k]`` this is the realisation
``(diag(lam), B, C diag(lam), D + Re(C B))`` (take ``s[k] = x[k-1]``), with
transfer function ``G(z) = D + z C (z I - diag(lam))^{-1} B``.  Since
``|z| = 1`` on the unit circle, ``G - G_r = z (S - S_r)`` where
``S = (diag(lam), B, C, D)`` is :meth:`DiagonalLTI.to_statespace`'s system:
a balanced truncation of ``S`` that keeps ``D`` changes the layer's map by
exactly the H-infinity error of ``S - S_r``, so the usual a-priori bound holds.

=========  =======================  ==========================  ==============
layer      ``lam``                  ``B``                       ``C``, ``D``
=========  =======================  ==========================  ==============
LRU        (1, N) ``exp(log_lam)``  (1, N, H) ``gamma * B``     (1, H, N), (1, H, H) diagonal
S5         (1, P) discretised       (1, P, H) ``Bbar``          (1, H, P) ``2C``, (1, H, H) diag.
S4D        (H, M) discretised       (H, M, 1) ``Bbar``          (H, 1, M) ``2 C``, (H, 1, 1)
=========  =======================  ==========================  ==============

:func:`from_lti` inverts this map.  Choices where the inverse is not unique:

* LRU: ``gamma_log = log(sqrt(1 - |lam|^2))`` (the paper's normalisation) and
  ``B = B_lti / gamma``; phases are taken in ``(0, 2 pi)``.
* S5 / S4D: the step is kept.  S4D keeps its per-channel ``log_dt``.  S5
  keeps each state's ``log_step`` when the number of states is unchanged;
  otherwise each new state takes the step of the old state whose eigenvalue
  ``lam`` is nearest.  Under zero-order hold ``Lambda = log(lam) / step``
  with the branch of ``log`` whose imaginary part is nearest to that same
  old state's ``Im(Lambda step)`` (so a round trip restores ``Lambda_im``
  exactly; every branch gives the same ``lam``).  Under the bilinear rule
  ``Lambda step = 2 (lam - 1) / (lam + 1)`` (unique).  ``B`` is then
  ``Bbar`` divided by the discretisation gain; ``C`` is ``C_lti / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ._lti import DiagonalLTI, check_lti
from ._scan import StateSizedModule, compute_dtype
from .lru import LRU, lru_discrete
from .s4d import S4D, s4d_discrete
from .s5 import S5, s5_discrete

__all__ = ["from_lti", "resize_to_state_dict", "to_lti"]

_F64 = torch.float64
_C128 = torch.complex128


# ----------------------------------------------------------------------------
# forward map
# ----------------------------------------------------------------------------


def _mimo_lti(log_lam, B, C, D) -> DiagonalLTI:
    """One MIMO system ``(1, N)``, ``(1, N, H)``, ``(1, H, N)``, diagonal ``(1, H, H)``."""
    return DiagonalLTI(
        lam=torch.exp(log_lam)[None], B=B[None], C=C[None], D=torch.diag_embed(D)[None]
    )


def _siso_lti(log_lam, B, C, D) -> DiagonalLTI:
    """``H`` SISO systems ``(H, M)``, ``(H, M, 1)``, ``(H, 1, M)``, ``(H, 1, 1)``."""
    return DiagonalLTI(lam=torch.exp(log_lam), B=B[..., None], C=C[:, None, :], D=D[:, None, None])


def to_lti(layer: torch.nn.Module) -> DiagonalLTI:
    """The exact diagonal system a layer computes, in float64/complex128 on its device.

    Parameters
    ----------
    layer : LRU, S5 or S4D

    Returns
    -------
    DiagonalLTI
        See the module docstring for shapes and the output convention.  The
        tensors are computed from the parameters cast to float64 and stay
        attached to the autograd graph (wrap in ``torch.no_grad()`` when no
        gradient is wanted).

    Raises
    ------
    TypeError
        If ``layer`` is not a supported layer.
    ValueError
        If a parameter of ``layer`` is NaN or infinite (the message names it).
    """
    spec = _spec(layer)
    check_finite_parameters(layer)
    with torch.no_grad():
        log_lam, B, C, D = layer._discrete(_F64)
        return spec.pack(log_lam, B, C, D.clone())


def check_finite_parameters(layer: torch.nn.Module, what: str = "layer") -> None:
    """``ValueError`` naming the layer and the parameter if any parameter is NaN or infinite.

    A non-finite parameter has no meaningful LTI form (``nu_log = inf`` gives
    ``lam = 0`` in the limit but NaN in the arithmetic), so :func:`to_lti`,
    and through it the HSVs, ``reduce_`` and the compressor, refuse it.
    """
    for name, prm in layer.named_parameters():
        if not bool(torch.isfinite(prm).all()):
            raise ValueError(
                f"{what} ({type(layer).__name__}) parameter {name!r} has non-finite entries "
                "(NaN or inf)"
            )


# ----------------------------------------------------------------------------
# inverse map
# ----------------------------------------------------------------------------


def _lti_tensors(lti: DiagonalLTI, device: torch.device):
    """``(lam, B, C, D)`` as complex128/complex128/complex128/float64 on ``device``, checked."""
    check_lti(lti, "lti")
    lam, B, C, D = (getattr(lti, f).detach().to(device) for f in ("lam", "B", "C", "D"))
    D = D.real if D.is_complex() else D
    return lam.to(_C128), B.to(_C128), C.to(_C128), D.to(_F64)


def _diagonal_of(D: torch.Tensor, what: str) -> torch.Tensor:
    """The diagonal of a square ``D (p, p)``, which must be diagonal up to round-off.

    Off-diagonal entries up to ``64 eps max|D|`` (round-off of the algebra that
    produced ``D``) are dropped; larger ones are not representable.
    """
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(D.shape)}")
    d = torch.diagonal(D)
    off = (D - torch.diag_embed(d)).abs().max() if D.numel() else D.new_zeros(())
    tol = 64 * torch.finfo(_F64).eps * float(D.abs().max()) if D.numel() else 0.0
    if float(off) > tol:
        raise ValueError(
            f"{what} must be diagonal (the layer's D is a vector), got off-diagonal "
            f"entries up to {float(off):.3g}"
        )
    return d


def _nearest(new_lam: torch.Tensor, old_lam: torch.Tensor) -> torch.Tensor:
    """Index of the nearest old eigenvalue for each new one, along the last axis."""
    return (new_lam[..., :, None] - old_lam[..., None, :]).abs().argmin(dim=-1)


def _zoh_log(lam: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """``log(lam) + 2 pi i k`` with ``k`` putting the imaginary part nearest ``Im z_ref``."""
    z = torch.log(lam)
    k = torch.nan_to_num(torch.round((z_ref.imag - z.imag) / (2 * math.pi)), nan=0.0)
    return torch.complex(z.real, z.imag + 2 * math.pi * k)


def _one_mimo_system(layer, lam, B, C, D, what: str):  # noqa: ANN001, ANN202
    """``(lam (N,), B (N, H), C (H, N), diag(D) (H,))`` of a one-system ``lti``, checked."""
    if lam.shape[0] != 1:
        raise ValueError(
            f"{what} is one system: lti.lam must have shape (1, N), got {tuple(lam.shape)}"
        )
    H = layer.d_model
    if B.shape[2] != H or C.shape[1] != H:
        raise ValueError(
            f"lti must have {H} inputs and outputs, got B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    return lam[0], B[0], C[0], _diagonal_of(D[0], "lti.D[0]")


def _lru_params(layer: LRU, lam, B, C, D) -> dict[str, torch.Tensor]:
    lam, B, C, d = _one_mimo_system(layer, lam, B, C, D, "an LRU")
    phase = torch.angle(lam)
    phase = torch.where(phase < 0, phase + 2 * math.pi, phase)
    if bool((phase == 0).any()):
        idx = torch.nonzero(phase == 0).flatten().tolist()
        raise ValueError(
            f"the LRU cannot represent eigenvalues with phase 0 (real, >= 0), got some at {idx}"
        )
    r = lam.abs()
    gamma = torch.sqrt(1 - r**2)
    Bn = B / gamma[:, None]
    return {
        "nu_log": torch.log(-torch.log(r)),
        "theta_log": torch.log(phase),
        "gamma_log": torch.log(gamma),
        "B_re": Bn.real,
        "B_im": Bn.imag,
        "C_re": C.real,
        "C_im": C.imag,
        "D": d,
    }


def _s5_params(layer: S5, lam, B, C, D) -> dict[str, torch.Tensor]:
    lam, B, C, d = _one_mimo_system(layer, lam, B, C, D, "an S5 layer")
    with torch.no_grad():
        z_old, *_ = layer._discrete(_F64)
        step_old = torch.exp(layer.log_step.detach().to(_F64))
    ref = torch.arange(lam.shape[0], device=lam.device)
    if lam.shape[0] != layer.d_state:
        ref = _nearest(lam, torch.exp(z_old))
    step = step_old[ref]
    if layer.discretization == "zoh":
        z = _zoh_log(lam, z_old[ref])
        gain = torch.expm1(z) / (z / step)
    else:
        z = 2 * (lam - 1) / (lam + 1)
        gain = step / (1 - z / 2)
    Lambda = z / step
    Bc = B / gain[:, None]
    return {
        "Lambda_re_log": torch.log(-Lambda.real),
        "Lambda_im": Lambda.imag,
        "log_step": torch.log(step),
        "B_re": Bc.real,
        "B_im": Bc.imag,
        "C_re": C.real / 2,
        "C_im": C.imag / 2,
        "D": d,
    }


def _s4d_params(layer: S4D, lam, B, C, D) -> dict[str, torch.Tensor]:
    H = layer.d_model
    G, M = lam.shape
    if G != H:
        raise ValueError(
            f"an S4D layer is {H} SISO systems: lti.lam must have shape ({H}, M), "
            f"got {tuple(lam.shape)}"
        )
    if B.shape != (H, M, 1):
        raise ValueError(f"lti.B must have shape ({H}, {M}, 1) for S4D, got {tuple(B.shape)}")
    if C.shape != (H, 1, M):
        raise ValueError(f"lti.C must have shape ({H}, 1, {M}) for S4D, got {tuple(C.shape)}")
    with torch.no_grad():
        z_old, *_ = layer._discrete(_F64)
        dt = torch.exp(layer.log_dt.detach().to(_F64))
    if M == z_old.shape[1]:
        z_ref = z_old
    else:
        z_ref = torch.gather(z_old, 1, _nearest(lam, torch.exp(z_old)))
    z = _zoh_log(lam, z_ref)
    A = z / dt[:, None]
    Bc = B[..., 0] * A / torch.expm1(z)
    C = C[:, 0, :]
    return {
        "log_A_real": torch.log(-A.real),
        "A_imag": A.imag,
        "B_re": Bc.real,
        "B_im": Bc.imag,
        "C_re": C.real / 2,
        "C_im": C.imag / 2,
        "D": D[:, 0, 0],
    }


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    pack: Callable[..., DiagonalLTI]
    params: Callable[..., dict[str, torch.Tensor]]
    discrete: Callable[..., tuple[torch.Tensor, ...]]
    state_size: Callable[[int], int]  # lti.n_states -> layer d_state


_SPECS: dict[type, _Spec] = {
    LRU: _Spec(_mimo_lti, _lru_params, lambda layer, *p: lru_discrete(*p), lambda n: n),
    S5: _Spec(
        _mimo_lti, _s5_params, lambda layer, *p: s5_discrete(layer.discretization, *p), lambda n: n
    ),
    S4D: _Spec(_siso_lti, _s4d_params, lambda layer, *p: s4d_discrete(*p), lambda n: 2 * n),
}


def _spec(layer: object) -> _Spec:
    for cls in type(layer).__mro__:
        if cls in _SPECS:
            return _SPECS[cls]
    supported = ", ".join(c.__name__ for c in _SPECS)
    raise TypeError(f"layer must be one of {supported}, got {type(layer).__name__}")


def from_lti(layer: torch.nn.Module, lti: DiagonalLTI) -> None:
    """Write a diagonal system into ``layer``'s own parameters, in place.

    Parameters
    ----------
    layer : LRU, S5 or S4D
    lti : DiagonalLTI
        In the convention of :func:`to_lti` (see the module docstring); any
        dtype and device.  Its number of states may differ from the layer's:
        the layer is then resized with ``layer._resize_state_`` (new
        ``nn.Parameter`` objects for the state-sized tensors; any optimizer
        must be rebound).  When the size is unchanged every parameter keeps
        its identity and is overwritten with ``copy_``.

    Raises
    ------
    TypeError
        If ``layer`` or ``lti`` has an unsupported type.
    ValueError
        If the system is not representable in the layer's parametrisation:
        wrong shapes, non-finite entries, ``|lam| >= 1``, a non-diagonal
        ``D`` (LRU, S5), an LRU eigenvalue with phase 0, or parameters that
        are not finite (or not strictly stable) once cast to the layer's dtype
        (e.g. ``|lam|`` so close to 1 that ``log(-log|lam|)`` overflows).
        Everything is validated before anything is written: on error the
        layer is unchanged.

    Notes
    -----
    ``from_lti(layer, to_lti(layer))`` reproduces the layer's outputs to
    round-off and its parameters up to the normalisations of the module
    docstring.
    """
    spec = _spec(layer)
    dtype = layer.D.dtype
    lam, B, C, D = _lti_tensors(lti, layer.D.device)
    with torch.no_grad():
        new64 = spec.params(layer, lam, B, C, D)
        new = {name: v.to(dtype) for name, v in new64.items()}
        for name, v in new.items():
            if not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"the system is not representable: parameter {name} would be non-finite "
                    f"in {dtype} (e.g. |lam| too close to 1 or 0, or a phase too close to 0)"
                )
        # the recurrence the layer will actually run: its parameters rounded to
        # their dtype, computed in the layer's compute dtype
        cdt = compute_dtype(dtype)
        vals = [new.get(n, getattr(layer, n).detach()).to(cdt) for n in layer._param_names]
        log_lam, Bd, Cd, _ = spec.discrete(layer, *vals)
        rmax = float(torch.exp(log_lam).abs().max())
        if not rmax < 1.0:
            raise ValueError(
                f"the system is not representable: in {dtype} the layer's |lam| would reach "
                f"{rmax!r} (need < 1)"
            )
        if not (bool(torch.isfinite(Bd).all()) and bool(torch.isfinite(Cd).all())):
            raise ValueError(f"the system is not representable: B or C non-finite in {dtype}")
        # validated: now write
        n_new = spec.state_size(lam.shape[1])
        if n_new != layer.d_state:
            layer._resize_state_(n_new)
        for name, v in new.items():
            getattr(layer, name).copy_(v)


# ----------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------

_STATE_KEY = {LRU: ("nu_log", 0, 1), S5: ("Lambda_re_log", 0, 1), S4D: ("log_A_real", 1, 2)}


def _state_size_in(module: StateSizedModule, prefix: str, state_dict: Mapping) -> int | None:
    key = prefix + "_extra_state"
    if key in state_dict:
        return module._extra_state_size(state_dict[key])  # ValueError if malformed
    for cls in type(module).__mro__:
        if cls in _STATE_KEY:
            key, axis, factor = _STATE_KEY[cls]
            t = state_dict.get(prefix + key)
            if isinstance(t, torch.Tensor) and t.dim() > axis:
                return factor * int(t.shape[axis])
    return None


def resize_to_state_dict(model: torch.nn.Module, state_dict: Mapping) -> dict[str, tuple[int, int]]:
    """Resize every LRU/S5/S4D in ``model`` to the state sizes found in ``state_dict``.

    The layers already resize themselves inside ``model.load_state_dict``
    (they read their extra state ``{"d_state": n}`` before their parameters),
    so this is only needed for state dicts without that extra state, or to
    resize (and rebuild an optimizer) before loading.  The size is read from
    the extra state when present, else from the shape of ``nu_log`` (LRU),
    ``Lambda_re_log`` (S5) or ``log_A_real`` (S4D).

    Returns
    -------
    dict
        ``{module name: (old d_state, new d_state)}`` for every resized layer.
        The resized parameters are zero until the state dict is loaded.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    sizes = {}  # read (and validate) every size before resizing anything
    for name, module in model.named_modules():
        if not isinstance(module, StateSizedModule):
            continue
        n = _state_size_in(module, f"{name}." if name else "", state_dict)
        if n is not None and n != module.d_state:
            sizes[name] = (module, n)
    resized = {}
    for name, (module, n) in sizes.items():
        old = module.d_state
        module._resize_state_(n)
        resized[name] = (old, n)
    return resized
