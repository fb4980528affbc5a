"""Ways of comparing two explanations, as a registry entry each: a raw score per pair and the dissimilarity in
[0, 1] it maps to (0 = the same map). All take maps (N, H, W) at the input resolution and work batched in torch
on any device, in float64.

- ``nissim``: ``(1 − SSIM) / 2`` (Chakraborty et al., CVPRW 2022), uniform 7×7 or Gaussian (σ 1.5) window.
- ``spearman``: ``(1 − ρ) / 2``, ρ Spearman's rank correlation of the pixels, ties given their average rank
  (Ghorbani et al., AAAI 2019, "Interpretation of neural networks is fragile").
- ``topk``: ``1 − |T_k(a) ∩ T_k(b)| / k``, the share of the top-k pixels of one map missing from the other's
  (Ghorbani et al.'s top-k intersection).
- ``lens-topk``: top-k that counts a top pixel moved by up to ``radius`` pixels as kept (Kamath et al., AAAI 2024).

Constant maps (an all-zero CAM, say) are defined, never NaN: Spearman's ρ of two constant maps is 1 (neither
orders any pixel, so they agree) and of one constant map against a varying one 0 (no relation); top-k breaks ties
by pixel index, so two constant maps share their top set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from gcdash.errors import GcdashError
from gcdash.metrics.structural import nissim_from_ssim, ssim
from gcdash.registry import Configurable

_CHUNK_PIXELS = 2**22  # pairs per chunk × H × W, to bound the working set of the rank comparisons


class Comparison(Configurable, ABC):
    """A named map comparison: ``raw(a, b)`` is what the cache stores (SSIM, ρ, the top-k overlap),
    ``dissimilarity(raw)`` maps it into [0, 1], 0 = the same map."""

    kind = "comparison"
    label: ClassVar[str]
    paper: ClassVar[str] = ""
    raw_name: ClassVar[str] = ""  # a per-image column for the raw score, where people read it (ssim)

    @abstractmethod
    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        """The raw score of each pair of maps (N, H, W) → float64 (N,)."""

    @abstractmethod
    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores → dissimilarities in [0, 1]."""


class Nissim(Comparison):
    """NISSIM = ``(1 − SSIM) / 2`` with SSIM equal to skimage's (see :func:`gcdash.metrics.ssim`)."""

    name, label, raw_name = "nissim", "NISSIM (1 − SSIM) / 2", "ssim"
    paper = "Chakraborty et al., CVPRW 2022"
    defaults: ClassVar[dict[str, Any]] = {"gaussian": False}

    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        return ssim(a, b, gaussian=bool(params.get("gaussian", False)))

    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        return nissim_from_ssim(raw)


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..P−1 along the last axis of (N, P), tied values sharing their average rank (scipy's ``rankdata``
    "average", less one)."""
    n, p = v.shape
    ordered, order = v.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = (starts.cumsum(1) - 1) + p * torch.arange(n, device=v.device)[:, None]
    position = torch.arange(p, dtype=torch.float64, device=v.device).expand(n, p)
    sums = torch.zeros(n * p, dtype=torch.float64, device=v.device).scatter_add_(0, group.flatten(), position.flatten())
    counts = torch.zeros(n * p, dtype=torch.float64, device=v.device).scatter_add_(
        0, group.flatten(), torch.ones(n * p, dtype=torch.float64, device=v.device)
    )
    mean_rank = (sums / counts.clamp(min=1))[group]
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def _chunks(a: torch.Tensor, b: torch.Tensor):
    step = max(1, _CHUNK_PIXELS // max(1, a.shape[-1] * a.shape[-2]))
    for i in range(0, len(a), step):
        yield a[i : i + step].flatten(1).double(), b[i : i + step].flatten(1).double()


def _as_maps(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    ta = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    tb = b if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b))
    ta, tb = (ta[None] if ta.ndim == 2 else ta), (tb[None] if tb.ndim == 2 else tb)
    if ta.shape != tb.shape:
        raise ValueError(f"maps differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    return ta, tb.to(ta.device)


class Spearman(Comparison):
    """``(1 − ρ) / 2`` with ρ the Pearson correlation of the pixels' average ranks (Spearman's ρ)."""

    name, label = "spearman", "Spearman rank shift (1 − ρ) / 2"
    paper = "Ghorbani et al., AAAI 2019"

    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        a, b = _as_maps(a, b)
        out = []
        for x, y in _chunks(a, b):
            rx, ry = average_ranks(x), average_ranks(y)
            rx, ry = rx - rx.mean(1, keepdim=True), ry - ry.mean(1, keepdim=True)
            sx, sy = rx.square().sum(1), ry.square().sum(1)
            rho = (rx * ry).sum(1) / (sx * sy).sqrt().clamp(min=1e-300)
            rho = torch.where((sx == 0) & (sy == 0), 1.0, torch.where((sx == 0) | (sy == 0), 0.0, rho))
            out.append(rho.clamp(-1.0, 1.0))
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        return np.clip((1.0 - np.asarray(raw, dtype=np.float64)) / 2.0, 0.0, 1.0)


class TopK(Comparison):
    """``1 − |T_k(a) ∩ T_k(b)| / k``, ``T_k`` the k highest pixels, ``k = round(share · H·W)`` (at least 1).

    The default share, 2%, is Ghorbani et al.'s 1000 of 227×227 pixels; it is also about one cell of a 7×7 layer
    (1/49), the resolution of the deepest layers, so a move of the peak by one cell shows as a large shift."""

    name, label = "topk", "top-k pixels lost 1 − |Tk ∩ Tk'| / k"
    paper = "Ghorbani et al., AAAI 2019"
    defaults: ClassVar[dict[str, Any]] = {"share": 0.02}

    def check(self, params: dict[str, Any]) -> None:
        if not 0 < params["share"] <= 1:
            raise GcdashError(f"topk share must be in (0, 1], got {params['share']}")

    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        a, b = _as_maps(a, b)
        k = max(1, round(float(params.get("share", self.defaults["share"])) * a.shape[-1] * a.shape[-2]))
        out = []
        for x, y in _chunks(a, b):
            masks = [top_masks(v, k) for v in (x, y)]
            out.append((masks[0] & masks[1]).sum(1).double() / k)
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - np.asarray(raw, dtype=np.float64), 0.0, 1.0)


def top_masks(v: torch.Tensor, k: int) -> torch.Tensor:
    """(N, P) → bool (N, P): each row's k highest entries, ties broken by index (as :class:`TopK`)."""
    top = v.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(v, dtype=torch.bool).scatter_(1, top, True)


