"""The Runs index: each finished sweep's config and where its per-image table lives (a copy in the store, or the
Parquet parts of a large one, with their checksums), for the Runs page."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from gcdash import manifest
from gcdash.errors import GcdashError
from gcdash.parts import parquet_bytes, read_parts
from gcdash.store import Store

if TYPE_CHECKING:
    from gcdash.sweep import SweepResult

#: Runs with more per-image rows than this are indexed by where their table was written, not with a copy of it in
#: the cache (a full-scale sweep's table is gigabytes: it belongs in its output folder, not in SQLite).
RUN_TABLE_ROWS = 1_000_000


def save_run(store: Store, result: SweepResult, files: Sequence[manifest.Part] | None = None) -> None:
    """Index the run in the store for the Runs page: its config and per-image table as Parquet (the store keeps a
    CRC of both), or, for a table of more than :data:`RUN_TABLE_ROWS` rows written as the Parquet parts
    ``files`` (:meth:`Parts.written`), where they are with each one's size, rows and SHA-256, so that a part
    damaged or rewritten by a later sweep is refused when read."""
    config = result.config.to_dict()
    if files and result.n_rows > RUN_TABLE_ROWS:
        config["table_files"] = [[p.path, p.size, p.rows, p.sha256] for p in files]
        store.put_run(result.config.key(), config, b"", result.n_rows, 0)
        return
    table = parquet_bytes(result.per_image)
    store.put_run(result.config.key(), config, table, len(result.per_image), len(table))


def load_run(store: Store, key: str) -> pd.DataFrame | None:
    """A run's per-image table (None if the run is unknown), checked: its stored copy against its CRC, or each of
    its parts against its checksum; one clear error if either is damaged or a part is gone."""
    stored = store.get_run(key)
    if stored is None:
        return None
    config, blob = stored
    if blob:
        return pd.read_parquet(io.BytesIO(blob))
    return read_parts(run_parts(config, key))


def check_run(store: Store, key: str) -> None:
    """What :func:`load_run` checks short of reading a large run's parts (for the Runs page, before it offers a
    download): the stored copy against its CRC, or each part there and of its size. One clear error if not."""
    stored = store.get_run(key)
    if stored is not None and not stored[1]:
        run_parts(stored[0], key)


def run_parts(config: Mapping, key: str) -> list[manifest.Part]:
    """The parts listed in a large run's ``config``, each there and of its size (one clear error if not)."""
    entries = config.get("table_files", [])
    if any(len(entry) != 4 for entry in entries):
        raise GcdashError(f"run {key}'s parts were indexed without checksums (an older gcdash); sweep it again")
    parts = [manifest.Part(*entry) for entry in entries]
    changed = [p.path for p in parts if not Path(p.path).is_file() or Path(p.path).stat().st_size != p.size]
    if changed or not parts:
        where = Path(changed[0]).parent if changed else "its output folder"
        raise GcdashError(
            f"run {key}'s per-image table in {where} is gone or was rewritten by a later sweep; sweep it again"
        )
    return parts
