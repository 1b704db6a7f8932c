"""Layer families: everything the adapters know about one kind of diagonal SSM layer.

A *layer family* describes one layer class to the adapters (HSVs, ``reduce_``,
the modal cuts, the ``Compressor``, checkpoints).  Each family lives in one
file (``lru.py``, ``s5.py``, ``s4d.py``, or a user's own module) and is
entered in the one registry below with :func:`register_family`; nothing else
in the package names a layer class.

Glossary
--------
===================  ========================================================
``family``           a :class:`LayerFamily` (index selection only) or a
                     :class:`BalancedFamily` (any diagonal system of the
                     layer's shapes can be written back)
``mode``             one complex diagonal state ``i`` of the layer's
                     :class:`~ctrlreduce_torch.DiagonalLTI`; its index runs
                     along every state axis of the parameters
``M``                modes per system (``lti.lam`` has shape ``(G, M)``)
``states_per_mode``  how many units of ``d_state`` one mode is worth
                     (LRU, S5: 1; S4D: 2, the order of one channel's real
                     map per complex mode); ``d_state = states_per_mode * M``
``state_axes``       ``{parameter name: axis}`` for every parameter whose
                     shape depends on the state size; entry ``i`` along that
                     axis belongs to mode ``i``
``params``           ``{name: tensor}``: the layer's own parameters (any
                     dtype), or proposed new values for them
===================  ========================================================

A family maps parameters to the layer's recurrence (:meth:`LayerFamily.lti`)
and, for a :class:`BalancedFamily`, back (:meth:`BalancedFamily.params_from_lti`,
the write-back).  Mode ``i`` of the LTI must be entry ``i`` along every state
axis, so that selecting modes (:func:`ctrlreduce_torch.modal_truncate_`) is an
``index_select`` of every state-sized parameter and of the optimizer's moments,
with no shape guessing.

This module also holds :class:`StateSizedModule`, the ``nn.Module`` base that
stores ``d_state`` in the layer's own ``state_dict`` (so checkpoints of
reduced models load into freshly built ones), and :class:`MIMOLayer`.  A
user's layer does not have to derive from them: a plain ``nn.Module`` with a
registered family is found, ranked, reduced and compressed like the built-in
ones (see ``examples/custom_layer.py``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX

from ._checks import check_real, check_size, seen
from ._lti import DiagonalLTI
from ._scan import mimo_forward, mimo_forward_sequential, run_in_compute_dtype

__all__ = [
    "MAX_STEP",
    "BalancedFamily",
    "LayerFamily",
    "MIMOLayer",
    "StateSizedModule",
    "check_step_range",
    "family_of",
    "layer_class",
    "layer_parameters",
    "register_family",
    "registered_families",
    "sample_log_step",
]


# ----------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------


class LayerFamily(abc.ABC):
    """What the adapters need to know about one layer class (abstract).

    Subclasses define ``name``, ``states_per_mode``, ``state_axes`` (class
    attributes are fine) and :meth:`lti`.  A family that can only take an
    index selection of its modes (e.g. a selective SSM whose parameters are
    not a free diagonal system) derives from this class directly; one whose
    parameters can hold any reduced diagonal system derives from
    :class:`BalancedFamily`.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short unique name (``"lru"``), used by the demo's ``--layer`` and in messages."""

    @property
    @abc.abstractmethod
    def states_per_mode(self) -> int:
        """Units of ``d_state`` per mode (``d_state = states_per_mode * M``)."""

    @property
    @abc.abstractmethod
    def state_axes(self) -> Mapping[str, int]:
        """``{parameter name: axis}`` of every state-sized parameter (mode index axis)."""

    @abc.abstractmethod
    def lti(self, layer: nn.Module, params: Mapping[str, torch.Tensor]) -> DiagonalLTI:
        """The recurrence ``(lam, B, C, D)`` that parameters ``params`` give ``layer``.

        ``params`` holds every parameter of the layer (its own or proposed new
        values, in any floating dtype; the result is in the dtype they imply).
        Convention: ``x[k] = lam x[k-1] + B u[k]``, ``y[k] = Re(C x[k]) + D u[k]``
        with ``lam (G, M)``, ``B (G, M, m)``, ``C (G, p, M)``, ``D (G, p, m)``
        (see :mod:`ctrlreduce_torch._lti`); mode ``i`` is entry ``i`` along
        every state axis.  Differentiable; no argument checks (the callers
        validate).
        """

    @property
    def min_phase(self) -> float:
        """Smallest ``|arg lam|`` the parametrization holds (0: real eigenvalues are fine)."""
        return 0.0

    @property
    def balanced_writeback(self) -> bool:
        """Whether a balanced (non-diagonal) change of basis can be written back.

        ``True`` for a :class:`BalancedFamily`; otherwise only an index
        selection of modes (:func:`ctrlreduce_torch.modal_truncate_`) applies.
        """
        return isinstance(self, BalancedFamily)

    # -------------------------------------------------- derived, one home each
    def n_modes(self, layer: nn.Module) -> int:
        """Modes per system ``M``, read off the first state-sized parameter."""
        name, axis = next(iter(self.state_axes.items()))
        return int(getattr(layer, name).shape[axis])

    def d_state(self, layer: nn.Module) -> int:
        """The layer's ``d_state``: ``states_per_mode * M``."""
        return self.states_per_mode * self.n_modes(layer)

    def check_d_state(self, value: Any, name: str = "d_state") -> int:
        """A valid ``d_state``: an int ``>= states_per_mode``, a multiple of it."""
        k = self.states_per_mode
        return check_size(value, name, minimum=k, multiple_of=k)

    def state_shapes(self, layer: nn.Module, d_state: int) -> dict[str, tuple[int, ...]]:
        """Shape of every state-sized parameter at ``d_state``."""
        M = d_state // self.states_per_mode
        out = {}
        for name, axis in self.state_axes.items():
            shape = list(getattr(layer, name).shape)
            shape[axis] = M
            out[name] = tuple(shape)
        return out

    def resize_(self, layer: nn.Module, d_state: Any) -> None:
        """Replace every state-sized parameter by a zero ``nn.Parameter`` of the new size.

        Same dtype, device and ``requires_grad``; parameters whose shape does
        not depend on the state size keep their identity.  The caller writes
        the values (and rebinds any optimizer).
        """
        n = self.check_d_state(d_state, "new_d_state")
        for name, shape in self.state_shapes(layer, n).items():
            old = getattr(layer, name)
            new = nn.Parameter(
                torch.zeros(shape, dtype=old.dtype, device=old.device),
                requires_grad=old.requires_grad,
            )
            setattr(layer, name, new)

    def state_parameters(self, layer: nn.Module) -> dict[str, nn.Parameter]:
        """``{name: Parameter}`` of the state-sized parameters, in ``state_axes`` order."""
        return {name: getattr(layer, name) for name in self.state_axes}


