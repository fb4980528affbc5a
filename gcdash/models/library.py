"""Any torchvision or timm classifier by name: ``tv:resnet18``, ``timm:convnext_tiny``.

A name with a library prefix is registered the first time it is asked for (:func:`register_named`), as one of the
paper's models is: the library's own pretrained config gives the input size, the normalisation (inside the
pixel-space handle) and the ImageNet class names; weights are ``"default"`` (the library's pretrained weights,
from its cache, with the paper models' offline message), ``None`` (random, seeded) or a checkpoint path.

The layer catalog is made, not written: timm's ``feature_info`` (the stage outputs timm itself describes), and for
torchvision the modules where the resolution changes: one forward pass of a blank image records, among the
network's top-level modules and their children, the last module at each spatial size, shallow → deep. The deepest
stage is the default layer (for ResNets ``layer4``, pytorch-grad-cam's usual choice).

Vision transformers: timm's ``feature_info`` lists their blocks (ViT, DeiT) or stages (Swin), torchvision's ViT its
encoder layers; token outputs are read as feature maps by :mod:`gcdash.models.grids`. A model that classifies from
its class token (ViT, DeiT) never uses its last block's patch tokens, so their gradient is zero: that block is
catalogued by its first norm (``blocks.11.norm1``, the layer pytorch-grad-cam's ViT tutorial explains).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models import MODELS, register
from gcdash.models.grids import feature_map, prefix_tokens
from gcdash.models.paper import IMAGENET_CLASSES, PaperModel, Source, TimmSource, TorchvisionSource, build, skeleton

PREFIXES = {"tv": "torchvision", "timm": "timm"}
HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # the classifier's pooling: not a stage of its own


NAMING = """Name any other model as:
  tv:ARCH          a torchvision classifier (tv:resnet18, tv:vit_b_16, tv:swin_t)
  timm:ARCH        a timm model (timm:convnext_tiny, timm:vit_small_patch16_224, timm:swin_tiny_patch4_window7_224)
  py:FILE.py:FUNC  your own code: FUNC() returns an nn.Module or gcdash.models.own.OwnModel (CLI, models file)
  robustbench:NAME or robustbench:DATASET:THREAT:NAME   a RobustBench model (pip install robustbench)
with --weights default (the library's pretrained weights, from its cache), random, or a checkpoint file."""


def available() -> list[str]:
    """Every name this module can register: torchvision's classifiers (``tv:``), then timm's models (``timm:``)."""
    import timm
    from torchvision import models as tv

    return [*(f"tv:{n}" for n in tv.list_models(module=tv)), *(f"timm:{n}" for n in timm.list_models())]


def is_library_name(name: str) -> bool:
    """Whether ``name`` has a library prefix (``tv:``, ``timm:``)."""
    return name.split(":", 1)[0] in PREFIXES and ":" in name


def register_named(name: str) -> None:
    """Register ``PREFIX:ARCH`` (once), or refuse an architecture the library does not have, in one line."""
    if name in MODELS:
        return
    prefix, arch = name.split(":", 1)
    source = _torchvision_source(arch) if prefix == "tv" else _timm_source(arch)
    layers = partial(catalog, size=source.input_size())
    spec = PaperModel(name, arch, "", PREFIXES[prefix], source, layers, "", _head_weight(source))
    register(name, partial(build, spec), family="library", description=f"{arch} from {PREFIXES[prefix]}")


def _torchvision_source(arch: str) -> TorchvisionSource:
    from torchvision import models as tv

    if arch not in tv.list_models(module=tv):
        raise GcdashError(f"torchvision has no classifier {arch!r}; see torchvision.models.list_models()")
    weights = tv.get_model_weights(arch).DEFAULT
    return TorchvisionSource(arch, f"{type(weights).__name__}.{weights.name}")


def _timm_source(arch: str) -> TimmSource:
    import timm

    if not timm.is_model(arch):
        raise GcdashError(f"timm has no model {arch!r}; see timm.list_models('{arch[:4]}*')")
    return TimmSource(arch)


def _head_weight(source: Source) -> str:
    """The state-dict key of the classifier's weight (its first dimension is the class count)."""
    net = skeleton(source, IMAGENET_CLASSES)
    linear = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise GcdashError(f"{source.library} model has no linear classifier head; gcdash explains classifiers")
    return f"{linear[-1]}.weight"


def catalog(net: nn.Module, size: tuple[int, int] = (224, 224)) -> dict[str, nn.Module]:
    """The layers of ``net``, shallow → deep: timm's feature stages, torchvision ViT's encoder layers, else where
    the resolution changes; a class-token model's last block by its first norm."""
    info = getattr(net, "feature_info", None)
    modules = dict(net.named_modules())
    if info:
        names = [entry["module"] for entry in info]
    elif "encoder.layers" in modules and prefix_tokens(net):  # torchvision's VisionTransformer
        names = [f"encoder.layers.{child}" for child, _ in modules["encoder.layers"].named_children()]
    else:
        return resolution_stages(net, size)
    if _pools_class_token(net):
        names[-1] = next(f"{names[-1]}.{n}" for n in ("norm1", "ln_1") if f"{names[-1]}.{n}" in modules)
    return {name: modules[name] for name in names}


def _pools_class_token(net: nn.Module) -> bool:
    """Whether the head reads only the prefix tokens (timm's ``global_pool="token"``, torchvision's ViT)."""
    pool = getattr(net, "global_pool", "token" if prefix_tokens(net) else None)
    return prefix_tokens(net) > 0 and pool == "token"


def resolution_stages(net: nn.Module, size: tuple[int, int] = (224, 224)) -> dict[str, nn.Module]:
    """Among the top-level modules and their children, the last one (in forward order) at each spatial size of
    a blank image's pass at ``size``; modules that run more than once are left out (a hook would see two outputs), and
    so are the head's adaptive pooling (at ``size`` it keeps the last stage's resolution) and what runs before the
    first module with weights (a model's own input normalisation)."""
    candidates = {
        name: m for name, m in net.named_modules()
        if name and name.count(".") <= 1 and not isinstance(m, HEAD_POOLS)
    }  # fmt: skip
    seen: list[tuple[str, tuple[int, int]]] = []
    runs: dict[str, int] = {}
    learned = [False]  # whether a module with weights has run: what runs before (input normalisation) is no stage

    def record(name: str):
        def hook(module: nn.Module, args: object, out: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            learned.append(learned[-1] or any(True for _ in module.parameters()))
            if learned[-1] and isinstance(out, torch.Tensor) and out.dim() in (3, 4):
                try:
                    shape = tuple(feature_map(name, out, net, size).shape[-2:])
                except GcdashError:  # tokens that do not form a grid
                    return
                if min(shape) > 1:
                    seen.append((name, shape))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in candidates.items()]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    last: dict[tuple[int, int], str] = {}
    for name, shape in seen:
        if runs[name] == 1:
            last.pop(shape, None)  # keep insertion order by resolution's latest module
            last[shape] = name
    if not last:
        raise GcdashError("no layer with a spatial output was found (a transformer? not supported yet)")
    return {name: candidates[name] for name in last.values()}
