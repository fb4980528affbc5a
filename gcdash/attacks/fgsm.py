"""FGSM (Goodfellow, Shlens, Szegedy, ICLR 2015), as used by Chakraborty et al. (CVPRW 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gcdash.attacks.base import DirectionAttack, check_pixels, loss_gradient, resolve_labels


def fgsm_direction(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``sign(∇x CE(f(x), y))`` for a batch; ``y=None`` (or −1 entries) attacks the clean top-1 prediction.
    Returns a tensor of −1, 0, +1 with ``x``'s shape and dtype."""
    check_pixels(x)
    return loss_gradient(net, x, resolve_labels(net, x, y)).sign()


class Fgsm(DirectionAttack):
    """Fast Gradient Sign Method: ``d = sign(∇x CE(f(x), y))`` once per image, ``x' = clip(x + eps·d, 0, 1)`` at
    every eps. One gradient pass per image, whatever the number of eps.

    >>> attack("fgsm", net, x, y, eps=[2 / 255, 8 / 255])  # (2, N, C, H, W) from one gradient
    """

    name = "fgsm"
    label = "FGSM"
    paper = "Goodfellow et al., ICLR 2015"
    gradient_state = True

    def state(self, net: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, eps: float | None, **params: Any):
        return fgsm_direction(net, x, y)

    def from_gradient(self, grad: torch.Tensor, **params: Any) -> torch.Tensor:
        return grad.sign()
