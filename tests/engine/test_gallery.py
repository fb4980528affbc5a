"""The gallery record: images and maps equal to the rows' numbers, read from the store once per kind."""

import numpy as np

from gcdash import metrics
from tests.engine.helpers import small


def test_views_match_the_table(tiny_handle, tiny_samples, store):
    views = small(tiny_handle, store).gallery(tiny_samples, 8 / 255, "block3")
    assert views.clean.shape == views.adv.shape == (8, 3, 32, 32)
    assert np.abs(views.adv - views.clean).max() <= 8 / 255 + 1e-6
    assert views.clean_map.shape == (8, 32, 32) and views.adv_map.max() <= 1
    np.testing.assert_allclose(views.table["nissim"], metrics.nissim(views.clean_map, views.adv_map), atol=1e-6)


def test_the_gallery_reads_the_store_once_per_kind(tiny_handle, tiny_samples, store, monkeypatch):
    small(tiny_handle, store).table(tiny_samples, [8 / 255], ["block3"])
    reads = []
    original = store.get_arrays
    monkeypatch.setattr(store, "get_arrays", lambda keys: reads.append(len(keys)) or original(keys))
    engine = small(tiny_handle, store, batch_size=8)
    engine.gallery(tiny_samples, 8 / 255, "block3")
    assert engine.passes == 0
    assert len(reads) == 4  # clean logits, attacked logits, both maps at once, the attack's directions
