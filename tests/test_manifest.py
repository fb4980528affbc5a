"""An output folder's manifest, checked parts and lock: a part deleted, added or changed is said, never read as
fewer or other rows; one sweep at a time per folder."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
import tiny

from gcdash import manifest, sweep
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.parts import Parts, read_parts
from gcdash.store import Store

CONFIG = SweepConfig(models=(ModelSpec("tiny-cnn"),), data=DataConfig("tiny", 10, 0), eps=(0.0, 4 / 255), layers="all")


def _streamed(tmp_path, out="out"):
    """A sweep streamed to ``tmp_path/out`` and written with its summary and manifest, as the CLI does."""
    with Parts(tmp_path / out) as parts:
        result = sweep.sweep(CONFIG, Store(tmp_path / "cache"), batch_size=4, parts=parts)
        result.write(tmp_path / out, per_image=False, parts=parts)
    return tmp_path / out, result


def _flip(path, at: int = -40) -> None:
    """Flip one bit of ``path`` in place, keeping its size."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_written_folder_verifies_and_its_manifest_lists_every_part(tmp_path):
    out, result = _streamed(tmp_path)
    doc = manifest.load(out)
    parts = sorted((out / "per_image.parquet").glob("part-*.parquet"))
    assert [p["path"] for p in doc["parts"]] == [f"per_image.parquet/{p.name}" for p in parts]
    assert doc["rows"] == result.n_rows == sum(len(pd.read_parquet(p)) for p in parts)
    assert set(doc["files"]) == {"summary.csv", "vid.csv"}
    assert manifest.verify(out) == []
    assert len(pd.read_parquet(out / "per_image.parquet")) == result.n_rows  # pandas still reads the folder


def test_a_deleted_part_is_one_line_never_fewer_rows(tmp_path):
    out, _ = _streamed(tmp_path)
    gone = sorted((out / "per_image.parquet").glob("part-*.parquet"))[1]
    gone.unlink()
    rows = len(pd.read_parquet(gone.parent / "part-0000-000000.parquet"))  # every batch of 4 images: same rows
    missing = f"per_image.parquet/{gone.name} is missing (the manifest lists it with {rows} rows)"
    assert manifest.verify(out) == [missing]
    with pytest.raises(GcdashError, match="is gone"):
        read_parts([*sorted((out / "per_image.parquet").glob("part-*")), gone])


def test_extra_changed_and_edited_files_are_each_one_line(tmp_path):
    out, _ = _streamed(tmp_path)
    first = sorted((out / "per_image.parquet").glob("part-*.parquet"))[0]
    shutil.copy(first, out / "per_image.parquet" / "part-0009-000000.parquet")
    _flip(first)
    summary = pd.read_csv(out / "summary.csv")
    summary.loc[0, "n"] += 1
    summary.to_csv(out / "summary.csv", index=False)
    problems = manifest.verify(out)
    assert len(problems) == 4, problems
    assert any("part-0009-000000.parquet: an extra part" in line for line in problems)
    assert any(f"{first.name} changed" in line for line in problems)
    assert "summary.csv changed since the sweep wrote it" in problems
    assert any(line.startswith("summary.csv counts") for line in problems)


def test_gcdash_readers_check_each_part_against_the_manifest(tmp_path):
    out, result = _streamed(tmp_path)
    files = sorted((out / "per_image.parquet").glob("part-*.parquet"))
    pd.testing.assert_frame_equal(read_parts(files), result.per_image)
    stamp = files[0].stat()
    _flip(files[0])
    os.utime(files[0], ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same size, same time: only the bytes differ
    with pytest.raises(GcdashError, match="does not match its checksum"):
        read_parts(files)
    shutil.copy(files[1], out / "per_image.parquet" / "part-0005-000000.parquet")
    with pytest.raises(GcdashError, match="is not listed in"):
        read_parts([out / "per_image.parquet" / "part-0005-000000.parquet"])


def test_a_single_file_table_has_a_manifest_with_its_checksum(tmp_path):
    result = sweep.sweep(CONFIG, Store(tmp_path / "cache"), batch_size=4)
    result.write(tmp_path / "one")
    (part,) = manifest.load(tmp_path / "one")["parts"]
    assert part["path"] == "per_image.parquet" and part["rows"] == len(result.per_image)
    assert manifest.verify(tmp_path / "one") == []
    _flip(tmp_path / "one" / "per_image.parquet", at=len(result.per_image) // 2)
    (problem,) = manifest.verify(tmp_path / "one")
    assert problem.startswith("per_image.parquet changed")


def test_the_single_file_table_is_the_bytes_pandas_writes(tmp_path):
    result = sweep.sweep(CONFIG, Store(tmp_path / "cache"), batch_size=4)
    result.write(tmp_path / "one")
    result.per_image.to_parquet(tmp_path / "direct.parquet", index=False)
    assert (tmp_path / "one" / "per_image.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()


def test_no_manifest_is_one_line(tmp_path):
    out, _ = _streamed(tmp_path)
    (out / "manifest.json").unlink()
    (problem,) = manifest.verify(out)
    assert "manifest.json is missing: the sweep that wrote" in problem


def test_a_new_sweep_removes_the_old_summary_before_its_first_part(tmp_path):
    out, _ = _streamed(tmp_path)
    (out / "transfer.csv").write_text("source,model\n")
    seen = []
    with Parts(out) as parts:
        original = parts.write

        def spy(frame):
            seen.append(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
            original(frame)

        parts.write = spy
        from gcdash.errors import Cancelled

        with pytest.raises(Cancelled):  # killed after its first batch: no summary of the other sweep remains
            sweep.sweep(CONFIG, Store(tmp_path / "cache"), batch_size=4, parts=parts,
                           should_stop=lambda: bool(seen))  # fmt: skip
    assert seen[0] == ["per_image.parquet"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["per_image.parquet"]


def test_a_folder_held_by_another_process_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with tiny.another_sweep_holds(out), pytest.raises(GcdashError) as err:
        Parts(out)
    assert str(out.resolve()) in str(err.value) and "another sweep" in str(err.value)
    assert "\n" not in str(err.value)
    with Parts(out) as parts:  # the holder gone, the folder is free again
        assert parts.lock.held
    assert not parts.lock.held


def test_in_this_process_a_newer_sweep_takes_the_folder_from_an_older_one(tmp_path):
    older = Parts(tmp_path / "out")
    newer = Parts(tmp_path / "out")
    assert newer.lock.held and not older.lock.held
    with pytest.raises(GcdashError, match="no longer this sweep's"):
        older.write(pd.DataFrame({"a": [1]}))
    older.close()  # gives nothing back: the folder is the newer one's
    assert newer.lock.held
    newer.close()
