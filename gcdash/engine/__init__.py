"""Cells of one model through the cache, in phases, for one batch at a time: cell keys (:mod:`.batch`) → attack
states (:mod:`.attack`) → CAM passes for logits and raw maps (:mod:`.passes`) → scores of the maps (:mod:`.scoring`,
the built-in scorers in :mod:`.scorers`) → per-image rows and the whole-batch memo (:mod:`.rows`). Each phase reads
the store first and computes only what is missing; nothing here loads a model.

Model work per image on a cold cache: one CAM pass for the clean image (all layers), the attack's own passes
(FGSM: one gradient for every eps; PGD: ``steps`` per eps; the noise control: none) and one CAM pass per eps > 0
for the attacked image (all layers). eps = 0 reuses the clean pass (``x' = x``). A warm cache makes no pass; a new
eps costs one CAM pass per image (FGSM's direction is cached); a new layer ``1 + n_eps``; a new attack reuses every
clean cell; a new comparison is computed from cached maps and makes no model pass; so is localisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pandas as pd

from gcdash import keys
from gcdash.config import NISSIM, AttackConfig, CompareConfig, SweepConfig
from gcdash.data import Samples
from gcdash.engine import scorers as _builtin  # noqa: F401  (registers the built-in scorers)
from gcdash.engine.attack import Adversary
from gcdash.engine.batch import Batch, Cells, batches, start
from gcdash.engine.gallery import Gallery
from gcdash.engine.passes import KEEP_MAPS, CamPasses
from gcdash.engine.rows import batch_rows, canonical_order, keep_rows, kept_rows, value_columns
from gcdash.engine.scoring import Scoring, Wanted, configured
from gcdash.errors import GcdashError
from gcdash.metrics.faithfulness import Faithfulness
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress, ShouldStop
from gcdash.store import Store

__all__ = ["KEEP_MAPS", "Gallery", "ModelEngine", "canonical_order"]
Layers = str | Sequence[str] | None  # a layer selection: "default", "all", names (see ModelHandle.resolve_layers)


class ModelEngine:
    """The cells of ``handle`` under one CAM method, target policy, attack and set of scores, in ``store``.

    ``source`` is the handle a transfer attack crafts its perturbation on (None: ``handle`` itself); ``precision``
    the arithmetic of every model pass (:mod:`gcdash.precision`: both handles are taken at it). ``passes``
    counts image-passes run by this engine (a batch of 8 counts 8; PGD's 10 steps count 10): tests and benchmarks
    read it.
    """

    def __init__(
        self,
        handle: ModelHandle,
        store: Store,
        method: str = "gradcam",
        params: dict | None = None,
        target: str = "pred",
        *,
        attack: AttackConfig | None = None,
        comparisons: Sequence[CompareConfig] = (NISSIM,),
        source: ModelHandle | None = None,
        batch_size: int = 32,
        faithfulness: Faithfulness | None = None,
        keep_maps: str = "all",
        precision: str = "fp32",
        stability: bool = False,
    ) -> None:
        if batch_size < 1:
            raise GcdashError(f"batch size must be ≥ 1, got {batch_size}")
        handle = handle.at_precision(precision)  # the source is taken at the attack's precision by Adversary
        self.handle, self.store, self.batch_size = handle, store, batch_size
        self.cells = Cells(handle, method, params, target)
        self.adversary = Adversary(handle, store, attack or AttackConfig(), source)
        self.cam = CamPasses(handle, store, self.cells, self.adversary, keep_maps)
        self.scoring = Scoring(configured(Wanted(tuple(comparisons), faithfulness, stability)), store, self.cam)

    @property
    def passes(self) -> int:
        """Image-passes run by this engine: CAM passes, the attack's own, and the scorers' (faithfulness). An attack
        state taken from a clean CAM pass's forward is no pass of its own (a backward only): see :attr:`shared`."""
        return self.cam.passes + self.adversary.passes + self.scoring.passes

    @property
    def shared(self) -> int:
        """Images whose attack state rode on their clean CAM pass (one forward, two backward passes)."""
        return self.adversary.shared

    @classmethod
    def from_config(
        cls,
        handle: ModelHandle,
        store: Store,
        config: SweepConfig,
        batch_size: int = 32,
        handles: Mapping[str, ModelHandle] | None = None,
        keep_maps: str = "all",
    ) -> ModelEngine:
        """The engine of ``handle`` under ``config``; a transfer attack's source model comes from ``handles``
        (loaded by the caller: the engine never loads a model)."""
        source = None
        if config.attack.source:
            source = (handles or {}).get(config.attack.source)
            if source is None:
                raise GcdashError(
                    f"transfer source {config.attack.source} is not loaded: pass its handle in handles "
                    "(load_handles loads every model and source of a sweep)"
                )
            source.to(handle.device)
        return cls(
            handle, store, config.cam.method, dict(config.cam.params), config.target,
            attack=config.attack, comparisons=config.comparisons, source=source, batch_size=batch_size,
            faithfulness=Faithfulness() if config.faithfulness else None, keep_maps=keep_maps,
            precision=config.precision, stability=config.stability,
        )  # fmt: skip

    def table(
        self, samples: Samples, eps: Sequence[float], layers: Layers = None,
        progress: Progress | None = None, should_stop: ShouldStop | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Per-image rows for every (layer, eps): labels, predictions, confidences, SSIM, NISSIM and every other
        score's columns; sorted by layer (catalog order), eps and image (the samples' order)."""
        table = pd.concat(list(self.rows(samples, eps, layers, progress, should_stop)), ignore_index=True)
        return canonical_order(table)

    def rows(
        self, samples: Samples, eps: Sequence[float], layers: Layers = None,
        progress: Progress | None = None, should_stop: ShouldStop | None = None,
    ) -> Iterator[pd.DataFrame]:  # fmt: skip
        """The rows of :meth:`table` one batch at a time, as each batch's cells are filled (for streaming them to
        disk: nothing of earlier batches is kept)."""
        names = self.handle.resolve_layers(layers)
        eps_list = sorted({float(e) for e in eps})
        settings = self._settings(eps_list, names)
        for subset in batches(samples, self.batch_size, self.handle.name, progress, should_stop):
            yield self._batch_rows(subset, eps_list, names, settings)

    def gallery(self, samples: Samples, eps: float, layer: str, progress: Progress | None = None) -> Gallery:
        """Clean and attacked images and maps at the input resolution with their rows, for the gallery: the maps
        the scores were computed from, read once (no second pass over the store)."""
        eps, pieces = float(eps), []
        for subset in batches(samples, self.batch_size, self.handle.name, progress, None):
            with self.store.deferred():
                batch = self._fill(start(self.handle, subset), [eps], [layer])
            every = range(len(batch))
            self.cam.load_maps(batch, {(0.0, layer): every, (eps, layer): every})
            clean_map, adv_map = (self.cam.upsampled(batch, e, layer).cpu().numpy() for e in (0.0, eps))
            adv = self.cam.images(batch, eps, every).cpu().numpy()
            rows = batch_rows(batch, subset.ids, self.scoring.active(batch), [eps], [layer])
            masks = None if batch.masks is None else batch.masks.numpy()
            pieces.append(Gallery(self.handle.name, eps, layer, batch.x.numpy(), adv, clean_map, adv_map, rows,
                                  masks=masks))  # fmt: skip
        return Gallery.joined(pieces)

    def _settings(self, eps_list: Sequence[float], layers: Sequence[str]) -> str:
        """What a batch's rows depend on besides its images: the digest in :func:`gcdash.keys.rows`."""
        attack = self.adversary
        crafter = attack.source.digest if attack.source is not None else "self"
        scored = [[scorer.name, scorer.key()] for scorer in self.scoring.scorers]
        return keys.short(
            [keys.ROWS_VERSION, self.cells.method_key, self.cells.policy.name, attack.key, crafter, scored,
             list(eps_list), list(layers)]
        )  # fmt: skip

    def _batch_rows(
        self, samples: Samples, eps_list: Sequence[float], layers: Sequence[str], settings: str
    ) -> pd.DataFrame:
        """One batch's rows: read whole when the same batch was finished before (one read for the batch, not one
        per cell), else made from its cells and kept whole too (unless the cache is read-only: then the cells it
        holds serve the batch)."""
        batch = start(self.handle, samples)
        memo = keys.rows(self.handle.digest, settings, batch.hashes, batch.labels, batch.mask_hashes or None)
        scorers = self.scoring.active(batch)
        rows = kept_rows(self.store, memo, layers, eps_list, samples.ids, value_columns(scorers))
        if rows is not None:
            return rows
        with self.store.deferred():
            rows = batch_rows(self._fill(batch, eps_list, layers), samples.ids, scorers, eps_list, layers)
            keep_rows(self.store, memo, rows, self.handle.owner)
        return rows

    def _fill(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> Batch:
        """Every cell of ``batch`` × ``eps_list`` × ``layers``, phase by phase: clean logits (and maps), each
        eps's variants and logits, then every score."""
        self.cells.name_variants(batch, 0.0, None)
        self.cam.ensure_logits(batch, 0.0, layers, attack_too=any(e > 0 for e in eps_list))
        attacks = self.adversary.variant_attacks(batch)
        for eps in (e for e in eps_list if e > 0):
            self.cells.name_variants(batch, eps, attacks)
            self.cam.ensure_logits(batch, eps, layers)
        self.scoring.ensure(batch, eps_list, layers)
        return batch
