"""The five ImageNet CNNs of Chakraborty et al. (CVPRW 2022), as the paper groups them.

- deep: VGG16 (Simonyan & Zisserman, "Very Deep Convolutional Networks…", ICLR 2015), ResNet50 and ResNet101
  (He et al., "Deep Residual Learning…", CVPR 2016), from torchvision;
- wide: InceptionV3 (Szegedy et al., "Rethinking the Inception Architecture…", CVPR 2016) from torchvision, and
  Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017), timm's
  ``legacy_xception``: the original architecture with the Keras ImageNet weights ported by Cadene.

``weights``: ``"default"``/``"imagenet"`` (the libraries' own ImageNet weights, downloaded once into their cache;
offline and uncached → one-line error naming the file and where to put it), ``None`` (random, seeded) or a
checkpoint path (see :mod:`gcdash.models.checkpoint`). Build options: ``crop`` (``False`` for pre-aligned face
crops), ``num_classes``, ``class_names`` (list, .txt/.json file or image folder), ``seed``.

Each layer catalog lists the blocks shallow → deep in forward order; the default CAM layer is the last
convolutional stage, the layer pytorch-grad-cam's docs pick. Two rules keep per-layer CAMs right: a catalogued
module runs once per forward (ResNet's Bottleneck calls its ``relu`` three times, so blocks are catalogued, never
ReLUs), and nothing edits a catalogued output in place afterwards. Every ``inplace`` flag is set to ``False``,
because an in-place ReLU would overwrite the tensor a hook recorded (its saved value and its gradient would then
belong to the ReLU's output, not the layer's).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models import MODELS, Weights, register
from gcdash.models.checkpoint import ClassNames, load_into, num_classes_in, read_checkpoint, resolve_class_names
from gcdash.models.handle import ModelHandle, PixelSpaceNet
from gcdash.models.pretrained import download_errors, hf_cache_dir, hf_cached_file, hub_checkpoint_path, require_cached

IMAGENET_CLASSES = 1000
Catalog = Callable[[nn.Module], dict[str, nn.Module]]


def vgg_layers(net: nn.Module) -> dict[str, nn.Module]:
    """``block{b}.conv{c}`` (the ReLU after each conv) and ``block{b}.pool`` for each of VGG's five blocks."""
    layers, block, conv = {}, 1, 0
    for module in net.features:
        if isinstance(module, nn.ReLU):
            conv += 1
            layers[f"block{block}.conv{conv}"] = module
        elif isinstance(module, nn.MaxPool2d):
            layers[f"block{block}.pool"] = module
            block, conv = block + 1, 0
    return layers


def resnet_layers(net: nn.Module) -> dict[str, nn.Module]:
    """``stem`` (after the max-pool) and every residual block ``layer{s}.{i}``."""
    layers: dict[str, nn.Module] = {"stem": net.maxpool}
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        layers.update({f"{stage}.{i}": block for i, block in enumerate(getattr(net, stage))})
    return layers


