"""Integrated Grad-CAM (Sattarzadeh et al., ICASSP 2021): Grad-CAM's gradient terms integrated along the straight
path from a black image to the input.

:class:`IntegratedGradCAM` is the pytorch-grad-cam ``BaseCAM`` subclass (usable on its own);
:class:`IntegratedGradCam` is the engine entry, which shares each path point's pass between all layers and stacks
the path points of the whole batch into passes of ``batch_size`` rows. Both sum :func:`step_cam` terms.

Choices (docs/method.md §2): the path points are ``x_j = (j/m)·x``, j = 1..m, so the last one is ``x`` itself (its pass
is the clean pass that also fixes the class explained), and ReLU is applied once, to the sum (the paper's
equation); with m = 1 it is exactly Grad-CAM. The authors' notebook (github.com/smstrzd/IntegratedGradCAM) differs
twice: path points j = 0..m−1 (the baseline in, ``x`` itself out) and a ReLU on each step's term before the sum.
The first difference vanishes as m grows; the second does not (a sum of ReLUs is not the ReLU of the sum), so the
two are different maps at any m. ``authors=True`` gives the authors' variant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from gcdash.cams.base import CamMethod, CamPass, recordings_kept, target_classes
from gcdash.cams.taps import Targets, tap
from gcdash.errors import GcdashError


def step_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """One path point's Grad-CAM term before ReLU: ``Σ_k A_k · mean_ij g_k`` → (N, h, w)."""
    return (gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1)


def path_cams(
    net: nn.Module,
    x: torch.Tensor,
    modules: Mapping[str, nn.Module],
    targets: torch.Tensor,
    steps: int,
    points: Sequence[int],
    batch_size: int,
    relu_each: bool = False,
) -> dict[str, torch.Tensor]:
    """Per layer, ``Σ_{j ∈ points} step_cam`` at ``x_j = (j/steps)·x`` (N, h, w), class ``targets[i]`` for every
    point of image i (``relu_each``: each term's ReLU, the authors' variant). Rows are image-major, ``batch_size``
    per pass; no points → an empty dict."""
    order = [(i, j) for i in range(len(x)) for j in points]
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        owners = torch.tensor([i for i, _ in chunk], device=x.device)
        batch = torch.stack([x[i] * (j / steps) for i, j in chunk])
        recorded = tap(net, batch, modules, targets[owners], gradients=True)
        for name in modules:
            term = step_cam(recorded.activations[name], recorded.gradients[name])
            term = term.clamp(min=0) if relu_each else term
            sums.setdefault(name, term.new_zeros((len(x), *term.shape[1:]))).index_add_(0, owners, term)
    return sums


def check_steps(steps: int) -> None:
    if int(steps) != steps or steps < 1:
        raise GcdashError(f"intgradcam needs steps ≥ 1 (a whole number), got {steps}")


class IntegratedGradCAM(BaseCAM):
    """Integrated Grad-CAM (Sattarzadeh, Sudhakar, Plataniotis, Jang, Jeong & Kim, ICASSP 2021), as a
    pytorch-grad-cam method: ``IntegratedGradCAM(model, [layer], steps=50)(x, targets)``.

    ``x_j = (j/m)·x`` (black baseline), j = 1..m: ``L = ReLU(Σ_j Σ_k A_k(x_j) · mean_ij ∂S_c/∂A_k(x_j))``, c the
    clean input's class. m = 1 is Grad-CAM. ``authors=True``: j = 0..m−1 and
    ``L = Σ_j ReLU(Σ_k A_k(x_j) · mean_ij ∂S_c/∂A_k(x_j))`` (the authors' code). ``eigen_smooth`` is not supported."""

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        steps: int = 50,
        batch_size: int = 32,
        authors: bool = False,
    ):
        super().__init__(model, list(target_layers))
        check_steps(steps)
        self.steps, self.batch_size, self.authors = int(steps), batch_size, bool(authors)

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list,
        activations: np.ndarray,
        grads: np.ndarray,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """The clean pass (the library's, point j = m) plus the points j = 1..m−1 (before ReLU); or, for the authors'
        variant, the points j = 0..m−1 with a ReLU each."""
        if eigen_smooth:
            raise ValueError("IntegratedGradCAM does not support eigen_smooth")
        clean = step_cam(torch.from_numpy(activations), torch.from_numpy(grads))
        classes = target_classes(targets, input_tensor.device)
        with recordings_kept(self):
            points = _points(self.steps, self.authors)
            layer = {"layer": target_layer}
            rest = path_cams(
                self.model, input_tensor, layer, classes, self.steps, points, self.batch_size, relu_each=self.authors
            )
        return _combine(clean, rest.get("layer"), self.authors).cpu().numpy()


class IntegratedGradCam(CamMethod):
    """Integrated Grad-CAM (Sattarzadeh et al., ICASSP 2021) for the engine: ``steps`` forward + backward passes
    per image (the last path point is the input itself), shared by all layers. See :class:`IntegratedGradCAM`."""

    name, label, paper = "intgradcam", "Integrated Grad-CAM", "Sattarzadeh et al., ICASSP 2021"
    cost = "`steps` forward + backward passes per image for all layers (the last one is the clean pass; batched)"
    defaults: ClassVar[dict[str, Any]] = {"steps": 50, "authors": False}

    def passes(self, params: dict[str, Any]) -> int:
        return int(params["steps"]) + bool(params.get("authors", False))

    def raw_maps(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], targets: Targets = None, **params: Any
    ) -> CamPass:
        steps, authors = params["steps"], bool(params.get("authors", False))
        check_steps(steps)
        clean = tap(net, x, modules, targets, gradients=True)
        points = _points(int(steps), authors)
        rest = path_cams(net, x, modules, clean.targets, int(steps), points, self.batch_size, relu_each=authors)
        maps = {}
        for name in modules:
            term = step_cam(clean.activations[name], clean.gradients[name])
            maps[name] = _combine(term, rest.get(name), authors).float().cpu().numpy()
        return CamPass(clean.logits.cpu(), clean.targets.cpu(), maps)


def _points(steps: int, authors: bool) -> range:
    """The path points besides the clean pass: j = 1..m−1 (ours: j = m is the clean pass), or j = 0..m−1."""
    return range(0, steps) if authors else range(1, steps)


def _combine(clean: torch.Tensor, rest: torch.Tensor | None, authors: bool) -> torch.Tensor:
    """Ours: ``ReLU(clean + Σ rest)``; the authors': ``Σ ReLU(term)`` over their points (the clean one is not)."""
    if authors:
        return rest if rest is not None else clean.clamp(min=0) * 0
    return (clean if rest is None else clean + rest.to(clean.device)).clamp(min=0)
