"""Attacks on the explanation itself: keep the prediction, move the map (Ghorbani, Abid & Zou, "Interpretation of
neural networks is fragile", AAAI 2019), through a β-softplus surrogate of the ReLU network so that the map has a
second-order gradient (Dombrowski et al., "Explanations can be manipulated and geometry is to blame", NeurIPS 2019).

The map attacked is Grad-CAM's (Selvaraju et al., ICCV 2017) of the clean top-1 class ``c`` at one layer ``L``:
``m(x) = ReLU(Σ_k w_k A_k)``, ``w_k = mean_ij ∂S_c/∂A_k,ij``, resized bilinearly to the input and read as a
distribution ``m̂ = m / Σ m``. Two dissimilarities are ascended (both 0 at the clean image):

- ``expl-topk``: ``D = 1 − Σ_{p ∈ T} m̂(x')_p``, ``T`` the clean map's top-k pixels: the mass taken off the region
  the clean map points at (Ghorbani et al.'s top-k attack);
- ``expl-mass``: ``D = ‖C(m̂(x')) − C(m̂(x))‖₂ / diag``, ``C`` the centre of mass in pixels, ``diag`` the image's
  diagonal (Ghorbani et al.'s centre attack, scaled to [0, 1]).

Each step ``x ← clip(Π_eps(x + α·sign(∇x D_β(x))), 0, 1)`` takes ``∇x D_β`` on the network with every ReLU replaced
by ``softplus_β(z) = log(1 + e^{βz}) / β`` (β grows geometrically, ``β_i = beta·(beta_end/beta)^(i/steps)`` at step
i = 0..steps−1, as in Dombrowski et al.'s code; the map's own ReLU stays a ReLU); then the real network (ReLU)
explains the new point: a step that changes the top-1 is rejected (the image goes back to its last point and its
step halves), and each image keeps the point whose real map is farthest (highest real ``D``, a map that is not all
zero). So the crafting network's top-1 is kept by construction (a transfer source keeps its own), and the maps the
engine scores are the real model's, under the sweep's CAM method and target. The attack moves the map of the clean
top-1: with ``--target label`` an image the model misclassifies is scored on a map of a class it did not attack.

The attack is crafted at float32 on the unwrapped network, whatever the sweep's precision.
"""

from __future__ import annotations

import contextlib
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gcdash import precision as precisions
from gcdash.attacks.base import IterativeAttack, require_counts, require_step_size
from gcdash.errors import GcdashError
from gcdash.models.grids import feature_map
from gcdash.models.handle import ModelHandle, eval_mode

DEFAULT_LAYER = "default"  # the attacked model's default CAM layer (:meth:`ExplanationAttack.bind`)
_RELUS = (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_)


class SoftplusReLU(TorchFunctionMode):
    """Every ReLU call inside (``nn.ReLU`` modules, in place or not, ``F.relu``, ``torch.relu``, ``Tensor.relu``)
    computes ``softplus_β`` instead: the β-smoothed network of Dombrowski et al. (NeurIPS 2019), whose second
    derivatives are not zero almost everywhere. ``softplus_β → ReLU`` as ``β → ∞``."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)

    def __torch_function__(
        self, func: Callable[..., Any], types: Sequence[type], args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        if func in _RELUS:
            return F.softplus(args[0], beta=self.beta)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def smooth_relu(beta: float | None) -> Iterator[None]:
    """Inside, the network's ReLUs are ``softplus_β`` (None: left as they are)."""
    if beta is None:
        yield
        return
    with SoftplusReLU(beta):
        yield


