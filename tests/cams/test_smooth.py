"""Smooth Grad-CAM++: σ = 0 is Grad-CAM++, seeded noise, batching independence, the standalone BaseCAM face."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
from pytorch_grad_cam import GradCAMPlusPlus

from gcdash import cams
from gcdash.cams import smooth as smooth_module
from gcdash.cams.smooth import SmoothGradCAMPlusPlus, image_generator
from gcdash.cams.taps import tap
from gcdash.errors import GcdashError
from tests.cams.helpers import max_diff, one_by_one


def smooth(handle, x, layers="all", targets=None, **params):
    return cams.compute(handle, x, layers, "smoothgradcampp", targets, **{"samples": 4, "sigma": 0.1, **params})


def test_defaults_are_the_reference_settings():
    assert cams.get("smoothgradcampp").defaults == {"samples": 25, "sigma": 0.15, "seed": 0}


def test_sigma_zero_equals_grad_cam_plus_plus(handle, images):
    plusplus = cams.compute(handle, images, "all", "gradcampp")
    assert max_diff(smooth(handle, images, sigma=0.0, samples=3), plusplus) < 1e-5


def test_noise_changes_the_map_reproducibly(handle, images):
    plusplus = cams.compute(handle, images, "all", "gradcampp")
    first, again = smooth(handle, images, seed=3), smooth(handle, images, seed=3)
    assert max_diff(first, plusplus) > 1e-3
    assert max_diff(first, again) == 0
    assert max_diff(first, smooth(handle, images, seed=4)) > 1e-3


def test_noise_follows_the_image_not_its_position(handle, images):
    batch = smooth(handle, images)
    assert max_diff(batch, one_by_one(lambda xi: smooth(handle, xi), images)) < 1e-5
    order = torch.tensor([2, 0, 3, 1])
    shuffled = smooth(handle, images[order])
    assert max_diff({k: v[order.numpy()] for k, v in batch.items()}, shuffled) < 1e-5
    twice = smooth(handle, torch.cat([images[:1], images[:1]]))
    assert max_diff({k: v[:1] for k, v in twice.items()}, {k: v[1:] for k, v in twice.items()}) == 0


def test_image_generator_depends_on_seed_and_content(images):
    draw = lambda image, seed: torch.randn(5, generator=image_generator(image, seed))  # noqa: E731
    assert torch.equal(draw(images[0], 0), draw(images[0].clone(), 0))
    assert not torch.equal(draw(images[0], 0), draw(images[0], 1))
    assert not torch.equal(draw(images[0], 0), draw(images[1], 0))


def test_class_is_fixed_from_the_clean_input(images, monkeypatch):
    # On tiny-cnn seed 2, σ = 1 flips the top-1 of most noisy copies; each must still explain the clean class.
    handle = tiny.tiny_handle(seed=2)
    clean_top1 = handle.net(images).argmax(1)
    assert (handle.net(images + torch.randn_like(images)).argmax(1) != clean_top1).any()
    calls = []
    monkeypatch.setattr(smooth_module, "tap", lambda net, x, modules, targets=None, **kw: calls.append(targets)
                        or tap(net, x, modules, targets, **kw))  # fmt: skip
    implicit = smooth(handle, images, sigma=1.0, samples=3)
    assert calls[0] is None and all(torch.equal(t, clean_top1.repeat_interleave(3)) for t in calls[1:])
    explicit = smooth(handle, images, targets=clean_top1, sigma=1.0, samples=3)
    assert max_diff(implicit, explicit) == 0
    other = smooth(handle, images, targets=(clean_top1 + 1) % 5, sigma=1.0, samples=3)
    assert max_diff(implicit, other) > 1e-3


@pytest.mark.parametrize("layer", ["block1", "block2", "block3"])
def test_standalone_base_cam_equals_the_engine(handle, images, layer):
    engine = smooth(handle, images, layer)[layer]
    with SmoothGradCAMPlusPlus(handle.net, [handle.layers[layer]], samples=4, sigma=0.1, seed=0) as cam:
        standalone = cam(images, None)
        assert len(cam.activations_and_grads.activations) == 1  # the noisy passes left no recordings behind
    assert np.abs(standalone - engine).max() < 1e-5


def test_standalone_with_sigma_zero_equals_the_library_grad_cam_plus_plus(handle, images):
    layer = [handle.layers["block2"]]
    with GradCAMPlusPlus(handle.net, layer) as cam:
        expected = cam(images, None)
    with SmoothGradCAMPlusPlus(handle.net, layer, samples=2, sigma=0.0) as cam:
        assert np.abs(cam(images, None) - expected).max() < 1e-5


@pytest.mark.parametrize("bad", [{"samples": 0}, {"samples": 2.5}, {"sigma": -0.1}, {"sigma": float("nan")}])
def test_bad_parameters_are_user_errors(handle, images, bad):
    with pytest.raises(GcdashError, match="smoothgradcampp needs"):
        smooth(handle, images, **bad)


def test_at_a_layer_before_global_pooling_and_a_linear_head_the_noise_still_matters():
    """demo-resnet's default layer feeds global average pooling and a linear head, where ∂S/∂A does not depend on
    the input: averaging only the gradient terms would make the method Grad-CAM++ for any σ. The activations
    averaged over the same copies make it differ for σ > 0, and equal Grad-CAM++ at σ = 0."""
    from gcdash import data, models

    handle = models.load("demo-resnet")
    x = handle.preprocess(data.load("demo", n=4).images)
    plusplus = cams.compute(handle, x, "default", "gradcampp")
    assert max_diff(smooth(handle, x, sigma=0.0, samples=3, layers="default"), plusplus) < 1e-5
    assert max_diff(smooth(handle, x, sigma=0.15, samples=4, layers="default"), plusplus) > 1e-2


def test_alpha_keeps_the_librarys_1e6_which_matters_where_gradients_are_small():
    """The stated definition: α = g² / (2g² + Σ_ab A·g³ + 1e-6), pytorch-grad-cam's; at stem-like gradient scales
    (|g| ~ 1e-4) the constant dominates the denominator, so leaving it out would give other weights."""
    from gcdash.cams.smooth import plusplus_weights

    rng = np.random.default_rng(0)
    acts = rng.random((2, 4, 5, 5)).astype(np.float32)
    g = (rng.standard_normal((2, 4, 5, 5)) * 1e-4).astype(np.float32)
    ours = plusplus_weights(acts, g, g * g, g * g * g)
    library = GradCAMPlusPlus(torch.nn.Conv2d(1, 1, 1), target_layers=[]).get_cam_weights(None, None, None, acts, g)
    np.testing.assert_allclose(ours, library, rtol=1e-6)
    bare = np.maximum(g, 0) * np.where(g != 0, g * g / (2 * g * g + acts.sum((2, 3), keepdims=True) * g**3), 0)
    assert not np.allclose(ours, bare.sum(axis=(2, 3)), rtol=0.1)  # the 1e-6 is not negligible at this scale
