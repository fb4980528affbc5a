"""Image sources: a spec string (``demo``, ``folder:PATH``) → :class:`Samples`.

A source is registered under its scheme with :func:`register_source`; the part after ``:`` is its argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gcdash.errors import GcdashError
from gcdash.registry import Registry


@dataclass
class Samples:
    """A list of images with labels and stable ids.

    ``images``: uint8 RGB arrays (H, W, 3), any size (each model's ``preprocess`` resizes); ``labels``: int64,
    -1 where unknown; ``ids``: unique strings (shown in tables, used in links); ``class_names``: label → name;
    ``masks``: optional bool (H, W) object masks, aligned with the images.
    """

    images: list[np.ndarray]
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]
    masks: list[np.ndarray] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not (len(self.images) == len(self.labels) == len(self.ids)):
            raise ValueError("images, labels and ids must have the same length")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("image ids must be unique")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int]) -> Samples:
        idx = list(index)
        return Samples(
            images=[self.images[i] for i in idx],
            labels=self.labels[idx],
            ids=[self.ids[i] for i in idx],
            class_names=self.class_names,
            masks=None if self.masks is None else [self.masks[i] for i in idx],
            meta=dict(self.meta),
        )


Loader = Callable[..., Samples]
SOURCES: Registry[Loader] = Registry("data source")


def register_source(scheme: str, loader: Loader) -> None:
    """``loader(arg, n=..., seed=..., **options) -> Samples`` serves specs ``scheme`` and ``scheme:arg``."""
    SOURCES.add(scheme, loader)


MAX_IMAGES = 100_000  # per load: sources hold their images in memory (~1.2 GB of 64×64 demo images with masks)


def check_count(n: int | None, per_class: int | None = None) -> None:
    """Refuse a request the memory cannot hold, before anything is allocated."""
    for name, value in (("n", n), ("per_class", per_class)):
        if value is not None and value > MAX_IMAGES:
            raise GcdashError(
                f"{name} = {value:,} is more than the {MAX_IMAGES:,} images a sweep holds in memory; sweep a subset"
            )


def load(spec: str, n: int | None = None, seed: int = 0, **options) -> Samples:
    """Load the source named by ``spec`` (``demo``, ``folder:PATH``): at most ``n`` images, chosen with ``seed``."""
    check_count(n, options.get("per_class"))
    if seed < 0:
        raise GcdashError(f"the subset seed must be ≥ 0, got {seed}")
    _load_builtin()
    scheme, _, arg = spec.partition(":")
    samples = SOURCES.get(scheme)(arg or None, n=n, seed=seed, **options)
    if len(samples) == 0:
        raise GcdashError(f"data source {spec!r} gave no images; check the path, the class filter and --n")
    return samples


def shortfall(samples: Samples, n: int | None) -> list[str]:
    """What a person should know about a load before trusting its numbers: files skipped (with reasons) and
    fewer images than asked for. One line each; empty when nothing was left out."""
    skipped = list(samples.meta.get("skipped", []))
    lines = [
        f"skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped[:5]) + (" …" if len(skipped) > 5 else "")
    ]
    lines = lines if skipped else []
    if n is not None and len(samples) < n:
        lines.append(f"asked for {n} images, the source gave {len(samples)}")
    return lines


def align_labels(samples: Samples, class_names: Sequence[str], model: str = "the model") -> tuple[Samples, str | None]:
    """``samples`` with labels re-indexed into ``class_names`` by name (a folder's label is its folder's name), and
    a line for people when some of the data's classes are not the model's: their images count as unlabelled (no
    accuracy; the flip rate still shows). Data without class names keeps its labels."""
    own = list(samples.class_names)
    if not own or own == list(class_names):
        return samples, None
    index = {name: i for i, name in enumerate(class_names)}
    mapping = np.array([index.get(name, -1) for name in own] + [-1], dtype=np.int64)
    known = (samples.labels >= 0) & (samples.labels < len(own))
    labels = np.where(known, mapping[np.where(known, samples.labels, len(own))], -1)
    used = sorted({own[i] for i in samples.labels[known]})
    missing = [name for name in used if name not in index]
    aligned = replace(samples, labels=labels, class_names=list(class_names))
    if not missing:
        return aligned, None
    shown = ", ".join(missing[:6]) + (" …" if len(missing) > 6 else "")
    note = (
        f"{len(missing)} of the data's {len(used)} classes are not classes of {model} ({shown}): their images count "
        f"as unlabelled (no accuracy for them; the flip rate still shows)"
    )
    return aligned, note


def names() -> list[str]:
    _load_builtin()
    return SOURCES.names()


def _load_builtin() -> None:
    """Import the modules that register the built-in sources (demo, folder)."""
    import gcdash.data.demo
    import gcdash.data.folder  # noqa: F401


__all__ = ["SOURCES", "Samples", "align_labels", "check_count", "load", "names", "register_source", "shortfall"]
