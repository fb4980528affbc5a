"""The model registry: ``names()``, ``load(name, weights=...)`` → :class:`ModelHandle`.

A builder is registered under a public name with :func:`register`; it takes ``weights`` (``"default"``, ``None``
for random init, ``"imagenet"`` or a checkpoint path where the family supports them) and returns a handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle, PixelSpaceNet
from gcdash.registry import Registry

Weights = str | Path | None
RANDOM = "random"  # the words for weights=None where a string is all there is (CLI, sidebar, URL)
NAMED_WEIGHTS = ("default", "imagenet")  # the other words a builder may take; any other string is a file path
Builder = Callable[..., ModelHandle]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about a model name before it is built."""

    name: str
    build: Builder
    family: str = ""
    description: str = ""


MODELS: Registry[ModelEntry] = Registry("model")


def register(name: str, build: Builder, *, family: str = "", description: str = "", replace: bool = False) -> None:
    """Make ``name`` loadable with :func:`load`."""
    MODELS.add(name, ModelEntry(name, build, family, description), replace=replace)


def names() -> list[str]:
    """Registered model names, in registration order."""
    _load_builtin()
    return MODELS.names()


def entry(name: str) -> ModelEntry:
    """What the registry knows about ``name``; a torchvision or timm name (``tv:resnet18``, ``timm:convnext_tiny``)
        is registered the first time it is asked for (:mod:`gcdash.models.library`); an own-code name (``py:…``) only
        where the operator trusted it (:mod:`gcdash.models.own`); a RobustBench name (``robustbench:…``) as a library
    name (:mod:`gcdash.models.robust`)."""
    _load_builtin()
    if name not in MODELS:
        _register_named(name)
    return MODELS.get(name)


def _register_named(name: str) -> None:
    """Register a name that carries its own recipe (a library, RobustBench or own-code prefix)."""
    from gcdash.models import library, own, robust

    makers = (
        (library.is_library_name, library.register_named),
        (robust.is_robustbench_name, robust.register_named),
        (own.is_own_name, own.register_trusted),
    )
    for owns, make in makers:
        if owns(name):
            make(name)
            return


def load(name: str, weights: Weights = "default", device: str | torch.device | None = None, **kwargs) -> ModelHandle:
    """Build the model ``name`` with ``weights`` and move it to ``device`` (default: CPU). ``weights="random"`` (as
    the CLI and the sidebar write it) is ``None``: a seeded random init."""
    weights = None if isinstance(weights, str) and weights.strip().lower() == RANDOM else weights
    _check_weights(name, weights)
    handle = entry(name).build(weights=weights, **kwargs)
    return handle.to(device) if device is not None else handle


def _check_weights(name: str, weights: Weights) -> None:
    """A checkpoint path that is not a file is refused here, for every family, saying so."""
    if weights is None or (isinstance(weights, str) and weights in NAMED_WEIGHTS):
        return
    if not Path(weights).expanduser().is_file():
        raise GcdashError(
            f"weights for {name}: file not found: {weights} (give an existing checkpoint file, 'default' for the "
            f"model's own weights, or '{RANDOM}')"
        )


def _load_builtin() -> None:
    """Import the modules that register the built-in models (lazily: they pull in torchvision and timm)."""
    import gcdash.models.demo
    import gcdash.models.paper  # noqa: F401


def expand(spec: str) -> list[str]:
    """``"a,b"`` → ``["a", "b"]``; ``"<family>-all"`` (e.g. ``demo-all``, ``paper-all``) → that family's models.
    Unknown names raise a GcdashError listing the valid ones."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        family = part[: -len("-all")] if part.endswith("-all") else None
        members = [n for n in names() if MODELS.get(n).family == family] if family else [entry(part).name]
        if not members:
            groups = sorted({f"{MODELS.get(n).family}-all" for n in names() if MODELS.get(n).family})
            raise GcdashError(f"unknown model group {part!r}; choose from: {', '.join(groups)}")
        out += [m for m in members if m not in out]
    if not out:
        raise GcdashError(f"no model given; choose from: {', '.join(names())}")
    return out


__all__ = ["MODELS", "ModelEntry", "ModelHandle", "PixelSpaceNet", "entry", "expand", "load", "names", "register"]
