"""The methods pytorch-grad-cam provides, registered under gcdash's names. Each entry only names the library
class; the maths (``get_cam_weights`` / ``get_cam_image``) is the library's. Counterfactual Grad-CAM, which the
library lacks, is a three-line subclass of its ``GradCAM``."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytorch_grad_cam.score_cam
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from gcdash.cams.base import LibraryCam
from gcdash.cams.taps import Tap


class GradCam(LibraryCam):
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``w_k = mean_ij ∂S_c/∂A_k(i,j)``, ``L = ReLU(Σ_k w_k A_k)``."""

    name, label, paper = "gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017"
    cam_class = GradCAM

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        return torch.einsum("nk,nkhw->nhw", grads.mean(dim=(2, 3)), acts)


class CounterfactualGradCAM(GradCAM):
    """Counterfactual Grad-CAM (Selvaraju et al., ICCV 2017): Grad-CAM with the gradient negated,
    ``w_k = mean_ij (−∂S_c/∂A_k(i,j))``: the regions whose removal would raise the class score."""

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        target_category: list,
        activations: np.ndarray,
        grads: np.ndarray,
    ) -> np.ndarray:
        return -super().get_cam_weights(input_tensor, target_layer, target_category, activations, grads)


class GradCamCounterfactual(LibraryCam):
    """Counterfactual Grad-CAM (Selvaraju et al., ICCV 2017): ``L = ReLU(Σ_k mean_ij(−g_k)·A_k)``."""

    name, label, paper = "gradcam-cf", "Counterfactual Grad-CAM", "Selvaraju et al., ICCV 2017"
    cam_class = CounterfactualGradCAM

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        return torch.einsum("nk,nkhw->nhw", -grads.mean(dim=(2, 3)), acts)


class GradCamPlusPlus(LibraryCam):
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018): ``α = g² / (2g² + Σ_ab A·g³)`` (0 where g = 0),
    ``w_k = Σ_ij α_k(i,j)·ReLU(g_k(i,j))`` with ``g = ∂S_c/∂A_k``."""

    name, label, paper = "gradcampp", "Grad-CAM++", "Chattopadhyay et al., WACV 2018"
    cam_class = GradCAMPlusPlus

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        g2 = grads.square()
        total = acts.sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(grads != 0, g2 / (2 * g2 + total * g2 * grads + 1e-6), 0.0)  # the library's eps
        return torch.einsum("nk,nkhw->nhw", (grads.clamp(min=0) * alpha).sum(dim=(2, 3)), acts)


class XGradCam(LibraryCam):
    """XGrad-CAM (Fu et al., BMVC 2020): ``w_k = Σ_ij (A_k(i,j) / Σ_ab A_k(a,b))·g_k(i,j)``."""

    name, label, paper = "xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020"
    cam_class = XGradCAM

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        weights = (grads * acts / (acts.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3))  # the library's eps
        return torch.einsum("nk,nkhw->nhw", weights, acts)


class HiResCam(LibraryCam):
    """HiResCAM (Draelos & Carin 2020): ``L = ReLU(Σ_k g_k ⊙ A_k)`` (element-wise, no spatial averaging)."""

    name, label, paper = "hirescam", "HiResCAM", "Draelos & Carin, arXiv 2020"
    cam_class = HiResCAM

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        return (grads * acts).sum(dim=1)


class LayerCam(LibraryCam):
    """LayerCAM (Jiang et al., TIP 2021): ``L = ReLU(Σ_k ReLU(g_k) ⊙ A_k)``."""

    name, label, paper = "layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021"
    cam_class = LayerCAM

    def device_image(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        return (grads.clamp(min=0) * acts).sum(dim=1)


def first_component(activations: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``get_2d_projection`` (per image: NaN → 0, the (h·w, K) matrix centred per channel,
    projected on its first right singular vector) with ``full_matrices=False``: the library's full SVD also builds
    the (h·w)² matrix U, ~10 GB per image at VGG16's first block, for the same first component (equal maps)."""
    out = []
    for acts in np.where(np.isnan(activations), 0, activations):
        flat = acts.reshape(acts.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        vt = np.linalg.svd(flat, full_matrices=False)[2]
        out.append((flat @ vt[0]).reshape(acts.shape[1:]))
    return np.float32(out)


class EigenCam(LibraryCam):
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): projection of the activations on their first principal
    component. Class-agnostic, gradient-free (one forward pass). The projection is :func:`first_component`."""

    name, label, paper = "eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020"
    cam_class = EigenCAM
    uses_gradients = False
    cost = "one forward pass for all layers (no gradients; class-agnostic)"

    def maps_from_tap(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], recorded: Tap
    ) -> dict[str, np.ndarray]:
        return {
            name: np.maximum(first_component(recorded.activations[name].float().cpu().numpy()), 0).astype(np.float32)
            for name in modules
        }


@contextlib.contextmanager
def _quiet_score_cam() -> Iterator[None]:
    """pytorch-grad-cam's ScoreCAM draws a tqdm bar per image on stderr; the CLI and the dashboard show their own
    progress, so the library's module sees a ``tqdm`` that only passes the iterable through meanwhile."""
    module = pytorch_grad_cam.score_cam
    original = module.tqdm
    module.tqdm = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    try:
        yield
    finally:
        module.tqdm = original


class ScoreCam(LibraryCam):
    """Score-CAM (Wang et al., CVPRW 2020): ``w_k = softmax_k S_c(x ⊙ norm(up(A_k)))``. Gradient-free, but it
    runs the model once per channel of every layer for every image (inherent to the method): slow on wide layers
    (512 extra forward passes per image for VGG16's last block). They run ``batch_size`` channels per pass."""

    name, label, paper = "scorecam", "Score-CAM", "Wang et al., CVPRW 2020"
    cam_class = ScoreCAM
    uses_gradients = False
    cost = (
        "one forward pass, then one forward pass per channel of each layer for every image "
        "(inherent to Score-CAM; `batch_size` channels per pass)"
    )
    batch_size = 64

    def passes(self, params: dict[str, Any]) -> None:
        return None  # one per channel of each layer: hundreds per image on a real network

    def build_cam(self, net: nn.Module) -> BaseCAM:
        cam = super().build_cam(net)
        cam.batch_size = self.batch_size  # read by ScoreCAM.get_cam_weights (its default is 16)
        return cam

    def maps_from_tap(
        self, net: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module], recorded: Tap
    ) -> dict[str, np.ndarray]:
        with _quiet_score_cam():
            return super().maps_from_tap(net, x, modules, recorded)


LIBRARY_METHODS: tuple[type[LibraryCam], ...] = (
    GradCam,
    GradCamCounterfactual,
    GradCamPlusPlus,
    XGradCam,
    HiResCam,
    LayerCam,
    EigenCam,
    ScoreCam,
)
