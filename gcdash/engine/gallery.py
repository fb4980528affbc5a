"""The one gallery record: what the gallery (and the report's pictures) show for one model, eps and layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Gallery:
    """Images (N, 3, H, W) and maps (N, H, W) in [0, 1] at the input size, the per-image rows they were computed
    with (the pages add class names, ``flipped`` and ``conf_drop``), extra views beside the CAMs (name → clean,
    adversarial maps) and the object masks, outlined on the overlays, where the source has them."""

    model: str
    eps: float
    layer: str
    clean: np.ndarray
    adv: np.ndarray
    clean_map: np.ndarray
    adv_map: np.ndarray
    table: pd.DataFrame
    extra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    masks: np.ndarray | None = None  # bool (N, H, W) object masks at the input size, when the source has them

    @classmethod
    def joined(cls, pieces: Sequence[Gallery]) -> Gallery:
        """One record of the batches ``pieces`` (of one model, eps and layer), in their order."""
        first = pieces[0]
        return cls(
            first.model, first.eps, first.layer,
            clean=np.concatenate([p.clean for p in pieces]),
            adv=np.concatenate([p.adv for p in pieces]),
            clean_map=np.concatenate([p.clean_map for p in pieces]),
            adv_map=np.concatenate([p.adv_map for p in pieces]),
            table=pd.concat([p.table for p in pieces], ignore_index=True),
            masks=None if any(p.masks is None for p in pieces) else np.concatenate([p.masks for p in pieces]),
        )  # fmt: skip
