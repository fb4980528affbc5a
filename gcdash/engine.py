"""Cells of one model: per image, the clean and adversarial logits, the CAM maps of every requested layer and
their SSIM, each read from the store or computed once.

Model work per image, on a cold cache: one pass for the clean CAMs (all layers), one gradient for the FGSM
direction, and one pass per eps > 0 for the adversarial CAMs (all layers): ``2 + n_eps`` passes whatever the
number of layers. eps = 0 reuses the clean pass (``x' = x``). A warm cache makes no pass; a new eps costs one pass
per image (the direction is cached); a new layer costs ``1 + n_eps`` passes per image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from gcdash import cams, metrics
from gcdash.attacks import fgsm_direction, perturb
from gcdash.data import Samples
from gcdash.errors import Cancelled, GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.store import Store, cell_key
from gcdash.targets import TARGETS

Progress = Callable[[int, str], None]  # (images just finished, what) → None
ShouldStop = Callable[[], bool]


def image_hash(x: torch.Tensor) -> str:
    """Content hash of one preprocessed image (float32 CHW at the model's input size)."""
    arr = x.detach().cpu().to(torch.float32).contiguous().numpy()
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:32]


@dataclass
class Batch:
    """A slice of the samples being worked on, with what has been learned about it so far."""

    x: torch.Tensor
    hashes: list[str]
    labels: np.ndarray
    logits: dict[float, list[np.ndarray | None]] = field(default_factory=dict)
    ssim: dict[tuple[int, float, str], float] = field(default_factory=dict)

    def pred(self, eps: float, i: int) -> int:
        return int(np.argmax(self.logits[eps][i]))


@dataclass
class Views:
    """What the gallery shows for one eps and layer: images (N, 3, H, W), maps (N, H, W) in [0, 1]."""

    clean: np.ndarray
    adv: np.ndarray
    clean_map: np.ndarray
    adv_map: np.ndarray
    table: pd.DataFrame


