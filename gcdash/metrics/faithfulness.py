"""Is a map a faithful explanation of the prediction it explains? Deletion and insertion (Petsiuk, Das, Saenko,
"RISE: Randomized input sampling for explanation of black-box models", BMVC 2018).

Pixels are ranked by the map, most important first, and revealed or removed in ``steps`` equal shares. With
``M_k`` the mask of the top ``k/steps`` of the pixels and ``p_c`` the softmax probability of the class ``c`` the
map explains:

- **deletion**: ``x_k = x·(1 − M_k) + b_del·M_k`` with ``b_del = 0`` (black, RISE's choice); a faithful map makes
  ``p_c`` fall fast: a *low* area under the curve;
- **insertion**: ``x_k = b_ins·(1 − M_k) + x·M_k`` with ``b_ins`` = ``x`` blurred (Gaussian, σ = ``sigma`` pixels,
  RISE's choice of a blurred start); a faithful map makes ``p_c`` rise fast: a *high* area.

The area is the trapezoid rule over ``k = 0..steps`` on [0, 1], so it lies in [0, 1]. All ``steps + 1`` inputs of
every image go through the model in batches (forward passes only, no gradient). Ties in the map keep the pixels'
row-major order (a stable sort), so a flat map removes pixels top-left first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gcdash.models.handle import eval_mode


@dataclass(frozen=True)
class Faithfulness:
    """Deletion / insertion settings: ``steps`` shares of the pixels, the insertion start's blur ``sigma`` in
    pixels, and the rows per forward pass."""

    steps: int = 16
    sigma: float = 5.0
    batch_size: int = 256

    @property
    def passes(self) -> int:
        """Forward passes per map: one per share, both curves."""
        return 2 * (self.steps + 1)

    def key(self) -> list:
        return ["deletion-insertion", self.steps, self.sigma, "zeros", "blur"]


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (N, C, H, W) through a separable Gaussian of standard deviation ``sigma`` pixels (radius 3σ, reflect
    padding, clipped to the image)."""
    radius = max(1, min(int(3 * sigma + 0.5), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def reveal_masks(maps: torch.Tensor, steps: int) -> torch.Tensor:
    """(N, steps + 1, H, W) float masks: share ``k`` marks the top ``round(k·HW/steps)`` pixels of each map."""
    n, h, w = maps.shape
    order = torch.sort(maps.reshape(n, -1), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=maps.device).expand(n, -1))
    counts = torch.round(torch.arange(steps + 1, device=maps.device) * (h * w) / steps)
    return (rank[:, None, :] < counts[None, :, None]).to(maps.dtype).reshape(n, steps + 1, h, w)


def curves(
    net: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, settings: Faithfulness
) -> dict[str, torch.Tensor]:
    """``{"deletion": (N, steps + 1), "insertion": (N, steps + 1)}``: the probability of ``targets`` as the map's
    pixels are removed from ``x`` / revealed on its blurred copy, from nothing to all."""
    masks = reveal_masks(maps.to(x.dtype), settings.steps)[:, :, None]  # (N, S+1, 1, H, W)
    image = x[:, None]
    inputs = {
        "deletion": image * (1 - masks),
        "insertion": blurred(x, settings.sigma)[:, None] * (1 - masks) + image * masks,
    }
    out = {}
    with eval_mode(net), torch.no_grad():
        for name, batch in inputs.items():
            flat = batch.reshape(-1, *x.shape[1:])
            probs = torch.cat([net(part).softmax(dim=1) for part in flat.split(settings.batch_size)])
            chosen = probs.reshape(len(x), settings.steps + 1, -1).gather(
                2, targets.to(probs.device).long().view(-1, 1, 1).expand(-1, settings.steps + 1, 1)
            )
            out[name] = chosen[..., 0]
    return out


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under each curve (N, K) sampled evenly on [0, 1], by the trapezoid rule → (N,)."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)
