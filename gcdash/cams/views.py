"""Views beside the CAMs: pixel-resolution saliency maps computed on a :class:`ModelHandle` and a batch.

Each view takes ``(handle, x, layer=None, targets=None)`` and returns float32 (N, H, W) in [0, 1] at the input's
resolution (min-max per image). ``targets=None`` explains each image's
own top-1 class. Views leave the model as they found it: no parameter ``.grad`` is written (gradients come from
``torch.autograd.grad`` with respect to the input), train/eval flags are restored, no module is replaced and no
hook is left behind. Registered in :data:`VIEWS` (``names()``, ``get(name)``, :func:`compute`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLU
from torch import nn

from gcdash.cams import compute as compute_cams
from gcdash.cams import explain, upsample
from gcdash.cams.taps import Targets, as_targets
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle, eval_mode
from gcdash.registry import Registry

ViewFn = Callable[..., np.ndarray]


def _guided_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    # The ReLU's result is replaced by the same values from pytorch-grad-cam's GuidedBackpropReLU, whose backward
    # lets a gradient through only where both the input and the incoming gradient are positive. Works for
    # in-place ReLUs too: their "input" already holds ReLU(z), which is positive exactly where z is.
    return GuidedBackpropReLU.apply(inputs[0])


@contextlib.contextmanager
def guided_relus(net: nn.Module) -> Iterator[None]:
    """Guided backpropagation through every ``nn.ReLU`` of ``net`` while the context is open, by forward hooks
    (removed on exit). Unlike ``GuidedBackpropReLUModel``, which swaps the modules of the model it is given for
    new ones (dropping ``inplace`` and breaking any reference to them), the model's structure is never touched.
    ``F.relu`` calls inside ``forward`` are not modules and stay ordinary ReLUs, as with the library."""
    handles = [m.register_forward_hook(_guided_hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def class_gradient(
    handle: ModelHandle, x: torch.Tensor, targets: Targets = None, guided: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂S_c/∂x (N, C, H, W), c (N,))`` on the handle's device, S_c the pre-softmax score; with ``guided``,
    backpropagated through guided ReLUs (Springenberg et al., ICLR-W 2015)."""
    net = handle.net
    with handle.lock, eval_mode(net), torch.enable_grad():
        xg = x.to(handle.device).detach().requires_grad_(True)
        with guided_relus(net) if guided else contextlib.nullcontext():
            logits = net(xg)
            chosen = as_targets(targets, logits)
            (grad,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), xg)
    return grad.detach(), chosen.detach()


def unit_range(maps: np.ndarray) -> np.ndarray:
    """Min-max each map (N, H, W) to exactly [0, 1]; a constant map becomes 0. Unlike ``scale_cam_image``'s
    ``1e-7`` guard, this does not shrink maps of small magnitude (input gradients are often ~1e-3)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0).astype(np.float32)


def _to_map(per_pixel: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) → max over channels of |·| → min-max per image → float32 (N, H, W) in [0, 1]."""
    return unit_range(per_pixel.abs().amax(dim=1).float().cpu().numpy())


def one_layer(handle: ModelHandle, layer: str | None) -> str:
    """The one layer a layer-based view draws: ``layer``, or the handle's default when ``None``."""
    names_ = handle.resolve_layers(layer)
    if len(names_) != 1:
        raise GcdashError(f"this view draws one layer; choose one of: {', '.join(handle.layers)}")
    return names_[0]


def input_gradient(
    handle: ModelHandle, x: torch.Tensor, layer: str | None = None, targets: Targets = None
) -> np.ndarray:
    """Class gradient visualisation: ``max_channels |∂S_c/∂x|``, min-max per image (``layer`` is unused)."""
    grad, _ = class_gradient(handle, x, targets)
    return _to_map(grad)


def guided_backprop(
    handle: ModelHandle, x: torch.Tensor, layer: str | None = None, targets: Targets = None
) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015): ``max_channels |guided ∂S_c/∂x|``, min-max per image."""
    grad, _ = class_gradient(handle, x, targets, guided=True)
    return _to_map(grad)


def guided_gradcam(
    handle: ModelHandle, x: torch.Tensor, layer: str | None = None, targets: Targets = None
) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): Grad-CAM at ``layer`` (default: the handle's), upsampled to
    the input, times guided backprop for the same class; ``max_channels |·|``, min-max per image."""
    name = one_layer(handle, layer)
    cam = explain(handle, x, [name], "gradcam", targets)
    heat = upsample(cam.maps[name], (x.shape[-2], x.shape[-1]))
    grad, _ = class_gradient(handle, x, cam.targets, guided=True)
    return _to_map(grad * torch.from_numpy(heat).to(grad)[:, None])


def counterfactual_gradcam(
    handle: ModelHandle, x: torch.Tensor, layer: str | None = None, targets: Targets = None
) -> np.ndarray:
    """Counterfactual Grad-CAM at ``layer`` (the registered CAM method ``gradcam-cf``): ``ReLU(Σ_k mean(−g_k)A_k)``."""
    name = one_layer(handle, layer)
    return compute_cams(handle, x, [name], "gradcam-cf", targets)[name]


@dataclass(frozen=True)
class View:
    """A named view: ``fn(handle, x, layer=None, targets=None)`` → float32 (N, H, W) in [0, 1]."""

    name: str
    label: str
    fn: ViewFn
    uses_layer: bool
    cost: str


VIEWS: Registry[View] = Registry("view")
for _view in (
    View("gradient", "Class gradient |∂S_c/∂x|", input_gradient, False, "one forward + backward pass"),
    View("guided-backprop", "Guided backprop", guided_backprop, False, "one forward + backward pass"),
    View("guided-gradcam", "Guided Grad-CAM", guided_gradcam, True, "two forward + backward passes"),
    View("gradcam-cf", "Counterfactual Grad-CAM", counterfactual_gradcam, True, "one forward + backward pass"),
):
    VIEWS.add(_view.name, _view)


def names() -> list[str]:
    """Registered view names."""
    return VIEWS.names()


def compute(
    handle: ModelHandle, x: torch.Tensor, view: str = "gradient", layer: str | None = None, targets: Targets = None
) -> np.ndarray:
    """The view ``view`` of ``x``: float32 (N, H, W) in [0, 1] at the input resolution."""
    return VIEWS.get(view).fn(handle, x, layer, targets)