def grad_cam(
    net: nn.Module, x: torch.Tensor, name: str, module: nn.Module, classes: torch.Tensor | None, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``classes`` (None: each input's top-1) at layer ``name`` → (maps (N, h, w), logits (N, K)), as
    a differentiable function of ``x`` when ``create_graph`` (the second-order path the attack ascends)."""
    found: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: found.setdefault(name, out))
    try:
        logits = net(x)
    finally:
        handle.remove()
    if name not in found:
        raise GcdashError(f"layer {name!r} never ran in the forward pass")
    classes = logits.argmax(dim=1) if classes is None else classes
    score = logits.gather(1, classes[:, None]).sum()
    (grad,) = torch.autograd.grad(score, found[name], create_graph=create_graph)
    size = (x.shape[-2], x.shape[-1])
    acts, grads = feature_map(name, found[name], net, size), feature_map(name, grad, net, size)
    from gcdash.cams.library import GradCam  # here: the CAM library loads with the first attack, not with the CLI

    image = GradCam().device_image(acts.float(), grads.float())  # the engine's Grad-CAM, differentiable
    return image.clamp(min=0), logits  # the map's own ReLU, never smoothed


def _distribution(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (N, h, w) ≥ 0 → resized to ``size`` (bilinear, half-pixel centres) and divided by their sum."""
    big = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].clamp(min=0)
    return big / big.flatten(1).sum(dim=1).clamp(min=1e-12)[:, None, None]


def centre(dist: torch.Tensor) -> torch.Tensor:
    """Centre of mass (N, 2) in pixels (row, column) of distributions (N, H, W)."""
    rows = torch.arange(dist.shape[-2], dtype=dist.dtype, device=dist.device)
    cols = torch.arange(dist.shape[-1], dtype=dist.dtype, device=dist.device)
    return torch.stack([(dist.sum(dim=2) * rows).sum(dim=1), (dist.sum(dim=1) * cols).sum(dim=1)], dim=1)


class ExplanationAttack(IterativeAttack):
    """PGD in L∞ on a dissimilarity ``D`` of the map (see the module docstring) that keeps the clean top-1.
    ``(2·steps + 1)`` model passes per image and eps: the real network's clean map, then per step one smoothed pass
    (its gradient is second order) and one real pass that checks the prediction and scores the point."""

    paper = "Ghorbani et al., AAAI 2019; β-softplus: Dombrowski et al., NeurIPS 2019"
    on_explanation = True
    defaults: ClassVar[dict[str, Any]] = {
        "layer": DEFAULT_LAYER, "steps": 10, "step_size": 0.0, "beta": 10.0, "beta_end": 100.0,
    }  # fmt: skip
    shown_defaults: ClassVar[dict[str, str]] = {"step_size": "0 (= 2.5·eps/steps)"}
    hints: ClassVar[dict[str, str]] = {
        "layer": "the layer whose Grad-CAM map is attacked ('default': the model's default layer)",
        "steps": "gradient steps per image and eps (each: one smoothed pass, one real pass)",
        "step_size": "α in [0, 1] pixel units; 0 = 2.5·eps/steps (Madry et al.)",
        "beta": "β of softplus_β replacing ReLU at the first step (Dombrowski et al.)",
        "beta_end": "β grows geometrically towards it: β_i = beta·(beta_end/beta)^(i/steps); = beta keeps β fixed",
    }

    def check(self, params: dict[str, Any]) -> None:
        require_counts(self.name, params, "steps")
        require_step_size(self.name, params)
        for name in ("beta", "beta_end"):
            if not 0 < float(params[name]) < math.inf:
                raise GcdashError(f"{self.name} {name} must be a positive number, got {params[name]}")
        layer = str(params["layer"]).strip()
        if not layer or layer == "all" or "," in layer:
            raise GcdashError(
                f"{self.name} attacks the map at one layer: name one ('default': the model's), not {layer!r}"
            )

    def bind(self, handle: ModelHandle, params: dict[str, Any]) -> dict[str, Any]:
        """``layer='default'`` → the model's default layer; any other name is checked against its network."""
        (layer,) = handle.resolve_layers(None if params["layer"] == DEFAULT_LAYER else str(params["layer"]))
        chosen, net = handle.layers[layer], precisions.unwrapped(handle.net)
        if dict(_modules(net)).get(layer) is not chosen:  # a catalog name that is not the module's dotted name
            layer = next((n for n, m in _modules(net) if m is chosen), layer)
        _module(net, layer, handle.name)
        return {**params, "layer": layer}

    def passes(self, n_eps: int, params: dict[str, Any]) -> int:
        return (2 * int(params["steps"]) + 1) * n_eps

    def cost(self, params: dict[str, Any] | None = None) -> str:
        params = self.params(**(params or {}))
        return f"{self.passes(1, params)} passes per image and eps ({params['steps']} of them second-order)"

    @abstractmethod
    def dissimilarity(self, dist: torch.Tensor, clean: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """``D`` (N,) of distributions ``dist`` from the clean ones ``clean`` (both (N, H, W)) ≥ 0, 0 at ``clean``."""

    def run(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **params: Any) -> torch.Tensor:
        net, layer = precisions.unwrapped(net), str(params["layer"])
        if layer == DEFAULT_LAYER:  # a bare network (the engine binds the model's default layer first)
            layer = deepest_feature_layer(net, x[:1])
        module, size, steps = _module(net, layer), (x.shape[-2], x.shape[-1]), int(params["steps"])
        lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
        with eval_mode(net), torch.enable_grad():
            maps, logits = _real(net, x, layer, module, None)
            keep, clean = logits.argmax(dim=1), _distribution(maps, size)
            walk = Walk(x, float(params["step_size"]) or 2.5 * eps / steps)
            for i in range(steps):
                beta = float(params["beta"]) * (float(params["beta_end"]) / float(params["beta"])) ** (i / steps)
                grad = self._smoothed_gradient(net, walk.point, layer, module, keep, clean, beta, params)
                _require_finite(grad, self.name, beta)
                moved = torch.minimum(torch.maximum(walk.point + walk.step * grad.sign(), lo), hi)
                maps, logits = _real(net, moved, layer, module, keep)
                d = self.dissimilarity(_distribution(maps, size), clean, params)
                d = torch.where(maps.flatten(1).amax(dim=1) > 0, d, torch.zeros_like(d))  # an all-zero map: no move
                walk.take(moved, logits.argmax(dim=1) == keep, d)
        return walk.best.detach()

    def _smoothed_gradient(
        self, net: nn.Module, x: torch.Tensor, layer: str, module: nn.Module, keep: torch.Tensor,
        clean: torch.Tensor, beta: float, params: dict[str, Any],
    ) -> torch.Tensor:  # fmt: skip
        """``∇x Σ_i D_β(x_i)`` on the β-softplus network (a second-order gradient through Grad-CAM)."""
        xg = x.detach().clone().requires_grad_(True)
        with smooth_relu(beta):
            maps, _ = grad_cam(net, xg, layer, module, keep, create_graph=True)
            d = self.dissimilarity(_distribution(maps, (x.shape[-2], x.shape[-1])), clean, params)
            (grad,) = torch.autograd.grad(d.sum(), xg)
        return grad.detach()


class Walk:
    """The attack's path per image: the current point and step, and the farthest point that kept the prediction."""

    def __init__(self, x: torch.Tensor, alpha: float) -> None:
        self.point, self.best = x.clone(), x.clone()
        self.best_d = torch.zeros(len(x), device=x.device)
        self.step = torch.full((len(x), 1, 1, 1), alpha, device=x.device, dtype=x.dtype)

    def take(self, moved: torch.Tensor, kept: torch.Tensor, d: torch.Tensor) -> None:
        """Accept the images whose ``moved`` point ``kept`` the prediction; the others stay and halve their step;
        ``best`` follows the highest ``d`` among the kept points."""
        at = kept[:, None, None, None]
        self.point, self.step = torch.where(at, moved, self.point), torch.where(at, self.step, self.step / 2)
        better = kept & (d > self.best_d)
        self.best = torch.where(better[:, None, None, None], moved, self.best)
        self.best_d = torch.where(better, d, self.best_d)


def _require_finite(grad: torch.Tensor, name: str, beta: float) -> None:
    """A NaN or inf in the smoothed gradient would stall the attack silently (``sign`` keeps NaN): refused."""
    bad = int((~torch.isfinite(grad.flatten(1))).any(dim=1).sum())
    if bad:
        raise GcdashError(
            f"{name}: the β-softplus map's gradient is not finite for {bad} image(s) at β = {beta:.3g} (overflow in "
            "the surrogate network?); nothing was stored. Try a smaller beta_end"
        )


def _real(
    net: nn.Module, x: torch.Tensor, layer: str, module: nn.Module, classes: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The real (ReLU) network's Grad-CAM maps and logits at ``x``, detached."""
    maps, logits = grad_cam(net, x.detach().requires_grad_(True), layer, module, classes, create_graph=False)
    return maps.detach(), logits.detach()


def deepest_feature_layer(net: nn.Module, x: torch.Tensor) -> str:
    """The module of ``net`` but a pooling layer that last outputs a feature map larger than 1×1 in a forward pass of
    ``x``: the deepest convolutional stage, Grad-CAM's usual layer (one extra forward without gradients)."""
    finished: list[str] = []

    def record(name: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(_m: nn.Module, _i: tuple, out: object) -> None:
            pooling = "Pool" in type(_m).__name__  # a pooled copy of the last stage, not a stage of its own
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1 and not pooling:
                finished.append(name)

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in _modules(net) if n]
    try:
        with eval_mode(net), torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise GcdashError("no layer of this network outputs a feature map: name the layer to attack (layer=...)")
    return finished[-1]


def _modules(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The network's modules by the dotted names of the network inside a pixel-space wrapper (the catalog's)."""
    return getattr(net, "backbone", net).named_modules()


def _module(net: nn.Module, layer: str, model: str = "the model") -> nn.Module:
    """The module named ``layer`` (a dotted name in the network inside a pixel-space wrapper), or a GcdashError."""
    named = dict(_modules(net))
    ending = [m for n, m in named.items() if n.endswith(f".{layer}")]
    module = named.get(layer) or (ending[0] if len(ending) == 1 else None)
    if module is None or layer == "":
        raise GcdashError(f"{model} has no layer {layer!r} to attack the explanation at")
    return module


class ExplTopK(ExplanationAttack):
    """Take the map's mass off the clean map's top-k pixels (``k = share·H·W``, Ghorbani et al.'s 2%)."""

    name, label = "expl-topk", "explanation attack, top-k (prediction kept)"
    defaults: ClassVar[dict[str, Any]] = {**ExplanationAttack.defaults, "share": 0.02}
    hints: ClassVar[dict[str, str]] = {**ExplanationAttack.hints, "share": "k as a share of the image's pixels"}

    def check(self, params: dict[str, Any]) -> None:
        super().check(params)
        if not 0 < float(params["share"]) <= 1:
            raise GcdashError(f"expl-topk share must be in (0, 1], got {params['share']}")

    def dissimilarity(self, dist: torch.Tensor, clean: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        k = max(1, round(float(params["share"]) * clean.shape[-1] * clean.shape[-2]))
        top = clean.flatten(1).topk(k, dim=1).indices
        return 1.0 - dist.flatten(1).gather(1, top).sum(dim=1)


class ExplMass(ExplanationAttack):
    """Move the map's centre of mass (its shift over the image's diagonal)."""

    name, label = "expl-mass", "explanation attack, centre of mass (prediction kept)"

    def dissimilarity(self, dist: torch.Tensor, clean: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        diagonal = math.hypot(clean.shape[-2], clean.shape[-1])
        return (centre(dist) - centre(clean)).norm(dim=1) / diagonal
