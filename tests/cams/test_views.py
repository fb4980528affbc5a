"""Views beside the CAMs: class gradient, guided backprop, Guided Grad-CAM, counterfactual Grad-CAM."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from torch import nn

from gcdash import cams
from gcdash.cams import views
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle, PixelSpaceNet
from tests.cams.helpers import ModelState


def library_guided_backprop(net: nn.Module, image: torch.Tensor, target: int) -> np.ndarray:
    """pytorch-grad-cam's guided backprop for one image, (H, W, C), on a copy (it swaps the copy's ReLUs)."""
    return GuidedBackpropReLUModel(copy.deepcopy(net))(image[None].clone(), target_category=target)


def per_pixel_map(per_pixel: np.ndarray) -> np.ndarray:
    """(H, W, C) → max_c |·| → min-max, the views' reduction, written out independently."""
    m = np.abs(per_pixel).max(axis=-1)
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("name", views.names())
def test_views_are_unit_maps_at_input_size(handle, images, name):
    out = views.compute(handle, images, name)
    assert out.shape == (4, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.allclose(out.max(axis=(1, 2)), 1) and np.allclose(out.min(axis=(1, 2)), 0)


@pytest.mark.parametrize("name", views.names())
def test_views_leave_the_shared_model_alone(handle, images, name):
    net = handle.net
    net.train()
    net.backbone.block1.eval()
    before, x = ModelState.of(net), images.clone()
    reference = cams.compute(handle, images, "all", "gradcam")
    views.compute(handle, images, name)
    before.assert_same(net)
    assert torch.equal(images, x)
    after = cams.compute(handle, images, "all", "gradcam")
    assert all(np.array_equal(reference[k], after[k]) for k in reference)


def test_input_gradient_is_the_abs_class_gradient(handle, images):
    net = copy.deepcopy(handle.net)
    x = images.clone().requires_grad_(True)
    logits = net(x)
    logits[torch.arange(4), logits.argmax(1)].sum().backward()
    expected = np.stack([per_pixel_map(g.permute(1, 2, 0).numpy()) for g in x.grad])
    np.testing.assert_allclose(views.input_gradient(handle, images), expected, atol=1e-5)


def test_guided_backprop_equals_the_library_one_image_at_a_time(handle, images):
    grads, classes = views.class_gradient(handle, images, guided=True)
    for i in range(len(images)):
        expected = library_guided_backprop(handle.net, images[i], int(classes[i]))
        np.testing.assert_allclose(grads[i].permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-7)
    assert not torch.equal(grads, views.class_gradient(handle, images)[0])  # guided ≠ plain gradient


def test_guided_backprop_through_in_place_relus():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    plain = nn.Sequential(body, head)
    in_place = copy.deepcopy(plain)
    for module in in_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = True

    def grads(net: nn.Module) -> torch.Tensor:
        wrapped = PixelSpaceNet(net, (0.5,) * 3, (0.25,) * 3)
        handle = ModelHandle("t", wrapped, (8, 8), ["a", "b", "c"], {"body": net[0]}, "body")
        x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        return views.class_gradient(handle, x, [0, 2], guided=True)[0]

    assert torch.allclose(grads(plain), grads(in_place), atol=1e-7)


def test_guided_grad_cam_is_grad_cam_times_guided_backprop(handle, images):
    got = views.guided_gradcam(handle, images, "block2")
    classes = handle.net(images).argmax(1)
    net = copy.deepcopy(handle.net)  # the library's GradCAM writes parameter grads
    with GradCAM(net, [net.backbone.block2]) as cam:
        heat = cam(images, None)
    for i in range(len(images)):
        guided = library_guided_backprop(handle.net, images[i], int(classes[i]))
        np.testing.assert_allclose(got[i], per_pixel_map(guided * heat[i][..., None]), atol=1e-5)


def test_counterfactual_view_is_the_gradcam_cf_method(handle, images):
    expected = cams.compute(handle, images, "block3", "gradcam-cf")["block3"]
    np.testing.assert_array_equal(views.counterfactual_gradcam(handle, images, "block3"), expected)


def test_constant_maps_become_zero():
    maps = np.stack([np.full((2, 2), 3.0), np.array([[0.0, 1e-9], [2e-9, 4e-9]])]).astype(np.float32)
    np.testing.assert_allclose(views.unit_range(maps), [np.zeros((2, 2)), [[0, 0.25], [0.5, 1]]], atol=1e-6)


def test_views_follow_given_targets(handle, images):
    own = views.input_gradient(handle, images)
    other = views.input_gradient(handle, images, targets=[1, 2, 3, 4])
    assert np.abs(own - other).max() > 1e-3


def test_unknown_view_or_several_layers_are_user_errors(handle, images):
    with pytest.raises(GcdashError, match="unknown view 'nope'; choose from: gradient"):
        views.compute(handle, images, "nope")
    with pytest.raises(GcdashError, match="this view draws one layer; choose one of: block1, block2, block3"):
        views.compute(handle, images, "guided-gradcam", "all")