class BalancedFamily(LayerFamily):
    """A family whose parameters hold any strictly stable diagonal system of its shapes.

    Adds the write-back :meth:`params_from_lti`, so a balanced truncation
    (re-diagonalized) can be written into the layer by
    :func:`ctrlreduce_torch.from_lti` and :func:`ctrlreduce_torch.reduce_`.
    """

    @abc.abstractmethod
    def params_from_lti(self, layer: nn.Module, lti: DiagonalLTI) -> dict[str, torch.Tensor]:
        """New parameter values (float64) that make ``layer`` compute ``lti``.

        ``lti`` is validated (:func:`~ctrlreduce_torch._lti.check_lti`),
        complex128/float64 on the layer's device, possibly with another number
        of modes.  Return every parameter that changes (all state-sized ones);
        omitted ones keep their values.  Raise ``ValueError`` (naming the
        field) when ``lti`` has the wrong shapes or is not representable.
        Nothing may be written to ``layer`` here.
        """


# ----------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------

#: The one registry: layer class -> its family.  Entries are made by
#: :func:`register_family` (the built-in ones at the end of lru.py, s5.py, s4d.py).
_FAMILIES: dict[type, LayerFamily] = {}


def register_family(layer_class: type, family: LayerFamily, *, replace: bool = False) -> None:
    """Register ``family`` for ``layer_class`` (and its subclasses).

    Parameters
    ----------
    layer_class : type
        A subclass of ``torch.nn.Module``.
    family : LayerFamily
        An instance; its ``name`` must not belong to another family already
        registered, and its ``states_per_mode`` and ``state_axes`` must be
        valid (an int ``>= 1``; a non-empty mapping of names to axes ``>= 0``).
    replace : bool, keyword-only
        Allow replacing the family of a class that already has one.

    Raises
    ------
    TypeError, ValueError
        Arguments of the wrong type, an invalid family, or a class already
        registered (without ``replace=True``).
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, nn.Module)):
        raise TypeError(
            f"layer_class must be a subclass of torch.nn.Module, got {seen(layer_class)}"
        )
    if not isinstance(family, LayerFamily):
        raise TypeError(f"family must be a LayerFamily instance, got {seen(family)}")
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool, got {seen(replace)}")
    name = family.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"family.name must be a non-empty str, got {seen(name)}")
    check_size(family.states_per_mode, "family.states_per_mode")
    axes = family.state_axes
    if not isinstance(axes, Mapping) or not axes:
        raise ValueError(f"family.state_axes must be a non-empty mapping, got {seen(axes)}")
    for key, axis in axes.items():
        if not isinstance(key, str) or isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"family.state_axes must map str to int, got {key!r}: {axis!r}")
        if axis < 0:
            raise ValueError(f"family.state_axes[{key!r}] must be >= 0, got {axis}")
    for cls, other in _FAMILIES.items():
        if other.name == name and other is not family and cls is not layer_class:
            raise ValueError(f"family name {name!r} is already used by {cls.__name__}'s family")
    if layer_class in _FAMILIES and not replace and _FAMILIES[layer_class] is not family:
        raise ValueError(
            f"{layer_class.__name__} already has a family; pass replace=True to replace it"
        )
    _FAMILIES[layer_class] = family


def registered_families() -> dict[type, LayerFamily]:
    """A copy of the registry, ``{layer class: family}``, in registration order."""
    return dict(_FAMILIES)


def _supported() -> str:
    return ", ".join(cls.__name__ for cls in _FAMILIES)


def family_of(layer: object, name: str = "layer") -> LayerFamily:
    """The family of ``layer`` (an instance; the nearest registered class in its MRO).

    ``TypeError`` naming ``name`` and the registered classes if there is none.
    """
    for cls in type(layer).__mro__:
        family = _FAMILIES.get(cls)
        if family is not None:
            return family
    raise TypeError(
        f"{name} must be one of {_supported()} (or a class given to register_family), "
        f"got {type(layer).__name__}"
    )


def layer_class(name: str) -> type:
    """The layer class whose family is called ``name`` (``"lru"``, ``"s5"``, ``"s4d"``, ...)."""
    for cls, family in _FAMILIES.items():
        if family.name == name:
            return cls
    names = ", ".join(repr(f.name) for f in _FAMILIES.values())
    raise ValueError(f"layer must be one of {names}, got {seen(name)}")


def layer_parameters(layer: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``{name: copy}`` of the layer's own parameters, detached, cast to the real ``dtype``
    (complex parameters to the complex dtype of the same precision)."""
    cplx = torch.complex128 if dtype == torch.float64 else torch.complex64
    return {
        n: p.detach().to(dtype=cplx if p.is_complex() else dtype, copy=True)
        for n, p in layer.named_parameters(recurse=False)
    }


