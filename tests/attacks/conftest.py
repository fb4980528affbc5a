import pytest
import torch


@pytest.fixture
def batch():
    """16 random pixel-space images and labels of the tiny models' 5 classes."""
    torch.manual_seed(0)
    return torch.rand(16, 3, 32, 32), torch.randint(0, 5, (16,))
