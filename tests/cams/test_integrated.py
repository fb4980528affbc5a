"""Integrated Grad-CAM: one step is Grad-CAM, the Riemann sum converges, the standalone BaseCAM face agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM

from gcdash import cams
from gcdash.cams import integrated as integrated_module
from gcdash.cams.integrated import IntegratedGradCAM
from gcdash.cams.taps import tap
from gcdash.errors import GcdashError
from tests.cams.helpers import max_diff


def integrated(handle, x, layers="all", targets=None, steps=4):
    return cams.compute(handle, x, layers, "intgradcam", targets, steps=steps)


def test_defaults_are_the_authors_settings():
    assert cams.get("intgradcam").defaults == {"steps": 50, "authors": False}  # 50 steps as in the authors' code


def test_one_step_equals_grad_cam(handle, images):
    assert max_diff(integrated(handle, images, steps=1), cams.compute(handle, images, "all", "gradcam")) < 1e-5


def test_maps_converge_as_steps_double(handle, images):
    maps = {m: integrated(handle, images[:2], steps=m) for m in (2, 4, 8, 16)}
    gaps = [max_diff(maps[m], maps[2 * m]) for m in (2, 4, 8)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.5 * gaps[0]


def test_more_than_one_step_is_not_grad_cam(handle, images):
    assert max_diff(integrated(handle, images, steps=4), cams.compute(handle, images, "all", "gradcam")) > 1e-3


def test_class_is_fixed_from_the_clean_input(handle, images, monkeypatch):
    # Every path point x_j = (j/m)·x explains the clean input's class, whatever its own top-1.
    clean_top1 = handle.net(images).argmax(1)
    calls = []
    monkeypatch.setattr(integrated_module, "tap", lambda net, x, modules, targets=None, **kw: calls.append(targets)
                        or tap(net, x, modules, targets, **kw))  # fmt: skip
    implicit = integrated(handle, images, steps=4)
    assert calls[0] is None and all(torch.equal(t, clean_top1.repeat_interleave(3)) for t in calls[1:])
    assert max_diff(implicit, integrated(handle, images, targets=clean_top1)) == 0
    assert max_diff(implicit, integrated(handle, images, targets=(clean_top1 + 1) % 5)) > 1e-3


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
