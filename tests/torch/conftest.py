"""Fixtures of the PyTorch adapter tests: every test runs on CPU, and on CUDA when present."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """A torch device: ``cpu``, then ``cuda`` when available."""
    return torch.device(request.param)
