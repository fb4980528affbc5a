"""What an output folder holds and who writes it: checksummed Parquet parts, ``manifest.json``, the folder lock.

- Every Parquet part is recorded as it is written (:class:`Part`: path, bytes, rows, SHA-256 of its bytes) and
  checked against that record when gcdash reads it back (:func:`read_part`): a flipped byte, a part deleted or
  rewritten by a later sweep is one :class:`~gcdash.errors.GcdashError` line, never fewer or other rows.
- ``DIR/manifest.json`` is written last, with the summary (:func:`write`): the per-image table (one file, or the
  folder of parts, each with its rows and checksum) and the checksum of each CSV beside it. :func:`verify` checks a
  folder against it (``python -m gcdash verify DIR``): missing, extra or changed parts, row counts, the CSVs, and
  that ``summary.csv`` counts the rows the table has. pandas ignores it (pyarrow skips nothing it needs: the
  manifest sits beside ``per_image.parquet``, not in it).
- An output folder belongs to one sweep at a time (:class:`FolderLock`, an ``flock`` on ``DIR/.gcdash.lock``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pyarrow.parquet as pq

from gcdash.errors import GcdashError

FORMAT = 1
NAME = "manifest.json"
TABLE = "per_image.parquet"
#: What a sweep writes beside its table: a new sweep into the folder removes them (and the manifest) first.
TABLES = ("summary.csv", "vid.csv", "transfer.csv")
LOCK = ".gcdash.lock"


def digest(data: bytes) -> str:
    """SHA-256 of ``data``, hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Part:
    """One Parquet file as it was written: where, its size in bytes, its rows and the SHA-256 of its bytes."""

    path: str
    size: int
    rows: int
    sha256: str

    @classmethod
    def of(cls, path: str | Path, data: bytes, rows: int) -> Part:
        return cls(str(Path(path).resolve()), len(data), rows, digest(data))