INCEPTION_STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
INCEPTION_STAGES += tuple(f"Mixed_{s}" for s in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"))


def inception_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The stem convolutions and every Inception module, under torchvision's names (``Mixed_7c`` …)."""
    return {name: getattr(net, name) for name in INCEPTION_STAGES}


XCEPTION_FLOWS = {"entry": range(1, 4), "middle": range(4, 12), "exit": range(12, 13)}


def xception_layers(net: nn.Module) -> dict[str, nn.Module]:
    """``stem``, the entry/middle/exit-flow blocks, then the exit flow's two separable conv stages."""
    layers: dict[str, nn.Module] = {"stem": net.act2}
    for flow, blocks in XCEPTION_FLOWS.items():
        layers.update({f"{flow}.block{i}": getattr(net, f"block{i}") for i in blocks})
    layers.update({"exit.conv3": net.act3, "exit.conv4": net.act4})
    return layers


@dataclass(frozen=True)
class TorchvisionSource:
    """A ``torchvision.models`` builder and its ImageNet ``Weights`` member, named as strings (imported lazily)."""

    builder: str
    weights: str
    options: tuple[tuple[str, object], ...] = ()
    library: ClassVar[str] = "torchvision"

    def _weights(self):
        enum, member = self.weights.split(".")
        return getattr(getattr(importlib.import_module("torchvision.models"), enum), member)

    def architecture(self, num_classes: int) -> nn.Module:
        build = getattr(importlib.import_module("torchvision.models"), self.builder)
        return build(weights=None, num_classes=num_classes, **dict(self.options))

    def imagenet(self, model: str, ignore: Sequence[str]) -> nn.Module:
        weights = self._weights()
        cached = hub_checkpoint_path(weights.url)
        require_cached(model, weights.url, cached)
        with download_errors(model, weights.url, cached):
            state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
        net = skeleton(self, IMAGENET_CLASSES)
        load_into(net, state, ignore, label=f"torchvision {self.weights}")
        return net

    def imagenet_classes(self) -> list[str]:
        return list(self._weights().meta["categories"])

    def normalisation(self) -> tuple[Sequence[float], Sequence[float]]:
        transform = self._weights().transforms()
        return tuple(transform.mean), tuple(transform.std)

    def input_size(self) -> tuple[int, int]:
        side = self._weights().transforms().crop_size[0]
        return side, side


@dataclass(frozen=True)
class TimmSource:
    """A timm model name; its pretrained config gives weights location, input size and normalisation."""

    name: str
    library: ClassVar[str] = "timm"

    def _cfg(self):
        from timm.models import get_pretrained_cfg

        return get_pretrained_cfg(self.name)

    def architecture(self, num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(self.name, pretrained=False, num_classes=num_classes)

    def imagenet(self, model: str, ignore: Sequence[str]) -> nn.Module:
        """``timm.create_model(pretrained=True)``, pointed at the cached file when there is one (no network).
        ``ignore`` is unused: timm's own loader fits its files to its models."""
        import timm

        cfg = self._cfg()
        if cfg.hf_hub_id:
            url, cached = f"https://huggingface.co/{cfg.hf_hub_id}", hf_cached_file(cfg.hf_hub_id)
            where, hint = cached or hf_cache_dir() / f"models--{cfg.hf_hub_id.replace('/', '--')}", "the HF hub cache"
        else:
            url, where, hint = cfg.url, hub_checkpoint_path(cfg.url), "timm reads torch hub's cache"
            cached = where if where.is_file() else None
        require_cached(model, url, where, hint)
        overlay = {"file": str(cached)} if cached else {}
        with download_errors(model, url, where, hint):
            return timm.create_model(self.name, pretrained=True, pretrained_cfg_overlay=overlay)

    def imagenet_classes(self) -> list[str]:
        from timm.data import ImageNetInfo

        cfg = self._cfg()
        names = cfg.label_names or ImageNetInfo().label_descriptions()
        return [name.split(",")[0].strip() for name in names]

    def normalisation(self) -> tuple[Sequence[float], Sequence[float]]:
        cfg = self._cfg()
        return tuple(cfg.mean), tuple(cfg.std)

    def input_size(self) -> tuple[int, int]:
        _, h, w = self._cfg().input_size
        return h, w


Source = TorchvisionSource | TimmSource


def skeleton(source: Source, num_classes: int) -> nn.Module:
    """The architecture on the meta device: no memory and no init cost, every tensor then comes from a state dict."""
    with torch.device("meta"):
        return source.architecture(num_classes)


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's architectures: where it comes from, its layer catalog and its classifier weight."""

    name: str
    title: str
    group: str  # "deep" or "wide", as the paper groups them
    cite: str
    source: Source
    catalog: Catalog
    default_layer: str
    head_weight: str  # state-dict key of the classifier's weight: its first dimension is the class count
    ignore: tuple[str, ...] = ()  # state-dict prefixes that are not part of the eval net

    @property
    def description(self) -> str:
        return f"{self.title} ({self.cite}) from {self.source.library}; paper group: {self.group}"


_INCEPTION = (("aux_logits", False), ("transform_input", True), ("init_weights", True))
PAPER_MODELS: dict[str, PaperModel] = {
    m.name: m
    for m in (
        PaperModel(
            "vgg16", "VGG16", "deep", "Simonyan & Zisserman, ICLR 2015",
            TorchvisionSource("vgg16", "VGG16_Weights.IMAGENET1K_V1"), vgg_layers, "block5.pool", "classifier.6.weight",
        ),
        PaperModel(
            "resnet50", "ResNet50", "deep", "He et al., CVPR 2016",
            TorchvisionSource("resnet50", "ResNet50_Weights.IMAGENET1K_V1"), resnet_layers, "layer4.2", "fc.weight",
        ),
        PaperModel(
            "resnet101", "ResNet101", "deep", "He et al., CVPR 2016",
            TorchvisionSource("resnet101", "ResNet101_Weights.IMAGENET1K_V1"), resnet_layers, "layer4.2", "fc.weight",
        ),
        PaperModel(
            "inception_v3", "InceptionV3", "wide", "Szegedy et al., CVPR 2016",
            TorchvisionSource("inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", _INCEPTION),
            inception_layers, "Mixed_7c", "fc.weight", ignore=("AuxLogits.",),
        ),
        PaperModel(
            "xception", "Xception", "wide", "Chollet, CVPR 2017",
            TimmSource("legacy_xception"), xception_layers, "exit.conv4", "fc.weight",
        ),
    )
}  # fmt: skip
GROUPS: dict[str, list[str]] = {g: [m.name for m in PAPER_MODELS.values() if m.group == g] for g in ("deep", "wide")}


def build(
    spec: PaperModel,
    weights: Weights = "default",
    *,
    crop: bool = True,
    num_classes: int | None = None,
    class_names: ClassNames = None,
    seed: int = 0,
) -> ModelHandle:
    """Build ``spec`` with ``weights`` (``"default"``/``"imagenet"``, ``None`` or a checkpoint path)."""
    loader = _WEIGHT_LOADERS.get(weights, _from_checkpoint) if isinstance(weights, str | None) else _from_checkpoint
    arch, names = loader(spec, weights, num_classes, class_names, seed)
    return _handle(spec, arch, names, crop)


def _random(spec: PaperModel, weights: None, num_classes: int | None, class_names: ClassNames, seed: int):
    """Random init under ``seed`` (the global RNG is left as it was)."""
    n = num_classes or IMAGENET_CLASSES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        arch = spec.source.architecture(n)
    return arch, resolve_class_names(class_names, n, _imagenet_names(spec, n))


def _imagenet(spec: PaperModel, weights: str, num_classes: int | None, class_names: ClassNames, seed: int):
    if num_classes not in (None, IMAGENET_CLASSES):
        raise GcdashError(f"ImageNet weights have 1000 classes, not {num_classes}; load a fine-tuned checkpoint")
    arch = spec.source.imagenet(spec.name, spec.ignore)
    return arch, resolve_class_names(class_names, IMAGENET_CLASSES, spec.source.imagenet_classes())


def _from_checkpoint(spec: PaperModel, weights: Weights, num_classes: int | None, class_names: ClassNames, seed: int):
    """A fine-tuned state dict (a missing file was refused by ``models.load``, for every family): the class
    count comes from its classifier weight."""
    ckpt = read_checkpoint(weights)
    n = num_classes_in(ckpt.state_dict, spec.head_weight)
    if num_classes is not None and num_classes != n:
        raise GcdashError(f"num_classes={num_classes} but the checkpoint's classifier has {n} classes")
    arch = skeleton(spec.source, n)
    saved_for = f" (saved for {ckpt.arch})" if ckpt.arch and ckpt.arch != spec.name else ""
    load_into(arch, ckpt.state_dict, spec.ignore, label=f"checkpoint {weights}{saved_for}")
    return arch, resolve_class_names(class_names, n, ckpt.class_names or _imagenet_names(spec, n))


def _imagenet_names(spec: PaperModel, n: int) -> list[str] | None:
    """An ImageNet architecture's 1000-way head without names of its own (random weights, a checkpoint that carries
    none, as the Madry lab's robust ResNets) is read in ImageNet's standard order: the library's class names."""
    return spec.source.imagenet_classes() if n == IMAGENET_CLASSES else None


_WEIGHT_LOADERS = {None: _random, "default": _imagenet, "imagenet": _imagenet}


def no_inplace(net: nn.Module) -> nn.Module:
    """Clear every module's ``inplace`` flag, so no catalogued output is overwritten after its hook saw it."""
    for module in net.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    return net


def _handle(spec: PaperModel, arch: nn.Module, names: list[str], crop: bool) -> ModelHandle:
    mean, std = spec.source.normalisation()
    net = PixelSpaceNet(no_inplace(arch), mean, std).eval()
    layers = spec.catalog(arch)
    size = spec.source.input_size()
    default = spec.default_layer or list(layers)[-1]  # a made catalog (gcdash.models.library): its deepest layer
    family = "paper" if spec.name in PAPER_MODELS else "library"
    return ModelHandle(spec.name, net, size, names, layers, default, crop=crop, family=family)


for _spec in PAPER_MODELS.values():
    if _spec.name not in MODELS:
        register(_spec.name, partial(build, _spec), family="paper", description=_spec.description)

__all__ = ["GROUPS", "PAPER_MODELS", "PaperModel", "TimmSource", "TorchvisionSource", "build", "no_inplace"]
