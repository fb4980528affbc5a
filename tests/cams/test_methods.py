"""Every registered CAM method: contract of ``compute`` (shape, range, layers), batching, and no side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gcdash import cams
from gcdash.errors import GcdashError
from tests.cams.helpers import ModelState, max_diff, one_by_one

# Small settings for the methods with extra passes, so the whole loop stays fast.
FAST = {"smoothgradcampp": {"samples": 3, "sigma": 0.1}, "intgradcam": {"steps": 3}}


def run(handle, x, method, **kw):
    return cams.compute(handle, x, "all", method, **{**FAST.get(method, {}), **kw})


def test_registry_lists_the_paper_methods():
    expected = {"gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam"}
    assert expected | {"smoothgradcampp", "intgradcam", "gradcam-cf"} <= set(cams.names())


@pytest.mark.parametrize("method", cams.names())
def test_method_metadata(method):
    entry = cams.get(method)
    assert entry.name == method and entry.label and entry.paper and entry.cost
    assert entry.params() == entry.defaults
    with pytest.raises(GcdashError, match="no parameter"):
        entry.params(not_a_parameter=1)


@pytest.mark.parametrize("method", cams.names())
def test_maps_in_unit_range_at_input_size_and_batched_equals_one_by_one(handle, images, method):
    maps = run(handle, images, method)
    assert list(maps) == list(handle.layers)
    for m in maps.values():
        assert m.shape == (4, 32, 32) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    alone = one_by_one(lambda xi: run(handle, xi, method), images)
    assert max_diff(maps, alone) < 1e-5


@pytest.mark.parametrize("method", cams.names())
def test_no_side_effects(handle, images, method):
    net = handle.net
    net.train()
    net.backbone.block2.eval()  # a mixed state must come back mixed
    before, x = ModelState.of(net), images.clone()
    run(handle, images, method)
    before.assert_same(net)
    assert torch.equal(images, x), "the input batch was modified"


@pytest.mark.parametrize("method", ["scorecam", "smoothgradcampp", "intgradcam"])
def test_batch_size_changes_nothing(handle, images, method, monkeypatch):
    reference = run(handle, images, method)
    monkeypatch.setattr(cams.get(method), "batch_size", 5)  # chunks straddle images
    assert max_diff(reference, run(handle, images, method)) < 1e-5


def test_score_cam_keeps_stderr_quiet_and_uses_batch_size(handle, images, capfd, monkeypatch):
    import pytorch_grad_cam.score_cam as library_score_cam

    seen = []
    original = library_score_cam.ScoreCAM.get_cam_weights

    def spy(self, *args):
        seen.append(self.batch_size)
        return original(self, *args)

    monkeypatch.setattr(library_score_cam.ScoreCAM, "get_cam_weights", spy)
    cams.compute(handle, images[:2], "block3", "scorecam")
    assert capfd.readouterr().err == ""
    assert seen == [cams.get("scorecam").batch_size]
    assert library_score_cam.tqdm.__name__ == "tqdm", "the library's tqdm was not put back"
