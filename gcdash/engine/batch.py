"""A batch of images as one model's engine works on it, and the keys of its cells.

A :class:`Batch` is a slice of the samples (``batch_size`` images) with what has been learned about it so far;
:func:`batches` cuts the samples into them (progress after each, a cancel check before each); :class:`Cells` names
a batch's cells under one CAM method and target policy: each image's variant at each eps (clean, or attacked), its
logits and its raw map at each layer (keys: :mod:`gcdash.keys`). A map's key names the class it explains, so the
target policy lives here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gcdash import cams, keys
from gcdash.data import Samples
from gcdash.errors import Cancelled, GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress, ShouldStop
from gcdash.targets import TARGETS

Cell = tuple[float, str]  # (eps, layer): one map of every image in a batch
ScoreKey = tuple[str, float, str]  # (score, eps, layer): one score of every image in a batch


@dataclass
class Batch:
    """A slice of the samples being worked on, with what has been learned about it so far."""

    x: torch.Tensor  # the preprocessed images (N, 3, H, W)
    hashes: list[str]  # their content hashes
    labels: np.ndarray
    masks: torch.Tensor | None = None  # bool (N, H, W) object masks at the input size, when the source has them
    mask_hashes: list[str] = field(default_factory=list)
    variants: dict[float, list[str]] = field(default_factory=dict)  # eps → each image's variant key
    logits: dict[float, np.ndarray] = field(default_factory=dict)  # eps → (N, classes)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # raw maps by key, as read or computed
    scores: dict[str, dict[ScoreKey, np.ndarray]] = field(default_factory=dict)  # scorer → (score, eps, layer) → (N,)

    def __len__(self) -> int:
        return len(self.hashes)

    def pred(self, eps: float) -> np.ndarray:
        return self.logits[eps].argmax(axis=1)


def start(handle: ModelHandle, samples: Samples) -> Batch:
    """The batch as ``handle`` sees it: preprocessed images, their content hashes, labels, object masks."""
    x = handle.preprocess(samples.images)
    batch = Batch(x, [keys.image_hash(xi) for xi in x], np.asarray(samples.labels))
    if samples.masks is not None:
        batch.masks = handle.preprocess_masks(samples.masks)
        batch.mask_hashes = [keys.mask_hash(m) for m in batch.masks]
    return batch


def batches(
    samples: Samples, size: int, name: str, progress: Progress | None, should_stop: ShouldStop | None
) -> Iterator[Samples]:
    """``samples`` in batches of ``size``, with ``progress(done, total, name)`` after each and a cancel check
    before each (what finished stays in the cache)."""
    for begin in range(0, len(samples), size):
        if should_stop is not None and should_stop():
            raise Cancelled(f"stopped after {begin} of {len(samples)} images of {name}")
        subset = samples.subset(range(begin, min(begin + size, len(samples))))
        yield subset
        if progress is not None:
            progress(begin + len(subset), len(samples), name)


class Cells:
    """The keys of a batch's cells for ``handle`` under CAM ``method`` (with ``params``) and ``target`` policy."""

    def __init__(self, handle: ModelHandle, method: str, params: Mapping | None, target: str) -> None:
        self.digest = handle.digest
        self.method = cams.get(method)
        self.params = self.method.params(**dict(params or {}))
        self.method_key = keys.short([method, sorted(self.params.items())])
        self.policy = TARGETS.get(target)

    def name_variants(self, batch: Batch, eps: float, attacks: Sequence[list] | None) -> None:
        """Key each image's variant at ``eps``: ``attacks`` gives each image's attack part (None: clean)."""
        batch.variants[eps] = keys.variants(self.digest, batch.hashes, attacks, eps)

    def logits(self, batch: Batch, eps: float) -> list[str]:
        return [keys.logits(v) for v in batch.variants[eps]]

    def targets(self, batch: Batch, eps: float, idx: Sequence[int] | None = None) -> np.ndarray:
        """The class each map at ``eps`` explains, under the target policy."""
        source = self.policy.clean if eps == 0 else self.policy.adv
        if source == "label":
            if (batch.labels < 0).any():
                raise GcdashError("target policy 'label' needs labelled images; use --target pred for unlabelled ones")
            out = batch.labels
        else:
            out = batch.pred(0.0 if source == "clean" else eps)
        return np.asarray(out if idx is None else out[list(idx)], dtype=np.int64)

    def own_targets(self, eps: float) -> bool:
        """Whether each map at ``eps`` explains its own input's top-1 (known only after the pass that makes it)."""
        return (self.policy.clean if eps == 0 else self.policy.adv) == "own"

    def maps(self, batch: Batch, eps: float, layer: str, idx: Sequence[int] | None = None) -> list[str]:
        """The raw-map keys of images ``idx`` (all when None) at (eps, layer)."""
        idx = range(len(batch)) if idx is None else idx
        targets = self.targets(batch, eps, idx)
        variants = batch.variants[eps]
        return [keys.map_key(variants[i], self.method_key, t, layer) for i, t in zip(idx, targets)]

    def map_of(self, batch: Batch, eps: float, layer: str, image: int, target: int) -> str:
        """The key of one image's map once its class is known (a pass's own top-1)."""
        return keys.map_key(batch.variants[eps][image], self.method_key, int(target), layer)
