"""CAM methods as the engine sees them: ``raw_maps(net, x, modules, targets)`` → logits + one map per layer.

Maps are "raw": ReLU applied, at the layer's resolution, not yet normalised. :func:`upsample` turns them into
what pytorch-grad-cam returns (min-max per map, bilinear resize to the input, min-max again).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from gcdash.cams.taps import InputLoss, Tap, Targets, tap
from gcdash.models.handle import eval_mode


@dataclass
class CamPass:
    """One batch explained: ``logits`` (N, C) on CPU, ``targets`` (N,) the classes explained, ``maps`` layer →
    float32 (N, h, w) ≥ 0 at layer resolution."""

    logits: torch.Tensor
    targets: torch.Tensor
    maps: dict[str, np.ndarray]
    input_grad: torch.Tensor | None = None  # ∇x of an InputLoss taken on the same forward, when one was asked for


class CamMethod(ABC):
    """A named CAM method. ``defaults`` are its parameters (the papers' defaults); ``cost`` says how many model
    passes a batch takes, for the method's description in the CLI and the dashboard."""

    name: ClassVar[str]
    label: ClassVar[str]
    paper: ClassVar[str] = ""
    cost: ClassVar[str] = "one forward + backward pass for all layers"
    uses_gradients: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}
    #: Rows per model pass for the extra passes some methods make (Score-CAM's masked inputs, Smooth Grad-CAM++'s
    #: noisy copies, Integrated Grad-CAM's path points). Results do not depend on it, so it is an execution
    #: setting of the method object, not one of its parameters, and belongs in no cache key.
    batch_size: int = 32

    def passes(self, params: dict[str, Any]) -> int | None:
        """Model passes per explained input, for cost warnings: 1 for the one-pass methods; None where it depends on
        the layers' widths (Score-CAM)."""
        return 1

    @property
    def shares_forward(self) -> bool:
        """Whether :meth:`raw_maps` takes ``input_loss``: its first pass is one forward and one backward whose
        forward can serve a second backward (the attack's gradient, taken on the clean image's pass)."""
        return False

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The full parameter set: defaults updated with ``overrides`` (unknown names are an error)."""
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            from gcdash.errors import GcdashError

            raise GcdashError(f"{self.name} has no parameter {sorted(unknown)[0]!r}; it takes: {sorted(self.defaults)}")
        return {**self.defaults, **overrides}

    @abstractmethod
    def raw_maps(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], targets: Targets = None, **params: Any
    ) -> CamPass: ...


def library_targets(targets: torch.Tensor) -> list[ClassifierOutputTarget]:
    return [ClassifierOutputTarget(int(c)) for c in targets.tolist()]


def target_classes(targets: Sequence[object], device: torch.device | str = "cpu") -> torch.Tensor:
    """The inverse of :func:`library_targets`: pytorch-grad-cam target objects → class indices (N,). Only
    ``ClassifierOutputTarget``-like targets (with a ``category``) name a class a gradient pass can explain."""
    missing = [t for t in targets if not isinstance(getattr(t, "category", None), int | np.integer)]
    if missing:
        kind = type(missing[0]).__name__
        raise TypeError(f"expected ClassifierOutputTarget targets (a class index each), got {kind}")
    return torch.tensor([int(t.category) for t in targets], dtype=torch.long, device=device)


@contextlib.contextmanager
def recordings_kept(cam: BaseCAM) -> Iterator[None]:
    """Run extra model passes inside a library CAM call without them landing in its recorder: the
    ``ActivationsAndGradients`` lists of the call in progress are put back as they were afterwards."""
    recorder = cam.activations_and_grads
    activations, gradients = list(recorder.activations), list(recorder.gradients)
    try:
        yield
    finally:
        recorder.activations, recorder.gradients = activations, gradients


class LibraryCam(CamMethod):
    """A method whose per-layer maths is pytorch-grad-cam's ``get_cam_image`` (its ``cam_class``). The engine
    feeds it the activations and gradients of a single :func:`~gcdash.cams.taps.tap` pass, so all layers share
    that pass; the library object is built with no target layers, so it puts no hooks of its own on the model.

    A method that also writes its formula as tensor operations (:meth:`device_image`) is computed on the tap's
    device over the whole batch, the activations never copied to the host: that formula equals the library's to
    1e-5 (tested per method on seeded activations and gradients, and end to end on a seeded model against the
    library's own call); the library's numpy maths remains the reference and the fallback."""

    cam_class: ClassVar[type[BaseCAM]]

    @property
    def shares_forward(self) -> bool:
        return self.uses_gradients

    def raw_maps(
        self,
        net: nn.Module,
        x: torch.Tensor,
        modules: Mapping[str, nn.Module],
        targets: Targets = None,
        input_loss: InputLoss | None = None,
        **params: Any,
    ) -> CamPass:
        recorded = tap(net, x, modules, targets, gradients=self.uses_gradients, input_loss=input_loss)
        with eval_mode(net):
            maps = self.maps_from_tap(net, x, modules, recorded)
        return CamPass(recorded.logits.cpu(), recorded.targets.cpu(), maps, recorded.input_grad)

    def build_cam(self, net: nn.Module) -> BaseCAM:
        """The library object whose ``get_cam_image`` does the maths (no target layers, so no hooks)."""
        return self.cam_class(net, target_layers=[])

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor | None:
        """``get_cam_image`` of the library as tensor operations (N, K, h, w) → (N, h, w), on their device; None
        where only the library's numpy maths exists."""
        return None

    def maps_from_tap(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], recorded: Tap
    ) -> dict[str, np.ndarray]:
        maps, cam = {}, None
        for name, module in modules.items():
            acts = recorded.activations[name].float()
            grads = None if recorded.gradients is None else recorded.gradients[name].float()
            image = self.device_image(acts, grads)
            if image is None:
                cam = cam or self.build_cam(net)
                numpy_grads = None if grads is None else grads.cpu().numpy()
                found = cam.get_cam_image(
                    x, module, library_targets(recorded.targets), acts.cpu().numpy(), numpy_grads, eigen_smooth=False
                )
                image = torch.from_numpy(np.asarray(found, dtype=np.float32))
            maps[name] = image.clamp_(min=0).cpu().numpy().astype(np.float32, copy=False)
        return maps


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's per-map scaling, in place: ``(m − min m) / (1e-7 + max(m − min m))``."""
    low, high = maps.flatten(1).aminmax(dim=1)
    low = low[:, None, None]
    return maps.sub_(low).div_(high[:, None, None].sub(low).add_(1e-7))


def upsample_tensor(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`upsample` as tensor operations on ``raw``'s device, over the whole batch (N, h, w) → float32
    (N, H, W): ReLU, min-max, bilinear resize with half-pixel centres (``align_corners=False``, what OpenCV's
    ``INTER_LINEAR`` does), min-max again. Equal to :func:`upsample` to 1e-5 (tested; ~3e-7 typically)."""
    maps = _unit_range(raw.float().clamp(min=0))
    if tuple(maps.shape[-2:]) != tuple(size) and len(maps):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return _unit_range(maps) if len(maps) else maps.new_zeros((0, *size))


def upsample(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Raw maps (N, h, w) → float32 (N, H, W) in [0, 1]: exactly pytorch-grad-cam's single-layer ``__call__``
    (``scale_cam_image`` with the input size in ``compute_cam_per_layer``, then again in
    ``aggregate_multi_layers``, which min-max scales after the bilinear resize)."""
    height, width = size
    if len(raw) == 0:
        return np.zeros((0, height, width), np.float32)
    return scale_cam_image(scale_cam_image(np.maximum(raw, 0), (width, height)))
