"""Fixtures for the CAM tests: the tiny seeded model (from tests/conftest.py) and a fixed batch of images."""

from __future__ import annotations

import pytest
import torch

from gcdash.models.handle import ModelHandle


@pytest.fixture
def handle(tiny_handle: ModelHandle) -> ModelHandle:
    """A fresh ``tiny-cnn`` handle (seed 0): 32×32 inputs, layers block1..block3, five classes."""
    return tiny_handle


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
