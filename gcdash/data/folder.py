"""Image folders: spec ``folder:PATH``, in torchvision's ImageFolder layout (VGGFace2 style).

``PATH/<class>/**/<image>``: one sub-folder per class (identity); labels are the index of the sub-folder in the
sorted list of all sub-folders, exactly as ``torchvision.datasets.ImageFolder`` numbers them, so they match a
model fine-tuned on the same folder even when only some classes are selected. A folder with images and no
sub-folders loads as unlabelled (label -1). Subsets: ``classes`` (names), then ``per_class`` images per class,
then ``n`` in total, each drawn at random with ``seed``; the chosen files keep their sorted order. Ids are paths
relative to ``PATH``. Unreadable files are skipped and listed in ``meta["skipped"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gcdash.data import Samples, register_source
from gcdash.data.uploads import MAX_PIXELS, decode_image
from gcdash.errors import GcdashError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")  # torchvision's
FOLDER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "PPM", "TIFF")
Item = tuple[Path, int]


def class_folders(root: Path) -> list[str]:
    """Sorted names of ``root``'s visible sub-folders: the class list, index = label."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def find_images(root: Path, classes: Sequence[str]) -> list[Item]:
    """``(file, label)`` for every image under each class folder (recursively), or in ``root`` itself when it
    has no class folders (label -1)."""
    if not classes:
        return [(f, -1) for f in sorted(root.iterdir()) if is_image(f)]
    return [(f, label) for label, name in enumerate(classes) for f in sorted((root / name).rglob("*")) if is_image(f)]


def parse_classes(classes: Sequence[str] | str | None) -> list[str] | None:
    """Names as a list (or one comma-separated string, as the CLI passes them); ``None`` = all."""
    if isinstance(classes, str):
        return [c.strip() for c in classes.split(",") if c.strip()]
    return None if classes is None else [str(c) for c in classes]


def keep_classes(items: list[Item], all_classes: list[str], wanted: list[str] | None) -> list[Item]:
    if wanted is None:
        return items
    unknown = [c for c in wanted if c not in all_classes]
    if unknown:
        shown = ", ".join(all_classes[:8]) + (f" … ({len(all_classes)} in all)" if len(all_classes) > 8 else "")
        raise GcdashError(f"no class folder {unknown[0]!r}; the folder has: {shown}")
    labels = {all_classes.index(c) for c in wanted}
    return [item for item in items if item[1] in labels]


def draw(count: int, k: int | None, rng: np.random.Generator) -> list[int]:
    """Indices of ``k`` of ``count`` things drawn without replacement, sorted; all when ``k`` is None or ≥ count."""
    if k is None or k >= count:
        return list(range(count))
    return sorted(rng.choice(count, size=k, replace=False).tolist())


def choose(items: list[Item], n: int | None, per_class: int | None, seed: int) -> list[Item]:
    """At most ``per_class`` images of each label, then at most ``n`` in all, at random with ``seed``."""
    rng = np.random.default_rng(seed)
    if per_class is not None:
        by_label: dict[int, list[Item]] = {}
        for item in items:
            by_label.setdefault(item[1], []).append(item)
        picked = [g[i] for g in by_label.values() for i in draw(len(g), per_class, rng)]
        items = sorted(picked, key=lambda item: item[0])
    return [items[i] for i in draw(len(items), n, rng)]


def check_root(arg: str | None) -> Path:
    if not arg:
        raise GcdashError("the folder source needs a path: folder:PATH")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise GcdashError(f"image folder {root} not found (or not a folder)")
    return root


def check_counts(n: int | None, per_class: int | None) -> None:
    if n is not None and n < 0:
        raise GcdashError(f"n must be ≥ 0, got {n}")
    if per_class is not None and per_class < 1:
        raise GcdashError(f"per_class must be ≥ 1, got {per_class}")


def load_folder(
    arg: str | None = None,
    n: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | str | None = None,
    per_class: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Samples:
    """Loader for ``folder:PATH`` (see the module docstring for layout, labels and subsets)."""
    root = check_root(arg)
    check_counts(n, per_class)
    all_classes = class_folders(root)
    items = keep_classes(find_images(root, all_classes), all_classes, parse_classes(classes))
    if not items:
        raise GcdashError(f"no images ({', '.join(IMG_EXTENSIONS)}) found under {root}")
    images, labels, ids, skipped = [], [], [], []
    for path, label in choose(items, n, per_class, seed):
        rel = path.relative_to(root).as_posix()
        try:
            images.append(decode_image(path, rel, FOLDER_FORMATS, max_pixels))
        except GcdashError as err:
            skipped.append(str(err))
            continue
        labels.append(label)
        ids.append(rel)
    if not images and skipped:
        raise GcdashError(f"no readable images under {root} ({len(skipped)} skipped; first: {skipped[0]})")
    meta = {"source": "folder", "root": str(root), "seed": seed, "skipped": skipped}
    return Samples(images, np.asarray(labels, np.int64), ids, all_classes, meta=meta)


register_source("folder", load_folder)

__all__ = ["FOLDER_FORMATS", "IMG_EXTENSIONS", "class_folders", "find_images", "load_folder"]
