"""The Runs index (gcdash.runs): a small run's table kept in the cache under its checksum, a large run indexed by
its checked parts; a damaged copy or a rewritten part refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from gcdash import runs, sweep
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.parts import Parts, read_parts
from gcdash.store import Store


def _config(**kw) -> SweepConfig:
    defaults = dict(
        models=(ModelSpec("tiny-cnn"), ModelSpec("tiny-cnn2")), data=DataConfig("tiny", 10, 0),
        eps=(0.0, 4 / 255, 8 / 255), layers="all",
    )  # fmt: skip
    return SweepConfig(**{**defaults, **kw})


def test_a_large_run_is_indexed_by_its_folder_not_copied_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUN_TABLE_ROWS", 10)  # this sweep's 120 rows count as large
    store, config = Store(tmp_path / "cache"), _config()
    result = sweep.sweep(config, store, batch_size=4, parts=Parts(tmp_path / "out"))
    (run,) = store.runs()
    assert run["nbytes"] == 0 and run["n_rows"] == result.n_rows == 180 and result.per_image.empty
    with pytest.raises(GcdashError, match="in its Parquet parts"):
        result.write(tmp_path / "out")  # would replace the parts with an empty table
    folder = (tmp_path / "out" / "per_image.parquet").resolve()
    assert {Path(f).parent for f, *_ in run["config"]["table_files"]} == {folder}
    pd.testing.assert_frame_equal(runs.load_run(store, run["key"]), read_parts(sorted(folder.glob("part-*"))))
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(GcdashError, match="is gone or was rewritten"):
        runs.load_run(store, run["key"])


def test_a_large_runs_index_reads_its_own_parts_and_notices_a_later_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUN_TABLE_ROWS", 10)
    store, parts = Store(tmp_path / "cache"), Parts(tmp_path / "out")
    first = sweep.sweep(_config(), store, batch_size=4, parts=parts)
    sweep.sweep(_config(eps=(0.0, 2 / 255)), store, batch_size=4, parts=parts)  # more parts in the same folder
    key = _config().key()
    pd.testing.assert_frame_equal(runs.load_run(store, key), parts.read(range(0, 2)))
    assert len(runs.load_run(store, key)) == first.n_rows  # its own rows, not the other sweep's
    sweep.sweep(_config(eps=(0.0, 1 / 255)), store, batch_size=4, parts=Parts(tmp_path / "out"))
    with pytest.raises(GcdashError, match="rewritten by a later sweep"):
        runs.load_run(store, key)  # same part names, other rows


def test_a_small_run_keeps_its_table_in_the_cache(tmp_path):
    store = Store(tmp_path / "cache")
    result = sweep.sweep(_config(), store, batch_size=4, parts=Parts(tmp_path / "out"))
    shutil.rmtree(tmp_path / "out")
    pd.testing.assert_frame_equal(runs.load_run(store, store.runs()[0]["key"]), result.per_image)


def test_a_stored_run_table_with_a_flipped_byte_is_refused_and_a_new_sweep_rebuilds_it(tmp_path):
    store = Store(tmp_path / "cache")
    result = sweep.sweep(_config(), store, batch_size=4)
    key = store.runs()[0]["key"]
    conn = store._conn()
    blob = bytearray(conn.execute("SELECT blob FROM runs WHERE key=?", (key,)).fetchone()[0])
    for at in range(100, len(blob), len(blob) // 12):  # twelve single-byte flips across the table
        flipped = blob.copy()
        flipped[at] ^= 0x01
        with conn:
            conn.execute("UPDATE runs SET blob=? WHERE key=?", (bytes(flipped), key))
        with pytest.raises(GcdashError, match="is damaged"):
            runs.load_run(store, key)
    again = sweep.sweep(_config(), store, batch_size=4)  # from the cache: no model pass
    assert sum(again.passes.values()) == 0
    pd.testing.assert_frame_equal(runs.load_run(store, key), result.per_image)


def test_a_large_runs_part_flipped_in_place_is_refused(tmp_path, monkeypatch):
    """Same size, same modification time, other bytes: the part's checksum tells."""
    import os

    monkeypatch.setattr(runs, "RUN_TABLE_ROWS", 10)
    store = Store(tmp_path / "cache")
    sweep.sweep(_config(), store, batch_size=4, parts=Parts(tmp_path / "out"))
    (run,) = store.runs()
    assert all(len(entry) == 4 and len(entry[3]) == 64 for entry in run["config"]["table_files"])  # sha256 each
    part = Path(run["config"]["table_files"][2][0])
    stat, data = part.stat(), bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x10
    part.write_bytes(bytes(data))
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    runs.check_run(store, run["key"])  # the cheap check (there, same size) passes…
    with pytest.raises(GcdashError, match=f"{part.name} does not match its checksum"):
        runs.load_run(store, run["key"])  # …reading it does not
