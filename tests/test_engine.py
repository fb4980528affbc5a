"""Cells through the cache: pass counts on cold, warm and partial sweeps; damage is recomputed."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from gcdash import cams, metrics
from gcdash.config import NISSIM, CompareConfig
from gcdash.engine import ModelEngine
from gcdash.errors import Cancelled, GcdashError
from gcdash.store import Store

EPS = [0.0, 4 / 255, 8 / 255]


def _engine(handle, store, **kw) -> ModelEngine:
    return ModelEngine(handle, store, batch_size=kw.pop("batch_size", 4), **kw)


def test_cold_sweep_costs_two_plus_n_eps_passes_per_image_whatever_the_layers(tiny_handle, tiny_samples, store):
    counted = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    engine = _engine(tiny_handle, store)
    table = engine.table(tiny_samples, EPS, "all")
    hook.remove()
    n, n_eps = len(tiny_samples), 2  # eps = 0 reuses the clean pass
    assert engine.passes == sum(counted) == n * (2 + n_eps)
    assert len(table) == n * len(EPS) * 3
    assert (table.loc[table.eps == 0, "nissim"].abs() < 1e-9).all()


def test_identical_second_sweep_makes_no_model_pass(tiny_handle, tiny_samples, store):
    first = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    counted = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    again = _engine(tiny_handle, store)
    second = again.table(tiny_samples, EPS, "all")
    hook.remove()
    assert again.passes == 0 and counted == []
    pd.testing.assert_frame_equal(first, second)


def test_an_added_eps_costs_one_pass_per_image(tiny_handle, tiny_samples, store):
    _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    engine = _engine(tiny_handle, store)
    engine.table(tiny_samples, [*EPS, 16 / 255], "all")
    assert engine.passes == len(tiny_samples)


def test_an_added_layer_costs_one_plus_n_eps_passes_per_image(tiny_handle, tiny_samples, store):
    _engine(tiny_handle, store).table(tiny_samples, EPS, ["block3"])
    engine = _engine(tiny_handle, store)
    engine.table(tiny_samples, EPS, ["block2", "block3"])
    assert engine.passes == len(tiny_samples) * (1 + 2)


def test_added_images_cost_only_their_own_passes(tiny_handle, tiny_samples, store):
    _engine(tiny_handle, store).table(tiny_samples.subset(range(5)), EPS)
    engine = _engine(tiny_handle, store)
    engine.table(tiny_samples, EPS)
    assert engine.passes == 3 * (2 + 2)


def test_cached_values_equal_a_direct_computation(tiny_handle, tiny_samples, store):
    """The cached NISSIM of a cell is the SSIM of the directly computed clean and adversarial maps."""
    from gcdash.attacks import fgsm

    table = _engine(tiny_handle, store).table(tiny_samples, [8 / 255], ["block2"])
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = fgsm(tiny_handle.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255)  # the sweep attacks the label
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    np.testing.assert_allclose(table["nissim"], metrics.nissim(clean_map, adv_map), atol=1e-5)


def test_damaged_cells_are_recomputed(tiny_handle, tiny_samples, tmp_path):
    store = Store(tmp_path)
    first = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    conn = store._conn()
    with conn:
        conn.execute("UPDATE arrays SET blob = substr(blob, 1, 20)")  # every array truncated
        conn.execute("DELETE FROM scalars")
    engine = _engine(tiny_handle, store)
    second = engine.table(tiny_samples, EPS, "all")
    assert engine.passes == len(tiny_samples) * (2 + 2)
    pd.testing.assert_frame_equal(first, second, atol=1e-6)


def test_target_policies_change_what_the_adversarial_map_explains(tiny_handle, tiny_samples, store):
    own = _engine(tiny_handle, store, target="pred").table(tiny_samples, [0.0, 0.1])
    clean = _engine(tiny_handle, store, target="clean-pred").table(tiny_samples, [0.0, 0.1])
    flipped = own.pred_clean != own.pred_adv
    assert flipped.any() and (~flipped).any(), "eps 0.1 should flip the tiny model's predictions, eps 0 not"
    assert not np.allclose(own.loc[flipped, "nissim"], clean.loc[flipped, "nissim"])
    np.testing.assert_allclose(own.loc[~flipped, "nissim"], clean.loc[~flipped, "nissim"], atol=1e-9)
    label = _engine(tiny_handle, store, target="label").table(tiny_samples, [0.0, 0.1])
    assert len(label) == len(own)
    differs = (label.pred_clean != label.label) & (label.eps > 0)  # there both label maps explain another class
    assert differs.any()
    assert not np.allclose(label.loc[differs, "nissim"], clean.loc[differs, "nissim"])


def test_label_policy_needs_labels(tiny_handle, tiny_samples, store):
    tiny_samples.labels[:] = -1
    with pytest.raises(GcdashError, match="label"):
        _engine(tiny_handle, store, target="label").table(tiny_samples, [0.1])


def test_cancel_keeps_finished_batches(tiny_handle, tiny_samples, store):
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        _engine(tiny_handle, store).table(tiny_samples, EPS, should_stop=lambda: next(calls))
    engine = _engine(tiny_handle, store)
    engine.table(tiny_samples, EPS)
    assert engine.passes == (len(tiny_samples) - 4) * (2 + 2)  # the first batch of 4 was kept


def test_views_match_the_table(tiny_handle, tiny_samples, store):
    views = _engine(tiny_handle, store).gallery(tiny_samples, 8 / 255, "block3")
    assert views.clean.shape == views.adv.shape == (8, 3, 32, 32)
    assert np.abs(views.adv - views.clean).max() <= 8 / 255 + 1e-6
    assert views.clean_map.shape == (8, 32, 32) and views.adv_map.max() <= 1
    np.testing.assert_allclose(views.table["nissim"], metrics.nissim(views.clean_map, views.adv_map), atol=1e-6)


def _counting(handle):
    counted = []
    hook = handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    return counted, hook


def test_changing_only_the_attack_reuses_every_clean_cell(tiny_handle, tiny_samples, store):
    from gcdash.config import AttackConfig

    _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    n, n_eps = len(tiny_samples), 2
    noise = _engine(tiny_handle, store, attack=AttackConfig("noise"))
    counted, hook = _counting(tiny_handle)
    noise.table(tiny_samples, EPS, "all")
    hook.remove()
    assert noise.passes == sum(counted) == n * n_eps  # one CAM pass per eps > 0; the clean pass and no attack pass
    pgd = _engine(tiny_handle, store, attack=AttackConfig("pgd", (("steps", 3),)))
    pgd.table(tiny_samples, EPS, "all")
    assert pgd.passes == n * n_eps * (3 + 1)  # 3 gradient steps and one CAM pass per eps


def test_a_new_comparison_makes_no_model_pass(tiny_handle, tiny_samples, store, monkeypatch):
    from gcdash.config import NISSIM, CompareConfig

    first = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    monkeypatch.setattr(cams, "explain", lambda *a, **k: pytest.fail("a model pass for a new comparison"))
    both = (NISSIM, CompareConfig("spearman"), CompareConfig("topk", (("share", 0.1),)))
    engine = _engine(tiny_handle, store, comparisons=both)
    table = engine.table(tiny_samples, EPS, "all")
    assert engine.passes == 0
    pd.testing.assert_frame_equal(table[first.columns], first)
    assert table[["spearman", "topk"]].notna().all().all()
    assert (table.loc[table.eps == 0, ["spearman", "topk"]] == 0).all().all()


def test_comparisons_in_the_table_equal_a_direct_computation(tiny_handle, tiny_samples, store):
    from gcdash.attacks import attack
    from gcdash.config import NISSIM, AttackConfig, CompareConfig

    config = AttackConfig("pgd", (("steps", 2),))
    comparisons = (NISSIM, CompareConfig("spearman"), CompareConfig("topk"))
    table = _engine(tiny_handle, store, attack=config, comparisons=comparisons).table(
        tiny_samples, [8 / 255], ["block2"]
    )
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = attack("pgd", tiny_handle.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255, steps=2)
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    for name in ("nissim", "spearman", "topk"):
        np.testing.assert_allclose(table[name], metrics.dissimilarity(name, clean_map, adv_map), atol=1e-5)


def test_a_transfer_attack_is_crafted_on_its_source(tiny_handle, tiny_samples, store):
    from gcdash import models
    from gcdash.attacks import fgsm
    from gcdash.config import AttackConfig

    source = models.load("tiny-cnn2")
    engine = _engine(tiny_handle, store, attack=AttackConfig("fgsm", (("source", "tiny-cnn2"),)), source=source)
    table = engine.table(tiny_samples, [8 / 255], ["block2"])
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = fgsm(source.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255)
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    np.testing.assert_allclose(table["nissim"], metrics.nissim(clean_map, adv_map), atol=1e-5)
    white = _engine(tiny_handle, store).table(tiny_samples, [8 / 255], ["block2"])
    assert not np.allclose(white["nissim"], table["nissim"])
    itself = _engine(tiny_handle, store, attack=AttackConfig("fgsm", (("source", "tiny-cnn"),)), source=tiny_handle)
    pd.testing.assert_frame_equal(itself.table(tiny_samples, [8 / 255], ["block2"]), white)
    assert itself.passes == 0  # crafted on the model itself is the white-box attack, cache and all


def test_the_gallery_reads_the_store_once_per_kind(tiny_handle, tiny_samples, store, monkeypatch):
    _engine(tiny_handle, store).table(tiny_samples, [8 / 255], ["block3"])
    reads = []
    original = store.get_arrays
    monkeypatch.setattr(store, "get_arrays", lambda keys: reads.append(len(keys)) or original(keys))
    engine = _engine(tiny_handle, store, batch_size=8)
    engine.gallery(tiny_samples, 8 / 255, "block3")
    assert engine.passes == 0
    assert len(reads) == 4  # clean logits, attacked logits, both maps at once, the attack's directions


def _with_masks(samples):
    """``samples`` with a square object mask per image (its centre quarter)."""
    from dataclasses import replace

    masks = []
    for image in samples.images:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
        masks.append(mask)
    return replace(samples, masks=masks)


def test_localisation_costs_no_model_pass_and_matches_the_gallery_maps(tiny_handle, tiny_samples, store, tmp_path):
    from gcdash.metrics.localisation import mass_inside, pointing_game
    from gcdash.store import Store

    plain = ModelEngine(tiny_handle, Store(tmp_path / "plain"))
    plain.table(tiny_samples, [0.0, 8 / 255])
    engine = ModelEngine(tiny_handle, store)
    located = _with_masks(tiny_samples)
    table = engine.table(located, [0.0, 8 / 255])
    assert engine.passes == plain.passes  # the scores come from the maps the comparisons use
    assert {"hit_clean", "hit_adv", "mass_clean", "mass_adv"} <= set(table.columns)
    views = engine.gallery(located, 8 / 255, tiny_handle.default_layer)
    masks = np.stack(located.masks)
    row = table[table["eps"] == 8 / 255].reset_index(drop=True)
    np.testing.assert_array_equal(row["hit_adv"], pointing_game(views.adv_map, masks))
    np.testing.assert_allclose(row["mass_clean"], mass_inside(views.clean_map, masks), rtol=1e-6)
    again = ModelEngine(tiny_handle, store)
    assert again.table(located, [0.0, 8 / 255]).equals(table) and again.passes == 0  # cached like every cell
    assert views.masks is not None and views.masks.shape == views.clean_map.shape


def test_faithfulness_is_batched_counted_and_cached(tiny_handle, tiny_samples, store):
    from gcdash.metrics.faithfulness import Faithfulness

    settings = Faithfulness(steps=4)
    plain = ModelEngine(tiny_handle, Store(store.root / "plain"))
    plain.table(tiny_samples, [0.0, 8 / 255])
    engine = ModelEngine(tiny_handle, store, faithfulness=settings)
    table = engine.table(tiny_samples, [0.0, 8 / 255])
    maps = 2 * len(tiny_samples)  # the clean map and the attacked map of each image
    assert engine.passes - plain.passes == maps * settings.passes
    for column in ("del_clean", "del_adv", "ins_clean", "ins_adv"):
        assert table[column].between(0, 1).all(), column
    clean = table[table["eps"] == 0]
    assert (clean["del_adv"] == clean["del_clean"]).all()  # at eps 0 the attacked image is the clean one
    again = ModelEngine(tiny_handle, store, faithfulness=settings)
    assert again.table(tiny_samples, [0.0, 8 / 255]).equals(table) and again.passes == 0
    other = ModelEngine(tiny_handle, store, faithfulness=Faithfulness(steps=8))
    other.table(tiny_samples, [0.0, 8 / 255])
    assert other.passes == maps * Faithfulness(steps=8).passes  # other settings, other cells; CAMs still cached


@pytest.mark.parametrize("policy", ["gallery", "none"])
def test_a_map_retention_policy_keeps_the_numbers_and_drops_the_maps(tiny_handle, tiny_samples, tmp_path, policy):
    from gcdash.config import NISSIM, CompareConfig

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


# -- a finished batch's rows: one read for the batch ----------------------------------------------------------------
def test_a_finished_batch_is_one_read_not_one_per_cell(tiny_handle, tiny_samples, store, monkeypatch):
    first = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    scalar_reads = []
    monkeypatch.setattr(store, "get_scalars", lambda ks: scalar_reads.append(ks) or {})
    engine = _engine(tiny_handle, store)
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0 and scalar_reads == []  # no cell was looked up


def test_other_batches_of_the_same_images_are_made_from_their_cells(tiny_handle, tiny_samples, store):
    first = _engine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    engine = _engine(tiny_handle, store, batch_size=3)  # new batches: their rows were never kept whole
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0
    renamed = replace(tiny_samples.subset(range(4)), ids=[f"copy-{i}" for i in tiny_samples.ids[:4]])
    again = _engine(tiny_handle, store).table(renamed, EPS, "all")  # same content, other ids: the ids are theirs
    assert set(again["image_id"]) == {f"copy-{i}" for i in tiny_samples.ids[:4]}


def test_kept_rows_depend_on_everything_they_were_made_from(tiny_handle, tiny_samples, store):
    base = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    relabelled = replace(tiny_samples, labels=(np.asarray(tiny_samples.labels) + 1) % 5)
    assert not _engine(tiny_handle, store).table(relabelled, EPS, "all")["label"].equals(base["label"])
    other_method = _engine(tiny_handle, store, method="gradcampp").table(tiny_samples, EPS, "all")
    assert not other_method["ssim"].equals(base["ssim"])
    assert len(_engine(tiny_handle, store).table(tiny_samples, EPS[:2], "all")) == len(base) * 2 // 3


def test_damaged_kept_rows_are_made_again_from_the_cells(tiny_handle, tiny_samples, store):
    first = _engine(tiny_handle, store).table(tiny_samples, EPS, "all")
    conn = store._conn()
    with conn:
        conn.execute("UPDATE arrays SET blob = substr(blob, 1, 40) WHERE kind = 'rows'")
    engine = _engine(tiny_handle, store)
    pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS, "all"), first)
    assert engine.passes == 0


def test_a_comparison_score_of_minus_one_is_a_score_not_a_missing_one(tiny_handle, tiny_samples, store, monkeypatch):
    from gcdash.metrics.compare import Spearman

    monkeypatch.setattr(Spearman, "raw", lambda self, a, b, **p: -np.ones(len(a)))  # perfectly inverted ranks
    config = dict(comparisons=(NISSIM, CompareConfig("spearman")))
    first = _engine(tiny_handle, store, **config).table(tiny_samples, EPS, "all")
    again = _engine(tiny_handle, store, batch_size=3, **config).table(tiny_samples, EPS, "all")  # read cell by cell
    assert (first["spearman"] == 1.0).all()
    pd.testing.assert_frame_equal(again, first)
