"""Dissimilarity of explanations and accuracy under attack (Chakraborty et al., CVPRW 2022).

- Map comparisons as a registry (:mod:`gcdash.metrics.compare`): ``dissimilarities()`` and
  ``dissimilarity(name, a, b, **params)`` → float64 (N,) in [0, 1], 0 = the same map: ``nissim`` (the paper's),
  ``spearman``, ``topk``, ``lens-topk``.
- ``mod``: Mean Observed Dissimilarity, the mean dissimilarity over the attacked images at one eps.
- ``vid``: Variation in Dissimilarity, the population std of MOD over the eps > 0 levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gcdash.metrics.compare import Comparison, LensTopK, Nissim, Spearman, TopK
from gcdash.metrics.structural import ArrayLike, nissim, nissim_from_ssim, ssim
from gcdash.registry import Registry

COMPARISONS: Registry[Comparison] = Registry("comparison")
for _cls in (Nissim, Spearman, TopK, LensTopK):
    COMPARISONS.add(_cls.name, _cls())


def dissimilarities() -> list[str]:
    """Registered map comparisons."""
    return COMPARISONS.names()


def comparison(name: str) -> Comparison:
    """The comparison registered as ``name`` (an unknown name lists the valid ones)."""
    return COMPARISONS.get(name)


def dissimilarity(name: str, a: ArrayLike, b: ArrayLike, **params: Any) -> np.ndarray:
    """Dissimilarity ``name`` of each pair ``a[i], b[i]`` (maps (N, H, W) or one (H, W) pair) → float64 (N,)."""
    method = comparison(name)
    return method.dissimilarity(method.raw(a, b, **method.params(**params)))


def mod(values: Sequence[float] | np.ndarray) -> float:
    """Mean Observed Dissimilarity: ``MOD = mean_i NISSIM_i`` over the images attacked at one eps."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("MOD of an empty set of images")
    return float(arr.mean())


def vid(mod_by_eps: Mapping[float, float]) -> float:
    """Variation in Dissimilarity: ``m = mean_e MOD_e``, ``VID = sqrt(mean_e (MOD_e − m)²)`` over eps > 0
    (eps = 0 is the control, trivially 0, and is left out)."""
    values = np.array([v for e, v in mod_by_eps.items() if e > 0], dtype=np.float64)
    if values.size == 0:
        raise ValueError("VID needs MOD at one eps > 0 at least")
    return float(values.std(ddof=0))


def accuracy(pred: ArrayLike, labels: ArrayLike) -> float:
    """Share of labelled images (label ≥ 0) whose prediction equals the label; NaN when none is labelled."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    known = labels >= 0
    return float((pred[known] == labels[known]).mean()) if known.any() else float("nan")


def attack_success(pred_clean: ArrayLike, pred_adv: ArrayLike, labels: ArrayLike) -> float:
    """Share of clean-correct images whose prediction the attack flips; NaN when none is clean-correct."""
    pred_clean, pred_adv, labels = np.asarray(pred_clean), np.asarray(pred_adv), np.asarray(labels)
    correct = (labels >= 0) & (pred_clean == labels)
    return float((pred_adv[correct] != pred_clean[correct]).mean()) if correct.any() else float("nan")


__all__ = [
    "COMPARISONS", "Comparison", "accuracy", "attack_success", "comparison", "dissimilarities", "dissimilarity",
    "mod", "nissim", "nissim_from_ssim", "ssim", "vid",
]  # fmt: skip
