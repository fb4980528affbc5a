"""Does a map sit on the object? Two per-map scores against an object mask, both from the map alone (no model pass).

- **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016; IJCV 2018):
  ``hit = mask[argmax L]``, whether the map's maximum lies inside the object. Ties go to the first maximum in
  row-major order (``torch.argmax``'s rule); the original counts a hit within 15 px of the object, we use the exact
  mask (the demo's masks are exact).
- **Mass inside** (the "energy-based pointing game" of Score-CAM, Wang et al., CVPRW 2020):
  ``mass = Σ_p L_p·M_p / Σ_p L_p``, the share of the map's mass inside the object; 1 when all of it is, and the
  object's area share for a flat map given as it is (min-max normalisation turns a flat map into an all-zero one).

``L`` is the map as the comparisons see it (min-max normalised, at the input resolution, ≥ 0). An all-zero map
points nowhere and has no mass: both scores are NaN there, never 0 or 1. So is an empty mask (no object, or none
left after the resize and crop): there is nothing to hit, and a miss would be averaged in as a failure of the map.
The image folder notes each empty mask file when it loads (:mod:`gcdash.data.folder`).
"""

from __future__ import annotations

import numpy as np
import torch

from gcdash.metrics.structural import ArrayLike


def _as_batches(maps: ArrayLike, masks: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.as_tensor(maps, dtype=torch.float64)
    k = torch.as_tensor(masks).to(m.device)
    if m.ndim == 2:
        m, k = m[None], k[None]
    if m.shape != k.shape:
        raise ValueError(f"maps {tuple(m.shape)} and masks {tuple(k.shape)} must have the same shape")
    return m, k.bool()


def pointing_game(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """1.0 where the maximum of ``maps[i]`` lies inside ``masks[i]``, 0.0 where outside, NaN for an all-zero map
    or an empty mask; maps (N, H, W) or one (H, W), masks bool of the same shape → float64 (N,)."""
    m, k = _as_batches(maps, masks)
    flat = m.flatten(1)
    hit = k.flatten(1).gather(1, flat.argmax(dim=1, keepdim=True))[:, 0].double()
    return torch.where(_scorable(flat, k), hit, torch.nan).cpu().numpy()


def mass_inside(maps: ArrayLike, masks: ArrayLike) -> np.ndarray:
    """``Σ L·M / Σ L`` per map, in [0, 1]; NaN for an all-zero map or an empty mask. Shapes as in
    :func:`pointing_game`."""
    m, k = _as_batches(maps, masks)
    total = m.flatten(1).sum(dim=1)
    inside = (m * k).flatten(1).sum(dim=1)
    return torch.where(_scorable(m.flatten(1), k), inside / total.clamp_min(1e-300), torch.nan).cpu().numpy()


def _scorable(flat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per map: it has mass (not all zero) and its mask holds an object (not empty)."""
    return (flat.amax(dim=1) > 0) & masks.flatten(1).any(dim=1)


LOCALISATION = {"hit": pointing_game, "mass": mass_inside}
