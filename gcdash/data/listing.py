"""Image lists: spec ``list:FILE.csv``, a CSV with a header and columns ``path``, ``label`` and, optionally, ``mask``.

Paths (images and masks) are relative to the CSV's folder, or absolute; ids are the paths as written (``./a.png``
→ ``a.png``), in the file's order; a path listed again is skipped, said. A label is one kind per file (a mix is
refused in one line naming a row of each):

- a class name (``tench``) or a WordNet id (``n01440764``): ``class_names`` are the file's labels, sorted and
  unique, and the labels index them; :func:`gcdash.data.align_labels` maps them to a model by name, wnids to
  ImageNet's classes (:mod:`gcdash.data.imagenet`), and says the ones a model lacks;
- a class index (``0``): kept as the model's class index (``class_names`` empty); an index past a model's classes
  is refused before any pass (``plan.check_labels``).

An empty label (or ``-1``) is unlabelled: no accuracy, the flip rate still shows. Options as the folder source's
(:mod:`gcdash.data.folder`): ``classes`` (labels as written) keeps those rows, ``per_class`` and ``n`` pick with
``seed``; a listed file that is missing, not a file, or unreadable is skipped and said in ``meta["skipped"]`` /
``meta["skip_counts"]``, the next one in the seeded order taking its place. With a ``mask`` column every chosen
image needs its mask (read as the folder source reads masks, same size): one missing is an error naming it.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcdash.data import Samples, register_source
from gcdash.data.folder import FolderImages, check_counts, parse_classes, pick, read_mask, source_meta
from gcdash.data.imagenet import is_wnid
from gcdash.data.scan import DANGLING, DENIED, LOOP, SPECIAL, UNREADABLE, WHY, shown
from gcdash.data.uploads import MAX_PIXELS
from gcdash.errors import GcdashError

COLUMNS = ("path", "label")  # required; ``mask`` is optional
INDEX = re.compile(r"-?\d+")
UNLABELLED = ("", "-1")
KINDS = {"index": "class indices", "wnid": "WordNet ids", "name": "class names"}
MISSING = "missing file{s}"
TWICE = "row{s} listing a file again"


@dataclass(frozen=True)
class Row:
    """One line of the list: the paths as written, the label as written, the line number (for messages)."""

    path: str
    label: str
    mask: str
    line: int


def label_kind(label: str) -> str:
    """``"index"``, ``"wnid"`` or ``"name"`` (keys of :data:`KINDS`) of a non-empty label."""
    return "index" if INDEX.fullmatch(label) else "wnid" if is_wnid(label) else "name"


def check_file(arg: str | None) -> Path:
    if not arg:
        raise GcdashError("the list source needs the path of a CSV file (columns path, label and, optionally, mask)")
    path = Path(arg).expanduser()
    if not path.is_file():
        raise GcdashError(f"image list {path} not found (or not a file)")
    return path


def read_rows(path: Path) -> list[Row]:
    """The rows of the CSV at ``path``; an unreadable file, one without a header or a required column, or one with
    no rows is one line."""
    header, rows = read_csv(path)
    if not header:
        raise GcdashError(f"image list {path} is empty: it needs a header line (path,label and, optionally, mask)")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GcdashError(f"image list {path} has no column {missing[0]!r} (it has: {', '.join(header)}); it needs "
                          "path and label, and may have mask")  # fmt: skip
    return check_rows(path, rows)


def read_csv(path: Path) -> tuple[list[str], list[Row]]:
    """(header, rows) of the CSV at ``path`` (a UTF-8 byte-order mark and spaces around names ignored)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, strict=True)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            return header, [row_of(record, reader.line_num) for record in reader]
    except UnicodeDecodeError:
        raise GcdashError(f"image list {path} is not UTF-8 text") from None
    except csv.Error as err:
        raise GcdashError(f"image list {path} is not a readable CSV ({err})") from None
    except OSError as err:
        raise GcdashError(f"image list {path} cannot be read ({err.strerror or err})") from None


def row_of(record: dict, line: int) -> Row:
    def cell(key: str) -> str:
        value = record.get(key)
        return value.strip() if isinstance(value, str) else ""

    return Row(cell("path"), cell("label"), cell("mask"), line)


def check_rows(path: Path, rows: list[Row]) -> list[Row]:
    """Refuse a list without rows, a row without a path, a negative index other than -1, and a mix of kinds."""
    if not rows:
        raise GcdashError(f"image list {path} lists no images (a header and no rows)")
    for row in rows:
        if not row.path:
            raise GcdashError(f"image list {path}, line {row.line}: no path")
        if INDEX.fullmatch(row.label) and int(row.label) < -1:
            raise GcdashError(f"image list {path}, line {row.line}: label {row.label} is not a class index (≥ 0)")
    first: dict[str, Row] = {}
    for row in rows:
        if row.label not in UNLABELLED:
            first.setdefault(label_kind(row.label), row)
    if len(first) > 1:
        said = " and ".join(f"{KINDS[kind]} (line {r.line}: {r.label})" for kind, r in first.items())
        raise GcdashError(f"image list {path} mixes {said}: use one kind of label per file")
    return rows


