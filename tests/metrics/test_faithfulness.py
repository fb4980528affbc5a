"""Deletion and insertion (Petsiuk et al. 2018) on a linear model, where the truly important pixels are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from gcdash.metrics.faithfulness import Faithfulness, auc, blurred, curves, reveal_masks

SIZE = 12


class Linear(nn.Module):
    """Two classes: logit 0 = Σ w·x over the pixels, logit 1 = 0."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.w).flatten(1).sum(1, keepdim=True)
        return torch.cat([score, torch.zeros_like(score)], dim=1)


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, SIZE, SIZE, generator=gen, dtype=torch.float64) / 20
    x = torch.rand(1, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    return Linear(w).double(), w, x


def _areas(net, x, maps, settings):
    found = curves(net, x.expand(len(maps), -1, -1, -1), maps, torch.zeros(len(maps), dtype=torch.long), settings)
    return {name: auc(c) for name, c in found.items()}


def test_the_truly_important_order_gives_the_best_deletion_and_insertion_curves(problem):
    net, w, x = problem
    settings = Faithfulness(steps=12, sigma=2.0)
    base = blurred(x, settings.sigma)
    true_delete = (w * x).sum(1)  # each pixel's share of logit 0: removing it costs exactly this
    true_insert = (w * (x - base)).sum(1)  # what revealing it on the blurred start adds
    random_maps = torch.rand(20, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    deletion = _areas(net, x, torch.cat([true_delete, random_maps]), settings)["deletion"]
    insertion = _areas(net, x, torch.cat([true_insert, random_maps]), settings)["insertion"]
    assert deletion[0] < deletion[1:].min()  # the faithful map makes the probability fall fastest
    assert insertion[0] > insertion[1:].max()  # and rise fastest
    reverse = _areas(net, x, -true_delete, settings)["deletion"]
    assert reverse[0] > deletion[1:].max()  # the least important first is the worst


def test_curves_run_from_the_image_to_the_baseline(problem):
    net, _, x = problem
    settings = Faithfulness(steps=4, sigma=2.0)
    found = curves(net, x, torch.rand(1, SIZE, SIZE, dtype=torch.float64), torch.zeros(1, dtype=torch.long), settings)
    p = lambda image: net(image).softmax(1)[0, 0]  # noqa: E731
    assert found["deletion"][0, 0] == pytest.approx(p(x).item())  # nothing removed
    assert found["deletion"][0, -1] == pytest.approx(p(torch.zeros_like(x)).item())  # all removed: black
    assert found["insertion"][0, 0] == pytest.approx(p(blurred(x, 2.0)).item())  # nothing revealed: blurred
    assert found["insertion"][0, -1] == pytest.approx(p(x).item())
    assert settings.passes == 2 * 5


def test_reveal_masks_take_equal_shares_most_important_first():
    maps = torch.arange(16.0).reshape(1, 4, 4)
    masks = reveal_masks(maps, 4)
    assert masks.shape == (1, 5, 4, 4)
    assert masks.sum(dim=(2, 3))[0].tolist() == [0, 4, 8, 12, 16]
    assert masks[0, 1].flatten().tolist() == [0] * 12 + [1] * 4  # the four largest
    flat = reveal_masks(torch.zeros(1, 4, 4), 4)
    assert flat[0, 1].flatten().tolist() == [1] * 4 + [0] * 12  # ties: row-major order


def test_the_blur_is_a_gaussian_filter():
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 2.0, 2.0), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(blurred(x, 2.0).numpy(), expected, atol=1e-12)


def test_the_area_of_a_flat_curve_is_its_height():
    assert auc(torch.full((3, 9), 0.25)).tolist() == pytest.approx([0.25] * 3)
