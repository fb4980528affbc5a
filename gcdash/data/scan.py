"""Walking an image folder: each entry is an image (kept), hidden (a name starting with ".": ignored) or skipped
with a reason, and every skip is said (:class:`Scan`'s ``skipped``, counted by kind for people).

``root``'s visible sub-folders, symlinked ones too, are the classes (sorted: the index is the label, as in
torchvision's ImageFolder); files beside them are skipped ("beside the class folders"). With no sub-folders the
files in ``root`` are the images (label -1). Inside a class folder the walk goes down every real sub-folder; a
symlinked sub-folder is not followed (it may lead anywhere: ``/proc/1/root`` is ``/``) and is said. Dangling
symlinks, symlink loops, files without an image extension, unreadable folders: skipped, said. The walk is bounded
(:data:`MAX_ENTRIES`, and :data:`FIRST_IMAGE_WITHIN` entries without any image): a wrong path such as ``/`` or
``/proc`` is refused in one line within seconds instead of walked.

File names that are not UTF-8 are opened by their real path; their ids and class names show each bad byte as
``\\xNN`` (valid text, so tables and pages can hold them).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gcdash.errors import GcdashError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")  # torchvision's
MAX_ENTRIES = 5_000_000  # entries a scan visits at most (ImageNet's training set is 1.3 million files)
FIRST_IMAGE_WITHIN = 100_000  # entries visited without finding one image: not an image folder

NOT_IMAGE = "not an image"
BESIDE = "beside the class folders"
DANGLING = "dangling symlink{s}"
LOOP = "symlink loop{s}"
LINKED_FOLDER = "symlinked sub-folder{s} (not followed)"
DENIED = "permission denied"
UNREADABLE = "unreadable folder{s}"
SPECIAL = "not a regular file"
Skip = tuple[str, str, str]  # (file, as shown; kind, for counts; why, said for the file)


def shown(name: str) -> str:
    """A file name as valid UTF-8 text: the bytes ``os.fsdecode`` kept as surrogates become ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def extension(name: str) -> str:
    return shown(Path(name).suffix.lower()) or "no extension"


def skip_counts(skipped: list[Skip]) -> dict[str, int]:
    """Kind → count, in the order first seen; files that are not images are one kind, labelled with their most
    common extensions (``"not an image (.gif, .txt)"``)."""
    counts = Counter(kind for _, kind, _ in skipped)
    if NOT_IMAGE in counts:
        common = Counter(extension(file) for file, kind, _ in skipped if kind == NOT_IMAGE).most_common()
        shown_ext = ", ".join(e for e, _ in common[:6]) + (", …" if len(common) > 6 else "")
        label = f"{NOT_IMAGE} ({shown_ext.replace('{', '{{').replace('}', '}}')})"  # literal braces for ``format``
        counts = Counter({label if k == NOT_IMAGE else k: c for k, c in counts.items()})
    return dict(counts)


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMG_EXTENSIONS


