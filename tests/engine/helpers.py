"""Helpers of the engine's tests: an engine with small batches, a forward-pass counter, samples with masks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gcdash.data import Samples
from gcdash.engine import ModelEngine

EPS = [0.0, 4 / 255, 8 / 255]


def small(handle, store, **kw) -> ModelEngine:
    """An engine with batches of 4 (or ``batch_size``), so that 8 samples make two batches."""
    return ModelEngine(handle, store, batch_size=kw.pop("batch_size", 4), **kw)


def counting(handle) -> tuple[list[int], object]:
    """A list that collects the batch size of every forward pass of ``handle``, and the hook to remove."""
    counted: list[int] = []
    hook = handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    return counted, hook


def with_masks(samples: Samples) -> Samples:
    """``samples`` with a square object mask per image (its centre quarter)."""
    masks = []
    for image in samples.images:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        masks.append(mask)
    return replace(samples, masks=masks)
