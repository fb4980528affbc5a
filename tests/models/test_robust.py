"""Robust checkpoints: RobustBench names (gcdash.models.robust) and the Madry lab's ``robustness`` layout
(gcdash.models.checkpoint.robustness_layout), on checkpoints these tests make in those layouts.

The robustbench package itself cannot be installed here (1.1.1 pins timm==1.0.9 and needs pyautoattack, which the
package index lacks), so the RobustBench test puts a stand-in ``robustbench`` package on the path: its
``utils.load_model`` does what RobustBench's does for ``Salman2020Do_R18`` (the architecture ``normalize_model(
resnet18(), mu, sigma)``, the checkpoint read from ``model_dir/imagenet/Linf/NAME.pt`` with ``module.`` stripped).
What the test checks is gcdash's side: the call, the pixel-space handle with no second normalisation, the size,
the classes, the layer catalog, and the one-line refusals."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torchvision

from gcdash import cams, models
from gcdash.errors import GcdashError
from gcdash.models import robust
from gcdash.models.handle import IMAGENET_MEAN, IMAGENET_STD

STAND_IN = textwrap.dedent(
    """
    from collections import OrderedDict
    from pathlib import Path

    import torch
    from torch import nn
    from torchvision import models as pt_models

    class ImageNormalizer(nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.as_tensor(std).view(1, 3, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    def normalize_model(model, mean, std):
        return nn.Sequential(OrderedDict([("normalize", ImageNormalizer(mean, std)), ("model", model)]))

    ZOO = {("imagenet", "Linf", "Salman2020Do_R18"):
           lambda: normalize_model(pt_models.resnet18(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}

    def load_model(model_name, model_dir="./models", dataset="cifar10", threat_model="Linf"):
        model = ZOO[(dataset, threat_model, model_name)]()
        path = Path(model_dir) / dataset / threat_model / f"{model_name}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"would download {model_name} from Google Drive")
        checkpoint = torch.load(path, map_location="cpu")
        state = {k.replace("module.", ""): v for k, v in checkpoint["state_dict"].items()}
        model.load_state_dict(state)
        return model.eval()
    """
)


@pytest.fixture
def robustbench_dir(tmp_path, monkeypatch):
    package = tmp_path / "site" / "robustbench"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "utils.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv(robust.DIR_ENV, str(tmp_path / "models"))
    return tmp_path / "models"


def _salman_checkpoint(folder):
    torch.manual_seed(3)
    net = torchvision.models.resnet18()
    state = {f"module.model.{k}": v for k, v in net.state_dict().items()}
    state |= {"module.normalize.mean": torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
              "module.normalize.std": torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)}  # fmt: skip
    (folder / "imagenet" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": state}, folder / "imagenet" / "Linf" / "Salman2020Do_R18.pt")
    return net.eval()


def test_a_robustbench_model_loads_with_its_own_normalisation_only(robustbench_dir):
    reference = _salman_checkpoint(robustbench_dir)
    handle = models.load("robustbench:Salman2020Do_R18")
    assert handle.family == "robust" and handle.input_size == (224, 224) and len(handle.class_names) == 1000
    assert handle.class_names[0] == "tench"
    assert list(handle.layers) == ["model.relu", "model.layer1", "model.layer2", "model.layer3", "model.layer4"]
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    normalised = torchvision.transforms.functional.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(handle.net(x), reference(normalised))  # normalised once, by the model itself
    maps = cams.compute(handle, x)
    assert maps["model.layer4"].shape == (2, 224, 224)
    assert models.entry("robustbench:imagenet:Linf:Salman2020Do_R18").family == "robust"


def test_an_absent_robustbench_file_or_package_or_bad_name_is_one_line(robustbench_dir, monkeypatch):
    with pytest.raises(GcdashError, match=r"RobustBench could not load it .* offline, put its checkpoint at .*"
                                          r"imagenet/Linf/Salman2020Do_R18.pt"):  # fmt: skip
        models.load("robustbench:Salman2020Do_R18")
    with pytest.raises(GcdashError, match=r"write robustbench:NAME .* THREAT in Linf, L2, corruptions"):
        models.entry("robustbench:imagenet:Linfinity:Salman2020Do_R18")
    monkeypatch.setitem(__import__("sys").modules, "robustbench", None)  # not installed
    monkeypatch.setitem(__import__("sys").modules, "robustbench.utils", None)
    with pytest.raises(GcdashError, match=r"need the robustbench package \(pip install robustbench\)"):
        models.load("robustbench:cifar10:L2:Someone2024")


def _attacker_model_state(net: torch.nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """What ``robustness``'s training loop saves: ``{"model": DataParallel(AttackerModel).state_dict(), ...}``."""
    state = {}
    for owner in ("module.model.", "module.attacker.model."):
        state |= {owner + k: v for k, v in net.state_dict().items()}
    for owner in ("module.normalizer.", "module.attacker.normalize."):
        state |= {
            owner + "new_mean": torch.tensor(mean).view(3, 1, 1),
            owner + "new_std": torch.tensor(std).view(3, 1, 1),
        }
    return state


def test_a_madry_robustness_checkpoint_loads_as_the_torchvision_architecture(tmp_path):
    torch.manual_seed(5)
    net = torchvision.models.resnet18().eval()
    torch.save({"model": _attacker_model_state(net), "epoch": 90, "schedule": None}, tmp_path / "imagenet_linf_4.pt")
    handle = models.load("tv:resnet18", weights=str(tmp_path / "imagenet_linf_4.pt"))
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(
        handle.net(x), net(torchvision.transforms.functional.normalize(x, IMAGENET_MEAN, IMAGENET_STD))
    )
    torch.save({"model": _attacker_model_state(net, mean=(0.5, 0.5, 0.5))}, tmp_path / "other.pt")
    with pytest.raises(GcdashError, match=r"normalises with mean \[0.5, 0.5, 0.5\] .* not ImageNet's"):
        models.load("tv:resnet18", weights=str(tmp_path / "other.pt"))
