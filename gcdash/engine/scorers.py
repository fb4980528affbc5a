"""The built-in scorers (:mod:`gcdash.engine.scoring`), registered in the order of their columns:

- ``comparison``: each (clean, attacked) pair of maps under every comparison of the sweep
  (:mod:`gcdash.metrics.compare`), and beside them which map is all zero (``EmptyMaps``): such a pair has no
  dissimilarity (NaN), and ``zero_clean`` / ``zero_adv`` say why;
- ``faithfulness``: deletion and insertion areas of each map on the image it explains (Petsiuk et al., BMVC 2018;
  :mod:`gcdash.metrics.faithfulness`), when the sweep asks for them; the only scorer that runs the model;
- ``localisation``: pointing game and mass inside the object mask (:mod:`gcdash.metrics.localisation`), where the
  images come with masks;
- ``stability``: RIS, ROS and Max-Sensitivity of each pair (:mod:`gcdash.metrics.stability`), when the sweep asks
  for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch

from gcdash import keys, metrics
from gcdash.config import CompareConfig
from gcdash.engine.batch import Batch, Cell, ScoreKey
from gcdash.engine.passes import require_finite
from gcdash.engine.scoring import SCORERS, Context, Maps, MapScorer, Wanted
from gcdash.metrics import faithfulness as faith
from gcdash.metrics import stability
from gcdash.metrics.compare import EmptyMaps
from gcdash.metrics.localisation import LOCALISATION


@SCORERS.register("comparison")
class Comparisons:
    """Every comparison of the sweep's pairs of maps (the raw score is stored; the dissimilarity follows from it
    in the rows), and which of the two maps is all zero."""

    name, pairs, separable = "comparison", True, True  # a new comparison costs only itself

    def __init__(self, comparisons: Sequence[CompareConfig]) -> None:
        self.compared = [_comparison(metrics.comparison(c.name), dict(c.params)) for c in comparisons]
        self.recorded = {c.name: (c, p, digest) for c, p, digest in [*self.compared, _comparison(EmptyMaps(), {})]}
        self.scores = list(self.recorded)
        self.passes = 0

    @classmethod
    def configured(cls, wanted: Wanted) -> Comparisons:
        return cls(wanted.comparisons)

    def key(self) -> list:
        return [digest for _, _, digest in self.recorded.values()]

    def wants(self, batch: Batch) -> bool:
        return True

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        """The pair keys of one (eps, layer) cell, per recorded comparison (map keys computed once)."""
        eps, layer = cell
        size = tuple(batch.x.shape[-2:])
        maps = list(zip(ctx.cells.maps(batch, 0.0, layer), ctx.cells.maps(batch, eps, layer)))
        return {
            name: [keys.pair(a, b, size, digest) for a, b in maps] for name, (_, _, digest) in self.recorded.items()
        }

    def score(
        self, ctx: Context, batch: Batch, cell: Cell, idx: list[int], names: Sequence[str], maps: Maps
    ) -> dict[str, np.ndarray]:
        eps, layer = cell
        out = {}
        for name in names:
            comparison, params, _ = self.recorded[name]
            out[name] = comparison.raw(maps(0.0, idx), maps(eps, idx), **params)
            require_finite(ctx.handle, f"{name} scores at layer {layer}", out[name], eps)
        return out

    def columns(self) -> list[str]:
        names = []
        for comparison, _, _ in self.compared:
            names += [comparison.raw_name, comparison.name] if comparison.raw_name else [comparison.name]
        return [*names, "zero_clean", "zero_adv"]

    def block(self, scores: Mapping[ScoreKey, np.ndarray], eps: float, layer: str) -> dict[str, np.ndarray]:
        empty = scores[(EmptyMaps.name, eps, layer)].astype(int)
        none = empty > 0  # a pair with an all-zero map has no dissimilarity to speak of
        block = {}
        for comparison, _, _ in self.compared:
            raw = np.where(none, np.nan, scores[(comparison.name, eps, layer)])
            if comparison.raw_name:
                block[comparison.raw_name] = raw
            block[comparison.name] = comparison.dissimilarity(raw)
        block["zero_clean"], block["zero_adv"] = (empty & 1) > 0, (empty & 2) > 0
        return block


def _comparison(comparison: metrics.Comparison, params: dict) -> tuple[metrics.Comparison, dict, str]:
    """A comparison, its full parameters and the digest of both (its part of a pair key)."""
    full = comparison.params(**params)
    return comparison, full, keys.short(comparison.key(full))


@SCORERS.register("faithfulness")
class Faithful(MapScorer):
    """Deletion and insertion areas of each map on its own image: the clean map on the clean image, the attacked
    map on the attacked one; NaN for an all-zero map (no ranking of pixels, no curve to speak of)."""

    name, scores = "faithfulness", ("deletion", "insertion")
    prefixes: ClassVar[dict[str, str]] = {"deletion": "del", "insertion": "ins"}

    def __init__(self, settings: faith.Faithfulness) -> None:
        super().__init__()
        self.settings = settings

    @classmethod
    def configured(cls, wanted: Wanted) -> Faithful | None:
        return None if wanted.faithfulness is None else cls(wanted.faithfulness)

    def key(self) -> list:
        return self.settings.key()

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        size, settings = tuple(batch.x.shape[-2:]), keys.short(self.key())
        maps = ctx.cells.maps(batch, *cell)
        return {curve: [keys.faithfulness(k, size, settings, curve) for k in maps] for curve in self.scores}

    def score(
        self, ctx: Context, batch: Batch, cell: Cell, idx: list[int], names: Sequence[str], maps: Maps
    ) -> dict[str, np.ndarray]:
        eps, layer = cell
        shown, handle = maps(eps, idx), ctx.handle
        x = ctx.images(batch, eps, idx)
        targets = torch.from_numpy(ctx.cells.targets(batch, eps, idx))
        with handle.lock:
            curves = faith.curves(handle.net, x.to(handle.device), shown, targets, self.settings)
        self.passes += len(idx) * self.settings.passes
        empty = (shown.flatten(1).amax(1) <= 0).cpu().numpy()
        out = {}
        for curve, values in curves.items():
            areas = faith.auc(values).double().cpu().numpy()
            require_finite(handle, f"{curve} areas at layer {layer}", areas, eps)
            areas[empty] = np.nan
            out[curve] = areas
        return out


@SCORERS.register("localisation")
class Localisation(MapScorer):
    """Where each map sits on its image's object mask: pointing-game hit and mass inside (NaN for an all-zero map
    or an empty mask); scores of the maps, never a pass of their own."""

    name, scores = "localisation", tuple(LOCALISATION)

    def key(self) -> list:
        return [self.name, keys.LOCALISATION_VERSION]

    def wants(self, batch: Batch) -> bool:
        return batch.masks is not None

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        size, maps = tuple(batch.x.shape[-2:]), ctx.cells.maps(batch, *cell)
        return {s: [keys.localisation(k, h, size, s) for k, h in zip(maps, batch.mask_hashes)] for s in self.scores}

    def score(
        self, ctx: Context, batch: Batch, cell: Cell, idx: list[int], names: Sequence[str], maps: Maps
    ) -> dict[str, np.ndarray]:
        shown, masks = maps(cell[0], idx), batch.masks[idx].to(ctx.handle.device)
        return {score: measure(shown, masks) for score, measure in LOCALISATION.items()}


@SCORERS.register("stability")
class Stability:
    """RIS, ROS and one sample of Max-Sensitivity (:mod:`gcdash.metrics.stability`) of each (clean, attacked) pair
    of maps, from what the sweep already has: both maps, both images, both logits (no pass of its own). Columns
    ``ris``, ``ros`` (NaN where the attack changed the top-1, as Quantus has them) and ``max_sens``; NaN for a pair
    with an all-zero map."""

    name, pairs, separable = "stability", True, False
    scores = ("ris", "ros", "max_sens")

    def __init__(self) -> None:
        self.passes = 0

    @classmethod
    def configured(cls, wanted: Wanted) -> Stability | None:
        return cls() if wanted.stability else None

    def key(self) -> list:
        return [self.name, stability.EPS_MIN]

    def wants(self, batch: Batch) -> bool:
        return True

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        eps, layer = cell
        size, settings = tuple(batch.x.shape[-2:]), keys.short(self.key())
        maps = list(zip(ctx.cells.maps(batch, 0.0, layer), ctx.cells.maps(batch, eps, layer)))
        return {s: [keys.pair(a, b, size, f"{settings}:{s}") for a, b in maps] for s in self.scores}

    def score(
        self, ctx: Context, batch: Batch, cell: Cell, idx: list[int], names: Sequence[str], maps: Maps
    ) -> dict[str, np.ndarray]:
        eps, _ = cell
        clean, attacked = maps(0.0, idx), maps(eps, idx)
        x, x_adv = (ctx.images(batch, e, idx).to(clean.device) for e in (0.0, eps))
        h, h_adv = (torch.from_numpy(batch.logits[e][idx]).to(clean.device) for e in (0.0, eps))
        changed = h.argmax(dim=1) != h_adv.argmax(dim=1)
        empty = (clean.flatten(1).amax(1) <= 0) | (attacked.flatten(1).amax(1) <= 0)
        values = {
            "ris": stability.ris(x, x_adv, clean, attacked, changed),
            "ros": stability.ros(h, h_adv, clean, attacked, changed),
            "max_sens": stability.sensitivity(clean, attacked),
        }
        return {s: torch.where(empty, torch.nan, v).cpu().numpy() for s, v in values.items()}

    def columns(self) -> list[str]:
        return list(self.scores)

    def block(self, scores: Mapping[ScoreKey, np.ndarray], eps: float, layer: str) -> dict[str, np.ndarray]:
        return {s: scores[(s, eps, layer)] for s in self.scores}
