"""The exact map between a layer and its diagonal LTI form, both ways: dispatch only.

Every layer updates its state *before* reading the output::

    x[k] = lam * x[k-1] + B u[k],      y[k] = Re(C x[k]) + D u[k],

and :func:`to_lti` returns exactly these ``(lam, B, C, D)`` (any input
normalisation, discretisation and factor 2 folded in) as a
:class:`~ctrlreduce_torch.DiagonalLTI`; :func:`from_lti` writes such a system
back.  Which parameters mean what, and how they are inverted, is the
knowledge of each layer's *family* (one file per family, :mod:`ctrlreduce_torch._layer`
for the protocol and the registry); this module only dispatches through the
registry and does what is common to all families: the checks, the
all-or-nothing write, and the state sizes of checkpoints.  The systems
exported for simulation (the layer's map, real) are described in
:mod:`ctrlreduce_torch._lti`.

=========  =======================  ==========================  ==============
layer      ``lam``                  ``B``                       ``C``, ``D``
=========  =======================  ==========================  ==============
LRU        (1, N) ``exp(log_lam)``  (1, N, H) ``gamma * B``     (1, H, N), (1, H, H) diagonal
S5         (1, P) discretised       (1, P, H) ``Bbar``          (1, H, P) ``2C``, (1, H, H) diag.
S4D        (H, M) discretised       (H, M, 1) ``Bbar``          (H, 1, M) ``2 C``, (H, 1, 1)
=========  =======================  ==========================  ==============
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import seen
from ._layer import BalancedFamily, LayerFamily, StateSizedModule, family_of, layer_parameters
from ._lti import DiagonalLTI, check_lti
from ._scan import compute_dtype

__all__ = [
    "WriteBack",
    "balanced_family_of",
    "check_finite_parameters",
    "commit_writeback",
    "from_lti",
    "prepare_writeback",
    "resize_to_state_dict",
    "to_lti",
]

_F64 = torch.float64
_C128 = torch.complex128


# ----------------------------------------------------------------------------
# forward map
# ----------------------------------------------------------------------------


def check_finite_parameters(layer: nn.Module, what: str = "layer") -> None:
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


def to_lti(layer: nn.Module) -> DiagonalLTI:
    """The exact diagonal recurrence a layer computes, in float64/complex128 on its device.

    Parameters
    ----------
    layer : LRU, S5, S4D, or any layer with a registered family

    Returns
    -------
    DiagonalLTI
        ``(lam (G, M), B (G, M, m), C (G, p, M), D (G, p, m))`` in the
        convention of the module docstring, computed from the parameters cast
        to float64 (a snapshot, detached from autograd).  For the layer's
        input-output map as a (real) ``StateSpace`` use ``.to_statespace()``.

    Raises
    ------
    TypeError
        If ``layer``'s class has no registered family.
    ValueError
        If a parameter of ``layer`` is NaN or infinite (the message names it).
    """
    family = family_of(layer)
    check_finite_parameters(layer)
    with torch.no_grad():
        return family.lti(layer, layer_parameters(layer, _F64))


# ----------------------------------------------------------------------------
# inverse map: prepared and checked first, then written all at once
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WriteBack:
    """New parameter values for one layer, validated, and the recurrence they give.

    Attributes
    ----------
    layer : nn.Module
        The layer they are for (unchanged until :func:`commit_writeback`).
    params : dict of str to torch.Tensor
        The new values, in the layer's parameter dtype, on its device.
    d_state : int
        The layer's ``d_state`` after the write.
    lti : DiagonalLTI
        The recurrence the new parameters give, computed in float64 from the
        values *rounded to the layer's dtype*: what the layer will compute.
    """

    layer: nn.Module
    params: dict[str, torch.Tensor]
    d_state: int
    lti: DiagonalLTI


def balanced_family_of(layer: object, name: str = "layer") -> BalancedFamily:
    """The layer's family, which must take a balanced write-back (``TypeError`` otherwise)."""
    family = family_of(layer, name)
    if not isinstance(family, BalancedFamily):
        raise TypeError(
            f"{name} ({type(layer).__name__}) has family {family.name!r}, which takes only an "
            "index selection of its modes (modal_truncate_), not a written-back LTI system"
        )
    return family


def _lti_tensors(lti: DiagonalLTI, device: torch.device) -> DiagonalLTI:
    """``lti`` checked, as complex128/complex128/complex128/float64 on ``device``."""
    check_lti(lti, "lti")
    lam, B, C, D = (getattr(lti, f).detach().to(device) for f in ("lam", "B", "C", "D"))
    D = D.real if D.is_complex() else D
    return DiagonalLTI(lam.to(_C128), B.to(_C128), C.to(_C128), D.to(_F64))


