"""Images for the gallery, from engine arrays: CAM overlays, map differences, amplified perturbations.

Inputs are float images (3, H, W) in [0, 1] and maps (H, W) in [0, 1]; outputs are uint8 RGB (H', W', 3), scaled
up with nearest-neighbour sampling so small demo images stay crisp. Pure numpy (and matplotlib's colormaps).
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image

COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "gray")
FLIP_RED = (220, 38, 38)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) or (H, W, 3) float in [0, 1] → uint8 (H, W, 3)."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A map (H, W) in [0, 1] → RGB float (H, W, 3) through a matplotlib colormap."""
    return colormaps[cmap](np.clip(values, 0.0, 1.0))[..., :3].astype(np.float32)


def overlay(image: np.ndarray, cam: np.ndarray, cmap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """``(1 − α)·image + α·colormap(cam)`` → uint8 (H, W, 3); α = ``opacity`` in [0, 1]."""
    base = to_uint8(image).astype(np.float32) / 255.0
    mixed = (1.0 - opacity) * base + opacity * colorize(cam, cmap)
    return to_uint8(mixed)


def difference(clean_map: np.ndarray, adv_map: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``|H(x') − H(x)|`` (already in [0, 1]) through the colormap → uint8 (H, W, 3)."""
    return to_uint8(colorize(np.abs(adv_map - clean_map), cmap))


def amplification(eps: float) -> float:
    """The gain that maps a perturbation in [−eps, eps] onto [0, 1] around mid-grey: ``0.5 / eps``."""
    return 0.5 / eps if eps > 0 else 0.0


def perturbation(clean: np.ndarray, adv: np.ndarray, eps: float) -> np.ndarray:
    """``0.5 + gain·(x' − x)`` with ``gain = amplification(eps)`` → uint8; mid-grey where nothing changed."""
    delta = np.asarray(adv, np.float32) - np.asarray(clean, np.float32)
    return to_uint8(np.clip(0.5 + amplification(eps) * delta, 0.0, 1.0))


def framed(image: np.ndarray, color: tuple[int, int, int] = FLIP_RED, width: int = 3) -> np.ndarray:
    """A copy of uint8 (H, W, 3) ``image`` with a coloured frame (marks a flipped prediction)."""
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def outlined(image: np.ndarray, mask: np.ndarray | None, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of uint8 (H, W, 3) ``image`` with the boundary of bool (H, W) ``mask`` drawn in ``color`` (the pixels
    of the mask with a 4-neighbour outside it); ``image`` itself when there is no mask."""
    if mask is None:
        return image
    inside = np.pad(np.asarray(mask, bool), 1)
    core = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    out = image.copy()
    out[inside[1:-1, 1:-1] & ~core] = color
    return out


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) → (size, size·W/H, 3), nearest neighbour (no blur on tiny images); unchanged if larger."""
    h, w = image.shape[:2]
    if h >= size:
        return image
    pil = Image.fromarray(image).resize((round(size * w / h), size), Image.NEAREST)
    return np.asarray(pil)
