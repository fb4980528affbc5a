"""Image folders: spec ``folder:PATH``, in torchvision's ImageFolder layout (VGGFace2 style).

``PATH/<class>/**/<image>``: one sub-folder per class (identity); labels are the index of the sub-folder in the
sorted list of all sub-folders, exactly as ``torchvision.datasets.ImageFolder`` numbers them, so they match a
model fine-tuned on the same folder even when only some classes are selected (hidden files and folders, names
starting with ".", are ignored; ImageFolder would count a hidden folder as a class). A folder with images and no
sub-folders loads as unlabelled (label -1). The walk (:mod:`gcdash.data.scan`) says every file it leaves out:
not an image, beside the class folders, dangling symlinks, symlink loops, unreadable folders. Subsets: ``classes``
(names) keeps those folders; ``per_class`` and ``n`` (at most that many per class / in all) are filled by visiting
files in a random order drawn with ``seed``, decoding only what is kept; an unreadable file is skipped (listed in
``meta["skipped"]``, counted by reason in ``meta["skip_counts"]``) and the next one in that order takes its place;
what was decided for a file (an integer TIFF's depth, a mask's threshold) is in ``meta["notes"]``. The chosen
files keep their sorted order; ids are paths relative to ``PATH`` (a byte that is not UTF-8 shown as ``\\xNN``). The
pixels are not kept: :class:`FolderImages` decodes them again when a batch is read, so a sweep of any size holds
one batch of decoded images at a time (the check at load costs one extra decode per image).

Object masks (for localisation: the pointing game and the map's mass inside the object) come from a parallel
folder, option ``masks=MASKS`` (CLI ``--masks MASKS``): ``MASKS/<class>/<name>.png`` for ``PATH/<class>/<name>.jpg``
(the same relative path, any image extension, the same size as the image). The object is read from the mask's
alpha channel where it has one that is not all opaque (opaque = object), else from its brightest channel, and
thresholded at the middle of its range (0 to its maximum: a 0/1 mask and a 0/255 one both work); a mask with more
than :data:`NOT_BINARY` of its pixels between the two (a lossy JPEG, soft edges) is noted. An all-zero mask is
noted and its hit and mass are NaN (:mod:`gcdash.metrics.localisation`), never a miss. When ``masks`` is given
every chosen image needs one: a missing or misfit mask is an error naming the file by its path, never a silently
unmasked image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gcdash.data import Samples, counts_text, register_source, tally
from gcdash.data.scan import IMG_EXTENSIONS, class_folders, scan_folder, shown, skip_counts
from gcdash.data.uploads import MAX_PIXELS, Note, decode_image, to_rgb
from gcdash.errors import GcdashError

FOLDER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "PPM", "TIFF")
NOT_BINARY = 0.01  # share of a mask's pixels strictly between 0 and its maximum above which it is noted
EMPTY_MASK = "empty mask{s} (hit and mass NaN, left out of the means)"
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
Item = tuple[Path, int, str]  # (file, label, id)


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
    try:
        found = root.is_dir()
    except OSError as err:  # a parent that cannot be searched
        raise GcdashError(f"image folder {root} cannot be reached ({err.strerror or err})") from None
    if not found:
        raise GcdashError(f"image folder {root} not found (or not a folder)")
    return root


def check_counts(n: int | None, per_class: int | None) -> None:
    if n is not None and n < 0:
        raise GcdashError(f"n must be ≥ 0, got {n}")
    if per_class is not None and per_class < 1:
        raise GcdashError(f"per_class must be ≥ 1, got {per_class}")


def mask_levels(image: Image.Image, notes: list[Note]) -> np.ndarray:
    """A mask file's object levels (H, W): its alpha where it has an alpha channel that is not all opaque (a
    cut-out on a transparent background), else its brightest channel (16-bit and integer masks scaled)."""
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if alpha.size and alpha.min() < 255:
            return alpha
    return to_rgb(image, notes).max(axis=2)


def binarise(levels: np.ndarray, notes: list[Note]) -> np.ndarray:
    """Object = levels above the middle of [0, max]; an all-zero mask is empty (noted), a mask with more than
    :data:`NOT_BINARY` of its pixels strictly between 0 and max is noted."""
    high = float(levels.max()) if levels.size else 0.0
    if high == 0:
        notes.append((EMPTY_MASK, "empty mask (all zero): no hit or mass for its image (NaN, left out)"))
        return np.zeros(levels.shape, bool)
    between = float(np.mean((levels > 0) & (levels < high)))
    if between > NOT_BINARY:
        notes.append((
            "non-binary mask{s} thresholded at the middle",
            f"{between:.1%} of its pixels lie between 0 and {high:g} (a lossy JPEG? soft edges?): object = above "
            f"{high / 2:g}",
        ))  # fmt: skip
    return levels > high / 2


def mask_for(masks: Path, rel: Path, shape: tuple[int, ...], notes: list[tuple[str, str, str]]) -> np.ndarray:
    """The object mask of image ``rel`` (its path relative to the image folder) from the masks folder: bool
    (H, W); what was decided for it is appended to ``notes`` as (mask, kind, what)."""
    stem = rel.with_suffix("")
    candidates = (masks / f"{stem.as_posix()}{ext}" for ext in (".png", *IMG_EXTENSIONS))
    found = [path for path in candidates if path.is_file()]
    if not found:
        raise GcdashError(f"no mask for {shown(rel.as_posix())} under {masks} (expected {masks / stem}.png)")
    return read_mask(found[0], shape, notes)


def read_mask(path: Path, shape: tuple[int, ...], notes: list[tuple[str, str, str]]) -> np.ndarray:
    """The object mask in file ``path`` for an image of ``shape``: bool (H, W) (:func:`mask_levels`,
    :func:`binarise`); a mask of another size is an error naming it; what was decided is appended to ``notes``."""
    name, said = shown(str(path)), []
    levels = decode_image(path, name, FOLDER_FORMATS, notes=said, convert=mask_levels)
    if levels.shape != tuple(shape[:2]):
        raise GcdashError(f"mask {name} is {levels.shape[1]}×{levels.shape[0]}, its image {shape[1]}×{shape[0]}")
    mask = binarise(levels, said)
    notes.extend((name, kind, what) for kind, what in said)
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
    found = scan_folder(root)
    all_classes, picked = found.classes, parse_classes(classes)
    items = keep_classes(found.items, all_classes, picked)
    if not items:
        raise GcdashError(f"no images ({', '.join(IMG_EXTENSIONS)}) found under {root}{_said(found.skipped)}")
    files, labels, chosen_skips, notes = pick(items, n, per_class, seed, max_pixels, f"under {root}")
    objects = None
    if masks:
        folder = check_root(masks)
        objects = [mask_for(folder, path.relative_to(root), shape, notes) for path, _, shape in files]
    skipped = [s for s in found.skipped if picked is None or s[0].partition("/")[0] in picked or "/" not in s[0]]
    meta = source_meta("folder", shown(str(root)), seed, skipped + chosen_skips, notes)
    images = FolderImages([(path, rel) for path, rel, _ in files], max_pixels)
    return Samples(images, np.asarray(labels, np.int64), [rel for _, rel, _ in files], all_classes, objects, meta)


Entry = tuple[str, str, str]  # (file, kind, why): a skipped file or a note
File = tuple[Path, str, tuple[int, ...]]  # (path, id, decoded shape): a chosen file


def pick(items: list[Item], n: int | None, per_class: int | None, seed: int, max_pixels: int, where: str) -> tuple:
    """:func:`choose`, in the items' order: (files, labels, skipped, notes); nothing readable among the visited
    files is an error (``where`` says where they were looked for)."""
    chosen, skipped, notes = choose(items, n, per_class, seed, max_pixels)
    chosen.sort(key=lambda c: c[0])
    if not chosen and skipped:
        raise GcdashError(f"no readable images {where} ({len(skipped)} skipped; first: {_line(skipped[0])})")
    files: list[File] = [c[1] for c in chosen]
    return files, [c[2] for c in chosen], skipped, notes


def source_meta(source: str, root: str, seed: int, skipped: list[Entry], notes: list[Entry]) -> dict:
    """``Samples.meta`` of a file source: every file skipped and every note, one line each, and their counts."""
    return {
        "source": source, "root": root, "seed": seed,
        "skipped": [_line(s) for s in skipped], "skip_counts": skip_counts(skipped),
        "notes": [_line(s) for s in notes], "note_counts": tally(kind for _, kind, _ in notes),
    }  # fmt: skip


def choose(items: list[Item], n: int | None, per_class: int | None, seed: int, max_pixels: int) -> tuple:
    """Visit ``items`` in the seeded order, decoding each wanted one once: (chosen, skipped, notes); an
    unreadable file is skipped and the next one in the order takes its place."""
    chosen, skipped, notes, taken = [], [], [], Counter()
    for i in visit_order(len(items), n, per_class, seed):
        path, label, rel = items[i]
        if not wanted(label, taken, len(chosen), n, per_class):
            continue
        said: list[Note] = []
        try:
            shape = decode_image(path, rel, FOLDER_FORMATS, max_pixels, said).shape  # checked now, pixels dropped
        except GcdashError as err:
            skipped.append((rel, getattr(err, "kind", "unreadable"), str(err).removeprefix(f"{rel}: ")))
            continue
        notes.extend((rel, kind, what) for kind, what in said)
        chosen.append((i, (path, rel, shape), label, rel))
        taken[label] += 1
    return chosen, skipped, notes


def _line(entry: Entry) -> str:
    return f"{entry[0]}: {entry[2]}"


def _said(skipped: list[Entry]) -> str:
    """``"; skipped 3: 2 dangling symlinks, …"`` for a message, or ``""``."""
    return f"; skipped {len(skipped):,} entries: {counts_text(skip_counts(skipped))}" if skipped else ""


register_source("folder", load_folder)

__all__ = [
    "FOLDER_FORMATS", "IMG_EXTENSIONS", "FolderImages", "class_folders", "load_folder", "mask_for", "pick", "read_mask",
    "source_meta",
]  # fmt: skip