def prepare_writeback(layer: nn.Module, lti: DiagonalLTI) -> WriteBack:
    """Compute and check the parameters that make ``layer`` compute ``lti``; write nothing.

    The family's inverse map gives float64 values, which are rounded to the
    layer's dtype; the recurrence of the rounded values is evaluated once
    (float64) and checked in the dtype the layer computes in (float32 for
    every dtype but float64): ``|lam| < 1`` and finite ``B``, ``C``.

    Raises
    ------
    TypeError
        Unsupported ``layer`` or ``lti`` type.
    ValueError
        ``lti`` invalid or not representable (see :func:`from_lti`).
    """
    family = balanced_family_of(layer)
    first = next(iter(family.state_parameters(layer).values()))
    dtype = first.real.dtype if first.is_complex() else first.dtype  # the layer's precision
    lti = _lti_tensors(lti, first.device)
    with torch.no_grad():
        new = {
            n: v.to(getattr(layer, n).dtype)  # each to its parameter's own dtype
            for n, v in family.params_from_lti(layer, lti).items()
        }
        for name, v in new.items():
            if not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"the system is not representable: parameter {name} would be non-finite "
                    f"in {dtype} (e.g. |lam| too close to 1 or 0, or a phase too close to 0)"
                )
        values = layer_parameters(layer, _F64)
        values.update({n: v.to(_C128 if v.is_complex() else _F64) for n, v in new.items()})
        written = family.lti(layer, values)
        # the layer runs the recurrence in its compute dtype: |lam| must stay
        # below 1 and B, C finite once rounded to it
        real = compute_dtype(dtype)
        rmax = float(written.lam.abs().to(real).max())
        if not rmax < 1.0:
            raise ValueError(
                f"the system is not representable: in {dtype} the layer's |lam| would reach "
                f"{rmax!r} (need < 1)"
            )
        cplx = torch.complex128 if real == _F64 else torch.complex64
        if not all(bool(torch.isfinite(t.to(cplx)).all()) for t in (written.B, written.C)):
            raise ValueError(f"the system is not representable: B or C non-finite in {dtype}")
    return WriteBack(layer, new, family.states_per_mode * lti.n_states, written)


def commit_writeback(wb: WriteBack) -> None:
    """Write a prepared :class:`WriteBack` into its layer (resizing it first if needed).

    When the size is unchanged every parameter keeps its identity and is
    overwritten with ``copy_``; otherwise the state-sized ones are replaced by
    new ``nn.Parameter`` objects (any optimizer must be rebound).
    """
    family = balanced_family_of(wb.layer)
    with torch.no_grad():
        if wb.d_state != family.d_state(wb.layer):
            family.resize_(wb.layer, wb.d_state)
        for name, v in wb.params.items():
            getattr(wb.layer, name).copy_(v)


def from_lti(layer: nn.Module, lti: DiagonalLTI) -> None:
    """Write a diagonal system into ``layer``'s own parameters, in place.

    Parameters
    ----------
    layer : LRU, S5, S4D, or a layer whose registered family is a ``BalancedFamily``
    lti : DiagonalLTI
        In the convention of :func:`to_lti` (see the module docstring); any
        dtype and device.  Its number of states may differ from the layer's:
        the layer is then resized (new ``nn.Parameter`` objects for the
        state-sized tensors; any optimizer must be rebound).  When the size
        is unchanged every parameter keeps its identity and is overwritten
        with ``copy_``.

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
    round-off and its parameters up to the normalisations of the family
    (each family file says which).  Same as
    ``commit_writeback(prepare_writeback(layer, lti))``.
    """
    commit_writeback(prepare_writeback(layer, lti))


# ----------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------


def _state_size_in(
    module: nn.Module, family: LayerFamily, prefix: str, state_dict: Mapping
) -> int | None:
    """The ``d_state`` ``state_dict`` holds for ``module``: its extra state, else a shape."""
    key = prefix + "_extra_state"
    if isinstance(module, StateSizedModule) and key in state_dict:
        return module._extra_state_size(state_dict[key])  # ValueError if malformed
    for name, axis in family.state_axes.items():
        t = state_dict.get(prefix + name)
        if isinstance(t, torch.Tensor) and t.dim() > axis:
            return family.states_per_mode * int(t.shape[axis])
    return None


def resize_to_state_dict(model: nn.Module, state_dict: Mapping) -> dict[str, tuple[int, int]]:
    """Resize every registered SSM layer in ``model`` to the state sizes in ``state_dict``.

    The built-in layers already resize themselves inside
    ``model.load_state_dict`` (they read their extra state ``{"d_state": n}``
    before their parameters), so this is only needed for state dicts without
    that extra state, for layers without it (a plain ``nn.Module`` with a
    registered family), or to resize (and rebuild an optimizer) before
    loading.  The size is read from the extra state when present, else from
    the shape of the family's first state-sized parameter present.

    Returns
    -------
    dict
        ``{module name: (old d_state, new d_state)}`` for every resized layer.
        The resized parameters are zero until the state dict is loaded.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {seen(model)}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {seen(state_dict)}")
    sizes = {}  # read (and validate) every size before resizing anything
    for name, module in model.named_modules():
        try:
            family = family_of(module)
        except TypeError:
            continue
        n = _state_size_in(module, family, f"{name}." if name else "", state_dict)
        if n is not None:
            n = family.check_d_state(n, "d_state")
            if n != family.d_state(module):
                sizes[name] = (module, family, n)
    resized = {}
    for name, (module, family, n) in sizes.items():
        old = family.d_state(module)
        family.resize_(module, n)
        resized[name] = (old, n)
    return resized
