"""Any torchvision or timm classifier by name (gcdash.models.library), built offline with random weights: the
layer catalog made from the library (timm's feature stages, torchvision's resolution changes) in forward order
with the deepest stage as the default, maps equal to pytorch-grad-cam's at the default layer and two shallower ones,
a checkpoint of the architecture, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM

from gcdash import cams, models
from gcdash.errors import GcdashError

CATALOGS = {
    "tv:resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "timm:convnext_atto": ["stages.0", "stages.1", "stages.2", "stages.3"],
}


@pytest.fixture(scope="module")
def handles():
    return {name: models.load(name, weights="random") for name in CATALOGS}


@pytest.mark.parametrize("name", list(CATALOGS))
def test_the_catalog_is_made_from_the_library_shallow_to_deep_with_the_deepest_as_default(handles, name):
    handle = handles[name]
    assert list(handle.layers) == CATALOGS[name]
    assert handle.default_layer == CATALOGS[name][-1]
    assert handle.input_size == (224, 224) and len(handle.class_names) == 1000 and handle.family == "library"
    assert models.entry(name).family == "library" and models.expand(f"{name},demo-vgg") == [name, "demo-vgg"]


@pytest.mark.parametrize("name", list(CATALOGS))
def test_maps_equal_pytorch_grad_cam_at_the_default_layer_and_two_shallower_ones(handles, name):
    handle = handles[name]
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    layers = [CATALOGS[name][1], CATALOGS[name][2], handle.default_layer]
    ours = cams.compute(handle, x, layers, "gradcam")
    for layer in layers:
        reference = GradCAM(handle.net, [handle.layers[layer]])(x, None)
        np.testing.assert_allclose(ours[layer], reference, atol=1e-5)


def test_a_checkpoint_of_the_architecture_loads_with_its_class_count(tmp_path):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=3)
    torch.save({"state_dict": net.state_dict(), "class_names": ["a", "b", "c"]}, tmp_path / "r18.pt")
    handle = models.load("tv:resnet18", weights=str(tmp_path / "r18.pt"))
    assert handle.class_names == ["a", "b", "c"]
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(handle.net(x), net.eval()(torchvision.transforms.functional.normalize(
        x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "said"),
    [("tv:no_such_net", "torchvision has no classifier 'no_such_net'"), ("timm:no_such_net", "timm has no model")],
)
def test_an_unknown_architecture_is_one_line(name, said):
    with pytest.raises(GcdashError, match=said) as err:
        models.load(name, weights="random")
    assert "\n" not in str(err.value)


def test_a_library_model_sweeps_from_the_cli(tmp_path):
    import pandas as pd

    from gcdash.cli import main

    out = tmp_path / "out"
    args = ["sweep", "--models", "tv:resnet18", "--weights", "random", "--n", "2", "--eps", "0,8/255"]
    assert main([*args, "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    table = pd.read_parquet(out / "per_image.parquet")
    assert set(table["model"]) == {"tv:resnet18"} and set(table["layer"]) == {"layer4"} and len(table) == 4
