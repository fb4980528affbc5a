"""A sweep's per-image table as Parquet parts: written batch by batch (:class:`Parts`), read back in the order a
sweep returns its rows in memory (:func:`read_parts`, :func:`gcdash.tables.in_group_order`), each part checked
against its checksum (:mod:`gcdash.manifest`)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gcdash import manifest, results
from gcdash.errors import GcdashError
from gcdash.plan import check_out_dir
from gcdash.tables import in_group_order


class Parts:
    """``DIR/per_image.parquet`` as a folder of Parquet parts, one per finished batch, each written whole (a
    temporary name, then a rename) as soon as its batch is done: a killed sweep loses at most the batch in flight,
    and ``pandas.read_parquet(DIR/per_image.parquet)`` reads the folder as one table. A new sweep starts it empty
    (a rerun after a kill rewrites it from the cache, making no model pass for the finished batches), after
    taking the folder's lock (:class:`~gcdash.manifest.FolderLock`, held until :meth:`close` or the process ends;
    a use as a context manager closes it) and removing an earlier sweep's summary and manifest. Each part's rows
    and checksum are recorded as it is written and checked whenever it is read back."""

    NAME = manifest.TABLE

    def __init__(self, out_dir: str | Path) -> None:
        out = check_out_dir(out_dir)
        self.lock = manifest.FolderLock(out)  # another sweep into this folder is refused, in one line
        self.path = out / self.NAME
        try:
            manifest.clear_stale(out)
            if self.path.is_dir():
                shutil.rmtree(self.path)
            elif self.path.exists():
                self.path.unlink()
            self.path.mkdir()
        except OSError as err:
            self.close()
            raise manifest.out_error(out, err) from None
        self.count, self.group, self._written = 0, 0, []

    def __enter__(self) -> Parts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Give the folder back (the parts stay)."""
        self.lock.release()

    def next_group(self) -> None:
        """The parts written from now on are another model's (or another attack's) table."""
        self.group += 1

    def write(self, frame: pd.DataFrame) -> None:
        """One part, whole (a temporary name, then a rename), its checksum recorded; a full disk is one line."""
        if not self.lock.held:
            raise GcdashError(f"--out {self.path.parent} is no longer this sweep's (closed, or taken by a newer one)")
        name = f"part-{self.group:04d}-{self.count:06d}.parquet"
        tmp = self.path / f".{name}.tmp"
        try:
            data = parquet_bytes(frame)
            tmp.write_bytes(data)
            os.replace(tmp, self.path / name)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise manifest.out_error(self.path.parent, err) from None
        self._written.append((self.group, manifest.Part.of(self.path / name, data, len(frame))))
        self.count += 1

    def written(self, groups: range | None = None) -> list[manifest.Part]:
        """The parts written (those of ``groups``), in the order they were written, with their checksums."""
        return [part for group, part in self._written if groups is None or group in groups]

    def files(self, groups: range | None = None) -> list[Path]:
        """The parts written (those of ``groups``), in the order they were written."""
        return [Path(part.path) for part in self.written(groups)]

    def summary(self, groups: range | None = None) -> results.StreamingSummary:
        """The summary of the parts (those of ``groups``), read one part at a time, each checked."""
        summary = results.StreamingSummary()
        for part in self.written(groups):
            summary.add(manifest.read_part(part))
        return summary

    def read(self, groups: range | None = None) -> pd.DataFrame:
        """Every part (or those of ``groups``), in the order :func:`sweep` would have returned the rows in memory."""
        return read_parts(self.written(groups))


def read_parts(files: Sequence[Path | manifest.Part]) -> pd.DataFrame:
    """Parquet parts written by :class:`Parts`, as one table in the order :func:`sweep` returns rows in memory.
    Each is checked: a :class:`~gcdash.manifest.Part` against its checksum, a path against its folder's manifest
    where there is one (one line for a part it does not list or that does not match it)."""
    listed: dict[Path, dict[str, manifest.Part] | None] = {}
    frames = []
    for file in files:
        part = file if isinstance(file, manifest.Part) else _listed_part(Path(file), listed)
        frame = manifest.read_part(part) if part is not None else pd.read_parquet(file)
        frames.append((int(Path(getattr(file, "path", file)).name.split("-")[1]), frame))
    return in_group_order(frames)


def _listed_part(file: Path, listed: dict[Path, dict[str, manifest.Part] | None]) -> manifest.Part | None:
    """``file`` as its output folder's manifest lists it (None without a manifest: a sweep still writing)."""
    if file.resolve().parent.name != manifest.TABLE:  # not in a sweep's output folder: nothing to check it against
        return None
    out = file.resolve().parent.parent
    if out not in listed:
        listed[out] = manifest.listed(out)
    if listed[out] is None:
        return None
    if str(file.resolve()) not in listed[out]:
        raise GcdashError(f"{file} is not listed in {out / manifest.NAME}: it was added after that sweep")
    return listed[out][str(file.resolve())]


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet bytes (the bytes ``frame.to_parquet(path, index=False)`` would write)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()