class ModelEngine:
    """The cells of ``handle`` under one CAM method, target policy and SSIM setting, backed by ``store``.

    ``passes`` counts image-passes run by this engine (a batch of 8 counts 8): tests and benchmarks read it.
    """

    def __init__(
        self,
        handle: ModelHandle,
        store: Store,
        method: str = "gradcam",
        params: dict | None = None,
        target: str = "pred",
        gaussian_ssim: bool = False,
        batch_size: int = 32,
    ) -> None:
        self.handle, self.store = handle, store
        self.method = cams.get(method)
        self.params = self.method.params(**(params or {}))
        self.method_key = [method, sorted(self.params.items())]
        self.policy = TARGETS.get(target)
        self.gaussian_ssim = gaussian_ssim
        if batch_size < 1:
            raise GcdashError(f"batch size must be ≥ 1, got {batch_size}")
        self.batch_size = batch_size
        self.passes = 0

    # -- public -------------------------------------------------------------------------------------------
    def table(
        self,
        samples: Samples,
        eps: Sequence[float],
        layers: str | Sequence[str] | None = None,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> pd.DataFrame:
        """Per-image rows for every (layer, eps): labels, predictions, confidences, SSIM and NISSIM."""
        names = self.handle.resolve_layers(layers)
        eps_list = sorted({float(e) for e in eps})
        frames = []
        for start in range(0, len(samples), self.batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after {start} of {len(samples)} images of {self.handle.name}")
            part = samples.subset(range(start, min(start + self.batch_size, len(samples))))
            batch = self.ensure(part, eps_list, names)
            frames.append(self._rows(part, batch, eps_list, names))
            if progress is not None:
                progress(len(part), self.handle.name)
        table = pd.concat(frames, ignore_index=True)
        order = {name: i for i, name in enumerate(names)}, {image_id: i for i, image_id in enumerate(samples.ids)}
        sort_key = [table["layer"].map(order[0]), table["eps"], table["image_id"].map(order[1])]
        return table.iloc[np.lexsort(sort_key[::-1])].reset_index(drop=True)

    def views(self, samples: Samples, eps: float, layer: str) -> Views:
        """Clean and adversarial images and maps at the input resolution, for the gallery."""
        batch = self.ensure(samples, [0.0, float(eps)], [layer])
        idx = list(range(len(samples)))
        adv = perturb(batch.x, self._directions(batch, idx), eps) if eps > 0 else batch.x
        keys = [self._map_key(batch, i, e, layer) for e in (0.0, float(eps)) for i in idx]
        found = self.store.get_arrays(keys)
        size = tuple(batch.x.shape[-2:])
        clean_map = cams.upsample(np.stack([found[k] for k in keys[: len(idx)]]), size)
        adv_map = cams.upsample(np.stack([found[k] for k in keys[len(idx) :]]), size)
        table = self._rows(samples, batch, [float(eps)], [layer])
        return Views(batch.x.numpy(), adv.numpy(), clean_map, adv_map, table)

    def ensure(self, samples: Samples, eps_list: Sequence[float], layers: Sequence[str]) -> Batch:
        """Make sure every cell of ``samples`` × ``eps_list`` × ``layers`` is in the store; return the batch."""
        x = self.handle.preprocess(samples.images)
        batch = Batch(x, [image_hash(xi) for xi in x], samples.labels)
        for eps in [0.0, *(e for e in eps_list if e > 0)]:
            self._ensure_logits(batch, eps, layers)
        missing = self._missing_ssim(batch, eps_list, layers)
        if missing:
            self._ensure_maps(batch, missing)
            self._compute_ssim(batch, missing)
        return batch

    # -- keys ---------------------------------------------------------------------------------------------
    def _attack_label(self, batch: Batch, i: int) -> int:
        """FGSM ascends the loss of the true label when known, else of the clean prediction."""
        label = int(batch.labels[i])
        return label if label >= 0 else batch.pred(0.0, i)

    def _variant(self, batch: Batch, i: int, eps: float) -> list:
        return ["clean"] if eps == 0 else ["fgsm", self._attack_label(batch, i), float(eps)]

    def _logits_key(self, batch: Batch, i: int, eps: float) -> str:
        return cell_key("logits", self.handle.digest, batch.hashes[i], self._variant(batch, i, eps))

    def _direction_key(self, batch: Batch, i: int) -> str:
        return cell_key("direction", self.handle.digest, batch.hashes[i], "fgsm", self._attack_label(batch, i))

    def _target(self, batch: Batch, i: int, eps: float) -> int:
        source = self.policy.clean if eps == 0 else self.policy.adv
        if source == "label":
            label = int(batch.labels[i])
            if label < 0:
                raise GcdashError("target policy 'label' needs labelled images; use --target pred for unlabelled ones")
            return label
        return batch.pred(0.0 if source == "clean" else eps, i)

    def _map_key(self, batch: Batch, i: int, eps: float, layer: str, target: int | None = None) -> str:
        target = self._target(batch, i, eps) if target is None else target
        variant = self._variant(batch, i, eps)
        return cell_key("map", self.handle.digest, batch.hashes[i], variant, self.method_key, target, layer)

    def _ssim_key(self, batch: Batch, i: int, eps: float, layer: str) -> str:
        size = list(batch.x.shape[-2:])
        clean, adv = self._map_key(batch, i, 0.0, layer), self._map_key(batch, i, eps, layer)
        return cell_key("ssim", clean, adv, size, "gaussian" if self.gaussian_ssim else "uniform")

    # -- work ---------------------------------------------------------------------------------------------
    def _ensure_logits(self, batch: Batch, eps: float, layers: Sequence[str]) -> None:
        keys = [self._logits_key(batch, i, eps) for i in range(len(batch.hashes))]
        found = self.store.get_arrays(keys)
        batch.logits[eps] = [found.get(k) for k in keys]
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            known = self._known_targets(batch, eps, todo)
            self._pass(batch, eps, todo, layers, known)

    def _known_targets(self, batch: Batch, eps: float, idx: list[int]) -> list[int] | None:
        """Targets fixed before the pass (clean top-1 or label), or None: each input's own top-1."""
        source = self.policy.clean if eps == 0 else self.policy.adv
        return None if source == "own" else [self._target(batch, i, eps) for i in idx]

    def _pass(self, batch: Batch, eps: float, idx: list[int], layers: Sequence[str], targets: list[int] | None) -> None:
        """One CAM pass over ``idx`` at ``eps`` for all ``layers``; stores logits and raw maps."""
        x = batch.x[idx]
        if eps > 0:
            x = perturb(x, self._directions(batch, idx), eps)
        result = cams.explain(self.handle, x, list(layers), self.method.name, targets, **self.params)
        self.passes += len(idx)
        logits = result.logits.float().numpy()
        for j, i in enumerate(idx):
            batch.logits[eps][i] = logits[j]
        model = self.handle.digest
        self.store.put_arrays({self._logits_key(batch, i, eps): logits[j] for j, i in enumerate(idx)}, "logits", model)
        maps = {
            self._map_key(batch, i, eps, layer, int(result.targets[j])): result.maps[layer][j]
            for layer in layers
            for j, i in enumerate(idx)
        }
        self.store.put_arrays(maps, "map", model)

    def _directions(self, batch: Batch, idx: list[int]) -> torch.Tensor:
        """FGSM directions of ``idx`` (int8 in the store), computing the missing ones in one gradient pass."""
        keys = [self._direction_key(batch, i) for i in idx]
        found = self.store.get_arrays(keys)
        todo = [j for j, k in enumerate(keys) if k not in found]
        if todo:
            rows = [idx[j] for j in todo]
            y = torch.tensor([self._attack_label(batch, i) for i in rows])
            with self.handle.lock:
                d = fgsm_direction(self.handle.net, batch.x[rows].to(self.handle.device), y)
            self.passes += len(rows)
            new = {keys[j]: d[n].cpu().to(torch.int8).numpy() for n, j in enumerate(todo)}
            self.store.put_arrays(new, "direction", self.handle.digest)
            found.update(new)
        return torch.from_numpy(np.stack([found[k] for k in keys])).to(batch.x.dtype)

    def _missing_ssim(self, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> list[tuple]:
        cells = [(i, e, layer) for i in range(len(batch.hashes)) for e in eps_list for layer in layers]
        keys = {cell: self._ssim_key(batch, *cell) for cell in cells}
        found = self.store.get_scalars(list(keys.values()))
        batch.ssim.update({cell: found[k] for cell, k in keys.items() if k in found})
        return [cell for cell, k in keys.items() if k not in found]

    def _ensure_maps(self, batch: Batch, cells: list[tuple]) -> None:
        """Run passes for the maps these SSIM cells need that the store lacks (e.g. a newly asked-for layer)."""
        needed = {(e2, i, layer) for i, e, layer in cells for e2 in (0.0, e)}
        keys = {cell: self._map_key(batch, cell[1], cell[0], cell[2]) for cell in needed}
        present = set(self.store.get_arrays(list(keys.values())))
        by_eps: dict[float, dict[int, set[str]]] = {}
        for (e, i, layer), key in keys.items():
            if key not in present:
                by_eps.setdefault(e, {}).setdefault(i, set()).add(layer)
        for e in sorted(by_eps):
            idx = sorted(by_eps[e])
            layers = sorted(set().union(*by_eps[e].values()), key=list(self.handle.layers).index)
            self._pass(batch, e, idx, layers, [self._target(batch, i, e) for i in idx])

    def _compute_ssim(self, batch: Batch, cells: list[tuple]) -> None:
        size = tuple(batch.x.shape[-2:])
        clean_keys = [self._map_key(batch, i, 0.0, layer) for i, _, layer in cells]
        adv_keys = [self._map_key(batch, i, e, layer) for i, e, layer in cells]
        maps = self.store.get_arrays(sorted(set(clean_keys + adv_keys)))
        lost = [k for k in clean_keys + adv_keys if k not in maps]
        if lost:
            raise RuntimeError(f"{len(lost)} CAM maps vanished from the cache while in use; run again")
        a = np.concatenate([cams.upsample(maps[k][None], size) for k in clean_keys])
        b = np.concatenate([cams.upsample(maps[k][None], size) for k in adv_keys])
        values = metrics.ssim(a, b, gaussian=self.gaussian_ssim, device=self.handle.device)
        keys = [self._ssim_key(batch, *cell) for cell in cells]
        self.store.put_scalars(dict(zip(keys, values.tolist())), "ssim", self.handle.digest)
        batch.ssim.update(dict(zip(cells, values.tolist())))

    def _rows(self, samples: Samples, batch: Batch, eps_list: Sequence[float], layers: Sequence[str]) -> pd.DataFrame:
        probs = {e: _softmax(np.stack(batch.logits[e if e > 0 else 0.0])) for e in {0.0, *eps_list}}
        records = []
        for layer in layers:
            for e in eps_list:
                for i, image_id in enumerate(samples.ids):
                    clean, adv = probs[0.0][i], probs[e][i]
                    s = batch.ssim[(i, e, layer)]
                    records.append(
                        dict(
                            layer=layer, eps=e, image_id=image_id, label=int(batch.labels[i]),
                            pred_clean=int(clean.argmax()), pred_adv=int(adv.argmax()),
                            conf_clean=float(clean.max()), conf_adv=float(adv.max()),
                            ssim=s, nissim=float(metrics.nissim_from_ssim(s)),
                        )
                    )  # fmt: skip
        return pd.DataFrame.from_records(records)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
