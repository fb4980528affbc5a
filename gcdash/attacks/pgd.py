"""PGD, L∞ (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from gcdash.attacks.base import IterativeAttack, loss_gradient, perturb, require_counts, require_step_size
from gcdash.seeding import per_image_uniform


class Pgd(IterativeAttack):
    """Projected gradient descent on the loss, in the L∞ ball of radius eps around ``x``:

    ``x_0 = clip(x + eps·u, 0, 1)``, ``u ~ U(−1, 1)`` (``random_start``; else ``x_0 = x``), then ``steps`` times
    ``x_{t+1} = clip(Π_eps(x_t + α·sign(∇x CE(f(x_t), y))), 0, 1)`` with ``Π_eps`` the projection onto
    ``[x − eps, x + eps]`` and ``α = step_size`` (default ``2.5·eps/steps``, Madry et al.'s choice). The random
    start is seeded per image by ``(seed, its content)``: reproducible, the same alone or in a batch. With
    ``steps=1, step_size=eps, random_start=False`` it is FGSM exactly. ``steps`` gradient passes per image and eps.
    """

    name = "pgd"
    label = "PGD (L∞)"
    paper = "Madry et al., ICLR 2018"
    #: ``step_size`` 0 stands for the default, ``2.5·eps/steps`` (it depends on eps, so it has no fixed value)
    defaults: ClassVar[dict[str, Any]] = {"steps": 10, "step_size": 0.0, "random_start": True, "seed": 0}
    shown_defaults: ClassVar[dict[str, str]] = {"step_size": "0 (= 2.5·eps/steps)"}
    hints: ClassVar[dict[str, str]] = {
        "steps": "gradient steps per image and eps",
        "step_size": "α in [0, 1] pixel units; 0 = 2.5·eps/steps (Madry et al.)",
        "random_start": "start from a uniform point of the eps ball, seeded per image",
        "seed": "seed of the random start",
    }

    def check(self, params: dict[str, Any]) -> None:
        require_counts(self.name, params, "steps")
        require_step_size(self.name, params)

    def passes(self, n_eps: int, params: dict[str, Any]) -> int:
        return int(params["steps"]) * n_eps

    def run(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **params: Any) -> torch.Tensor:
        steps = int(params["steps"])
        alpha = float(params["step_size"]) or 2.5 * eps / steps
        lo, hi = x - eps, x + eps
        adv = x.clone()
        if params["random_start"]:
            adv = (x + eps * per_image_uniform(x, int(params["seed"]))).clamp_(0.0, 1.0)
        for _ in range(steps):
            step = perturb(adv, loss_gradient(net, adv, y).sign(), alpha) if alpha else adv
            adv = torch.minimum(torch.maximum(step, lo), hi).clamp_(0.0, 1.0)
        return adv
