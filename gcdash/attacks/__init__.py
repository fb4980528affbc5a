"""Adversarial attacks in pixel space, as a registry: ``names()``, ``get(name)``, :func:`attack`.

Shipped: ``fgsm`` (the paper's, one gradient for every eps), ``pgd`` (L∞, Madry et al.), ``noise`` (random signs
at the same budget: the control), ``apgd-ce`` / ``apgd-dlr`` (Croce & Hein 2020, AutoAttack's: the worst-case
evaluation, ``python -m gcdash evaluate``), and ``expl-topk`` / ``expl-mass`` (Ghorbani et al. 2019: move the
Grad-CAM map, keep the prediction). Gradient attacks take ``source=MODEL``: the perturbation is crafted on
another registered model (a transfer attack). Adding an attack is one short file: a subclass of
:class:`~gcdash.attacks.base.DirectionAttack` or :class:`~gcdash.attacks.base.IterativeAttack`, registered here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gcdash.attacks.apgd import ApgdCe, ApgdDlr
from gcdash.attacks.base import (
    SOURCE,
    Attack,
    DirectionAttack,
    IterativeAttack,
    check_eps,
    check_pixels,
    perturb,
    resolve_labels,
)
from gcdash.attacks.explanation import ExplMass, ExplTopK
from gcdash.attacks.fgsm import Fgsm, fgsm_direction
from gcdash.attacks.noise import Noise
from gcdash.attacks.pgd import Pgd
from gcdash.errors import GcdashError
from gcdash.models.handle import eval_mode
from gcdash.registry import Registry

ATTACKS: Registry[Attack] = Registry("attack")
for _cls in (Fgsm, Pgd, Noise, ApgdCe, ApgdDlr, ExplTopK, ExplMass):
    ATTACKS.add(_cls.name, _cls())


def names() -> list[str]:
    """Registered attack names."""
    return ATTACKS.names()


def get(name: str) -> Attack:
    """The attack registered as ``name`` (an unknown name raises a GcdashError listing the valid ones)."""
    return ATTACKS.get(name)


def source_net(source: str | None, x: torch.Tensor) -> nn.Module | None:
    """The network of registered model ``source`` (default weights) on ``x``'s device, checked to take ``x``."""
    if not source:
        return None
    from gcdash import models

    handle = models.load(source).to(x.device)
    if tuple(handle.input_size) != tuple(x.shape[-2:]):
        raise GcdashError(
            f"source model {source} takes {handle.input_size[0]}×{handle.input_size[1]} images, "
            f"these are {x.shape[-2]}×{x.shape[-1]}"
        )
    return handle.net


def attack(
    name: str,
    net: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    eps: float | Sequence[float] = 8 / 255,
    **params: Any,
) -> torch.Tensor:
    """Attack ``x`` with ``name``: a float ``eps`` → (N, C, H, W); a sequence → (len(eps), N, C, H, W), one slice
    per eps in the given order. ``y=None`` (or −1 entries) attacks the clean prediction of the attacking network:
    ``net``, or the registered model ``source=NAME``."""
    method = get(name)
    values = check_eps(eps)
    check_pixels(x)
    net = source_net(params.pop(SOURCE, None) if method.uses_model else None, x) or net
    if method.uses_model and net is None:
        raise GcdashError(f"attack {name} needs a network")
    params = method.params(**params)
    x, states = x.detach(), {}

    def at(e: float) -> torch.Tensor:
        if e == 0:
            return x.clone()
        key = e if method.per_eps else None
        if key not in states:
            states[key] = method.state(net, x, y, key, **params)
        return method.apply(x, states[key], e)

    adv = [at(e) for e in values]
    return adv[0] if isinstance(eps, int | float) else torch.stack(adv)


def fgsm(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, eps: float | Sequence[float] = 8 / 255
) -> torch.Tensor:
    """Untargeted FGSM in pixel space (``attack("fgsm", ...)``): one gradient for every eps."""
    return attack("fgsm", net, x, y, eps)


__all__ = [
    "ATTACKS", "SOURCE", "Attack", "DirectionAttack", "IterativeAttack", "attack", "check_eps", "check_pixels",
    "eval_mode", "fgsm", "fgsm_direction", "get", "names", "perturb", "resolve_labels",
]  # fmt: skip
