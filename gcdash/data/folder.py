"""Image folders: spec ``folder:PATH``, in torchvision's ImageFolder layout (VGGFace2 style).

``PATH/<class>/**/<image>``: one sub-folder per class (identity); labels are the index of the sub-folder in the
sorted list of all sub-folders, exactly as ``torchvision.datasets.ImageFolder`` numbers them, so they match a
model fine-tuned on the same folder even when only some classes are selected (hidden files and folders, names
starting with ".", are ignored; ImageFolder would count a hidden folder as a class). A folder with images and no
sub-folders loads as unlabelled (label -1). Subsets: ``classes`` (names) keeps those folders; ``per_class`` and
``n`` (at most that many per class / in all) are filled by visiting files in a random order drawn with ``seed``,
decoding only what is kept; an unreadable file is skipped (listed in ``meta["skipped"]``) and the next one in
that order takes its place. The chosen files keep their sorted order; ids are paths relative to ``PATH``. The
pixels are not kept: :class:`FolderImages` decodes them again when a batch is read, so a sweep of any size holds
one batch of decoded images at a time (the check at load costs one extra decode per image).

Object masks (for localisation: the pointing game and the map's mass inside the object) come from a parallel
folder, option ``masks=MASKS`` (CLI ``--masks MASKS``): ``MASKS/<class>/<name>.png`` for ``PATH/<class>/<name>.jpg``
(the same relative path, any image extension, the same size as the image), non-zero pixels = the object. When
``masks`` is given every chosen image needs one: a missing or misfit mask is an error naming the file, never a
silently unmasked image.
"""

from __future__ import annotations

from collections import Counter
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


def visit_order(count: int, n: int | None, per_class: int | None, seed: int) -> Sequence[int]:
    """All items in order, or, when a subset is asked for, a random permutation drawn with ``seed``."""
    if n is None and per_class is None:
        return range(count)
    return np.random.default_rng(seed).permutation(count).tolist()


def wanted(label: int, taken: Counter, total: int, n: int | None, per_class: int | None) -> bool:
    return (n is None or total < n) and (per_class is None or taken[label] < per_class)


def check_root(arg: str | None) -> Path:
    if not arg:
        raise GcdashError("the image folder source needs the path of a folder (one sub-folder per class)")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise GcdashError(f"image folder {root} not found (or not a folder)")
    return root


def check_counts(n: int | None, per_class: int | None) -> None:
    if n is not None and n < 0:
        raise GcdashError(f"n must be ≥ 0, got {n}")
    if per_class is not None and per_class < 1:
        raise GcdashError(f"per_class must be ≥ 1, got {per_class}")


def mask_for(masks: Path, rel: str, shape: tuple[int, ...]) -> np.ndarray:
    """The object mask of image ``rel`` from the masks folder: bool (H, W), non-zero pixels = the object."""
    stem = Path(rel).with_suffix("")
    candidates = (masks / f"{stem.as_posix()}{ext}" for ext in (".png", *IMG_EXTENSIONS))
    found = [path for path in candidates if path.is_file()]
    if not found:
        raise GcdashError(f"no mask for {rel} under {masks} (expected {masks / stem}.png)")
    mask = decode_image(found[0], found[0].name, FOLDER_FORMATS).max(axis=2) > 0
    if mask.shape != tuple(shape[:2]):
        raise GcdashError(f"mask {found[0]} is {mask.shape[1]}×{mask.shape[0]}, its image {shape[1]}×{shape[0]}")
    return mask


class FolderImages(Sequence[np.ndarray]):
    """The chosen files' pixels, decoded when read: a sweep reads them one batch at a time (``Samples.subset``), so
    memory stays flat in the number of images. Each file was decoded once when chosen (an unreadable one is skipped
    then, with its reason), so a read here fails only if the file changed since."""

    def __init__(self, files: Sequence[tuple[Path, str]], max_pixels: int = MAX_PIXELS) -> None:
        self.files = list(files)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):  # int → one (H, W, 3) uint8 array; slice → a list of them
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        path, rel = self.files[index]
        return decode_image(path, rel, FOLDER_FORMATS, self.max_pixels)


def load_folder(
    arg: str | None = None,
    n: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | str | None = None,
    per_class: int | None = None,
    max_pixels: int = MAX_PIXELS,
    masks: str | None = None,
) -> Samples:
    """Loader for ``folder:PATH`` (see the module docstring for layout, labels and subsets)."""
    root = check_root(arg)
    check_counts(n, per_class)
    all_classes = class_folders(root)
    items = keep_classes(find_images(root, all_classes), all_classes, parse_classes(classes))
    if not items:
        raise GcdashError(f"no images ({', '.join(IMG_EXTENSIONS)}) found under {root}")
    chosen, skipped, taken = [], [], Counter()
    for i in visit_order(len(items), n, per_class, seed):
        path, label = items[i]
        if not wanted(label, taken, len(chosen), n, per_class):
            continue
        rel = path.relative_to(root).as_posix()
        try:
            shape = decode_image(path, rel, FOLDER_FORMATS, max_pixels).shape  # checked now, its pixels dropped
            chosen.append((i, (path, rel, shape), label, rel))
        except GcdashError as err:
            skipped.append(str(err))  # the next file in the random order takes its place
            continue
        taken[label] += 1
    chosen.sort(key=lambda c: c[0])
    files, labels, ids = [c[1] for c in chosen], [c[2] for c in chosen], [c[3] for c in chosen]
    images = FolderImages([(path, rel) for path, rel, _ in files], max_pixels)
    if not images and skipped:
        raise GcdashError(f"no readable images under {root} ({len(skipped)} skipped; first: {skipped[0]})")
    meta = {"source": "folder", "root": str(root), "seed": seed, "skipped": skipped}
    objects = None
    if masks:
        folder = check_root(masks)
        objects = [mask_for(folder, rel, shape) for _, rel, shape in files]
    return Samples(images, np.asarray(labels, np.int64), ids, all_classes, masks=objects, meta=meta)


register_source("folder", load_folder)

__all__ = ["FOLDER_FORMATS", "IMG_EXTENSIONS", "FolderImages", "class_folders", "find_images", "load_folder"]
