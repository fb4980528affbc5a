"""Adversarial attacks in pixel space. FGSM (Goodfellow et al., ICLR 2015), as used by Chakraborty et al. 2022.

The direction ``d = sign(∇x CE(f(x), y))`` is computed once per image; each eps then costs no model pass:
``x' = clip(x + eps·d, 0, 1)``. Guarantees: ``‖x' − x‖∞ ≤ eps``, ``x' ∈ [0, 1]``, eps = 0 returns ``x``,
and the network's parameters, their ``.grad`` and its train/eval mode are as they were before the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gcdash.errors import GcdashError


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Run ``net`` in eval mode and restore every submodule's ``training`` flag afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for module, training in modes:
            module.training = training


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


def fgsm_direction(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``sign(∇x CE(f(x), y))`` for a batch; ``y=None`` attacks the clean top-1 prediction.

    The gradient is taken with ``torch.autograd.grad`` with respect to ``x`` alone, so no parameter's ``.grad``
    is written. Returns a tensor of -1, 0, +1 with ``x``'s shape and dtype.
    """
    check_pixels(x)
    with eval_mode(net), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = net(xg)
        target = logits.argmax(dim=1) if y is None else y.to(logits.device).long()
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    return grad.sign()


def perturb(x: torch.Tensor, direction: torch.Tensor, eps: float) -> torch.Tensor:
    """``clip(x + eps·d, 0, 1)``; eps = 0 returns a copy of ``x`` exactly."""
    if eps == 0:
        return x.clone()
    return (x + eps * direction.to(x.dtype)).clamp_(0.0, 1.0)


def fgsm(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | Sequence[float] = 8 / 255
) -> torch.Tensor:
    """Untargeted FGSM in pixel space.

    ``eps`` a float → the adversarial batch (N, C, H, W); a sequence → a stacked tensor (len(eps), N, C, H, W),
    one slice per eps in the given order, all from a single gradient computation.
    """
    values = check_eps(eps)
    direction = fgsm_direction(net, x, y)
    adv = [perturb(x.detach(), direction, e) for e in values]
    return adv[0] if isinstance(eps, int | float) else torch.stack(adv)
