"""The random-sign noise control: a perturbation of exactly the attack's L∞ budget that never looks at the model."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from gcdash.attacks.base import DirectionAttack, check_pixels
from gcdash.seeding import per_image_signs


class Noise(DirectionAttack):
    """``x' = clip(x + eps·s, 0, 1)``, ``s ∈ {−1, +1}`` drawn per pixel from a generator seeded by ``(seed, the
    image's content)``. Every unclipped pixel moves by exactly eps, as under FGSM, but in a direction unrelated to
    the model: MOD under noise is the shift any perturbation of that size causes, and the gap to an attack's MOD is
    the adversarial part. No model pass; the same perturbation for every model."""

    name = "noise"
    label = "random-sign noise (control)"
    paper = "control at the same L∞ budget"
    defaults: ClassVar[dict[str, Any]] = {"seed": 0}
    hints: ClassVar[dict[str, str]] = {"seed": "seed of the random signs (with each image's content)"}
    uses_model = False

    def state(self, net: nn.Module | None, x: torch.Tensor, y: torch.Tensor | None, eps: float | None, **params: Any):
        check_pixels(x)
        return per_image_signs(x, int(params["seed"]))
