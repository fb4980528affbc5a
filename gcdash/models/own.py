"""A model defined in the user's own code: ``py:path/to/file.py:build`` or ``py:package.module:build``.

Running code is the operator's decision, never a visitor's: a ``py:`` name is loadable only once :func:`trust`
has registered it, which the CLI does for the names on its command line and the dashboard for the lines of its
models file (:func:`read_models_file`: ``GCDASH_MODELS_FILE``, default ``gcdash-models.txt`` in the working
directory). Trusted names are also written to ``GCDASH_TRUSTED_MODELS`` in the environment, so the processes the
operator's process starts (a local Ray's workers) may load them too. A name typed in the page or put in the URL is
refused.

The builder is called with no arguments and returns an ``nn.Module`` (a classifier: images → logits), or an
:class:`OwnModel` that adds any of the input size, normalisation, class names, layer names and default layer.
What it leaves out is as for a library model: 224², ImageNet's mean and std, ``class 0 … class n-1``, the made
layer catalog (:func:`gcdash.models.library.catalog`) and its deepest layer. Weights: ``"default"`` are the
builder's own; a checkpoint is loaded into the built module (strictly); ``"random"`` re-initialises every module's
parameters (``reset_parameters``) under the seed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models import MODELS, Weights, register
from gcdash.models.checkpoint import ClassNames, apply_weights, resolve_class_names
from gcdash.models.handle import IMAGENET_MEAN, IMAGENET_STD, ModelHandle, PixelSpaceNet
from gcdash.models.paper import no_inplace

PREFIX = "py:"
TRUSTED_ENV = "GCDASH_TRUSTED_MODELS"
MODELS_FILE_ENV = "GCDASH_MODELS_FILE"
MODELS_FILE = "gcdash-models.txt"


@dataclass
class OwnModel:
    """What a builder may return instead of a bare module: the network and what gcdash should know about it."""

    net: nn.Module
    input_size: tuple[int, int] = (224, 224)
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    class_names: Sequence[str] | None = None
    layers: Sequence[str] | None = None
    default_layer: str | None = None
    crop: bool = True
    extra: dict = field(default_factory=dict)


def is_own_name(name: str) -> bool:
    return name.startswith(PREFIX)


def trust(name: str) -> None:
    """Register the ``py:`` name ``name`` as loadable (the operator named it) and tell child processes."""
    _split(name)
    if name not in MODELS:
        register(name, partial(build, name), family="own", description=f"built by {name[len(PREFIX) :]}")
    trusted = [n for n in os.environ.get(TRUSTED_ENV, "").split("\n") if n]
    if name not in trusted:
        os.environ[TRUSTED_ENV] = "\n".join([*trusted, name])


def register_trusted(name: str) -> None:
    """Register ``name`` where the process that started this one trusted it; refuse it otherwise."""
    if not trusted_by_environment(name):
        raise refusal(name)
    trust(name)


def trusted_by_environment(name: str) -> bool:
    """Whether the process that started this one trusted ``name``."""
    return name in os.environ.get(TRUSTED_ENV, "").split("\n")


def refusal(name: str) -> GcdashError:
    return GcdashError(
        f"{name}: own-code models run code, so only the operator names them (the CLI's --models, or a line in the "
        f"dashboard's models file {MODELS_FILE} / ${MODELS_FILE_ENV}), not the page or its URL"
    )


def read_models_file(path: str | Path | None = None) -> list[str]:
    """Register every model named in the operator's models file (one name per line, ``#`` comments): ``py:``
    names are trusted, library names (``tv:``, ``timm:``) registered. Returns the names; no file → none."""
    from gcdash import models

    path = Path(path or os.environ.get(MODELS_FILE_ENV) or MODELS_FILE).expanduser()
    if not path.is_file():
        return []
    names = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    for name in names:
        if is_own_name(name):
            trust(name)
        else:
            models.entry(name)
    return names


def _split(name: str) -> tuple[str, str]:
    """``py:WHERE:FUNC`` → (WHERE, FUNC); WHERE is a ``.py`` file or a dotted module name."""
    where, _, func = name[len(PREFIX) :].rpartition(":")
    if not where or not func.isidentifier():
        raise GcdashError(f"{name}: write own-code models as py:path/to/file.py:function or py:package.module:function")
    return where, func


def builder(name: str) -> Callable[[], object]:
    """The builder function ``name`` points at, imported (a file by its path, a module by its name)."""
    where, func = _split(name)
    try:
        module = _import_file(where) if where.endswith(".py") else importlib.import_module(where)
    except GcdashError:
        raise
    except Exception as err:
        raise GcdashError(f"{name}: importing {where} raised {type(err).__name__}: {err}") from None
    found = getattr(module, func, None)
    if not callable(found):
        raise GcdashError(f"{name}: {where} has no function {func!r}")
    return found


def _import_file(where: str):
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise GcdashError(f"py:{where}: file not found: {path}")
    module_name = f"gcdash_own_{abs(hash(str(path)))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def described(name: str) -> OwnModel:
    """Call the builder and check what it returned (a module or an :class:`OwnModel`)."""
    make = builder(name)
    try:
        made = make()
    except Exception as err:
        raise GcdashError(f"{name}: the builder raised {type(err).__name__}: {err}") from None
    if isinstance(made, nn.Module):
        made = OwnModel(made)
    if not isinstance(made, OwnModel) or not isinstance(made.net, nn.Module):
        raise GcdashError(
            f"{name}: the builder returned {type(made).__name__}; return an nn.Module or gcdash.models.own.OwnModel"
        )
    return made


def build(
    name: str,
    weights: Weights = "default",
    *,
    crop: bool | None = None,
    class_names: ClassNames = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> ModelHandle:
    """The handle of own-code model ``name`` with ``weights`` (see the module docstring)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        made = described(name)
        net = made.net.float()
        saved_names = apply_weights(name, net, weights, seed=None)  # after the builder, under the seed above
    net = PixelSpaceNet(no_inplace(net), made.mean, made.std).eval()
    n = _classes(name, net, made.input_size)
    if num_classes is not None and num_classes != n:
        raise GcdashError(f"{name}: num_classes={num_classes} but the model has {n} outputs")
    names = resolve_class_names(class_names, n, made.class_names or saved_names)
    layers = _layers(name, made, net)
    default = made.default_layer or list(layers)[-1]
    if default not in layers:
        raise GcdashError(f"{name}: default layer {default!r} is not among its layers: {', '.join(layers)}")
    size = (int(made.input_size[0]), int(made.input_size[1]))
    return ModelHandle(name, net, size, names, layers, default, crop=made.crop if crop is None else crop, family="own")


def _classes(name: str, net: nn.Module, size: Sequence[int]) -> int:
    """The number of classes, from one pass of a grey image; logits that are not (1, C) or not finite: refused."""
    try:
        with torch.no_grad():
            logits = net(torch.full((1, 3, *size), 0.5))
    except Exception as err:
        raise GcdashError(f"{name}: a forward pass at {tuple(size)} raised {type(err).__name__}: {err}") from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise GcdashError(f"{name}: the model returned {shape}; gcdash explains classifiers: (N, classes) logits")
    if not torch.isfinite(logits).all():
        raise GcdashError(f"{name}: the model's logits on a grey image are not finite (NaN or inf)")
    return int(logits.shape[1])


def _layers(name: str, made: OwnModel, net: PixelSpaceNet) -> dict[str, nn.Module]:
    from gcdash.models.handle import forward_order
    from gcdash.models.library import catalog

    if not made.layers:
        return catalog(net.backbone, size=made.input_size)
    modules = dict(net.backbone.named_modules())
    unknown = [n for n in made.layers if n not in modules]
    if unknown:
        raise GcdashError(f"{name}: the builder names layer {unknown[0]!r}, which the model does not have")
    return forward_order({n: modules[n] for n in made.layers}, net, tuple(made.input_size))
