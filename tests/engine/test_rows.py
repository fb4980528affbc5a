"""A finished batch's rows: one read for the batch, made again from the cells when they do not fit."""

from dataclasses import replace

import numpy as np
import pandas as pd

from tests.engine.helpers import EPS, small


def test_a_finished_batch_is_one_read_not_one_per_cell(tiny_handle, tiny_samples, store, monkeypatch):
    first = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    scalar_reads = []
    monkeypatch.setattr(store, "get_scalars", lambda ks: scalar_reads.append(ks) or {})
    engine = small(tiny_handle, store)
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0 and scalar_reads == []  # no cell was looked up


def test_other_batches_of_the_same_images_are_made_from_their_cells(tiny_handle, tiny_samples, store):
    first = small(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    engine = small(tiny_handle, store, batch_size=3)  # new batches: their rows were never kept whole
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0
    renamed = replace(tiny_samples.subset(range(4)), ids=[f"copy-{i}" for i in tiny_samples.ids[:4]])
    again = small(tiny_handle, store).table(renamed, EPS, "all")  # same content, other ids: the ids are theirs
    assert set(again["image_id"]) == {f"copy-{i}" for i in tiny_samples.ids[:4]}


def test_kept_rows_depend_on_everything_they_were_made_from(tiny_handle, tiny_samples, store):
    base = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    relabelled = replace(tiny_samples, labels=(np.asarray(tiny_samples.labels) + 1) % 5)
    assert not small(tiny_handle, store).table(relabelled, EPS, "all")["label"].equals(base["label"])
    other_method = small(tiny_handle, store, method="gradcampp").table(tiny_samples, EPS, "all")
    assert not other_method["ssim"].equals(base["ssim"])
    assert len(small(tiny_handle, store).table(tiny_samples, EPS[:2], "all")) == len(base) * 2 // 3


def test_damaged_kept_rows_are_made_again_from_the_cells(tiny_handle, tiny_samples, store):
    first = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    conn = store._conn()
    with conn:
        conn.execute("UPDATE arrays SET blob = substr(blob, 1, 40) WHERE kind = 'rows'")
    engine = small(tiny_handle, store)
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0
