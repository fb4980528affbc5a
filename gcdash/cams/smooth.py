"""Smooth Grad-CAM++ (Omeiza et al., 2019): Grad-CAM++ whose gradient terms and activations are averaged over
noisy copies of the input (docs/method.md §2).

Two faces of one computation: :class:`SmoothGradCAMPlusPlus`, a pytorch-grad-cam ``BaseCAM`` subclass usable on
its own, and :class:`SmoothGradCamPlusPlus`, the engine entry, which computes every requested layer from the same
noisy passes (stacked into batches of ``batch_size`` rows). Both use :func:`noisy_moments` and
:func:`plusplus_weights`, so they agree.

Noise is reproducible and independent of how images are batched: image i's copies come from a generator seeded
by ``(seed, SHA-256 of image i's bytes)``, drawn one copy at a time on the CPU, never from its position.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from gcdash.cams.base import CamMethod, CamPass, recordings_kept, target_classes
from gcdash.cams.taps import Targets, tap
from gcdash.errors import GcdashError
from gcdash.seeding import image_generator

Moments = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # Ā, ḡ, mean g², mean g³


def _noisy_batches(x: torch.Tensor, samples: int, sigma: float, seed: int, rows: int) -> Iterator[tuple]:
    """``(owners, batch)`` chunks of the ``len(x)·samples`` copies ``x_i + σ·ε``, image-major, ``rows`` at a time."""
    generators = [image_generator(image, seed) for image in x]
    order = [i for i in range(len(x)) for _ in range(samples)]
    for start in range(0, len(order), rows):
        owners = order[start : start + rows]
        noise = [torch.randn(x.shape[1:], generator=generators[i]) for i in owners]
        batch = torch.stack([x[i] + sigma * n.to(x.device, x.dtype) for i, n in zip(owners, noise)])
        yield torch.tensor(owners, device=x.device), batch


def noisy_moments(
    net: nn.Module,
    x: torch.Tensor,
    modules: Mapping[str, nn.Module],
    targets: torch.Tensor,
    samples: int,
    sigma: float,
    seed: int,
    batch_size: int,
) -> dict[str, Moments]:
    """Per layer, the means over ``samples`` noisy copies of ``A_k``, ``g``, ``g²``, ``g³`` (each (N, K, h, w)),
    where ``g = ∂S_c/∂A_k`` at the copy and ``c = targets[i]`` is held fixed for every copy of image i."""
    sums: dict[str, list[torch.Tensor]] = {}
    for owners, batch in _noisy_batches(x, samples, sigma, seed, batch_size):
        recorded = tap(net, batch, modules, targets[owners], gradients=True)
        for name, g in recorded.gradients.items():
            acc = sums.setdefault(name, [g.new_zeros((len(x), *g.shape[1:])) for _ in range(4)])
            g2 = g * g
            for total, term in zip(acc, (recorded.activations[name].to(g.dtype), g, g2, g2 * g)):
                total.index_add_(0, owners, term)
    return {name: tuple(total / samples for total in acc) for name, acc in sums.items()}


def smooth_map(moments: Moments) -> np.ndarray:
    """``L = ReLU(Σ_k w_k · Ā_k)`` with Grad-CAM++'s weights from ``Ā`` and the averaged gradient terms → (N, h, w)."""
    acts, g, g2, g3 = (m.float().cpu().numpy() for m in moments)
    weights = plusplus_weights(acts, g, g2, g3)
    return np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0).astype(np.float32)


def plusplus_weights(acts: np.ndarray, g: np.ndarray, g2: np.ndarray, g3: np.ndarray) -> np.ndarray:
    """Grad-CAM++ channel weights (N, K) from activations and the gradient terms, exactly as pytorch-grad-cam's
    ``GradCAMPlusPlus.get_cam_weights`` (same 1e-6 in the denominator) when ``g2 = g·g`` and ``g3 = g2·g``:
    ``α = g² / (2g² + Σ_ab A(a,b)·g³)`` (0 where g = 0), ``w = Σ_ij α·ReLU(g)``."""
    sum_acts = acts.sum(axis=(2, 3), keepdims=True)
    alpha = g2 / (2 * g2 + sum_acts * g3 + 0.000001)
    alpha = np.where(g != 0, alpha, 0)
    return (np.maximum(g, 0) * alpha).sum(axis=(2, 3))


