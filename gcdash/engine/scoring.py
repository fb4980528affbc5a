"""Scores of a batch's maps: a :class:`Scorer` protocol, the :data:`SCORERS` registry, and :class:`Scoring`, which
reads every scorer's scores from the store and computes the missing ones from maps upsampled once per layer.

A scorer scores either each (clean map, attacked map) pair at every eps (``pairs``: the comparisons) or each map
alone, the clean ones included (localisation, faithfulness). To add one, write a file with a :class:`MapScorer`
subclass (or any class that fits :class:`Scorer`), register it with ``@SCORERS.register(name)`` and import it in
``gcdash/engine/__init__.py``; its columns appear in the rows. The built-in ones are in
:mod:`gcdash.engine.scorers`.

"No score" (an all-zero map has no curve and no place on the object) is NaN in memory for every scorer; the store
holds finite numbers only, so it keeps :data:`NO_SCORE` in its place: :func:`stored` and :func:`read` are the one
place that decides it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from gcdash import keys
from gcdash.config import CompareConfig
from gcdash.engine.batch import Batch, Cell, Cells, ScoreKey
from gcdash.engine.passes import CamPasses
from gcdash.errors import GcdashError
from gcdash.metrics.faithfulness import Faithfulness
from gcdash.models.handle import ModelHandle
from gcdash.registry import Registry
from gcdash.store import Store

#: How the store keeps "no score" (NaN in memory): a number no score takes (raw comparisons lie in [−1, 3], areas
#: and shares in [0, 1]). Keys of scores once stored with −1 for "none" carry a newer version (:mod:`gcdash.keys`).
NO_SCORE = float(np.finfo(np.float64).min)
Maps = Callable[[float, list[int]], torch.Tensor]  # (eps, images) → their maps at the input size, on the device


def stored(value: float) -> float:
    """A score as the store keeps it: itself, or :data:`NO_SCORE` for NaN."""
    if value == NO_SCORE:
        raise GcdashError(f"a score of {value} cannot be stored: it is the store's mark for no score")
    return NO_SCORE if np.isnan(value) else float(value)


def read(values: np.ndarray) -> np.ndarray:
    """Scores as the store gave them → in memory: :data:`NO_SCORE` is NaN."""
    return np.where(values == NO_SCORE, np.nan, values)


@dataclass(frozen=True)
class Wanted:
    """What a sweep asks of the scorers: its comparisons, deletion / insertion settings (None: not asked), and
    whether the stability measures."""

    comparisons: tuple[CompareConfig, ...]
    faithfulness: Faithfulness | None = None
    stability: bool = False  # RIS, ROS, Max-Sensitivity of each pair (gcdash.metrics.stability)


@dataclass(frozen=True)
class Context:
    """What a scorer may use besides the maps: the model (a scorer that runs it holds ``handle.lock``), the keys
    and targets of the batch's cells, and the images each map explains (clean at eps = 0, else attacked)."""

    handle: ModelHandle
    cells: Cells
    images: Callable[[Batch, float, Sequence[int]], torch.Tensor]


class Scorer(Protocol):
    """One kind of score of a batch's maps."""

    name: str  # its registry name, and the store's kind for its scores
    scores: Sequence[str]  # the names of its scores of each cell
    pairs: bool  # True: each (clean, attacked) pair at every eps; False: every map alone, clean ones included
    separable: bool  # True: each score is computed alone; False: all of a cell's scores at once
    passes: int  # model image-passes it ran (0 for scores of the maps alone)

    @classmethod
    def configured(cls, wanted: Wanted) -> Scorer | None:
        """The scorer as ``wanted`` asks for it, or None when the sweep does not (the registry holds classes)."""

    def key(self) -> list:
        """What its scores depend on besides the maps (its part of a batch's rows key)."""

    def wants(self, batch: Batch) -> bool:
        """Whether it scores ``batch`` (localisation needs object masks)."""

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        """Score → the key of each image's score of ``cell``."""

    def score(
        self, ctx: Context, batch: Batch, cell: Cell, idx: list[int], names: Sequence[str], maps: Maps
    ) -> dict[str, np.ndarray]:
        """Scores ``names`` of images ``idx`` at ``cell`` (float64 (len(idx),), NaN: no score)."""

    def columns(self) -> list[str]:
        """The columns it adds to the rows, in order."""

    def block(self, scores: Mapping[ScoreKey, np.ndarray], eps: float, layer: str) -> dict[str, np.ndarray]:
        """Its columns of the (layer, eps) rows, from its ``scores`` ((score, eps, layer) → (N,))."""


#: name → the class of a scorer (:meth:`Scorer.configured` makes it); the order of registration is the columns'.
SCORERS: Registry[type[Scorer]] = Registry("scorer")


def configured(wanted: Wanted) -> list[Scorer]:
    """Every registered scorer the sweep asks for, in registration order (the order of their columns)."""
    made = (SCORERS.get(name).configured(wanted) for name in SCORERS.names())
    return [scorer for scorer in made if scorer is not None]


