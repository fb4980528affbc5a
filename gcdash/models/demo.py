"""The demo models: small CNNs trained on the ``demo`` shapes, shipped as safetensors in ``weights/``.

``demo-vgg``, ``demo-resnet``, ``demo-inception``, ``demo-xception`` (architectures in :mod:`gcdash.models.demo_nets`)
stand in for the paper's VGG16, ResNet, InceptionV3 and Xception so the whole dashboard runs offline on a CPU
(``demo-all``); ``demo-vit``, a tiny vision transformer beside them (also in ``demo-all``), asks whether a
transformer's explanation moves more or less than a CNN's under the same attack. ``demo-resnet-robust`` is
``demo-resnet`` fine-tuned on the same images in the same order, adversarially (PGD at 8/255, see
:class:`AdversarialTraining`): the one difference is the adversarial fine-tuning, so standard vs robust tests the
paper's "shifts less = more robust" reading causally (family ``demo-robust``, kept out of ``demo-all``).
``weights``: ``"default"`` the shipped file, ``None`` a seeded random init, or a path to a safetensors file or a
``torch.save``'d state dict (read with ``weights_only=True``). Retrain the shipped files with
``python -m gcdash train-demo``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from gcdash.data.demo import CLASS_NAMES, IMAGE_SIZE
from gcdash.errors import GcdashError
from gcdash.models import ModelHandle, PixelSpaceNet, Weights, register
from gcdash.models.checkpoint import Checkpoint, load_into, read_checkpoint
from gcdash.models.demo_nets import DemoNet, DemoViT, demo_inception, demo_resnet, demo_vgg, demo_vit, demo_xception

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MEAN = (0.5, 0.5, 0.5)  # the demo images' channel means and stds are about 0.50 and 0.24
STD = (0.25, 0.25, 0.25)
INIT_SEED = 0
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class AdversarialTraining:
    """Adversarial training as in Madry et al. (ICLR 2018), mixed with clean images (Goodfellow et al., ICLR 2015):
    each step's loss is ``(1 − w)·CE(f(x), y) + w·CE(f(x'), y)``, ``x'`` the attack registry's ``attack`` at ``eps``
    with ``steps`` steps of ``2.5·eps/steps`` from a seeded random start, crafted on the model being trained. It
    fine-tunes ``start``'s trained weights (same images, same order, peak learning rate ``lr``): from the seeded
    init, 1000 steps at 8/255 reached only 58 % clean top-1 on this data."""

    attack: str = "pgd"
    eps: float = 8 / 255
    steps: int = 5
    weight: float = 0.5
    start: str | None = "demo-resnet"  # fine-tune from this model's trained weights (None: from the seeded init)
    lr: float = 1e-3


@dataclass(frozen=True)
class DemoArch:
    """A demo model's architecture factory (``num_classes → DemoNet``), its one-line description, its family, the
    adversarial training it gets (None: plain supervised training) and its share of training steps."""

    make: Callable[[int], DemoNet | DemoViT]
    description: str
    family: str = "demo"
    adversarial: AdversarialTraining | None = None
    steps_scale: int = 1  # trained for this many times train-demo's --steps (a ViT learns the shapes more slowly)


ARCHITECTURES: dict[str, DemoArch] = {
    "demo-vgg": DemoArch(demo_vgg, "plain deep conv stack, 5 VGG blocks (stands in for VGG16)"),
    "demo-resnet": DemoArch(demo_resnet, "residual net, 3 stages × 2 basic blocks (stands in for ResNet50/101)"),
    "demo-inception": DemoArch(demo_inception, "wide multi-branch, 5 inception blocks (stands in for InceptionV3)"),
    "demo-xception": DemoArch(demo_xception, "depthwise-separable convs with residuals (stands in for Xception)"),
    "demo-vit": DemoArch(demo_vit, "hybrid vision transformer: conv stem, 8×8 tokens, 6 blocks", steps_scale=3),
    "demo-resnet-robust": DemoArch(
        demo_resnet, "demo-resnet adversarially trained (PGD 8/255)", "demo-robust", AdversarialTraining()
    ),
}


def weights_path(name: str, folder: Path | None = None) -> Path:
    """Where the weights of demo model ``name`` live (``folder`` defaults to the shipped ``weights/``)."""
    return (WEIGHTS_DIR if folder is None else Path(folder)) / f"{name}.safetensors"


def random_net(name: str, seed: int = INIT_SEED) -> PixelSpaceNet:
    """Demo model ``name`` with a seeded random init, in pixel space; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = ARCHITECTURES[name].make(len(CLASS_NAMES))
    return PixelSpaceNet(backbone, MEAN, STD)


def shipped_checkpoint(name: str) -> Checkpoint:
    """The shipped weights of ``name``; a clear error when they are missing or made for other classes."""
    path = weights_path(name)
    if not path.is_file():
        raise GcdashError(f"no trained weights for {name} at {path}; run `python -m gcdash train-demo`")
    checkpoint = read_checkpoint(path)
    if checkpoint.class_names is not None and checkpoint.class_names != list(CLASS_NAMES):
        raise GcdashError(f"{path.name} was trained for other classes; run `python -m gcdash train-demo`")
    return checkpoint


def build(
    name: str, weights: Weights = "default", crop: bool = False, seed: int = INIT_SEED, class_names: object = None
) -> ModelHandle:
    """A :class:`ModelHandle` for demo model ``name``: ``weights`` "default", None (random init from ``seed``) or a
    path; ``crop`` as in :meth:`ModelHandle.preprocess` (default: resize whole, the demo images are square)."""
    if class_names is not None:
        raise GcdashError(f"{name} has fixed classes ({', '.join(CLASS_NAMES)}); drop the class names option")
    net = random_net(name, seed)
    if weights is not None:
        checkpoint = shipped_checkpoint(name) if weights == "default" else read_checkpoint(weights)
        load_into(net.backbone, checkpoint.state_dict, label=f"{name} weights {weights}")
    backbone: DemoNet | DemoViT = net.backbone  # type: ignore[assignment]
    layers = backbone.catalog()
    return ModelHandle(
        name=name,
        net=net.eval(),
        input_size=(IMAGE_SIZE, IMAGE_SIZE),
        class_names=list(CLASS_NAMES),
        layers=layers,
        default_layer=next(reversed(layers)),
        crop=crop,
        family=ARCHITECTURES[name].family,
    )


def _register_all() -> None:
    for name, arch in ARCHITECTURES.items():
        register(name, partial(build, name), family=arch.family, description=arch.description)


_register_all()

__all__ = [
    "ARCHITECTURES", "MEAN", "STD", "WEIGHTS_DIR", "AdversarialTraining", "build", "random_net",
    "shipped_checkpoint", "weights_path",
]  # fmt: skip
