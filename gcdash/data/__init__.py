"""Image sources: a spec string (``demo``, ``folder:PATH``, ``list:FILE.csv``) → :class:`Samples`.

A source is registered under its scheme with :func:`register_source`; the part after ``:`` is its argument, its
keyword parameters are the options it takes (an option it does not take is refused, naming the sources that do).

What a load left out or decided on its own is kept in ``Samples.meta``: ``skipped`` and ``notes`` (one line per
file: ``file: why``) and ``skip_counts`` / ``note_counts`` (kind → count, a kind may hold ``{s}`` for its plural).
:func:`shortfall` says them as counts per kind, :func:`skip_list` lists every file.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gcdash.data import imagenet
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
    check_options(scheme, options)
    samples = SOURCES.get(scheme)(arg or None, n=n, seed=seed, **options)
    if len(samples) == 0:
        raise GcdashError(f"data source {spec!r} gave no images; check the path, the class filter and --n")
    return samples


def _options(loader: Loader) -> set[str] | None:
    """The options a loader takes (its keyword parameters past ``arg``, ``n``, ``seed``); ``None``: any."""
    params = inspect.signature(loader).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params} - {"arg", "n", "seed"}


def check_options(scheme: str, options: Iterable[str]) -> None:
    """Refuse an option the source ``scheme`` does not take (``masks`` with ``demo``, ``split`` with a folder) in
    one line naming the sources it goes with."""
    taken = _options(SOURCES.get(scheme))
    for name in [] if taken is None else [o for o in options if o not in taken]:
        others = [s for s in SOURCES.names() if name in (_options(SOURCES.get(s)) or ())]
        goes = f"it goes with: {', '.join(others)}" if others else "no source takes it"
        raise GcdashError(f"option {name!r} does not go with the {scheme} source ({goes})")


def tally(kinds: Iterable[str]) -> dict[str, int]:
    """kind → how many, in the order first seen."""
    return dict(Counter(kinds))


def counts_text(counts: dict[str, int]) -> str:
    """``{"dangling symlink{s}": 2, "symlink loop{s}": 1}`` → ``"2 dangling symlinks, 1 symlink loop"``."""
    return ", ".join(f"{count} {kind.format(s='' if count == 1 else 's')}" for kind, count in counts.items())


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def shortfall(samples: Samples, n: int | None) -> list[str]:
    """What a person should know about a load before trusting its numbers: files skipped and files read with a
    decision made for them, as counts per reason (every file: :func:`skip_list`), and fewer images than asked
    for. One line each; empty when nothing was left out."""
    lines = []
    said = (("skipped", "skip_counts", "skipped"), ("notes", "note_counts", "read with a choice made for"))
    for what, key, verb in said:
        entries = list(samples.meta.get(what, []))
        if entries:
            counts = samples.meta.get(key) or {"unreadable": len(entries)}
            lines.append(f"{verb} {_plural(len(entries), 'file')}: {counts_text(counts)}")
    if n is not None and len(samples) < n:
        lines.append(f"asked for {n} images, the source gave {len(samples)}")
    return lines


def skip_list(samples: Samples) -> list[str]:
    """Every file a load skipped or decided something for, one line each with the reason."""
    meta = samples.meta
    return [f"skipped  {line}" for line in meta.get("skipped", [])] + [f"note     {x}" for x in meta.get("notes", [])]


def write_skip_list(samples: Samples, path: Path) -> Path | None:
    """Write :func:`skip_list` to ``path`` (one line per file) and return it; with nothing to list, remove a stale
    one and return ``None``."""
    lines = skip_list(samples)
    if not lines:
        Path(path).unlink(missing_ok=True)
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")
    return Path(path)


def align_labels(samples: Samples, class_names: Sequence[str], model: str = "the model") -> tuple[Samples, str | None]:
    """``samples`` with labels re-indexed into ``class_names`` by name (a folder's label is its folder's name; a
    WordNet id such as ``n01440764`` names its ImageNet class when the model's classes are ImageNet's 1000, see
    :mod:`gcdash.data.imagenet`), and a line for people when some of the data's classes are not the model's: their
    images count as unlabelled (no accuracy; the flip rate still shows). Data without class names keeps its labels."""
    own = list(samples.class_names)
    if not own or own == list(class_names):
        return samples, None
    index = label_index(own, class_names)
    mapping = np.array([index.get(name, -1) for name in own] + [-1], dtype=np.int64)
    known = (samples.labels >= 0) & (samples.labels < len(own))
    labels = np.where(known, mapping[np.where(known, samples.labels, len(own))], -1)
    used = sorted({own[i] for i in samples.labels[known]})
    missing = [name for name in used if name not in index]
    aligned = replace(samples, labels=labels, class_names=list(class_names))
    return aligned, (missing_note(missing, len(used), model) if missing else None)


def label_index(own: Sequence[str], class_names: Sequence[str]) -> dict[str, int]:
    """Data class name → model class index: by name, and by WordNet id where the data has wnids and the model's
    classes are ImageNet's (a model class named like a wnid keeps its own index)."""
    by_name = {name: i for i, name in enumerate(class_names)}
    if not any(imagenet.is_wnid(name) for name in own):
        return by_name
    return imagenet.wnid_index(class_names) | by_name


def missing_note(missing: Sequence[str], used: int, model: str) -> str:
    """The line that says which of the data's ``used`` classes ``model`` lacks (the first six named)."""
    shown = ", ".join(missing[:6]) + (" …" if len(missing) > 6 else "")
    wnids = any(map(imagenet.is_wnid, missing))
    hint = "; a WordNet id maps only to one of ImageNet-1k's classes, on a model with ImageNet's 1000" if wnids else ""
    return (
        f"{len(missing)} of the data's {used} classes are not classes of {model} ({shown}): their images count "
        f"as unlabelled (no accuracy for them; the flip rate still shows){hint}"
    )


def names() -> list[str]:
    _load_builtin()
    return SOURCES.names()


def _load_builtin() -> None:
    """Import the modules that register the built-in sources (demo, folder, list)."""
    import gcdash.data.demo
    import gcdash.data.folder
    import gcdash.data.listing  # noqa: F401


__all__ = [
    "SOURCES", "Samples", "align_labels", "check_count", "check_options", "counts_text", "label_index", "load",
    "missing_note", "names",
    "register_source", "shortfall", "skip_list", "tally", "write_skip_list",
]  # fmt: skip