class MapScorer:
    """A scorer of each map alone: columns ``<score>_clean`` and ``<score>_adv``; all of a cell's scores at once.
    A subclass names its ``scores`` and writes ``score``; keys, columns and blocks come from here."""

    name: ClassVar[str]
    scores: ClassVar[tuple[str, ...]]
    prefixes: ClassVar[dict[str, str]] = {}  # score → its columns' prefix, where not the score's name
    pairs, separable = False, False

    def __init__(self) -> None:
        self.passes = 0

    @classmethod
    def configured(cls, wanted: Wanted) -> MapScorer | None:
        return cls()

    def key(self) -> list:
        return [self.name]

    def wants(self, batch: Batch) -> bool:
        return True

    def keys(self, ctx: Context, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        size, settings = tuple(batch.x.shape[-2:]), keys.short(self.key())
        maps = ctx.cells.maps(batch, *cell)
        return {s: [keys.map_score(self.name, k, size, settings, s) for k in maps] for s in self.scores}

    def columns(self) -> list[str]:
        return [f"{self.prefixes.get(s, s)}_{side}" for s in self.scores for side in ("clean", "adv")]

    def block(self, scores: Mapping[ScoreKey, np.ndarray], eps: float, layer: str) -> dict[str, np.ndarray]:
        out = {}
        for s in self.scores:
            out[f"{self.prefixes.get(s, s)}_clean"] = scores[(s, 0.0, layer)]
            out[f"{self.prefixes.get(s, s)}_adv"] = scores[(s, eps, layer)]
        return out


Job = tuple[Cell, list[int], list[str]]  # a cell, the images to score, the scores to compute


class Scoring:
    """The scores of ``scorers`` over batches: read from ``store``, the missing ones computed from the maps of
    ``cam`` layer by layer (maps upsampled once on the model's device, shared by every score of that layer, then
    dropped) and stored layer by layer."""

    def __init__(self, scorers: Sequence[Scorer], store: Store, cam: CamPasses) -> None:
        self.scorers, self.store, self.cam = list(scorers), store, cam
        self.context = Context(cam.handle, cam.cells, cam.images)

    @property
    def passes(self) -> int:
        return sum(s.passes for s in self.scorers)

    def active(self, batch: Batch) -> list[Scorer]:
        return [s for s in self.scorers if s.wants(batch)]

    def ensure(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> None:
        """Every score of the batch's cells in ``batch.scores``, stored."""
        active = self.active(batch)
        wanted = {s.name: self._keys(s, batch, eps_list, layers) for s in active}
        found = self.store.get_scalars([k for per in wanted.values() for ks in per.values() for k in ks])
        todo = {s.name: self._read(s, batch, wanted[s.name], found) for s in active}
        if not any(todo.values()):
            return
        self.cam.load_maps(batch, _maps_needed(active, todo))
        for layer in layers:
            self._score_layer(batch, layer, active, todo, wanted)

    def _keys(self, scorer: Scorer, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> dict:
        """(score, eps, layer) → each image's key: pairs at every eps, or every map (the clean ones included)."""
        if scorer.pairs:
            cells = [(e, layer) for e in eps_list for layer in layers]
        else:
            cells = sorted({(e, layer) for e in {0.0, *eps_list} for layer in layers})
        return {(s, *cell): ks for cell in cells for s, ks in scorer.keys(self.context, batch, cell).items()}

    @staticmethod
    def _read(scorer: Scorer, batch: Batch, wanted: dict[ScoreKey, list[str]], found: Mapping) -> list[Job]:
        """Put the ``found`` scores in ``batch.scores`` (NaN where missing); return the jobs that compute the rest:
        per score, or per cell for all its scores on every image any of them misses."""
        into = batch.scores.setdefault(scorer.name, {})
        missing: dict[ScoreKey, list[int]] = {}
        for what, ks in wanted.items():
            into[what] = read(np.array([found.get(k, np.nan) for k in ks], dtype=np.float64))
            idx = [i for i, k in enumerate(ks) if k not in found]
            if idx:
                missing[what] = idx
        if scorer.separable:
            return [((eps, layer), idx, [s]) for (s, eps, layer), idx in missing.items()]
        by_cell: dict[Cell, set[int]] = {}
        for (_, eps, layer), idx in missing.items():
            by_cell.setdefault((eps, layer), set()).update(idx)
        return [(cell, sorted(idx), list(scorer.scores)) for cell, idx in by_cell.items()]

    def _score_layer(self, batch: Batch, layer: str, active: list[Scorer], todo: dict, wanted: dict) -> None:
        """Compute and store the scores ``todo`` (scorer → jobs) of one layer."""
        shown: dict[tuple, torch.Tensor] = {}  # this layer's maps at the input size, each made once

        def maps(eps: float, idx: list[int]) -> torch.Tensor:
            if (eps, tuple(idx)) not in shown:
                shown[(eps, tuple(idx))] = self.cam.upsampled(batch, eps, layer, idx)
            return shown[(eps, tuple(idx))]

        for scorer in active:
            new: dict[str, float] = {}
            for cell, idx, names in (job for job in todo[scorer.name] if job[0][1] == layer):
                values = scorer.score(self.context, batch, cell, idx, names, maps)
                for name in names:
                    batch.scores[scorer.name][(name, *cell)][idx] = values[name]
                    ks = wanted[scorer.name][(name, *cell)]
                    new.update({ks[i]: stored(v) for i, v in zip(idx, values[name])})
            if new:
                self.store.put_scalars(new, scorer.name, self.cam.handle.owner)


def _maps_needed(scorers: Sequence[Scorer], todo: Mapping[str, list[Job]]) -> dict[Cell, list[int]]:
    """The maps the jobs ``todo`` read: both maps of each pair scored, the map itself for the others."""
    needed: dict[Cell, set[int]] = {}
    for scorer in scorers:
        for (eps, layer), idx, _ in todo[scorer.name]:
            for cell in [(0.0, layer), (eps, layer)] if scorer.pairs else [(eps, layer)]:
                needed.setdefault(cell, set()).update(idx)
    return {cell: sorted(idx) for cell, idx in needed.items()}
