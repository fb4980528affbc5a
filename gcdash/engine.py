"""Cells of one model: per image, the clean and attacked logits, the CAM maps of every requested layer and their
comparisons, and, where the images come with object masks, where each map sits (pointing game, mass inside:
:mod:`gcdash.metrics.localisation`), each read from the store or computed once (keys: :mod:`gcdash.keys`).

Model work per image on a cold cache: one CAM pass for the clean image (all layers), the attack's own passes
(FGSM: one gradient for every eps; PGD: ``steps`` per eps; the noise control: none) and one CAM pass per eps > 0
for the attacked image (all layers). eps = 0 reuses the clean pass (``x' = x``). A warm cache makes no pass; a new
eps costs one CAM pass per image (FGSM's direction is cached); a new layer ``1 + n_eps``; a new attack reuses every
clean cell; a new comparison is computed from cached maps and makes no model pass; so is localisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from gcdash import cams, keys, metrics
from gcdash.adversary import Adversary
from gcdash.config import NISSIM, AttackConfig, CompareConfig, SweepConfig
from gcdash.data import Samples
from gcdash.errors import Cancelled, GcdashError
from gcdash.metrics import faithfulness as faith
from gcdash.metrics.localisation import LOCALISATION
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress, ShouldStop
from gcdash.store import Store
from gcdash.targets import TARGETS

Cell = tuple[float, str]  # (eps, layer)
Upsampled = Callable[[float, list[int]], torch.Tensor]  # (eps, images) → their maps at the input size, on device
Scores = dict[str, float]  # cache key → score
#: Where a batch keeps each kind of score: (score, eps, layer) → (N,)
SCORED_INTO = {"comparison": "raw", "localisation": "loc", "faithfulness": "faith"}
NO_SCORE = -1.0  # stored for a localisation or faithfulness score that does not exist (an all-zero map): NaN
#: Which raw maps a pass stores (logits, attack states and every scalar are always stored): ``all``; ``gallery``,
#: the model's default layer only (what the gallery opens on); ``none``. A map not stored is recomputed by one CAM
#: pass when something asks for it (the gallery, a new comparison); the numbers do not depend on the policy.
KEEP_MAPS = ("all", "gallery", "none")


@dataclass
class Batch:
    """A slice of the samples being worked on, with what has been learned about it so far."""

    x: torch.Tensor
    hashes: list[str]
    labels: np.ndarray
    variants: dict[float, list[str]] = field(default_factory=dict)
    logits: dict[float, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # raw maps by key, as read or computed
    raw: dict[tuple[str, float, str], np.ndarray] = field(default_factory=dict)  # (comparison, eps, layer) → (N,)
    masks: torch.Tensor | None = None  # bool (N, H, W) object masks at the input size, when the source has them
    mask_hashes: list[str] = field(default_factory=list)
    loc: dict[tuple[str, float, str], np.ndarray] = field(default_factory=dict)  # (score, eps, layer) → (N,)
    faith: dict[tuple[str, float, str], np.ndarray] = field(default_factory=dict)  # (curve, eps, layer) → AUC (N,)

    def __len__(self) -> int:
        return len(self.hashes)

    def pred(self, eps: float) -> np.ndarray:
        return self.logits[eps].argmax(axis=1)


@dataclass
class Views:
    """What the gallery shows for one eps and layer: images (N, 3, H, W), maps (N, H, W) in [0, 1], the rows, the
    object masks (where the source has them)."""

    clean: np.ndarray
    adv: np.ndarray
    clean_map: np.ndarray
    adv_map: np.ndarray
    table: pd.DataFrame
    masks: np.ndarray | None = None  # bool (N, H, W) object masks at the input size, when the source has them


class ModelEngine:
    """The cells of ``handle`` under one CAM method, target policy, attack and set of comparisons, in ``store``.

    ``source`` is the handle a transfer attack crafts its perturbation on (None: ``handle`` itself). ``passes``
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
        faithfulness: faith.Faithfulness | None = None,
        keep_maps: str = "all",
    ) -> None:
        self.handle, self.store = handle, store
        self.method = cams.get(method)
        self.params = self.method.params(**(params or {}))
        self.method_key = keys.short([method, sorted(self.params.items())])
        self.policy = TARGETS.get(target)
        self.adversary = Adversary(handle, store, attack or AttackConfig(), source)
        self.comparisons = [_comparison(c) for c in comparisons]
        self.recorded = [*self.comparisons, _empty_maps()]  # what is stored per pair: the comparisons, empty maps
        self._by_name = {c.name: (c, p) for c, p, _ in self.recorded}
        if batch_size < 1:
            raise GcdashError(f"batch size must be ≥ 1, got {batch_size}")
        self.batch_size = batch_size
        self.cam_passes = 0
        if keep_maps not in KEEP_MAPS:
            raise GcdashError(f"keep_maps must be one of {', '.join(KEEP_MAPS)}, got {keep_maps!r}")
        self.keep_maps = keep_maps
        self.faithfulness = faithfulness
        self.faith_key = keys.short(faithfulness.key()) if faithfulness else ""
        self.faith_passes = 0

    @property
    def passes(self) -> int:
        """Image-passes run by this engine: CAM passes, the attack's own, and faithfulness's forward passes."""
        return self.cam_passes + self.adversary.passes + self.faith_passes

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
        """The engine of ``handle`` under ``config``; a transfer attack's source model comes from ``handles`` or is
        loaded with its default weights."""
        source = None
        if config.attack.source:
            from gcdash import models

            source = (handles or {}).get(config.attack.source) or models.load(config.attack.source)
            source.to(handle.device)
        return cls(
            handle, store, config.cam.method, dict(config.cam.params), config.target,
            attack=config.attack, comparisons=config.comparisons, source=source, batch_size=batch_size,
            faithfulness=faith.Faithfulness() if config.faithfulness else None, keep_maps=keep_maps,
        )  # fmt: skip

    # -- public -------------------------------------------------------------------------------------------
    def table(
        self,
        samples: Samples,
        eps: Sequence[float],
        layers: str | Sequence[str] | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> pd.DataFrame:
        """Per-image rows for every (layer, eps): labels, predictions, confidences, SSIM, NISSIM and every other
        comparison's dissimilarity; sorted by layer (catalog order), eps and image (the samples' order)."""
        table = pd.concat(list(self.rows(samples, eps, layers, progress, should_stop)), ignore_index=True)
        return canonical_order(table)

    def rows(
        self,
        samples: Samples,
        eps: Sequence[float],
        layers: str | Sequence[str] | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The rows of :meth:`table` one batch at a time, as each batch's cells are filled (for streaming them to
        disk: nothing of earlier batches is kept)."""
        names = self.handle.resolve_layers(layers)
        eps_list = sorted({float(e) for e in eps})
        settings = self._settings(eps_list, names)
        for part in self._parts(samples, progress, should_stop):
            yield self._part_rows(part, eps_list, names, settings)

    def gallery(self, samples: Samples, eps: float, layer: str, progress: Progress | None = None) -> Views:
        """Clean and attacked images and maps at the input resolution with their rows, for the gallery: the maps
        the comparisons were computed from, read once (no second pass over the store)."""
        eps, parts = float(eps), []
        for part in self._parts(samples, progress, None):
            batch = self.ensure(part, [eps], [layer])
            self._load_maps(batch, {(0.0, layer): range(len(batch)), (eps, layer): range(len(batch))})
            clean_map, adv_map = (self._upsampled(batch, e, layer).cpu().numpy() for e in (0.0, eps))
            adv = batch.x if eps == 0 else self._adversarial(batch, eps, list(range(len(batch))))
            masks = None if batch.masks is None else batch.masks.numpy()
            rows = self._rows(part, batch, [eps], [layer])
            parts.append((batch.x.numpy(), adv.cpu().numpy(), clean_map, adv_map, rows, masks))
        clean, adv, clean_map, adv_map, rows, masks = zip(*parts)
        arrays = (np.concatenate(p) for p in (clean, adv, clean_map, adv_map))
        masks = None if any(m is None for m in masks) else np.concatenate(masks)
        return Views(*arrays, pd.concat(rows, ignore_index=True), masks)

    # -- batches ------------------------------------------------------------------------------------------
    def _parts(self, samples: Samples, progress: Progress | None, should_stop: ShouldStop | None) -> Iterator[Samples]:
        """The samples in batches of ``batch_size``, with progress after each and a cancel check before each."""
        for start in range(0, len(samples), self.batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after {start} of {len(samples)} images of {self.handle.name}")
            part = samples.subset(range(start, min(start + self.batch_size, len(samples))))
            yield part
            if progress is not None:
                progress(start + len(part), len(samples), self.handle.name)

    def _settings(self, eps_list: Sequence[float], layers: Sequence[str]) -> str:
        """What a batch's rows depend on besides its images: the digest in :func:`gcdash.keys.rows`."""
        attack = self.adversary
        crafter = attack.source.digest if attack.source is not None else "self"
        compared = [digest for _, _, digest in self.recorded]
        return keys.short(
            [keys.ROWS_VERSION, self.method_key, self.policy.name, attack.key, crafter, compared, self.faith_key,
             list(eps_list), list(layers)]
        )  # fmt: skip

    def _part_rows(
        self, samples: Samples, eps_list: Sequence[float], layers: Sequence[str], settings: str
    ) -> pd.DataFrame:
        """One batch's rows: read whole when the same batch was finished before (one read for the batch, not one
        per cell), else made from its cells (:meth:`ensure`) and stored whole too (unless the cache is read-only:
        then the cells it holds serve the batch)."""
        batch = self._start(samples)
        memo = keys.rows(self.handle.digest, settings, batch.hashes, batch.labels, batch.mask_hashes or None)
        columns = self._value_columns(batch.masks is not None)
        found = self.store.get_arrays([memo]).get(memo)
        if found is not None:
            rows = _unpack_rows(found, layers, eps_list, samples.ids, columns)
            if rows is not None:
                return rows
        with self.store.deferred():
            self._ensure(batch, eps_list, layers)
            rows = self._rows(samples, batch, eps_list, layers)
            if not self.store.read_only:
                self.store.put_arrays({memo: _pack_rows(rows)}, "rows", self.handle.owner)
        return rows

    def ensure(self, samples: Samples, eps_list: Sequence[float], layers: Sequence[str]) -> Batch:
        """Make sure every cell of ``samples`` × ``eps_list`` × ``layers`` is in the store (written in one
        transaction, see :meth:`Store.deferred`); return the batch."""
        with self.store.deferred():
            return self._ensure(self._start(samples), eps_list, layers)

    def _start(self, samples: Samples) -> Batch:
        """The batch as the model sees it: preprocessed images, their content hashes, labels, object masks."""
        x = self.handle.preprocess(samples.images)
        batch = Batch(x, [keys.image_hash(xi) for xi in x], np.asarray(samples.labels))
        if samples.masks is not None:
            batch.masks = self.handle.preprocess_masks(samples.masks)
            batch.mask_hashes = [keys.mask_hash(m) for m in batch.masks]
        return batch

    def _ensure(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> Batch:
        batch.variants[0.0] = keys.variants(self.handle.digest, batch.hashes, None, 0.0)
        self._ensure_logits(batch, 0.0, layers)
        parts = self.adversary.parts(batch.labels, batch.pred(0.0))
        for eps in (e for e in eps_list if e > 0):
            batch.variants[eps] = keys.variants(self.handle.digest, batch.hashes, parts, eps)
            self._ensure_logits(batch, eps, layers)
        self._ensure_scores(batch, eps_list, layers)
        return batch

    # -- CAM passes ---------------------------------------------------------------------------------------
    def _adversarial(self, batch: Batch, eps: float, idx: list[int]) -> torch.Tensor:
        hashes = [batch.hashes[i] for i in idx]
        return self.adversary.images(batch.x[idx], hashes, batch.labels[idx], batch.pred(0.0)[idx], eps)

    def _targets(self, batch: Batch, eps: float, idx: Sequence[int] | None = None) -> np.ndarray:
        """The class each map at ``eps`` explains, under the target policy."""
        source = self.policy.clean if eps == 0 else self.policy.adv
        if source == "label":
            if (batch.labels < 0).any():
                raise GcdashError("target policy 'label' needs labelled images; use --target pred for unlabelled ones")
            out = batch.labels
        else:
            out = batch.pred(0.0 if source == "clean" else eps)
        return np.asarray(out if idx is None else out[list(idx)], dtype=np.int64)

    def _map_keys(self, batch: Batch, eps: float, layer: str, idx: Sequence[int] | None = None) -> list[str]:
        idx = range(len(batch)) if idx is None else idx
        targets = self._targets(batch, eps, idx)
        variants = batch.variants[eps]
        return [keys.map_key(variants[i], self.method_key, t, layer) for i, t in zip(idx, targets)]

    def _ensure_logits(self, batch: Batch, eps: float, layers: Sequence[str]) -> None:
        logit_keys = [keys.logits(v) for v in batch.variants[eps]]
        found = self.store.get_arrays(logit_keys)
        todo = [i for i, k in enumerate(logit_keys) if k not in found]
        if found:
            width = len(next(iter(found.values())))
            batch.logits[eps] = np.stack([found.get(k, np.full(width, np.nan, np.float32)) for k in logit_keys])
        if todo:
            source = self.policy.clean if eps == 0 else self.policy.adv
            known = None if source == "own" else [int(t) for t in self._targets(batch, eps, todo)]
            self._pass(batch, eps, todo, layers, known)

    def _pass(self, batch: Batch, eps: float, idx: list[int], layers: Sequence[str], targets: list[int] | None) -> None:
        """One CAM pass over ``idx`` at ``eps`` for all ``layers``; stores logits and raw maps."""
        x = batch.x[idx] if eps == 0 else self._adversarial(batch, eps, idx)
        result = cams.explain(self.handle, x, list(layers), self.method.name, targets, **self.params)
        self.cam_passes += len(idx)
        logits = result.logits.float().numpy()
        self._require_finite("logits", logits, eps)
        for layer in layers:
            self._require_finite(f"CAM maps at layer {layer}", result.maps[layer], eps)
        if eps not in batch.logits:
            batch.logits[eps] = np.full((len(batch), logits.shape[1]), np.nan, np.float32)
        batch.logits[eps][idx] = logits
        variants = batch.variants[eps]
        self.store.put_arrays(
            {keys.logits(variants[i]): logits[j] for j, i in enumerate(idx)}, "logits", self.handle.digest
        )
        maps = {
            keys.map_key(variants[i], self.method_key, int(result.targets[j]), layer): result.maps[layer][j]
            for layer in layers
            for j, i in enumerate(idx)
        }
        kept = {k: v for k, v in maps.items() if self._keeps(k)}
        if kept:
            self.store.put_arrays(kept, "map", self.handle.owner)
        batch.maps.update(maps)  # this batch's comparisons still use them all

    def _keeps(self, map_key: str) -> bool:
        """Whether the retention policy stores the map under ``map_key`` (its layer is the key's last part)."""
        if self.keep_maps == "all":
            return True
        return self.keep_maps == "gallery" and map_key.endswith(f":{self.handle.default_layer}")

    def _upsampled(self, batch: Batch, eps: float, layer: str, idx: Sequence[int] | None = None) -> torch.Tensor:
        """The maps of images ``idx`` at (eps, layer) at the input size on the model's device, as pytorch-grad-cam
        returns them (:func:`gcdash.cams.upsample_tensor`); the raw maps must be in ``batch.maps`` (see
        :meth:`_load_maps`)."""
        map_keys = self._map_keys(batch, eps, layer, idx)
        raw = torch.from_numpy(np.stack([batch.maps[k] for k in map_keys])).to(self.handle.device)
        return cams.upsample_tensor(raw, tuple(batch.x.shape[-2:]))

    def _load_maps(self, batch: Batch, needed: Mapping[Cell, Sequence[int]]) -> None:
        """Make the raw maps of ``needed`` ((eps, layer) → image indices) available in ``batch.maps``: read from
        the store in one pass, and the missing ones computed in one CAM pass per eps (e.g. a new layer)."""
        wanted = {cell: dict(zip(idx, self._map_keys(batch, cell[0], cell[1], idx))) for cell, idx in needed.items()}
        absent = [k for per in wanted.values() for k in per.values() if k not in batch.maps]
        batch.maps.update(self.store.get_arrays(sorted(set(absent))))
        by_eps: dict[float, dict[int, set[str]]] = {}
        for (eps, layer), per in wanted.items():
            for i, key in per.items():
                if key not in batch.maps:
                    by_eps.setdefault(eps, {}).setdefault(i, set()).add(layer)
        order = list(self.handle.layers).index
        for eps, todo in sorted(by_eps.items()):
            idx = sorted(todo)
            layers = sorted(set().union(*todo.values()), key=order)
            self._pass(batch, eps, idx, layers, [int(t) for t in self._targets(batch, eps, idx)])

    # -- scores: comparisons of map pairs, localisation and faithfulness of single maps ----------------------
    def _ensure_scores(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> None:
        """Every score of the batch's cells (comparisons of each clean/attacked pair; localisation and
        faithfulness of each map), read from the store; the missing ones computed layer by layer from maps
        upsampled once on the model's device, shared by every score of that layer and then dropped (a few
        (N, H, W) tensors at a time however many layers) and stored layer by layer."""
        wanted = self._score_keys(batch, eps_list, layers)
        todo = {
            kind: self._read_scores(ks, getattr(batch, SCORED_INTO[kind]), none_marked=kind != "comparison")
            for kind, ks in wanted.items()
        }
        todo = {kind: per if kind == "comparison" else self._by_cell(per) for kind, per in todo.items()}
        if not any(todo.values()):
            return
        self._load_maps(batch, _maps_needed(todo))
        for layer in layers:
            self._score_layer(batch, layer, todo, wanted)

    def _score_keys(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> dict[str, dict]:
        """kind → (score, eps, layer) → the key of each image: comparisons at every eps (pairs), localisation
        (where the images have masks) and faithfulness (when asked for) of every map, the clean ones included."""
        pairs = [(e, layer) for e in eps_list for layer in layers]
        singles = sorted({(e, layer) for e in {0.0, *eps_list} for layer in layers})
        wanted = {"comparison": self._comparison_keys(batch, pairs)}
        if batch.masks is not None:
            wanted["localisation"] = self._localisation_keys(batch, singles)
        if self.faithfulness is not None:
            wanted["faithfulness"] = self._faithfulness_keys(batch, singles)
        return wanted

    def _score_layer(self, batch: Batch, layer: str, todo: dict, wanted: dict) -> None:
        """Compute and store the scores ``todo`` of one layer (kind → (…, eps, layer) → images; ``wanted``: kind →
        (…, eps, layer) → each image's key)."""
        shown: dict[tuple, torch.Tensor] = {}  # this layer's maps at the input size, each made once

        def upsampled(eps: float, idx: list[int]) -> torch.Tensor:
            if (eps, tuple(idx)) not in shown:
                shown[(eps, tuple(idx))] = self._upsampled(batch, eps, layer, idx)
            return shown[(eps, tuple(idx))]

        scorers = {"comparison": self._compare, "localisation": self._localise, "faithfulness": self._faithfulness}
        for kind, per in todo.items():
            new: Scores = {}
            for what, idx in per.items():
                if what[-1] == layer:
                    new.update(scorers[kind](batch, what, idx, upsampled, wanted[kind]))
            if new:
                self.store.put_scalars(new, kind, self.handle.owner)

    def _read_scores(self, wanted: dict[tuple, list[str]], into: dict, none_marked: bool) -> dict[tuple, list[int]]:
        """Read the scores ``wanted`` (what → keys) into ``into`` (NaN where missing, and where stored as
        :data:`NO_SCORE` if ``none_marked``: a comparison's −1 is a real score, Spearman's ρ of inverted ranks);
        return, per what, the images whose score must be computed."""
        found = self.store.get_scalars([k for ks in wanted.values() for k in ks])
        missing = {}
        for what, ks in wanted.items():
            values = np.array([found.get(k, np.nan) for k in ks], dtype=np.float64)
            into[what] = np.where(values == NO_SCORE, np.nan, values) if none_marked else values
            idx = [i for i, k in enumerate(ks) if k not in found]
            if idx:
                missing[what] = idx
        return missing

    @staticmethod
    def _by_cell(missing: dict[tuple, list[int]]) -> dict[Cell, list[int]]:
        """(score, eps, layer) → images, as (eps, layer) → the images any score of that map still needs."""
        out: dict[Cell, set[int]] = {}
        for (_, eps, layer), idx in missing.items():
            out.setdefault((eps, layer), set()).update(idx)
        return {cell: sorted(idx) for cell, idx in out.items()}

    # -- comparisons --------------------------------------------------------------------------------------
    def _pair_keys(self, batch: Batch, cell: Cell) -> dict[str, list[str]]:
        """The pair keys of one (eps, layer) cell, per recorded comparison (map keys computed once)."""
        eps, layer = cell
        size = tuple(batch.x.shape[-2:])
        maps = list(zip(self._map_keys(batch, 0.0, layer), self._map_keys(batch, eps, layer)))
        return {c.name: [keys.pair(a, b, size, digest) for a, b in maps] for c, _, digest in self.recorded}

    def _comparison_keys(self, batch: Batch, cells: Sequence[Cell]) -> dict[tuple, list[str]]:
        """(comparison, eps, layer) → the pair key of each image."""
        return {(name, *cell): ks for cell in cells for name, ks in self._pair_keys(batch, cell).items()}

    def _compare(self, batch: Batch, what: tuple, idx: list[int], upsampled: Upsampled, wanted: dict) -> Scores:
        name, eps, layer = what
        comparison, params = self._by_name[name]
        values = comparison.raw(upsampled(0.0, idx), upsampled(eps, idx), **params)
        self._require_finite(f"{name} scores at layer {layer}", values, eps)
        batch.raw[what][idx] = values
        return {wanted[what][i]: float(v) for i, v in zip(idx, values)}

    # -- localisation -------------------------------------------------------------------------------------
    def _localisation_keys(self, batch: Batch, cells: Sequence[Cell]) -> dict[tuple, list[str]]:
        """(score, eps, layer) → the key of each image's pointing-game hit or mass inside its object mask: scores
        of the maps (read or made by a CAM pass), never a pass of their own."""
        size = tuple(batch.x.shape[-2:])
        out = {}
        for cell in cells:
            maps = self._map_keys(batch, *cell)
            for s in LOCALISATION:
                out[(s, *cell)] = [keys.localisation(k, h, size, s) for k, h in zip(maps, batch.mask_hashes)]
        return out

    def _localise(self, batch: Batch, cell: Cell, idx: list[int], upsampled: Upsampled, wanted: dict) -> Scores:
        eps, layer = cell
        maps = upsampled(eps, idx)
        masks = batch.masks[idx].to(self.handle.device)
        new = {}
        for score, measure in LOCALISATION.items():
            values = measure(maps, masks)
            batch.loc[(score, eps, layer)][idx] = values
            ks = wanted[(score, eps, layer)]
            new.update({ks[i]: float(v) if np.isfinite(v) else NO_SCORE for i, v in zip(idx, values)})
        return new

    # -- faithfulness -------------------------------------------------------------------------------------
    def _faithfulness_keys(self, batch: Batch, cells: Sequence[Cell]) -> dict[tuple, list[str]]:
        """(curve, eps, layer) → the key of each image's deletion or insertion area of its map, on the image it
        explains (the clean map on the clean image, the attacked map on the attacked one)."""
        size = tuple(batch.x.shape[-2:])
        return {
            (curve, eps, layer): [keys.faithfulness(k, size, self.faith_key, curve)
                                  for k in self._map_keys(batch, eps, layer)]
            for eps, layer in cells for curve in ("deletion", "insertion")
        }  # fmt: skip

    def _faithfulness(self, batch: Batch, cell: Cell, idx: list[int], upsampled: Upsampled, wanted: dict) -> Scores:
        eps, layer = cell
        maps = upsampled(eps, idx)
        x = batch.x[idx] if eps == 0 else self._adversarial(batch, eps, idx)
        targets = torch.from_numpy(self._targets(batch, eps, idx))
        device = self.handle.device
        with self.handle.lock:
            found_curves = faith.curves(self.handle.net, x.to(device), maps, targets, self.faithfulness)
        self.faith_passes += len(idx) * self.faithfulness.passes
        empty = (maps.flatten(1).amax(1) <= 0).cpu().numpy()  # no ranking of pixels: no curve to speak of
        new = {}
        for curve, values in found_curves.items():
            areas = faith.auc(values).double().cpu().numpy()
            self._require_finite(f"{curve} areas at layer {layer}", areas, eps)
            areas[empty] = np.nan
            batch.faith[(curve, eps, layer)][idx] = areas
            ks = wanted[(curve, eps, layer)]
            new.update({ks[i]: NO_SCORE if np.isnan(v) else float(v) for i, v in zip(idx, areas)})
        return new

    def _require_finite(self, what: str, values: np.ndarray, eps: float) -> None:
        """Refuse NaN and infinity with one line naming the model, before any of them is stored (what the batch
        finished before them is kept: it is valid)."""
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise GcdashError(
                f"model {self.handle.name} gave non-finite {what} (NaN or inf) for {int(bad.sum())} of {len(values)} "
                f"images at eps {eps:g}: are its weights broken (a diverged fine-tune)? Nothing of them was stored"
            )

    # -- rows ---------------------------------------------------------------------------------------------
    def _rows(self, samples: Samples, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> pd.DataFrame:
        """The per-image rows of one batch, one block per (layer, eps), made as whole columns."""
        probs = {e: _softmax(batch.logits[e]) for e in {0.0, *eps_list}}
        blocks = [self._block(batch, probs, layer, e) for layer in layers for e in eps_list]
        names = self._value_columns(batch.masks is not None)
        return _frame(layers, eps_list, samples.ids, {n: np.concatenate([b[n] for b in blocks]) for n in names})

    def _value_columns(self, masked: bool) -> list[str]:
        """The columns of a batch's rows after layer, eps and image id, in order (what :meth:`_block` makes)."""
        names = ["label", "pred_clean", "pred_adv", "conf_clean", "conf_adv"]
        for comparison, _, _ in self.comparisons:
            names += [comparison.raw_name, comparison.name] if comparison.raw_name else [comparison.name]
        names += ["zero_clean", "zero_adv"]
        if self.faithfulness is not None:
            names += ["del_clean", "del_adv", "ins_clean", "ins_adv"]
        if masked:
            names += [f"{score}_{side}" for score in LOCALISATION for side in ("clean", "adv")]
        return names

    def _block(self, batch: Batch, probs: dict[float, np.ndarray], layer: str, e: float) -> dict[str, np.ndarray]:
        """The columns of one (layer, eps) block but its layer, eps and image ids."""
        clean, adv = probs[0.0], probs[e]
        block = {
            "label": batch.labels.astype(int), "pred_clean": clean.argmax(1), "pred_adv": adv.argmax(1),
            "conf_clean": clean.max(1).astype(np.float64), "conf_adv": adv.max(1).astype(np.float64),
        }  # fmt: skip
        empty = batch.raw[("empty", e, layer)].astype(int)
        none = empty > 0  # a pair with an all-zero map has no dissimilarity to speak of
        for comparison, _, _ in self.comparisons:
            raw = np.where(none, np.nan, batch.raw[(comparison.name, e, layer)])
            if comparison.raw_name:
                block[comparison.raw_name] = raw
            block[comparison.name] = comparison.dissimilarity(raw)
        block["zero_clean"], block["zero_adv"] = (empty & 1) > 0, (empty & 2) > 0
        if self.faithfulness is not None:
            for curve, short in (("deletion", "del"), ("insertion", "ins")):
                block[f"{short}_clean"] = batch.faith[(curve, 0.0, layer)]
                block[f"{short}_adv"] = batch.faith[(curve, e, layer)]
        if batch.masks is not None:
            for score in LOCALISATION:
                block[f"{score}_clean"] = batch.loc[(score, 0.0, layer)]
                block[f"{score}_adv"] = batch.loc[(score, e, layer)]
        return block


def canonical_order(table: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Rows sorted as :meth:`ModelEngine.table` returns them: by layer and image in the order they first appear
    (each batch lists the layers in catalog order and its images in the samples' order), then eps; within each
    value of the ``group`` column first (one model's table), when given."""
    if table.empty:
        return table.reset_index(drop=True)
    groups = table[group] if group else pd.Series(0, index=table.index)

    def first_seen(column: str) -> np.ndarray:  # within each group: another model's layers are its own
        return table.groupby(groups, sort=False)[column].transform(lambda s: pd.factorize(s)[0]).to_numpy()

    keys = [groups.to_numpy(), first_seen("layer"), table["eps"].to_numpy(), first_seen("image_id")]
    return table.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)


def _frame(layers: Sequence[str], eps_list: Sequence[float], ids: Sequence[str], values: Mapping) -> pd.DataFrame:
    """Rows of one batch from their value columns (label first), layer-major then eps then image, as
    :meth:`ModelEngine.table` lists them."""
    n = len(ids)
    front = {
        "layer": np.repeat(np.array(list(layers), dtype=object), n * len(eps_list)),
        "eps": np.repeat(np.tile(np.asarray(eps_list, dtype=np.float64), len(layers)), n),
        "image_id": np.tile(np.array(list(ids), dtype=object), len(layers) * len(eps_list)),
    }
    return pd.DataFrame({**front, **{name: np.asarray(values[name]) for name in values}})


def _pack_rows(rows: pd.DataFrame) -> np.ndarray:
    """A batch's value columns as one structured array (what the store keeps; no object field, so it is saved
    and read without pickle); layer, eps and image ids follow from the batch and the sweep."""
    return rows.drop(columns=["layer", "eps", "image_id"]).to_records(index=False).view(np.ndarray)


def _unpack_rows(
    kept: np.ndarray, layers: Sequence[str], eps_list: Sequence[float], ids: Sequence[str], columns: Sequence[str]
) -> pd.DataFrame | None:
    """The rows :func:`_pack_rows` kept, with this batch's image ids (None if they do not fit the batch: other
    columns, another number of rows)."""
    if kept.dtype.names != tuple(columns) or kept.ndim != 1 or len(kept) != len(layers) * len(eps_list) * len(ids):
        return None
    return _frame(layers, eps_list, ids, {name: kept[name] for name in kept.dtype.names})


def _maps_needed(todo: dict[str, dict[tuple, list[int]]]) -> dict[Cell, list[int]]:
    """The maps the scores ``todo`` read: both maps of each pair compared, the map itself for the others."""
    needed: dict[Cell, set[int]] = {}
    for kind, per in todo.items():
        for what, idx in per.items():
            eps, layer = what[-2:]
            cells = [(0.0, layer), (eps, layer)] if kind == "comparison" else [(eps, layer)]
            for cell in cells:
                needed.setdefault(cell, set()).update(idx)
    return {cell: sorted(idx) for cell, idx in needed.items()}


def _empty_maps() -> tuple[metrics.Comparison, dict, str]:
    """The record of which maps are all zero, kept beside the comparisons (see ``EmptyMaps``)."""
    from gcdash.metrics.compare import EmptyMaps

    empty = EmptyMaps()
    return empty, {}, keys.short(empty.key({}))


def _comparison(config: CompareConfig) -> tuple[metrics.Comparison, dict, str]:
    """A comparison, its full parameters and the digest of both (its part of a pair key)."""
    comparison = metrics.comparison(config.name)
    params = comparison.params(**dict(config.params))
    return comparison, params, keys.short(comparison.key(params))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
