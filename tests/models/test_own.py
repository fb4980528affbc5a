"""A model from the user's own code (gcdash.models.own): named by the operator only (CLI, models file, the
environment a trusted process hands down), never by a page or URL; built from a module or an OwnModel, its layers
made or named, its weights the builder's, a checkpoint's or random; every bad builder in one line."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam import GradCAM

from gcdash import cams, models
from gcdash.errors import GcdashError
from gcdash.models import own

BUILDERS = textwrap.dedent(
    """
    import torch
    from torch import nn
    from gcdash.models.own import OwnModel

    def net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
        )

    def described():
        return OwnModel(net(), input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                        class_names=["a", "b", "c", "d"], layers=["7", "4"], default_layer="4", crop=False)

    def raises():
        raise RuntimeError("no GPU here")

    def a_string():
        return "resnet"

    def nan():
        layer = nn.Linear(3 * 32 * 32, 3)
        nn.init.constant_(layer.weight, float("nan"))
        return OwnModel(nn.Sequential(nn.Flatten(), layer), input_size=(32, 32))

    def features():
        return OwnModel(nn.Conv2d(3, 4, 3), input_size=(32, 32))

    def bad_layer():
        return OwnModel(net(), input_size=(32, 32), layers=["nope"])
    """
)


@pytest.fixture
def builders(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(BUILDERS)
    return path


def _trusted(builders, func: str) -> str:
    name = f"py:{builders}:{func}"
    own.trust(name)
    return name


def test_a_module_gets_the_made_catalog_imagenet_normalisation_and_numbered_classes(builders):
    handle = models.load(_trusted(builders, "net"))
    assert list(handle.layers) == ["1", "4", "7"] and handle.default_layer == "7"  # the last ReLU at 224², 112², 56²
    assert handle.input_size == (224, 224) and handle.class_names == [f"class {i}" for i in range(4)]
    assert handle.family == "own" and models.entry(handle.name).family == "own"
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = cams.compute(handle, x, "all", "gradcam")
    for layer, module in handle.layers.items():
        np.testing.assert_allclose(ours[layer], GradCAM(handle.net, [module])(x, None), atol=1e-5)


def test_what_an_own_model_says_about_itself_is_used(builders):
    handle = models.load(_trusted(builders, "described"))
    assert list(handle.layers) == ["4", "7"] and handle.default_layer == "4"  # named out of order: forward order
    assert handle.input_size == (32, 32) and handle.class_names == ["a", "b", "c", "d"] and handle.crop is False
    x = torch.rand(1, 3, 32, 32)
    bare = models.own.builder(handle.name)().net.eval()
    torch.testing.assert_close(handle.net(x), bare((x - 0.5) / 0.25))


def test_weights_from_a_checkpoint_or_random(builders, tmp_path):
    name = _trusted(builders, "described")
    trained = models.load(name)
    state = {k: v + 1.0 for k, v in trained.net.backbone.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "ft.pt")
    loaded = models.load(name, weights=str(tmp_path / "ft.pt"))
    torch.testing.assert_close(loaded.net.backbone[0].weight, trained.net.backbone[0].weight + 1.0)
    randomised = models.load(name, weights="random")
    assert randomised.digest not in (trained.digest, loaded.digest)
    assert models.load(name, weights="random").digest == randomised.digest  # seeded


@pytest.mark.parametrize(
    ("func", "said"),
    [
        ("raises", r"the builder raised RuntimeError: no GPU here"),
        ("a_string", r"the builder returned str; return an nn.Module or gcdash.models.own.OwnModel"),
        ("nan", r"logits on a grey image are not finite"),
        ("features", r"the model returned \(1, 4, 30, 30\); gcdash explains classifiers"),
        ("bad_layer", r"the builder names layer 'nope', which the model does not have"),
        ("missing", r"has no function 'missing'"),
    ],
)
def test_a_bad_builder_is_one_line(builders, func, said):
    with pytest.raises(GcdashError, match=said) as err:
        models.load(_trusted(builders, func))
    assert "\n" not in str(err.value)


def test_a_builder_file_that_does_not_import_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_package\n")
    with pytest.raises(GcdashError, match=r"importing .*broken.py raised ModuleNotFoundError"):
        models.load(_trusted(tmp_path / "broken.py", "build"))


def test_a_name_the_operator_did_not_give_is_refused_and_one_handed_down_is_taken(builders, monkeypatch):
    name = f"py:{builders.parent / 'unseen.py'}:net"  # never trusted: not in the registry nor the environment
    monkeypatch.delenv(own.TRUSTED_ENV, raising=False)
    with pytest.raises(GcdashError, match="own-code models run code, so only the operator names them"):
        models.entry(name)
    assert name not in models.names()
    monkeypatch.setenv(own.TRUSTED_ENV, name)  # what a trusting parent process (the CLI starting Ray) hands down
    assert models.entry(name).family == "own"


def test_the_models_file_registers_own_and_library_models(builders, tmp_path, monkeypatch):
    listed = tmp_path / "gcdash-models.txt"
    listed.write_text(f"# the operator's models\npy:{builders}:described\ntv:resnet18  # a library one\n\n")
    monkeypatch.setenv(own.MODELS_FILE_ENV, str(listed))
    assert own.read_models_file() == [f"py:{builders}:described", "tv:resnet18"]
    assert {f"py:{builders}:described", "tv:resnet18"} <= set(models.names())
    assert own.read_models_file(tmp_path / "absent.txt") == []


def test_an_own_model_sweeps_from_the_cli_with_a_dotted_layer(builders, tmp_path):
    from gcdash.cli import main

    out, name = tmp_path / "out", f"py:{builders}:net"
    args = ["sweep", "--models", name, "--n", "2", "--eps", "0,8/255", "--layers", "5,4", "--out", str(out)]
    assert main([*args, "--cache", str(tmp_path / "c")]) == 0
    table = pd.read_parquet(out / "per_image.parquet")
    assert list(dict.fromkeys(table["layer"])) == ["4", "5"] and len(table) == 8  # "4": any module, by its name
