"""CAM passes: the map retention policy keeps the numbers and drops the maps."""

import pytest

from gcdash.config import NISSIM, CompareConfig
from gcdash.engine import ModelEngine
from gcdash.errors import GcdashError
from gcdash.store import Store


@pytest.mark.parametrize("policy", ["gallery", "none"])
def test_a_map_retention_policy_keeps_the_numbers_and_drops_the_maps(tiny_handle, tiny_samples, tmp_path, policy):

    full = ModelEngine(tiny_handle, Store(tmp_path / "all")).table(tiny_samples, [0.0, 8 / 255], "all")
    store = Store(tmp_path / policy)
    engine = ModelEngine(tiny_handle, store, keep_maps=policy)
    assert engine.table(tiny_samples, [0.0, 8 / 255], "all").equals(full)
    kept = {row["kind"]: row["entries"] for row in store.usage()}
    expected = 0 if policy == "none" else len(tiny_samples) * 2  # the default layer's clean and attacked maps
    assert kept.get("map", 0) == expected
    again = ModelEngine(tiny_handle, store, keep_maps=policy)
    again.table(tiny_samples, [0.0, 8 / 255], "all")
    assert again.passes == 0  # every scalar was kept
    later = ModelEngine(tiny_handle, store, comparisons=[NISSIM, CompareConfig("spearman")])
    table = later.table(tiny_samples, [0.0, 8 / 255], "all")
    assert later.passes > 0 and later.adversary.passes == 0  # the dropped maps are recomputed, the attack is not
    assert table[full.columns].equals(full)


def test_an_unknown_retention_policy_is_refused(tiny_handle, store):
    with pytest.raises(GcdashError, match="keep_maps must be one of all, gallery, none"):
        ModelEngine(tiny_handle, store, keep_maps="some")
