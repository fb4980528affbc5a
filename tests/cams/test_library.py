"""The one-pass per-layer engine against pytorch-grad-cam's own single-layer call."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from torch import nn

from gcdash import cams
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle, PixelSpaceNet

REFERENCE = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.rand(4, 3, 32, 32)


@pytest.mark.parametrize("method", list(REFERENCE))
def test_each_layer_equals_the_library_single_layer_call(tiny_handle, x, method):
    ours = cams.compute(tiny_handle, x, "all", method)
    assert list(ours) == ["block1", "block2", "block3"]
    for name, module in tiny_handle.layers.items():
        ref = REFERENCE[method](tiny_handle.net, [module])(x, None)
        assert ours[name].shape == (4, 32, 32) and ours[name].dtype == np.float32
        np.testing.assert_allclose(ours[name], ref, atol=1e-5)


def test_explicit_targets_equal_the_library_with_those_targets(tiny_handle, x):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [4, 0, 2, 2]
    ours = cams.compute(tiny_handle, x, ["block2", "block3"], "gradcam", targets=targets)
    for name in ("block2", "block3"):
        ref = GradCAM(tiny_handle.net, [tiny_handle.layers[name]])(x, [ClassifierOutputTarget(t) for t in targets])
        np.testing.assert_allclose(ours[name], ref, atol=1e-5)


def test_all_layers_come_from_one_forward_pass(tiny_handle, x):
    calls = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        cams.compute(tiny_handle, x, "all", "gradcam")
    finally:
        hook.remove()
    assert calls == [len(x)]


def test_maps_are_in_unit_range_and_logits_are_returned(tiny_handle, x):
    result = cams.explain(tiny_handle, x, "all", "gradcampp")
    assert result.logits.shape == (4, 5)
    torch.testing.assert_close(result.targets, result.logits.argmax(1))
    for raw in result.maps.values():
        assert raw.min() >= 0
    for up in cams.compute(tiny_handle, x, "all", "gradcampp").values():
        assert up.min() >= 0 and up.max() <= 1


def test_no_side_effects_on_the_shared_model_or_input(tiny_handle, x):
    net = tiny_handle.net
    net.train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x_before = x.clone()
    cams.compute(tiny_handle, x, "all", "gradcam")
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())
    assert torch.equal(x, x_before) and not x.requires_grad
    assert not any(m._forward_hooks for m in net.modules())


def test_a_module_that_runs_twice_is_refused():
    relu = nn.ReLU()
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    handle = ModelHandle("twice", PixelSpaceNet(backbone, (0, 0, 0), (1, 1, 1)), (16, 16), list("abcd"),
                         OrderedDict(relu=relu), "relu")  # fmt: skip
    with pytest.raises(GcdashError, match="more than once"):
        cams.compute(handle, torch.rand(1, 3, 16, 16), "default")
    assert not relu._forward_hooks


def test_unknown_layer_and_method_name_the_choices(tiny_handle, x):
    with pytest.raises(GcdashError, match="block1, block2, block3"):
        cams.compute(tiny_handle, x, ["nope"])
    with pytest.raises(GcdashError, match="gradcam"):
        cams.compute(tiny_handle, x, "default", "nope")


def test_layers_given_out_of_order_come_back_in_catalog_order(tiny_handle, x):
    out = cams.compute(tiny_handle, x, ["block3", "block1"])
    assert list(out) == ["block1", "block3"]
    ref = GradCAM(tiny_handle.net, [tiny_handle.layers["block1"]])(x, None)
    np.testing.assert_allclose(out["block1"], ref, atol=1e-5)


def test_eigen_cams_projection_equals_the_librarys_without_its_full_svd():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from gcdash.cams.library import first_component

    rng = np.random.default_rng(0)
    for shape in [(2, 8, 32, 32), (2, 64, 4, 4), (1, 16, 7, 7)]:  # h·w above, below and near K
        acts = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(first_component(acts), get_2d_projection(acts))
