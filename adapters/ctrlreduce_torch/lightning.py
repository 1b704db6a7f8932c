"""PyTorch Lightning integration: a callback that runs CompreSSM during ``fit``.

Lightning is an optional extra (``pip install ctrlreduce[lightning]``); it is
imported when :class:`CompressorCallback` is first built, not when
``ctrlreduce_torch`` is imported.

Usage::

    from ctrlreduce_torch.lightning import CompressorCallback
    cb = CompressorCallback(tau=0.05, window=0.1, attempts=4)
    lightning.Trainer(max_steps=1000, callbacks=[cb]).fit(module, loader)
    cb.compressor.history   # what was cut, when

The callback builds a :class:`~ctrlreduce_torch.Compressor` in
``on_train_start`` from the LightningModule and the trainer's (single)
optimizer, with ``total_steps`` defaulting to
``trainer.estimated_stepping_batches``, and calls
:meth:`~ctrlreduce_torch.Compressor.step` once per optimizer step (it follows
``trainer.global_step``, so gradient accumulation is handled).  Lightning keeps
references to the optimizer object; the compressor rebinds that same object's
parameter groups in place, so those references stay valid.

Limitations: single-process training only (with more than one device the
strategy owns the DDP wrapper, which would have to be rebuilt after a cut;
refused with a ``RuntimeError``); exactly one optimizer.
"""

from __future__ import annotations

from typing import Any

from .compressor import Compressor

__all__ = ["CompressorCallback"]


def _callback_base() -> type:
    try:
        import lightning.pytorch as pl
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "CompressorCallback needs PyTorch Lightning: pip install 'ctrlreduce[lightning]'"
        ) from exc
    return pl.Callback


class _Lazy(type):
    """Metaclass that builds the real callback class on first instantiation."""

    _cls: type | None = None

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._cls is None:
            cls._cls = _make_callback_class()
        return cls._cls(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return cls._cls is not None and isinstance(obj, cls._cls)


def _make_callback_class() -> type:
    base = _callback_base()

    class CompressorCallback(base):  # type: ignore[misc, valid-type]
        __doc__ = _DOC

        def __init__(self, *, total_steps: int | None = None, **compressor_kwargs: Any) -> None:
            super().__init__()
            self.total_steps = total_steps
            self.compressor_kwargs = compressor_kwargs
            self.compressor: Compressor | None = None
            self._last_global_step = 0
            self._pending_state: dict[str, Any] | None = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.world_size > 1:
                raise RuntimeError(
                    "CompressorCallback supports single-process training only "
                    f"(trainer.world_size={trainer.world_size}); use ctrlreduce_torch.distributed "
                    "with a plain DistributedDataParallel loop"
                )
            if len(trainer.optimizers) != 1:
                raise RuntimeError(
                    f"CompressorCallback needs exactly one optimizer, got {len(trainer.optimizers)}"
                )
            total = self.total_steps
            if total is None:
                est = trainer.estimated_stepping_batches
                if est is None or est == float("inf"):
                    raise ValueError(
                        "total_steps was not given and the trainer cannot estimate it "
                        "(set max_steps or max_epochs, or pass total_steps=)"
                    )
                total = int(est)
            self.compressor = Compressor(
                pl_module, trainer.optimizers[0], total_steps=total, **self.compressor_kwargs
            )
            if self._pending_state is not None:
                self.compressor.load_state_dict(self._pending_state)
                self._pending_state = None
            self._last_global_step = trainer.global_step

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if self.compressor is None:
                return
            while self._last_global_step < trainer.global_step:
                self._last_global_step += 1
                self.compressor.step()

        def state_dict(self) -> dict[str, Any]:
            return {} if self.compressor is None else self.compressor.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self._pending_state = dict(state_dict) or None

    CompressorCallback.__module__ = __name__
    return CompressorCallback


_DOC = """Lightning callback running a :class:`~ctrlreduce_torch.Compressor` during ``fit``.

Parameters
----------
total_steps : int, optional
    Planned optimizer steps; default ``trainer.estimated_stepping_batches``.
**compressor_kwargs
    Passed to :class:`~ctrlreduce_torch.Compressor` (``tau=``, ``tol=``,
    ``final_fraction=``, ``window=``, ``attempts=``, ...).

Attributes
----------
compressor : Compressor or None
    Built in ``on_train_start``.
"""


class CompressorCallback(metaclass=_Lazy):
    __doc__ = _DOC
