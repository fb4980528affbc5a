"""Integrated Grad-CAM: one step is Grad-CAM, the Riemann sum converges, the standalone BaseCAM face agrees."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_grad_cam import GradCAM

from gcdash import cams
from gcdash.cams.integrated import IntegratedGradCAM
from gcdash.errors import GcdashError
from tests.cams.helpers import max_diff


def integrated(handle, x, layers="all", targets=None, steps=4):
    return cams.compute(handle, x, layers, "intgradcam", targets, steps=steps)


def test_defaults_are_the_authors_settings():
    assert cams.get("intgradcam").defaults == {"steps": 50}


def test_one_step_equals_grad_cam(handle, images):
    assert max_diff(integrated(handle, images, steps=1), cams.compute(handle, images, "all", "gradcam")) < 1e-5


def test_maps_converge_as_steps_double(handle, images):
    maps = {m: integrated(handle, images, steps=m) for m in (2, 4, 8, 16)}
    gaps = [max_diff(maps[m], maps[2 * m]) for m in (2, 4, 8)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.5 * gaps[0]


def test_more_than_one_step_is_not_grad_cam(handle, images):
    assert max_diff(integrated(handle, images, steps=4), cams.compute(handle, images, "all", "gradcam")) > 1e-3


def test_class_is_fixed_from_the_clean_input(handle, images):
    # Points near the black baseline have their own top-1; every point must explain the clean input's class.
    clean_top1 = handle.net(images).argmax(1)
    assert max_diff(integrated(handle, images), integrated(handle, images, targets=clean_top1)) == 0


@pytest.mark.parametrize("layer", ["block1", "block2", "block3"])
def test_standalone_base_cam_equals_the_engine(handle, images, layer):
    engine = integrated(handle, images, layer, steps=5)[layer]
    with IntegratedGradCAM(handle.net, [handle.layers[layer]], steps=5, batch_size=3) as cam:
        standalone = cam(images, None)
        assert len(cam.activations_and_grads.activations) == 1  # the path passes left no recordings behind
    assert np.abs(standalone - engine).max() < 1e-5


def test_standalone_with_one_step_equals_the_library_grad_cam(handle, images):
    layer = [handle.layers["block3"]]
    with GradCAM(handle.net, layer) as cam:
        expected = cam(images, None)
    with IntegratedGradCAM(handle.net, layer, steps=1) as cam:
        assert np.abs(cam(images, None) - expected).max() < 1e-5


@pytest.mark.parametrize("steps", [0, -1, 2.5])
def test_bad_steps_are_user_errors(handle, images, steps):
    with pytest.raises(GcdashError, match="intgradcam needs steps"):
        integrated(handle, images, steps=steps)
