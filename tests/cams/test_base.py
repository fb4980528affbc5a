"""The tensor paths of the CAM maths against pytorch-grad-cam's numpy: each method's ``device_image`` against its
library class's ``get_cam_image``, and ``upsample_tensor`` against the library's ``scale_cam_image`` (``upsample``)."""

import numpy as np
import pytest
import torch

from gcdash import cams
from gcdash.cams.base import library_targets, upsample, upsample_tensor

ON_DEVICE = ["gradcam", "gradcam-cf", "gradcampp", "xgradcam", "hirescam", "layercam"]


def _recorded(seed: int, shape=(3, 64, 7, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(shape, generator=g).mul_(3).relu_()  # post-ReLU activations, some exact zeros
    grads = torch.randn(shape, generator=g).mul_(1e-2)
    grads[:, :4] = 0  # channels the class does not depend on
    return acts, grads


@pytest.mark.parametrize("method", ON_DEVICE)
def test_each_device_formula_equals_the_librarys_cam_image(method):
    cam = cams.get(method)
    acts, grads = _recorded(seed=ON_DEVICE.index(method))
    library = cam.build_cam(torch.nn.Conv2d(3, 3, 1))  # any module with a parameter
    targets = library_targets(torch.zeros(len(acts), dtype=torch.long))
    ref = library.get_cam_image(None, None, targets, acts.numpy(), grads.numpy(), eigen_smooth=False)
    ours = cam.device_image(acts, grads)
    assert isinstance(ours, torch.Tensor) and ours.shape == ref.shape
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours.numpy() / scale, ref / scale, atol=1e-5, rtol=0)


def test_methods_without_a_tensor_formula_use_the_librarys_maths():
    acts, grads = _recorded(seed=9)
    for method in ("eigencam", "scorecam"):
        assert cams.get(method).device_image(acts, grads) is None


@pytest.mark.parametrize(
    "raw_shape, size",
    [((7, 7), (224, 224)), ((8, 8), (299, 299)), ((35, 35), (299, 299)), ((56, 56), (224, 224)),
     ((5, 9), (40, 48)), ((64, 64), (64, 64)), ((3, 3), (64, 64))],
)  # fmt: skip
def test_upsampling_on_tensors_equals_the_librarys(raw_shape, size):
    rng = np.random.default_rng(sum(raw_shape))
    raw = (rng.random((6, *raw_shape)) * 3 - 0.5).astype(np.float32)
    raw[0] = 0  # a dead map stays all zero
    ours = upsample_tensor(torch.from_numpy(raw), size)
    assert ours.dtype == torch.float32 and tuple(ours.shape) == (6, *size)
    np.testing.assert_allclose(ours.numpy(), upsample(raw, size), atol=1e-5, rtol=0)
    assert float(ours[0].abs().max()) == 0.0


def test_upsampling_an_empty_batch():
    assert tuple(upsample_tensor(torch.zeros(0, 7, 7), (32, 32)).shape) == (0, 32, 32)
