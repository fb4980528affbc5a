"""RobustBench models by name: ``robustbench:NAME`` (ImageNet, L∞) or ``robustbench:DATASET:THREAT:NAME``
(``robustbench:cifar10:L2:Rebuffi2021Fixing_70_16_cutmix_extra``), loaded through the ``robustbench`` package
(Croce et al., "RobustBench: a standardized adversarial robustness benchmark", NeurIPS 2021 Datasets and
Benchmarks) when it is installed: an optional extra, ``pip install robustbench``, not a core requirement.

``robustbench.utils.load_model`` reads the model from its folder (``$GCDASH_ROBUSTBENCH_DIR``, default
``~/.cache/robustbench``, in RobustBench's layout ``DATASET/THREAT/NAME.pt``) and downloads it there when online;
offline and absent, gcdash says which file to put where. RobustBench models take [0, 1] inputs and carry their own
normalisation, so the pixel-space handle adds none (mean 0, std 1); the input size is the dataset's (32² for
CIFAR, 224² after a 256 resize for ImageNet, RobustBench's ``Res256Crop224``). Weights: ``"default"`` (the
benchmark's), ``"random"`` (the same architecture, every module's parameters re-initialised under the seed) or a
checkpoint (loaded into the architecture). The Madry lab's robust ImageNet ResNets are checkpoints of the
torchvision architecture instead (``--models tv:resnet50 --weights imagenet_linf_4.pt``, see
:mod:`gcdash.models.checkpoint`).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from torch import nn

from gcdash.errors import GcdashError
from gcdash.models import MODELS, Weights, register
from gcdash.models.checkpoint import ClassNames, apply_weights, resolve_class_names
from gcdash.models.handle import ModelHandle, PixelSpaceNet

PREFIX = "robustbench:"
DIR_ENV = "GCDASH_ROBUSTBENCH_DIR"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DATASETS = {"cifar10": ((32, 32), 10), "cifar100": ((32, 32), 100), "imagenet": ((224, 224), 1000)}
THREATS = ("Linf", "L2", "corruptions")


def is_robustbench_name(name: str) -> bool:
    return name.startswith(PREFIX)


def parse(name: str) -> tuple[str, str, str]:
    """``robustbench:NAME`` → (imagenet, Linf, NAME); ``robustbench:DATASET:THREAT:NAME`` → its three parts."""
    parts = name[len(PREFIX) :].split(":")
    if len(parts) == 1:
        parts = ["imagenet", "Linf", *parts]
    dataset, threat, model = parts if len(parts) == 3 else ("", "", "")
    if dataset not in DATASETS or threat not in THREATS or not model:
        raise GcdashError(
            f"{name}: write robustbench:NAME (ImageNet, Linf) or robustbench:DATASET:THREAT:NAME with DATASET in "
            f"{', '.join(DATASETS)} and THREAT in {', '.join(THREATS)}"
        )
    return dataset, threat, model


def register_named(name: str) -> None:
    """Register ``name`` (checked, once); the package is imported only when the model is built."""
    if name not in MODELS:
        dataset, threat, model = parse(name)
        register(name, partial(build, name), family="robust", description=f"RobustBench {dataset} {threat}: {model}")


def model_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "robustbench").expanduser()


def _load_model(name: str) -> nn.Module:
    """``robustbench.utils.load_model`` for ``name``, its failures in one line."""
    try:
        from robustbench.utils import load_model
    except ImportError as err:
        raise GcdashError(
            f"{name}: RobustBench models need the robustbench package (pip install robustbench), which could not be "
            f"imported ({err})"
        ) from None
    dataset, threat, model = parse(name)
    where = model_dir() / dataset / threat / f"{model}.pt"
    try:
        return load_model(model_name=model, model_dir=str(model_dir()), dataset=dataset, threat_model=threat)
    except Exception as err:
        raise GcdashError(
            f"{name}: RobustBench could not load it ({type(err).__name__}: {str(err)[:160]}); offline, put its "
            f"checkpoint at {where} (or set ${DIR_ENV})"
        ) from None


def build(
    name: str,
    weights: Weights = "default",
    *,
    crop: bool = True,
    class_names: ClassNames = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> ModelHandle:
    """The handle of RobustBench model ``name`` (see the module docstring)."""
    from gcdash.models.library import catalog
    from gcdash.models.paper import no_inplace

    dataset = parse(name)[0]
    size, n = DATASETS[dataset]
    if num_classes not in (None, n):
        raise GcdashError(f"{name}: a {dataset} model has {n} classes, not {num_classes}")
    net = _load_model(name).float().eval()
    saved = apply_weights(name, net, weights, seed)
    handle_net = PixelSpaceNet(no_inplace(net), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).eval()
    layers = catalog(net, size=size)
    names = resolve_class_names(class_names, n, saved or _dataset_classes(dataset, n))
    return ModelHandle(name, handle_net, size, names, layers, list(layers)[-1], crop=crop, family="robust")


def _dataset_classes(dataset: str, n: int) -> list[str] | None:
    if dataset == "cifar10":
        return CIFAR10
    if dataset == "imagenet":
        from timm.data import ImageNetInfo

        return [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]
    return None
