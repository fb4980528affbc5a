"""The formulas of PAPER.md §2 worked by hand (numpy) on a model whose gradients are known in closed form.

The "layer" outputs a fixed two-channel 3×3 activation scaled by the input's mean, ``A = A0·t(x)``, and the head
is linear in A plus an optional quadratic term: ``S = W·vec(A) + ½·V·vec(A)²``, so ``g = ∂S_c/∂A = W_c + V_c·A``.
With ``V = 0`` the gradient is ``W_c`` itself (spatially varying, with zeros); with ``V ≠ 0`` it moves with the
input, which is what Smooth Grad-CAM++'s noise and Integrated Grad-CAM's path see. Nothing here calls the
library's maths: every expected map is computed from the formulas below.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gcdash import cams
from gcdash.cams.smooth import image_generator
from gcdash.models.handle import ModelHandle

A0 = np.array(
    [
        [[1, 2, 0], [0, 3, 1], [2, 0, 1]],  # Σ = 10
        [[0, 1, 1], [2, 0, 0], [1, 1, 3]],  # Σ = 9
    ],
    dtype=np.float32,
)
# Gradient of class 0 w.r.t. A (linear head): mixed signs and exact zeros, so α's "0 where g = 0" is exercised.
G0 = np.array(
    [
        [[1.5, -0.9, 0.0], [0.6, 2.4, -1.8], [0.0, 1.2, 0.3]],
        [[-0.6, -1.8, 0.9], [0.0, -1.2, -2.1], [1.5, 0.0, -0.3]],
    ],
    dtype=np.float32,
)
V0 = np.array(
    [
        [[0.4, 0.2, -0.3], [0.5, -0.2, 0.3], [0.1, 0.6, 0.2]],
        [[0.3, -0.4, 0.2], [0.2, 0.5, -0.1], [-0.2, 0.3, 0.1]],
    ],
    dtype=np.float32,
)
ONES = torch.ones(1, 3, 3, 3)


class ScaledActivation(nn.Module):
    """``A = A0 · mean(x)``: a fixed activation that still depends on the input (so it has a gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a0", torch.from_numpy(A0)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a0 * x.mean(dim=(1, 2, 3))[:, None, None, None]


class HandNet(nn.Module):
    def __init__(self, quadratic: bool) -> None:
        super().__init__()
        self.layer = ScaledActivation()
        self.head = nn.Linear(18, 3, bias=False)
        other = np.random.default_rng(0).normal(size=(2, 18)).astype(np.float32)
        self.head.weight.data = torch.from_numpy(np.concatenate([G0.reshape(1, 18), other]))
        v = np.concatenate([V0.reshape(1, 18), np.zeros((2, 18), np.float32)]) * quadratic
        self.register_buffer("v", torch.from_numpy(v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.layer(x).flatten(1)
        return self.head(a) + 0.5 * (a * a) @ self.v.T


def hand_handle(quadratic: bool = False) -> ModelHandle:
    net = HandNet(quadratic)
    return ModelHandle("hand", net, (3, 3), ["c0", "c1", "c2"], {"layer": net.layer}, "layer")


def raw(handle: ModelHandle, method: str, x: torch.Tensor = ONES, **params) -> np.ndarray:
    return cams.explain(handle, x, "layer", method, targets=[0], **params).maps["layer"][0]


# --- PAPER.md §2, by hand -------------------------------------------------------------------------------------
relu = lambda a: np.maximum(a, 0)  # noqa: E731


def combine(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """``L = ReLU(Σ_k w_k A_k)``."""
    return relu((weights[:, None, None] * acts).sum(axis=0))


def grad_cam(acts: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``w_k = mean_ij g_k(i,j)``."""
    return combine(g.mean(axis=(1, 2)), acts)


def grad_cam_pp(acts: np.ndarray, g: np.ndarray, g2: np.ndarray | None = None, g3: np.ndarray | None = None):
    """``α = g² / (2g² + Σ_ab A_k(a,b)·g³)`` (0 where g = 0), ``w_k = Σ_ij α·ReLU(g)``."""
    g2 = g**2 if g2 is None else g2
    g3 = g**3 if g3 is None else g3
    total = acts.sum(axis=(1, 2))[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(g != 0, g2 / (2 * g2 + total * g3), 0.0)
    return combine((alpha * relu(g)).sum(axis=(1, 2)), acts)


def xgrad_cam(acts: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``w_k = Σ_ij (A_k(i,j) / Σ_ab A_k(a,b)) · g_k(i,j)``."""
    return combine((acts / acts.sum(axis=(1, 2))[:, None, None] * g).sum(axis=(1, 2)), acts)


def minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


# --- checks ---------------------------------------------------------------------------------------------------
HAND = {
    "gradcam": lambda: grad_cam(A0, G0),
    "gradcam-cf": lambda: grad_cam(A0, -G0),
    "gradcampp": lambda: grad_cam_pp(A0, G0),
    "xgradcam": lambda: xgrad_cam(A0, G0),
}


def test_the_example_tells_the_methods_apart():
    maps = [minmax(fn()) for fn in HAND.values()]
    for i in range(len(maps)):
        for j in range(i):
            assert np.abs(maps[i] - maps[j]).max() > 0.05


@pytest.mark.parametrize("method", list(HAND))
def test_raw_and_normalised_maps_match_the_formula(method):
    handle = hand_handle()
    expected = HAND[method]()
    np.testing.assert_allclose(raw(handle, method), expected, rtol=1e-5, atol=1e-6)
    shown = cams.compute(handle, ONES, "layer", method, targets=[0])["layer"][0]
    np.testing.assert_allclose(shown, minmax(expected), atol=1e-5)


def test_smooth_grad_cam_pp_averages_activations_and_g_g2_g3_before_alpha():
    handle, samples, sigma, seed = hand_handle(quadratic=True), 6, 0.5, 11
    generator = image_generator(ONES[0], seed)
    t = [float((ONES[0] + sigma * torch.randn(ONES.shape[1:], generator=generator)).mean()) for _ in range(samples)]
    g = np.stack([G0 + V0 * A0 * ts for ts in t]).astype(np.float64)  # g at each noisy copy
    a_bar = A0 * np.mean(t)  # A(x_s) = A0 · t(x_s), averaged over the same copies
    expected = grad_cam_pp(a_bar, g.mean(0), (g**2).mean(0), (g**3).mean(0))
    got = raw(handle, "smoothgradcampp", samples=samples, sigma=sigma, seed=seed)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    averaged_maps = np.mean([grad_cam_pp(A0 * ts, gs) for ts, gs in zip(t, g)], axis=0)  # the other reading
    assert np.abs(minmax(expected) - minmax(averaged_maps)).max() > 1e-3


def test_smooth_grad_cam_pp_with_sigma_zero_is_grad_cam_pp_by_hand():
    handle = hand_handle(quadratic=True)
    expected = grad_cam_pp(A0, G0 + V0 * A0)
    np.testing.assert_allclose(raw(handle, "smoothgradcampp", samples=3, sigma=0.0), expected, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 4])
def test_integrated_grad_cam_sums_the_path_terms(steps):
    handle = hand_handle(quadratic=True)
    terms = []
    for j in range(1, steps + 1):
        acts = A0 * (j / steps)  # A(x_j) with x_j = (j/m)·x and t(x) = 1
        g = G0 + V0 * acts
        terms.append((g.mean(axis=(1, 2))[:, None, None] * acts).sum(axis=0))
    expected = relu(np.sum(terms, axis=0))
    np.testing.assert_allclose(raw(handle, "intgradcam", steps=steps), expected, rtol=1e-5, atol=1e-6)


def test_integrated_grad_cam_with_a_linear_head_is_a_multiple_of_grad_cam():
    # g is constant and A(x_j) = (j/m)·A, so Σ_j (j/m) = (m+1)/2 times Grad-CAM before ReLU.
    handle = hand_handle()
    np.testing.assert_allclose(raw(handle, "intgradcam", steps=7), 4 * grad_cam(A0, G0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 4])
def test_integrated_grad_cam_authors_variant_sums_relus_from_the_baseline(steps):
    handle = hand_handle(quadratic=True)
    terms = []
    for j in range(0, steps):  # the baseline in, x itself out
        acts = A0 * (j / steps)
        g = G0 + V0 * acts
        terms.append(relu((g.mean(axis=(1, 2))[:, None, None] * acts).sum(axis=0)))
    expected = np.sum(terms, axis=0)
    got = raw(handle, "intgradcam", steps=steps, authors=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_two_integrated_grad_cams_stay_different_as_steps_grow():
    import tiny

    handle = tiny.tiny_handle()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours, authors = (cams.compute(handle, x, "block2", "intgradcam", steps=64, authors=a) for a in (False, True))
    assert np.abs(ours["block2"] - authors["block2"]).max() > 1e-2  # the ReLU's place does not wash out
