"""Model handles: a pixel-space network plus everything the engine needs to know about it."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from gcdash import precision as precisions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = np.ndarray | Image.Image


class PixelSpaceNet(nn.Module):
    """``backbone((x - mean) / std)``: takes RGB float [0, 1] NCHW, so attacks and clipping live in pixel space."""

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Run ``net`` in eval mode and restore every submodule's ``training`` flag afterwards (also those the body
    changed)."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for module, training in modes:
            module.training = training


def weights_digest(net: nn.Module) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): the content key of a model's weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:32]


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Any PIL image or array (H, W[, C]) → uint8 RGB (H, W, 3)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 RGB, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image arrays must be (H, W, 3), got {arr.shape}")
    return arr[..., :3]


def resize_and_crop(image: np.ndarray, size: tuple[int, int], crop: bool = True) -> np.ndarray:
    """Resize the short side to the target and centre-crop (``crop=True``, torchvision's eval transform), or
    resize straight to ``size`` (``crop=False``, for pre-aligned face crops). Identity when already that size."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    pil = Image.fromarray(image)
    if not crop:
        return np.asarray(pil.resize((w, h), Image.BILINEAR))
    scale = max(h / pil.height, w / pil.width)
    new_w, new_h = max(w, round(pil.width * scale)), max(h, round(pil.height * scale))
    pil = pil.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return np.asarray(pil.crop((left, top, left + w, top + h)))


@dataclass(eq=False)
class ModelHandle:
    """A loaded model as the engine sees it.

    ``net`` is an eval-mode module on RGB float [0, 1] NCHW (normalisation inside); ``layers`` is an ordered
    name → module catalog, shallow → deep (the order the forward pass reaches them); ``lock`` serialises model
    passes, because CAM hooks and backward calls on one shared module must not interleave between threads.
    ``precision`` is the arithmetic of its passes (:mod:`gcdash.precision`); ``digest`` names weights and precision.
    """

    name: str
    net: nn.Module
    input_size: tuple[int, int]
    class_names: list[str]
    layers: dict[str, nn.Module]
    default_layer: str
    crop: bool = True
    family: str = ""
    digest: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    precision: str = precisions.FP32
    weights: str = field(default="", repr=False)  # the float32 model's digest (``digest`` at fp32)

    def __post_init__(self) -> None:
        if self.default_layer not in self.layers:
            raise ValueError(f"default layer {self.default_layer!r} is not in the layer catalog")
        self.net.eval()
        if not self.digest:
            self.weights = weights_digest(precisions.unwrapped(self.net))
            self.digest = precisions.digest(self.weights, self.precision)
        elif self.precision == precisions.FP32:
            self.weights = self.digest

    @property
    def owner(self) -> str:
        """Who cached entries belong to, as a person reads it: the name (and precision, if not fp32) and the start
        of the digest."""
        shown = self.name if self.precision == precisions.FP32 else f"{self.name} {self.precision}"
        return f"{shown} {self.digest[:12]}"

    def at_precision(self, name: str) -> ModelHandle:
        """This model with its passes at precision ``name`` (:mod:`gcdash.precision`): itself at its own precision;
        else a view sharing the network, catalog and lock, whose digest (and so every cache key) is its own. A
        precision the model's device cannot run is refused in one line."""
        if name == self.precision:
            return self
        chosen = precisions.get(name)
        chosen.check(self.device, f"model {self.name}")
        base = precisions.unwrapped(self.net)
        net = base if chosen.dtype is None else precisions.AutocastNet(base, chosen)
        digest = precisions.digest(self.weights, name)
        return replace(self, net=net, precision=name, digest=digest, weights=self.weights, lock=self.lock)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> ModelHandle:
        self.net.to(device)
        return self

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images (PIL or uint8 arrays of any size) → float [0, 1] (N, 3, H, W) at ``input_size`` on CPU."""
        arrays = [resize_and_crop(to_rgb_array(im), self.input_size, self.crop) for im in images]
        batch = np.stack(arrays).astype(np.float32) / 255.0
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def preprocess_masks(self, masks: Sequence[np.ndarray]) -> torch.Tensor:
        """Object masks (bool, aligned with the images) → bool (N, H, W) at ``input_size``, resized and cropped as
        :meth:`preprocess` does the images (bilinear on 0/255, then ≥ 128)."""
        arrays = [resize_and_crop(np.asarray(m, dtype=bool).astype(np.uint8) * 255, self.input_size, self.crop)
                  for m in masks]  # fmt: skip
        return torch.from_numpy(np.stack(arrays) >= 128)

    def resolve_layers(self, layers: str | Sequence[str] | None) -> list[str]:
        """``None``/"default" → the default layer; "all" → the catalog; names → checked, in catalog order. A name
        not in the catalog may be any module of the network by its dotted name (``stages.2.blocks.1``): it joins the
        catalog where the forward pass reaches it."""
        from gcdash.errors import GcdashError

        if layers is None or layers == "default":
            return [self.default_layer]
        if layers == "all":
            return list(self.layers)
        names = [layers] if isinstance(layers, str) else list(layers)
        modules = dict(self.backbone.named_modules())
        unknown = [n for n in names if n not in self.layers and (not n or n not in modules)]
        if unknown:
            raise GcdashError(
                f"unknown layer {unknown[0]!r} for model {self.name}; choose from: {', '.join(self.layers)} "
                "(or any module by its dotted name)"
            )
        added = {n: modules[n] for n in names if n not in self.layers}
        if added:
            self.layers = forward_order({**self.layers, **added}, self.net, self.input_size)
        order = {n: i for i, n in enumerate(self.layers)}
        return sorted(dict.fromkeys(names), key=order.__getitem__)

    @property
    def backbone(self) -> nn.Module:
        """The network inside the pixel-space wrapper, whose module names the libraries and checkpoints use."""
        return getattr(self.net, "backbone", self.net)


def forward_order(layers: dict[str, nn.Module], net: nn.Module, size: tuple[int, int]) -> dict[str, nn.Module]:
    """``layers`` sorted by when one forward pass of a blank image finishes each (a module that never runs last)."""
    finished: dict[str, int] = {}

    def done(name: str):
        def hook(*_: object) -> None:  # returns None: a hook's return value would replace the output
            finished.setdefault(name, len(finished))

        return hook

    hooks = [module.register_forward_hook(done(name)) for name, module in layers.items()]
    try:
        with torch.no_grad(), eval_mode(net):
            net(torch.zeros(1, 3, *size, device=next(net.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return dict(sorted(layers.items(), key=lambda item: finished.get(item[0], len(layers))))
