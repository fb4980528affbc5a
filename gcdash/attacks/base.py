"""What an attack is, as the engine sees it: a name, its parameters, what it caches per image, and its cost.

Two shapes cover the L∞ attacks gcdash ships:

- :class:`DirectionAttack`: one direction ``d`` per image serves every eps, ``x' = clip(x + eps·d, 0, 1)``
  (FGSM's sign of the gradient, the noise control's random signs). The engine caches ``d`` as int8, once.
- :class:`IterativeAttack`: the adversarial image depends on eps through the iterations (PGD); the engine caches
  ``x'`` itself (float32), once per (image, eps).

Every attack returns images in [0, 1] within ``‖x' − x‖∞ ≤ eps``; eps = 0 returns ``x``. Gradient attacks leave the
network's parameters, their ``.grad`` and its train/eval flags as they were.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models.handle import eval_mode
from gcdash.registry import Configurable

SOURCE = "source"  # the parameter every gradient attack takes: craft the perturbation on another registered model


def check_pixels(x: torch.Tensor) -> None:
    """Attacks live in pixel space: ``x`` must be a float NCHW batch in [0, 1]."""
    if x.ndim != 4 or not x.is_floating_point():
        raise GcdashError(f"expected a float image batch (N, C, H, W), got {tuple(x.shape)} {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise GcdashError("images must be RGB floats in [0, 1]; normalisation belongs inside the model")


def check_eps(eps: float | Sequence[float]) -> list[float]:
    """Validate eps values (finite, ≥ 0) and return them as a list."""
    values = [float(eps)] if isinstance(eps, int | float) else [float(e) for e in eps]
    bad = [e for e in values if not (e >= 0 and e < float("inf"))]
    if bad:
        raise GcdashError(f"eps must be finite and ≥ 0, got {bad[0]}")
    return values


def require_counts(attack: str, params: dict[str, Any], *names: str) -> None:
    """Each of ``names`` (steps, restarts) is an integer ≥ 1, or one line naming it."""
    for name in names:
        if int(params[name]) < 1:
            raise GcdashError(f"{attack} {name} must be ≥ 1, got {params[name]}")


def require_step_size(attack: str, params: dict[str, Any]) -> None:
    """``step_size`` is finite and ≥ 0 (0: the attack's default, ``2.5·eps/steps``), or one line."""
    if not 0 <= float(params["step_size"]) < float("inf"):
        raise GcdashError(f"{attack} step_size must be ≥ 0 (0 = 2.5·eps/steps), got {params['step_size']}")


def perturb(x: torch.Tensor, direction: torch.Tensor, eps: float) -> torch.Tensor:
    """``clip(x + eps·d, 0, 1)``; eps = 0 returns a copy of ``x`` exactly."""
    if eps == 0:
        return x.clone()
    return (x + eps * direction.to(x.dtype)).clamp_(0.0, 1.0)


def resolve_labels(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The class each image's loss is taken on: ``y`` where ≥ 0, the clean top-1 of ``net`` where ``y`` is None or
    −1 (an unlabelled image)."""
    if y is not None:
        y = torch.as_tensor(y).to(x.device).long()
        if bool((y >= 0).all()):
            return y
    with eval_mode(net), torch.no_grad():
        pred = net(x).argmax(dim=1)
    return pred if y is None else torch.where(y >= 0, y, pred)


def loss_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇x Σ_i CE(f(x_i), y_i)`` with ``torch.autograd.grad`` (no parameter's ``.grad`` is written)."""
    with eval_mode(net), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(net(xg), y.to(x.device).long(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    return grad


class Attack(Configurable, ABC):
    """A named L∞ attack. ``defaults`` are its parameters; ``uses_model`` is False for attacks that never look at
    the network (their cached perturbations are shared by every model); ``per_eps`` says whether what is cached
    depends on eps. Gradient attacks also take ``source=MODEL`` (resolved by the caller into the network used)."""

    kind = "attack"
    label: ClassVar[str]
    paper: ClassVar[str] = ""
    uses_model: ClassVar[bool] = True
    per_eps: ClassVar[bool] = False
    #: whether the state is :meth:`from_gradient` of the clean image's loss gradient (FGSM): it can then ride on the
    #: clean CAM pass's forward
    gradient_state: ClassVar[bool] = False
    stored_dtype: ClassVar[torch.dtype] = torch.int8
    #: whether it attacks the explanation and keeps the prediction (:mod:`gcdash.attacks.explanation`)
    on_explanation: ClassVar[bool] = False
    #: how a default is shown in listings where its value stands for something else (PGD's step_size 0)
    shown_defaults: ClassVar[dict[str, str]] = {}

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The full parameter set (see :class:`~gcdash.registry.Configurable`). ``source`` is accepted by attacks
        that use a model and kept out of the result: the caller resolves it into the network used."""
        if self.uses_model:
            overrides.pop(SOURCE, None)
        return super().params(**overrides)

    def takes(self) -> list[str]:
        return sorted([*self.defaults, *([SOURCE] if self.uses_model else [])])

    def bind(self, handle: Any, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters as they apply to the model ``handle`` that crafts the attack (a
        :class:`~gcdash.models.handle.ModelHandle`): the explanation attacks name its default layer here. The
        default: ``params`` unchanged."""
        return params

    @abstractmethod
    def passes(self, n_eps: int, params: dict[str, Any]) -> int:
        """Model passes per image to perturb it at ``n_eps`` eps values > 0 (gradient passes count one each)."""

    def cost(self, params: dict[str, Any] | None = None) -> str:
        """The cost in words, for the CLI and the dashboard (besides the CAM pass of each attacked image)."""
        params = self.params(**(params or {}))
        one, five = self.passes(1, params), self.passes(5, params)
        if five == 0:
            return "no model pass (the perturbation ignores the model)"
        if one == five:
            return f"{one} gradient pass per image, for every eps"
        return f"{one} gradient passes per image and eps"

    @abstractmethod
    def state(
        self, net: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, eps: float | None, **params: Any
    ) -> torch.Tensor:
        """What the engine caches for ``x`` (and ``eps`` when ``per_eps``); ``y`` the labels (−1 = unlabelled)."""

    @abstractmethod
    def apply(self, x: torch.Tensor, state: torch.Tensor, eps: float) -> torch.Tensor:
        """The adversarial batch at ``eps`` from ``x`` and its cached ``state``."""

    def from_gradient(self, grad: torch.Tensor, **params: Any) -> torch.Tensor | None:
        """The state of an attack that is a function of ``∇x Σ_i CE(f(x_i), y_i)`` at the clean image alone (FGSM's
        sign), from that gradient: the engine then takes it from the clean CAM pass's forward (a second backward
        pass, no forward of its own). None (the default): the attack needs passes of its own."""
        return None


class DirectionAttack(Attack):
    """One direction ``d ∈ {−1, 0, 1}`` per image for every eps: ``x' = clip(x + eps·d, 0, 1)``."""

    per_eps = False
    stored_dtype = torch.int8

    def passes(self, n_eps: int, params: dict[str, Any]) -> int:
        return 1 if self.uses_model else 0

    def apply(self, x: torch.Tensor, state: torch.Tensor, eps: float) -> torch.Tensor:
        return perturb(x, state, eps)


class IterativeAttack(Attack):
    """The adversarial image itself is the state, one per (image, eps): :meth:`run` makes it from images in
    [0, 1], their labels resolved (−1: the clean prediction) and eps > 0 (eps = 0 is ``x`` itself)."""

    per_eps = True
    stored_dtype = torch.float32

    def state(
        self, net: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, eps: float | None, **params: Any
    ) -> torch.Tensor:
        check_pixels(x)
        eps = float(eps or 0.0)
        if eps == 0:
            return x.clone()
        return self.run(net, x, resolve_labels(net, x, y), eps, **params)

    @abstractmethod
    def run(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **params: Any) -> torch.Tensor:
        """The adversarial images of ``x`` (labels ``y``) at ``eps`` > 0."""

    def apply(self, x: torch.Tensor, state: torch.Tensor, eps: float) -> torch.Tensor:
        return x.clone() if eps == 0 else state.to(x.device, x.dtype)
