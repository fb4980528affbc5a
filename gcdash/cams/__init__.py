"""CAM methods: a registry (``names()``, ``get(name)``) and :func:`compute`, which explains a batch at many
layers from one pass: ``{layer: float32 (N, H, W) in [0, 1]}`` at the input's resolution.

Each per-layer map equals what ``pytorch_grad_cam.<Method>(net, [that layer])(x, targets)`` returns. By default
each input's own top-1 class is explained (what the library does when no target is given, and the paper's
setting); ``targets`` fixes one class per input instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gcdash.cams.base import CamMethod, CamPass, LibraryCam, upsample, upsample_tensor
from gcdash.cams.integrated import IntegratedGradCam
from gcdash.cams.library import LIBRARY_METHODS
from gcdash.cams.smooth import SmoothGradCamPlusPlus
from gcdash.cams.taps import InputLoss, Targets, tap
from gcdash.models.handle import ModelHandle
from gcdash.registry import Registry

METHODS: Registry[CamMethod] = Registry("CAM method")
for _cls in (*LIBRARY_METHODS, SmoothGradCamPlusPlus, IntegratedGradCam):
    METHODS.add(_cls.name, _cls())


def names() -> list[str]:
    """Registered CAM method names."""
    return METHODS.names()


def get(name: str) -> CamMethod:
    """The method registered as ``name`` (an unknown name raises a GcdashError listing the valid ones)."""
    return METHODS.get(name)


def explain(
    handle: ModelHandle,
    x: torch.Tensor,
    layers: str | Sequence[str] | None = None,
    method: str = "gradcam",
    targets: Targets = None,
    input_loss: InputLoss | None = None,
    **params: Any,
) -> CamPass:
    """Logits and raw (layer-resolution) maps for ``layers`` of ``handle`` on ``x``, from the method's passes;
    ``input_loss`` (methods that :attr:`~CamMethod.shares_forward` only) also gives ``∇x input_loss(logits)`` from
    the same forward."""
    cam = get(method)
    names_ = handle.resolve_layers(layers)
    modules = {name: handle.layers[name] for name in names_}
    shared = {} if input_loss is None else {"input_loss": input_loss}
    if shared and not cam.shares_forward:
        raise ValueError(f"{method} makes more than one pass per input: it cannot share its forward")
    with handle.lock:
        return cam.raw_maps(handle.net, x.to(handle.device), modules, targets, **shared, **cam.params(**params))


def compute(
    handle: ModelHandle,
    x: torch.Tensor,
    layers: str | Sequence[str] | None = None,
    method: str = "gradcam",
    targets: Targets = None,
    **params: Any,
) -> dict[str, np.ndarray]:
    """``{layer: float32 (N, H, W) in [0, 1]}`` at the input resolution (see the module docstring)."""
    result = explain(handle, x, layers, method, targets, **params)
    size = (x.shape[-2], x.shape[-1])
    return {name: upsample(raw, size) for name, raw in result.maps.items()}


__all__ = [
    "METHODS",
    "CamMethod",
    "CamPass",
    "LibraryCam",
    "compute",
    "explain",
    "get",
    "names",
    "tap",
    "upsample",
    "upsample_tensor",
]
