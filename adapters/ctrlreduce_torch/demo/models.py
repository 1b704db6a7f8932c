"""A small sequence classifier built from any of the SSM layers.

Architecture (``n_layers`` residual blocks, pre-norm, as in the LRU paper)::

    x = encoder(u)                          # (B, L, d_input) -> (B, L, H)
    repeat n_layers:
        z = norm(x)                          # LayerNorm over H
        z = ssm(z)                           # LRU / S5 / S4D, (B, L, H)
        z = gelu(z)
        z = glu(linear(z))  (mixer="glu")    # Linear(H, 2H) then GLU -> (B, L, H)
        x = x + dropout(z)
    logits = head(mean_t(x))                 # (B, n_classes)

``H`` is ``d_model``; each block's SSM has its own ``d_state``, so a model can
be built directly at the per-layer sizes a compressed run ended with.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_real, check_size, seen
from .._layer import family_of, layer_class

__all__ = ["SequenceClassifier"]


class _Block(nn.Module):
    def __init__(
        self, ssm: nn.Module, d_model: int, dropout: float, mixer: str
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.ssm = ssm
        self.mixer = mixer
        self.out = nn.Linear(d_model, 2 * d_model) if mixer == "glu" else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H)
        z = nn.functional.gelu(self.ssm(self.norm(x)))
        if self.out is not None:
            z = nn.functional.glu(self.out(z), dim=-1)
        return x + self.drop(z)


class SequenceClassifier(nn.Module):
    """Encoder, ``n_layers`` SSM blocks, mean pooling over time, linear head.

    Parameters
    ----------
    d_input, n_classes : int
        Input channels and number of classes.
    d_model : int
        Width ``H`` of every block.
    d_state : int or sequence of int
        The SSM state size, one for all blocks or one per block.
    n_layers : int
        Number of blocks (ignored when ``d_state`` is a sequence; its length wins).
    layer : str
        SSM layer type: the name of a registered family (``"lru"``, ``"s5"``,
        ``"s4d"``, or one given to :func:`ctrlreduce_torch.register_family`);
        its class is built as ``cls(d_model, d_state, **layer_kwargs)``.
    dropout : float
        Dropout after each block.
    mixer : {"glu", "gelu"}
        ``"glu"``: GELU then ``Linear(H, 2H)`` and GLU; ``"gelu"``: GELU only.
    **layer_kwargs
        Passed to the layer constructor.
    """

    def __init__(
        self,
        d_input: int,
        n_classes: int,
        *,
        d_model: int,
        d_state: int | Sequence[int],
        n_layers: int = 2,
        layer: str = "lru",
        dropout: float = 0.0,
        mixer: str = "glu",
        **layer_kwargs,
    ) -> None:
        super().__init__()
        d_input = check_size(d_input, "d_input")
        n_classes = check_size(n_classes, "n_classes")
        d_model = check_size(d_model, "d_model")
        n_layers = check_size(n_layers, "n_layers")
        dropout = check_real(dropout, "dropout", lo=0.0, hi=1.0, hi_open=True)
        if not isinstance(layer, str):
            raise TypeError(f"layer must be the name of a layer family (str), got {seen(layer)}")
        cls = layer_class(layer)
        check_choice(mixer, "mixer", ("glu", "gelu"))
        is_seq = isinstance(d_state, Sequence) and not isinstance(d_state, (str, bytes))
        if not (is_seq or isinstance(d_state, numbers.Integral)):
            raise TypeError(f"d_state must be an int or a sequence of ints, got {seen(d_state)}")
        if is_seq:
            sizes = [check_size(s, "d_state entries") for s in d_state]
            if not sizes:
                raise ValueError("d_state must be an int or a non-empty sequence of ints, got []")
        else:
            sizes = [check_size(d_state, "d_state")] * n_layers
        self.layer_type = layer
        self.encoder = nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(
            _Block(cls(d_model, s, **layer_kwargs), d_model, dropout, mixer) for s in sizes
        )
        self.head = nn.Linear(d_model, n_classes)

    @property
    def state_dims(self) -> list[int]:
        """Current ``d_state`` of each block's SSM layer."""
        return [family_of(b.ssm).d_state(b.ssm) for b in self.blocks]

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, d_input) -> (B, K)
        x = self.encoder(u)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=1))