def check_smooth_params(samples: int, sigma: float) -> None:
    if int(samples) != samples or samples < 1:
        raise GcdashError(f"smoothgradcampp needs samples ≥ 1 (a whole number), got {samples}")
    if not 0 <= sigma < float("inf"):
        raise GcdashError(f"smoothgradcampp needs a finite sigma ≥ 0, got {sigma}")


class SmoothGradCAMPlusPlus(BaseCAM):
    """Smooth Grad-CAM++ (Omeiza, Speakman, Cintas & Weldemariam, arXiv:1908.01224, 2019), as a pytorch-grad-cam
    method: ``SmoothGradCAMPlusPlus(model, [layer])(x, targets)``.

    With ``x_s = x + N(0, σ²)``, s = 1..n, ``Ā_k = mean_s A_k(x_s)`` and ``ḡ^p = mean_s (∂S_c/∂A_k(x_s))^p`` for
    p = 1, 2, 3: ``α = ḡ² / (2ḡ² + Σ_ab Ā_k(a,b)·ḡ³)``, ``w_k = Σ_ij α·ReLU(ḡ)``, ``L = ReLU(Σ_k w_k Ā_k)``; c is
    the clean input's class. σ = 0 gives Grad-CAM++. (With the clean activations instead of Ā, the method equals
    Grad-CAM++ at any layer followed by global average pooling and a linear head, whose gradient does not depend on
    the input.) ``sigma`` is in pixel units on [0, 1] inputs, so it is the fraction of the input range: the default
    0.15 is within SmoothGrad's recommended 10–20% (Smilkov et al. 2017)."""

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        samples: int = 25,
        sigma: float = 0.15,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(model, list(target_layers))
        check_smooth_params(samples, sigma)
        self.samples, self.sigma, self.seed, self.batch_size = samples, sigma, seed, batch_size

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list,
        activations: np.ndarray,
        grads: np.ndarray,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """The map from the averaged activations and gradient terms (the library's clean pass only fixes c)."""
        classes = target_classes(targets, input_tensor.device)
        with recordings_kept(self):
            moments = noisy_moments(self.model, input_tensor, {"layer": target_layer}, classes, *self.settings)["layer"]
        return smooth_map(moments)

    @property
    def settings(self) -> tuple[int, float, int, int]:
        return self.samples, self.sigma, self.seed, self.batch_size


class SmoothGradCamPlusPlus(CamMethod):
    """Smooth Grad-CAM++ (Omeiza et al., arXiv 2019) for the engine: one clean forward pass (the logits and the class
    explained) plus ``samples`` noisy forward + backward passes per image, shared by all layers.
    See :class:`SmoothGradCAMPlusPlus` for the formula."""

    name, label, paper = "smoothgradcampp", "Smooth Grad-CAM++", "Omeiza et al., arXiv:1908.01224, 2019"
    cost = "one forward pass, then `samples` forward + backward passes per image for all layers (batched)"
    defaults: ClassVar[dict[str, Any]] = {"samples": 25, "sigma": 0.15, "seed": 0}

    def passes(self, params: dict[str, Any]) -> int:
        return 1 + int(params["samples"])

    def raw_maps(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], targets: Targets = None, **params: Any
    ) -> CamPass:
        samples, sigma, seed = params["samples"], float(params["sigma"]), int(params["seed"])
        check_smooth_params(samples, sigma)
        clean = tap(net, x, modules, targets, gradients=False)
        moments = noisy_moments(net, x, modules, clean.targets, int(samples), sigma, seed, self.batch_size)
        maps = {}
        for name in modules:
            acts = clean.activations[name].float()
            maps[name] = smooth_map(moments[name] if name in moments else (acts, acts * 0, acts * 0, acts * 0))
        return CamPass(clean.logits.cpu(), clean.targets.cpu(), maps)
