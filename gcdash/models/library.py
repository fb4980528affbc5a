"""Any torchvision or timm classifier by name: ``tv:resnet18``, ``timm:convnext_tiny``.

A name with a library prefix is registered the first time it is asked for (:func:`register_named`), as one of the
paper's models is: the library's own pretrained config gives the input size, the normalisation (inside the
pixel-space handle) and the ImageNet class names; weights are ``"default"`` (the library's pretrained weights,
from its cache, with the paper models' offline message), ``None`` (random, seeded) or a checkpoint path.

The layer catalog is made, not written: timm's ``feature_info`` (the stage outputs timm itself describes), and for
torchvision the modules where the resolution changes: one forward pass of a blank image records, among the
network's top-level modules and their children, the last module at each spatial size, shallow → deep. The deepest
stage is the default layer (for ResNets ``layer4``, pytorch-grad-cam's usual choice). Vision transformers (token
outputs) are not catalogued yet: their stages have no spatial size, so no layer is found and the name is refused.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models import MODELS, register
from gcdash.models.paper import IMAGENET_CLASSES, PaperModel, Source, TimmSource, TorchvisionSource, build, skeleton

PREFIXES = {"tv": "torchvision", "timm": "timm"}
HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # the classifier's pooling: not a stage of its own


def is_library_name(name: str) -> bool:
    """Whether ``name`` has a library prefix (``tv:``, ``timm:``)."""
    return name.split(":", 1)[0] in PREFIXES and ":" in name


def register_named(name: str) -> None:
    """Register ``PREFIX:ARCH`` (once), or refuse an architecture the library does not have, in one line."""
    if name in MODELS:
        return
    prefix, arch = name.split(":", 1)
    source = _torchvision_source(arch) if prefix == "tv" else _timm_source(arch)
    spec = PaperModel(name, arch, "", PREFIXES[prefix], source, catalog, "", _head_weight(source))
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


def catalog(net: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``net``, shallow → deep: timm's feature stages, else where the resolution changes."""
    info = getattr(net, "feature_info", None)
    if info:
        modules = dict(net.named_modules())
        return {entry["module"]: modules[entry["module"]] for entry in info}
    return resolution_stages(net)


def resolution_stages(net: nn.Module, size: int = 224) -> dict[str, nn.Module]:
    """Among the top-level modules and their children, the last one (in forward order) at each spatial size of
    a blank ``size``² image's pass; modules that run more than once are left out (a hook would see two outputs), and
    so is the head's adaptive pooling (at ``size`` it keeps the last stage's resolution)."""
    candidates = {
        name: m for name, m in net.named_modules()
        if name and name.count(".") <= 1 and not isinstance(m, HEAD_POOLS)
    }  # fmt: skip
    seen: list[tuple[str, tuple[int, int]]] = []
    runs: dict[str, int] = {}

    def record(name: str):
        def hook(module: nn.Module, args: object, out: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and out.dim() == 4 and min(out.shape[-2:]) > 1:
                seen.append((name, tuple(out.shape[-2:])))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in candidates.items()]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
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