def read_part(part: Part) -> pd.DataFrame:
    """The rows of ``part``, read only after its bytes match its checksum: one line if it is gone or changed."""
    path = Path(part.path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GcdashError(f"{path} is gone (deleted, or the folder was swept again); sweep it again") from None
    except OSError as err:
        raise GcdashError(f"{path} cannot be read: {err.strerror or err}") from None
    if digest(data) != part.sha256:
        raise GcdashError(
            f"{path} does not match its checksum: it is damaged or was rewritten by a later sweep; sweep it again"
        )
    return pd.read_parquet(io.BytesIO(data))


def out_error(out: Path, err: OSError) -> GcdashError:
    """One line for an output folder that failed a write: full (ENOSPC, over quota) or otherwise unwritable."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return GcdashError(
            f"--out {out} is full: {err.strerror or err}; the finished parts and the cache are kept "
            "(free space and sweep again: finished batches are not recomputed)"
        )
    return GcdashError(f"--out {out} cannot be written: {err.strerror or err}")


# -- the manifest ---------------------------------------------------------------------------------------------
def clear_stale(out: Path) -> None:
    """Remove the manifest and the CSVs of an earlier sweep (before the first new part is written): a summary
    never sits beside rows it does not describe."""
    for name in (NAME, *TABLES):
        (out / name).unlink(missing_ok=True)


def write(out: Path, parts: list[Part], files: list[str], config: dict | None = None) -> None:
    """``out/manifest.json`` (a temporary name, then a rename): the table's ``parts`` (paths under ``out``) with
    their rows and checksums, the checksum of each of ``files`` (names in ``out``) and the sweep's ``config`` (what
    made the numbers: models, data, eps, method, attack, precision…), where given."""
    out = out.resolve()
    doc = {
        "gcdash_manifest": FORMAT,
        "table": TABLE,
        "layout": "folder" if (out / TABLE).is_dir() else "file",
        "rows": sum(p.rows for p in parts),
        "parts": [{**asdict(p), "path": Path(p.path).relative_to(out).as_posix()} for p in parts],
        "files": {},
        **({"config": json.loads(json.dumps(config, default=str))} if config is not None else {}),
    }
    _save(out, doc)
    for name in files:
        add(out, name)


def scan(out: Path) -> list[Part]:
    """The parts of ``out/per_image.parquet`` as they are on disk now (one file, or the folder's parts), for a
    manifest written without the records taken when they were written."""
    table = Path(out) / TABLE
    files = sorted(f for f in table.iterdir() if f.name[0] not in "._") if table.is_dir() else [table]
    parts = []
    for file in files if table.exists() else []:
        data = file.read_bytes()
        parts.append(Part.of(file, data, pq.ParquetFile(io.BytesIO(data)).metadata.num_rows))
    return parts


def add(out: Path, name: str) -> None:
    """Record the checksum of ``out/name`` (written after the manifest, like ``transfer.csv``) in the manifest."""
    doc = load(out)
    data = (out / name).read_bytes()
    doc["files"][name] = {"size": len(data), "sha256": digest(data)}
    _save(out, doc)


def _save(out: Path, doc: dict) -> None:
    tmp = out / f".{NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / NAME)


def load(out: Path) -> dict:
    """The manifest of ``out``: one line if there is none or it cannot be read."""
    path = Path(out) / NAME
    if not path.exists():
        raise GcdashError(
            f"{path} is missing: the sweep that wrote {out} did not finish (or predates manifests); sweep it again"
        )
    try:
        doc = json.loads(path.read_text())
        if doc.get("gcdash_manifest") != FORMAT or not isinstance(doc.get("parts"), list):
            raise ValueError("not a gcdash manifest")
        return doc
    except (ValueError, OSError, AttributeError) as err:
        raise GcdashError(f"{path} cannot be read ({err}); sweep it again") from None


def listed(out: Path) -> dict[str, Part] | None:
    """The parts ``out/manifest.json`` lists, by absolute path (None without a manifest: a sweep in progress)."""
    if not (Path(out) / NAME).exists():
        return None
    root = Path(out).resolve()
    parts = [Part(**{**p, "path": str(root / p["path"])}) for p in load(out)["parts"]]
    return {p.path: p for p in parts}


# -- verify ---------------------------------------------------------------------------------------------------
def verify(out: Path) -> list[str]:
    """Everything in ``out`` that does not match its manifest, one line each (empty: all is as written)."""
    try:
        doc = load(out)
    except GcdashError as err:
        return [str(err)]
    problems = _layout(out, doc)
    entries = {p["path"]: p for p in doc["parts"]}
    for name, entry in entries.items() if not problems else ():
        problems += _check_part(out / name, name, entry)
    if doc["layout"] == "folder" and (out / TABLE).is_dir():
        extra = sorted(f"{TABLE}/{f.name}" for f in (out / TABLE).iterdir() if f.name[0] not in "._")
        problems += [f"{name}: an extra part the manifest does not list (pandas reads it too)"
                     for name in extra if name not in entries]  # fmt: skip
    for name, entry in doc["files"].items():
        problems += _check_file(out / name, name, entry)
    return problems + _summary_rows(out, doc)


def _layout(out: Path, doc: dict) -> list[str]:
    table = out / doc["table"]
    if not table.exists():
        return [f"{doc['table']} is missing"]
    if table.is_dir() != (doc["layout"] == "folder"):
        return [f"{doc['table']} is a {'folder' if table.is_dir() else 'file'}; the manifest lists a {doc['layout']}"]
    return []


def _check_part(path: Path, name: str, entry: dict) -> list[str]:
    if not path.is_file():
        return [f"{name} is missing (the manifest lists it with {entry['rows']} rows)"]
    data = path.read_bytes()
    if digest(data) == entry["sha256"]:
        return []
    try:
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    except (ValueError, OSError):  # not Parquet any more: its checksum already says it changed
        return [f"{name} changed: its checksum does not match the manifest's and it is not readable Parquet"]
    if rows != entry["rows"]:
        return [f"{name} changed: {rows} rows where the manifest lists {entry['rows']}"]
    return [f"{name} changed: its checksum does not match the manifest's ({rows} rows, as listed)"]


def _check_file(path: Path, name: str, entry: dict) -> list[str]:
    if not path.is_file():
        return [f"{name} is missing"]
    return [] if digest(path.read_bytes()) == entry["sha256"] else [f"{name} changed since the sweep wrote it"]


def _summary_rows(out: Path, doc: dict) -> list[str]:
    """``summary.csv`` describes the rows the table has: its counts (``n``) add up to the manifest's rows."""
    path = out / "summary.csv"
    if not path.is_file():
        return [] if "summary.csv" in doc["files"] else ["summary.csv is missing"]
    try:
        counted = int(pd.read_csv(path)["n"].sum())
    except (ValueError, KeyError, pd.errors.ParserError):
        return ["summary.csv cannot be read as a summary (no n column)"]
    if counted != doc["rows"]:
        return [f"summary.csv counts {counted} rows; the table has {doc['rows']} in the manifest"]
    return []


# -- the lock -------------------------------------------------------------------------------------------------
class FolderLock:
    """An output folder held by one sweep: an exclusive ``flock`` on ``DIR/.gcdash.lock`` (released by
    :meth:`release`, or by the system when the process ends, killed or not). Another process's sweep into the
    folder is refused with one line; in this process, a newer lock on the folder takes it over from the older one
    (whose :attr:`held` turns False), so a sweep restarted in the same process is not locked out by its
    predecessor."""

    _held: ClassVar[dict[Path, FolderLock]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, out: Path) -> None:
        self.out = Path(out).resolve()
        with self._guard:
            older = self._held.get(self.out)
            if older is not None and older._fd is not None:
                self._fd, older._fd = older._fd, None
            else:
                self._fd = _flock(self.out)
            self._held[self.out] = self

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)  # closing the descriptor releases the flock
                self._fd = None
            if self._held.get(self.out) is self:
                del self._held[self.out]


def _flock(out: Path) -> int:
    """An exclusive, non-blocking ``flock`` on ``out/.gcdash.lock``: its descriptor, or one line if it is held."""
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise out_error(out, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if isinstance(err, BlockingIOError):
            raise GcdashError(
                f"--out {out} is being written by another sweep; wait for it to finish or give another --out"
            ) from None
        raise GcdashError(f"--out {out} cannot be locked for this sweep: {err.strerror or err}") from None
    return fd