def class_list(rows: Sequence[Row]) -> list[str]:
    """The list's class names (its labels, sorted and unique), or ``[]`` when its labels are class indices."""
    labels = {row.label for row in rows if row.label not in UNLABELLED}
    return [] if any(INDEX.fullmatch(label) for label in labels) else sorted(labels)


def keep_labels(rows: list[Row], wanted: list[str] | None) -> list[Row]:
    """The rows whose label is one of ``wanted`` (as written); ``None``: all. A label the list lacks is refused."""
    if wanted is None:
        return rows
    present = sorted({row.label for row in rows if row.label not in UNLABELLED})
    unknown = [c for c in wanted if c not in present]
    if unknown:
        listed = ", ".join(present[:8]) + (f" … ({len(present)} in all)" if len(present) > 8 else "")
        raise GcdashError(f"no label {unknown[0]!r} in the list; it has: {listed or 'no labels'}")
    return [row for row in rows if row.label in wanted]


def resolve(base: Path, written: str) -> Path:
    path = Path(written).expanduser()
    return path if path.is_absolute() else base / path


def file_problem(path: Path) -> tuple[str, str] | None:
    """Why a listed file cannot be read, as (kind, why); ``None`` for a regular file (its pixels checked later)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return (DANGLING, WHY[DANGLING]) if path.is_symlink() else (MISSING, "no such file")
    except PermissionError:
        return DENIED, WHY[DENIED]
    except OSError as err:
        return (LOOP, WHY[LOOP]) if err.errno == errno.ELOOP else (UNREADABLE, f"unreadable ({err.strerror or err})")
    return None if stat.S_ISREG(mode) else (SPECIAL, WHY[SPECIAL])


def list_items(base: Path, rows: list[Row], class_names: list[str]) -> tuple[list, list, dict[str, Path | None]]:
    """(items, skipped, mask path per id): one ``(path, label, id)`` item per readable row, a skip per other."""
    index = {name: i for i, name in enumerate(class_names)}
    items, skipped, masks, seen = [], [], {}, {}
    for row in rows:
        rel = shown(Path(row.path).as_posix())
        path, problem = resolve(base, row.path), None
        if rel in seen:
            problem = TWICE, f"listed again (line {row.line}; line {seen[rel]} counts)"
        problem = problem or file_problem(path)
        if problem:
            skipped.append((rel, *problem))
            continue
        seen[rel] = row.line
        label = -1 if row.label in UNLABELLED else index[row.label] if class_names else int(row.label)
        items.append((path, label, rel))
        masks[rel] = resolve(base, row.mask) if row.mask else None
    return items, skipped, masks


def list_masks(files: Sequence, masks: dict[str, Path | None], notes: list) -> list[np.ndarray] | None:
    """The chosen images' masks when the list has any; an image without one is an error naming it."""
    if not any(masks.values()):
        return None
    for _, rel, _ in files:
        if masks[rel] is None:
            raise GcdashError(f"no mask for {rel}: with a mask column every image needs one")
        if not masks[rel].is_file():
            raise GcdashError(f"mask {shown(str(masks[rel]))} of {rel} not found")
    return [read_mask(masks[rel], shape, notes) for _, rel, shape in files]


def load_list(
    arg: str | None = None,
    n: int | None = None,
    seed: int = 0,
    classes: Sequence[str] | str | None = None,
    per_class: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Samples:
    """Loader for ``list:FILE.csv`` (see the module docstring for columns, labels and subsets)."""
    path = check_file(arg)
    check_counts(n, per_class)
    rows = read_rows(path)
    class_names = class_list(rows)
    items, skipped, masks = list_items(path.parent, keep_labels(rows, parse_classes(classes)), class_names)
    if not items and skipped:
        raise GcdashError(f"no image listed in {path} can be read ({len(skipped)} skipped; first: {skipped[0][0]}: "
                          f"{skipped[0][2]})")  # fmt: skip
    files, labels, chosen_skips, notes = pick(items, n, per_class, seed, max_pixels, f"in {path}")
    objects = list_masks(files, masks, notes)
    meta = source_meta("list", shown(str(path)), seed, skipped + chosen_skips, notes)
    images = FolderImages([(file, rel) for file, rel, _ in files], max_pixels)
    return Samples(images, np.asarray(labels, np.int64), [rel for _, rel, _ in files], class_names, objects, meta)


register_source("list", load_list)

__all__ = ["COLUMNS", "Row", "load_list", "read_rows"]