# ----------------------------------------------------------------------------
# argument checks and initialisation helpers of the built-in layers
# ----------------------------------------------------------------------------

#: Largest initial step of S5/S4D and largest initial LRU phase: ``Lambda * step``
#: (``|Lambda|`` up to ``pi * d_state``) or ``k * phase`` must stay finite in
#: float32, the dtype the recurrence runs in, over any realistic length ``k``.
MAX_STEP = 1e30


def check_step_range(dt_min: Any, dt_max: Any) -> tuple[float, float]:
    """Validate ``0 < dt_min <= dt_max <= MAX_STEP`` (numbers)."""
    lo = check_real(dt_min, "dt_min", lo=0.0, hi=MAX_STEP, lo_open=True)
    hi = check_real(dt_max, "dt_max", lo=0.0, hi=MAX_STEP, lo_open=True)
    if lo > hi:
        raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
    return lo, hi


def sample_log_step(n: tuple[int, ...], dt_min: float, dt_max: float) -> torch.Tensor:
    """``log(step)`` uniform on ``[log dt_min, log dt_max]``, float64."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    return lo + (hi - lo) * torch.rand(n, dtype=torch.float64)


# ----------------------------------------------------------------------------
# module bases
# ----------------------------------------------------------------------------


class StateSizedModule(nn.Module):
    """Base for registered layers whose state size is part of their saved state.

    The size ``d_state`` and the state-sized parameters come from the layer's
    registered family (:func:`family_of`).  The size travels in
    ``state_dict`` as extra state ``{"d_state": int}``; loading a state dict
    of another size resizes the layer *before* the parameters are copied
    (``_load_from_state_dict`` reads the extra state first, since
    :class:`torch.nn.Module` itself only reads it after the parameters), so a
    plain ``model.load_state_dict(sd)`` works across sizes.  Any optimizer
    holding the old parameters must then be rebuilt or rebound.
    """

    @property
    def d_state(self) -> int:
        """The state size (``states_per_mode`` times the number of modes)."""
        return family_of(self).d_state(self)

    def _init_parameters(self, init: dict[str, torch.Tensor]) -> None:
        """Register every ``init[name]`` (float64) as a Parameter in the default dtype.

        ``ValueError`` if an initial parameter is not finite in that dtype
        (constructor arguments at the edge of the representable range).
        """
        dtype = torch.get_default_dtype()
        values = {name: v.to(dtype) for name, v in init.items()}
        for name, v in values.items():
            if not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"the initial {name} of {type(self).__name__} is not finite in {dtype}; "
                    f"the constructor arguments are outside the representable range"
                )
        for name, v in values.items():
            setattr(self, name, nn.Parameter(v))

    def _resize_state_(self, new_d_state: int) -> None:
        """Zero state-sized parameters of the new size (:meth:`LayerFamily.resize_`)."""
        family_of(self).resize_(self, new_d_state)

    def get_extra_state(self) -> dict[str, int]:
        """``{"d_state": int}``: saved in ``state_dict`` under ``<prefix>_extra_state``."""
        return {"d_state": self.d_state}

    def _extra_state_size(self, state: Any) -> int:
        """The ``d_state`` an extra state holds, validated (nothing is changed)."""
        if not isinstance(state, dict) or "d_state" not in state:
            raise ValueError(f"extra state must be a dict with key 'd_state', got {state!r}")
        return family_of(self).check_d_state(state["d_state"])

    def set_extra_state(self, state: Any) -> None:
        """Resize (zero parameters, see :meth:`_resize_state_`) if ``state`` holds another size."""
        n = self._extra_state_size(state)
        if n != self.d_state:
            self._resize_state_(n)

    def _load_problem(self, n: int, state_dict: Any, prefix: str) -> str | None:
        """Why ``state_dict`` cannot be loaded at ``d_state = n`` (``None`` if it can).

        Every parameter present must have its shape at that size, and a resize
        needs every state-sized parameter (the resized ones start at zero).
        """
        shapes = family_of(self).state_shapes(self, n)
        for name, prm in self._parameters.items():
            if prm is None:
                continue
            want = tuple(shapes.get(name, prm.shape))
            val = state_dict.get(prefix + name)
            if val is None:
                if n != self.d_state and name in shapes:
                    return (
                        f"extra state says d_state={n}, but the state dict has no "
                        f"{prefix + name!r} to fill the resized parameter"
                    )
                continue
            if isinstance(val, torch.Tensor) and tuple(val.shape) != want:
                return (
                    f"extra state says d_state={n}, so {prefix + name} must have shape "
                    f"{want}, got {tuple(val.shape)}; the layer was left unchanged"
                )
        return None

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # torch reads extra state only after copying the parameters, which fails
        # on a size mismatch; read it first.  Validate everything this layer
        # will load before resizing, so an inconsistent state dict leaves the
        # layer untouched (and loads nothing into it).
        key = prefix + _EXTRA_STATE_KEY_SUFFIX
        if key in state_dict:
            n = self._extra_state_size(state_dict[key])
            problem = self._load_problem(n, state_dict, prefix)
            if problem is not None:
                error_msgs.append(problem)
                return
            if n != self.d_state:
                self._resize_state_(n)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """:meth:`torch.nn.Module.load_state_dict`, all or nothing.

        Resizes the layer to the saved ``d_state`` first (see the class
        docstring).  If the load fails for any reason (an inconsistent extra
        state, a wrong shape, a missing or unexpected key with ``strict``),
        the layer is restored to exactly what it was: the same ``Parameter``
        objects (so an optimizer holding them stays valid) with the same
        values and the same ``d_state``.  (Inside a larger model loaded
        through the model's own ``load_state_dict``, an inconsistent state for
        this layer still leaves it untouched; torch does not undo other
        modules' partial loads.)
        """
        saved = dict(self._parameters)
        values = {n: p.detach().clone() for n, p in saved.items() if p is not None}
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except BaseException:
            with torch.no_grad():
                for name, prm in saved.items():
                    self._parameters[name] = prm
                    if prm is not None:
                        prm.copy_(values[name])
            raise


class MIMOLayer(StateSizedModule, abc.ABC):
    """Base of the one-system layers (LRU, S5): ``y = Re(C x) + D u`` by the scans.

    Subclasses implement :meth:`_discrete`, the recurrence in the layer's own
    shapes with any factor 2 folded into ``C`` (their family's :meth:`~LayerFamily.lti`
    packs the same function's output).
    """

    d_model: int

    @abc.abstractmethod
    def _discrete(
        self, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_lam (N,), B (N, H), C (H, N), D (H,))`` from the parameters cast to ``dtype``."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``y = Re(C x) + D u`` for ``u (batch, length, d_model)`` (chunked scan).

        Computed in float32 or float64 whatever the parameter and input
        dtypes, with autocast off; returned in the autocast dtype inside
        ``torch.autocast``, else in the parameters' dtype (see
        :func:`ctrlreduce_torch._scan.precision`).
        """
        return run_in_compute_dtype(
            u, self.d_model, self.D.dtype, lambda v, dt: mimo_forward(v, *self._discrete(dt))
        )

    def forward_sequential(self, u: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward` by a Python loop over time (test oracle; slow)."""
        return run_in_compute_dtype(
            u,
            self.d_model,
            self.D.dtype,
            lambda v, dt: mimo_forward_sequential(v, *self._discrete(dt)),
        )