class LensTopK(Comparison):
    """Locality-sensitive top-k (Kamath et al., "Rethinking robustness of model attributions", AAAI 2024):
    ``1 − |W_r(T_k(a)) ∩ T_k(b)| / k``, ``W_r`` the pixels within a (2r + 1)×(2r + 1) window of any of the clean
    map's top-k pixels (their "w-LENS-recall@k", w = 2r + 1; 3-LENS is ``radius`` 1). A top pixel that moved by up
    to ``radius`` pixels still counts as kept, so a map whose top set shifted one cell reads apart from a map that
    moved; ``radius`` 0 is :class:`TopK` exactly. ``k = round(share · H·W)`` (at least 1)."""

    name, label = "lens-topk", "LENS top-k pixels lost (locality r)"
    paper = "Kamath et al., AAAI 2024"
    defaults: ClassVar[dict[str, Any]] = {"share": 0.02, "radius": 1}

    def check(self, params: dict[str, Any]) -> None:
        if not 0 < params["share"] <= 1:
            raise GcdashError(f"lens-topk share must be in (0, 1], got {params['share']}")
        if params["radius"] < 0:
            raise GcdashError(f"lens-topk radius must be ≥ 0 pixels, got {params['radius']}")

    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        a, b = _as_maps(a, b)
        height, width = a.shape[-2:]
        share, radius = (float(params.get(n, self.defaults[n])) for n in ("share", "radius"))
        k, r = max(1, round(share * height * width)), int(radius)
        out = []
        for x, y in _chunks(a, b):
            near = top_masks(x, k).view(-1, 1, height, width).float()
            if r:
                near = torch.nn.functional.max_pool2d(near, 2 * r + 1, stride=1, padding=r)
            kept = (near.flatten(1) > 0) & top_masks(y, k)
            out.append(kept.sum(1).double() / k)
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - np.asarray(raw, dtype=np.float64), 0.0, 1.0)


class EmptyMaps(Comparison):
    """Not a dissimilarity: which of the two maps carries no explanation at all. Its raw score is
    ``1·[a is all zero] + 2·[b is all zero]``, maps as the comparisons see them (after pytorch-grad-cam's min-max
    normalisation, so a dead layer's zero map and a constant map both count). The engine records it beside every
    comparison and leaves such pairs out of MOD: "no explanation" is not "the same explanation"."""

    name, label = "empty", "all-zero maps"

    def raw(self, a: torch.Tensor, b: torch.Tensor, **params: Any) -> np.ndarray:
        a, b = _as_maps(a, b)
        empty_a = a.flatten(1).amax(1) <= 0
        empty_b = b.flatten(1).amax(1) <= 0
        return (empty_a.double() + 2 * empty_b.double()).cpu().numpy()

    def dissimilarity(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64)