@dataclass
class Scan:
    """What a walk found: class names (as shown; index = label), ``(path, label, id)`` per image (real path, id =
    the path relative to the root as shown) and one :data:`Skip` per entry left out."""

    root: Path
    classes: list[str] = field(default_factory=list)
    items: list[tuple[Path, int, str]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    visited: int = 0

    def rel(self, path: Path) -> str:
        return shown(path.relative_to(self.root).as_posix())

    def skip(self, path: Path, kind: str, why: str) -> None:
        self.skipped.append((self.rel(path), kind, why))


def entry_kind(entry: os.DirEntry) -> str:
    """``"dir"``, ``"file"``, ``"linked dir"`` (a symlink to a folder) or the skip kind of an entry."""
    try:
        if entry.is_symlink():
            mode = os.stat(entry.path).st_mode  # follows the link: raises if it is dangling or loops
            return "linked dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else SPECIAL
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        return "file" if entry.is_file(follow_symlinks=False) else SPECIAL
    except FileNotFoundError:
        return DANGLING
    except PermissionError:
        return DENIED
    except OSError as err:
        return LOOP if err.errno == errno.ELOOP else UNREADABLE


WHY = {
    DANGLING: "dangling symlink (its target does not exist)",
    LOOP: "symlink loop (it points back to itself)",
    LINKED_FOLDER: "symlinked sub-folder, not followed",
    DENIED: "permission denied",
    UNREADABLE: "unreadable",
    SPECIAL: "not a regular file",
    BESIDE: "image beside the class folders (ImageFolder layout: images go in a class folder)",
}


def listing(scan: Scan, folder: Path) -> list[tuple[os.DirEntry, str]]:
    """The visible entries of ``folder`` with their kinds; an unreadable folder is skipped (said), empty."""
    try:
        with os.scandir(folder) as it:
            entries = [(e, entry_kind(e)) for e in it if not e.name.startswith(".")]
    except PermissionError:
        scan.skip(folder, DENIED, "permission denied (folder)")
        return []
    except OSError as err:
        scan.skip(folder, UNREADABLE, f"unreadable folder ({err.strerror or err})")
        return []
    scan.visited += len(entries)
    if scan.visited > MAX_ENTRIES:
        raise GcdashError(f"{scan.root} holds over {MAX_ENTRIES:,} entries: point the source at the image folder")
    if scan.visited > FIRST_IMAGE_WITHIN and not scan.items:
        raise GcdashError(f"no image among the first {FIRST_IMAGE_WITHIN:,} entries under {scan.root}: is it the image "
                          "folder?")  # fmt: skip
    return sorted(entries, key=lambda pair: pair[0].name)


def take_file(scan: Scan, path: Path, label: int) -> None:
    if is_image_name(path.name):
        scan.items.append((path, label, scan.rel(path)))
    else:
        scan.skip(path, NOT_IMAGE, f"not an image ({extension(path.name)})")


def walk(scan: Scan, folder: Path, label: int) -> None:
    """Every image under ``folder`` (depth first, sorted), real sub-folders only; the rest skipped, said."""
    stack = [folder]
    while stack:
        here = stack.pop()
        subfolders = []
        for entry, kind in listing(scan, here):
            path = here / entry.name
            if kind == "dir":
                subfolders.append(path)
            elif kind == "file":
                take_file(scan, path, label)
            else:
                kind = LINKED_FOLDER if kind == "linked dir" else kind
                scan.skip(path, kind, WHY[kind])
        stack.extend(reversed(subfolders))


def scan_folder(root: Path) -> Scan:
    """Walk ``root`` (see the module docstring); an unreadable ``root`` is one line."""
    scan = Scan(Path(root))
    try:
        os.scandir(root).close()
    except OSError as err:
        raise GcdashError(f"image folder {root} cannot be read ({err.strerror or err})") from None
    top = listing(scan, scan.root)
    classes = [(entry.name, scan.root / entry.name) for entry, kind in top if kind in ("dir", "linked dir")]
    scan.classes = [shown(name) for name, _ in classes]
    for entry, kind in top:
        path = scan.root / entry.name
        if kind == "file" and classes:
            scan.skip(path, BESIDE if is_image_name(entry.name) else NOT_IMAGE, WHY[BESIDE])
        elif kind == "file":
            take_file(scan, path, -1)
        elif kind not in ("dir", "linked dir"):
            scan.skip(path, kind, WHY[kind])
    for label, (_, path) in enumerate(classes):
        start = len(scan.items)
        walk(scan, path, label)
        scan.items[start:] = sorted(scan.items[start:])  # sorted by path, as ``sorted(folder.rglob("*"))``
    return scan


def class_folders(root: Path) -> list[str]:
    """Sorted names (as shown) of ``root``'s visible sub-folders, symlinked ones too: the class list, index = label."""
    scan = Scan(Path(root))
    return [shown(entry.name) for entry, kind in listing(scan, scan.root) if kind in ("dir", "linked dir")]


__all__ = ["IMG_EXTENSIONS", "MAX_ENTRIES", "Scan", "class_folders", "scan_folder", "shown", "skip_counts"]
