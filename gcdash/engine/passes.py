"""Logits and raw maps of a batch: read from the store, or made by one CAM pass per eps for every layer at once
(:func:`gcdash.cams.explain`: one forward and one backward whatever the number of layers). eps = 0 is the clean
image (``x' = x``); an attacked image comes from :class:`~gcdash.engine.attack.Adversary`. Which maps are stored
is the retention policy's choice (:data:`KEEP_MAPS`); logits always are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from gcdash import cams
from gcdash.engine.attack import Adversary, CleanGradient
from gcdash.engine.batch import Batch, Cell, Cells
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.store import Store

#: Which raw maps a pass stores (logits, attack states and every scalar are always stored): ``all``; ``gallery``,
#: the model's default layer only (what the gallery opens on); ``none``. A map not stored is recomputed by one CAM
#: pass when something asks for it (the gallery, a new comparison); the numbers do not depend on the policy.
KEEP_MAPS = ("all", "gallery", "none")


class CamPasses:
    """The CAM passes of ``handle`` over batches, their cells named by ``cells``, their outputs in ``store``.
    ``passes`` counts image-passes (a batch of 8 counts 8)."""

    def __init__(self, handle: ModelHandle, store: Store, cells: Cells, adversary: Adversary, keep_maps: str) -> None:
        if keep_maps not in KEEP_MAPS:
            raise GcdashError(f"keep_maps must be one of {', '.join(KEEP_MAPS)}, got {keep_maps!r}")
        self.handle, self.store, self.cells, self.adversary = handle, store, cells, adversary
        self.keep_maps = keep_maps
        self.passes = 0

    def images(self, batch: Batch, eps: float, idx: Sequence[int]) -> torch.Tensor:
        """The images ``idx`` as the maps at ``eps`` explain them: clean at eps = 0, else attacked."""
        return batch.x[list(idx)] if eps == 0 else self.adversary.images(batch, eps, idx)

    def ensure_logits(self, batch: Batch, eps: float, layers: Sequence[str], attack_too: bool = False) -> None:
        """The logits of every image at ``eps`` in ``batch.logits``: read, or made by a CAM pass over ``layers``
        (which stores their maps too: an image's first pass serves its maps as well). ``attack_too`` at eps = 0: the
        clean pass's forward also gives the attack's states where the attack and the method allow it
        (:meth:`~gcdash.engine.attack.Adversary.clean_gradient`): two backward passes from one forward."""
        logit_keys = self.cells.logits(batch, eps)
        found = self.store.get_arrays(logit_keys)
        todo = [i for i, k in enumerate(logit_keys) if k not in found]
        if found:
            width = len(next(iter(found.values())))
            batch.logits[eps] = np.stack([found.get(k, np.full(width, np.nan, np.float32)) for k in logit_keys])
        if todo:
            known = None if self.cells.own_targets(eps) else [int(t) for t in self.cells.targets(batch, eps, todo)]
            shared = attack_too and eps == 0 and self.cells.method.shares_forward
            self.run(batch, eps, todo, layers, known, self.adversary.clean_gradient(batch, todo) if shared else None)

    def run(
        self, batch: Batch, eps: float, idx: list[int], layers: Sequence[str], targets: list[int] | None,
        attack: CleanGradient | None = None,
    ) -> None:  # fmt: skip
        """One CAM pass over images ``idx`` at ``eps`` for all ``layers``; stores logits and raw maps (and, with
        ``attack``, the attack states its forward gives)."""
        method = self.cells.method
        result = cams.explain(self.handle, self.images(batch, eps, idx), list(layers), method.name, targets,
                              input_loss=attack, **self.cells.params)  # fmt: skip
        self.passes += len(idx)
        logits = result.logits.float().numpy()
        require_finite(self.handle, "logits", logits, eps)
        for layer in layers:
            require_finite(self.handle, f"CAM maps at layer {layer}", result.maps[layer], eps)
        if eps not in batch.logits:
            batch.logits[eps] = np.full((len(batch), logits.shape[1]), np.nan, np.float32)
        batch.logits[eps][idx] = logits
        logit_keys = self.cells.logits(batch, eps)
        self.store.put_arrays({logit_keys[i]: logits[j] for j, i in enumerate(idx)}, "logits", self.handle.digest)
        maps = {
            self.cells.map_of(batch, eps, layer, i, result.targets[j]): result.maps[layer][j]
            for layer in layers
            for j, i in enumerate(idx)
        }
        kept = {k: v for k, v in maps.items() if self._keeps(k)}
        if kept:
            self.store.put_arrays(kept, "map", self.handle.owner)
        batch.maps.update(maps)  # this batch's scores still use them all
        if attack is not None:
            attack.keep(result.input_grad)

    def _keeps(self, map_key: str) -> bool:
        """Whether the retention policy stores the map under ``map_key`` (its layer is the key's last part)."""
        if self.keep_maps == "all":
            return True
        return self.keep_maps == "gallery" and map_key.endswith(f":{self.handle.default_layer}")

    def load_maps(self, batch: Batch, needed: Mapping[Cell, Sequence[int]]) -> None:
        """Make the raw maps of ``needed`` ((eps, layer) → image indices) available in ``batch.maps``: read from
        the store in one pass, and the missing ones computed in one CAM pass per eps (e.g. a new layer)."""
        wanted = {cell: dict(zip(idx, self.cells.maps(batch, *cell, idx))) for cell, idx in needed.items()}
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
            self.run(batch, eps, idx, layers, [int(t) for t in self.cells.targets(batch, eps, idx)])

    def upsampled(self, batch: Batch, eps: float, layer: str, idx: Sequence[int] | None = None) -> torch.Tensor:
        """The maps of images ``idx`` at (eps, layer) at the input size on the model's device, as pytorch-grad-cam
        returns them (:func:`gcdash.cams.upsample_tensor`); the raw maps must be in ``batch.maps`` (see
        :meth:`load_maps`)."""
        map_keys = self.cells.maps(batch, eps, layer, idx)
        raw = torch.from_numpy(np.stack([batch.maps[k] for k in map_keys])).to(self.handle.device)
        return cams.upsample_tensor(raw, tuple(batch.x.shape[-2:]))


def require_finite(handle: ModelHandle, what: str, values: np.ndarray, eps: float) -> None:
    """Refuse NaN and infinity with one line naming the model, before any of them is stored (what the batch
    finished before them is kept: it is valid)."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise GcdashError(
            f"model {handle.name} gave non-finite {what} (NaN or inf) for {int(bad.sum())} of {len(values)} "
            f"images at eps {eps:g}: are its weights broken (a diverged fine-tune)? Nothing of them was stored"
        )
