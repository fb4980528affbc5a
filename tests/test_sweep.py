"""The sweep (gcdash.sweep) with its rows streamed to Parquet parts batch by batch: the same table as in memory,
readable with pandas, groups kept in order, a killed sweep keeps its finished parts, a full disk is one line."""

from __future__ import annotations

import pandas as pd
import pytest
import tiny

from gcdash import runs, sweep
from gcdash.config import NISSIM, AttackConfig, CompareConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.parts import Parts
from gcdash.store import Store


def _config(**kw) -> SweepConfig:
    defaults = dict(
        models=(ModelSpec("tiny-cnn"), ModelSpec("tiny-cnn2")), data=DataConfig("tiny", 10, 0),
        eps=(0.0, 4 / 255, 8 / 255), layers="all",
    )  # fmt: skip
    return SweepConfig(**{**defaults, **kw})


def test_streamed_rows_are_the_in_memory_table(tmp_path):
    config = _config()
    memory = sweep.sweep(config, Store(tmp_path / "a"), batch_size=4).per_image
    parts = Parts(tmp_path / "out")
    streamed = sweep.sweep(config, Store(tmp_path / "b"), batch_size=4, parts=parts)
    pd.testing.assert_frame_equal(streamed.per_image, memory)
    files = sorted((tmp_path / "out" / "per_image.parquet").glob("part-*.parquet"))
    assert len(files) == 2 * 3  # two models × three batches of at most 4 images, each written when done
    whole = pd.read_parquet(tmp_path / "out" / "per_image.parquet")  # the folder reads as one table
    assert len(whole) == len(memory) and set(whole.columns) == set(memory.columns)


def test_a_new_sweep_starts_the_parts_afresh_and_several_attacks_keep_their_order(tmp_path):
    store = Store(tmp_path / "c")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "per_image.parquet").write_bytes(b"an old single-file table")
    parts = Parts(tmp_path / "out")
    tables = []
    for attack in ("fgsm", "noise"):
        config = _config(attack=AttackConfig(attack))
        tables.append(sweep.sweep(config, store, batch_size=4).per_image)
        streamed = sweep.sweep(config, store, batch_size=4, parts=parts).per_image
        pd.testing.assert_frame_equal(streamed, tables[-1])  # its own rows only, not the earlier sweeps' too
    pd.testing.assert_frame_equal(parts.read(), pd.concat(tables, ignore_index=True))


def test_the_order_of_each_models_layers_is_its_own():
    """Two models whose catalogs share some names (resnet50 and resnet101): each keeps its own layer order."""
    from gcdash.engine import canonical_order

    rows = [(0, "b", "x"), (0, "c", "x"), (1, "a", "x"), (1, "b", "x"), (1, "c", "x")]
    table = pd.DataFrame(rows, columns=["_group", "layer", "image_id"]).assign(eps=0.0)
    shuffled = table.iloc[[4, 2, 0, 3, 1]].reset_index(drop=True)
    parts = [shuffled.iloc[[2, 4]], shuffled.iloc[[1, 3, 0]]]  # as they were written: one model, then the other
    ordered = canonical_order(pd.concat(parts), "_group")
    assert list(zip(ordered["_group"], ordered["layer"])) == [(0, "b"), (0, "c"), (1, "a"), (1, "b"), (1, "c")]


def test_a_sweep_stopped_midway_keeps_the_batches_it_finished(tmp_path):
    from gcdash.errors import Cancelled

    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    parts = Parts(tmp_path / "out")
    store = Store(tmp_path / "c")
    with pytest.raises(Cancelled):
        sweep.sweep(_config(), store, batch_size=4, parts=parts, should_stop=stop_after_two)
    assert len(parts.read()) == 2 * 4 * 3 * 3  # two batches of 4 images × 3 layers × 3 eps, on disk
    again = Parts(tmp_path / "out")
    rerun = sweep.sweep(_config(), store, batch_size=4, parts=again)
    assert rerun.passes["tiny-cnn"] == 2 * 3  # the last two images: 1 clean + 2 attacked CAM passes (FGSM shared)


def test_a_streamed_sweeps_summary_is_made_part_by_part_and_equals_the_whole_tables(tmp_path, monkeypatch):
    config = _config(comparisons=(NISSIM, CompareConfig("topk")))
    memory = sweep.sweep(config, Store(tmp_path / "a"), batch_size=4)
    read_whole = []
    monkeypatch.setattr(Parts, "read", lambda self, groups=None: read_whole.append(groups))
    monkeypatch.setattr(runs, "RUN_TABLE_ROWS", 10)  # a large sweep: its table is never read back whole
    streamed = sweep.sweep(config, Store(tmp_path / "b"), batch_size=4, parts=Parts(tmp_path / "out"))
    assert read_whole == [] and streamed.per_image.empty and streamed.n_rows == len(memory.per_image)
    pd.testing.assert_frame_equal(streamed.summary(), memory.summary(), check_exact=False, atol=1e-12, rtol=0)
    pd.testing.assert_frame_equal(streamed.vid(), memory.vid(), check_exact=False, atol=1e-12, rtol=0)


def test_a_full_out_disk_is_one_line_and_keeps_the_finished_parts(tmp_path, monkeypatch):
    tiny.disk_full_after(monkeypatch, 2)
    store, parts = Store(tmp_path / "cache"), Parts(tmp_path / "out")
    with pytest.raises(GcdashError) as err:
        sweep.sweep(_config(), store, batch_size=4, parts=parts)
    assert str(err.value).startswith(f"--out {tmp_path / 'out'} is full: No space left on device")
    assert len(parts.read()) == 2 * 4 * 3 * 3  # two batches of 4 images × 3 layers × 3 eps kept
    assert sorted(p.name for p in (tmp_path / "out" / "per_image.parquet").iterdir()) == [
        "part-0000-000000.parquet", "part-0000-000001.parquet"
    ]  # no temporary file left  # fmt: skip
    assert store.usage()  # the cells made are kept
