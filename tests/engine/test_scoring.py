"""Scores: comparisons, localisation and faithfulness equal direct computations and are cached; "no score" is
NaN for every scorer; a scorer registered from outside the engine gets its columns."""

import numpy as np
import pandas as pd
import pytest
import torch

from gcdash import cams, keys, metrics
from gcdash.config import NISSIM, CompareConfig
from gcdash.engine import ModelEngine, scoring
from gcdash.errors import GcdashError
from gcdash.registry import Registry
from gcdash.store import Store
from tests.engine.helpers import EPS, small, with_masks


def test_cached_values_equal_a_direct_computation(tiny_handle, tiny_samples, store):
    """The cached NISSIM of a cell is the SSIM of the directly computed clean and adversarial maps."""
    from gcdash.attacks import fgsm

    table = small(tiny_handle, store).table(tiny_samples, [8 / 255], ["block2"])
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = fgsm(tiny_handle.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255)  # the sweep attacks the label
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    np.testing.assert_allclose(table["nissim"], metrics.nissim(clean_map, adv_map), atol=1e-5)


def test_a_new_comparison_makes_no_model_pass(tiny_handle, tiny_samples, store, monkeypatch):
    from gcdash.config import NISSIM, CompareConfig

    first = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    monkeypatch.setattr(cams, "explain", lambda *a, **k: pytest.fail("a model pass for a new comparison"))
    both = (NISSIM, CompareConfig("spearman"), CompareConfig("topk", (("share", 0.1),)))
    engine = small(tiny_handle, store, comparisons=both)
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
    table = small(tiny_handle, store, attack=config, comparisons=comparisons).table(tiny_samples, [8 / 255], ["block2"])
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = attack("pgd", tiny_handle.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255, steps=2)
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    for name in ("nissim", "spearman", "topk"):
        np.testing.assert_allclose(table[name], metrics.dissimilarity(name, clean_map, adv_map), atol=1e-5)


def test_localisation_costs_no_model_pass_and_matches_the_gallery_maps(tiny_handle, tiny_samples, store, tmp_path):
    from gcdash.metrics.localisation import mass_inside, pointing_game
    from gcdash.store import Store

    plain = ModelEngine(tiny_handle, Store(tmp_path / "plain"))
    plain.table(tiny_samples, [0.0, 8 / 255])
    engine = ModelEngine(tiny_handle, store)
    located = with_masks(tiny_samples)
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


def test_a_comparison_score_of_minus_one_is_a_score_not_a_missing_one(tiny_handle, tiny_samples, store, monkeypatch):
    from gcdash.metrics.compare import Spearman

    monkeypatch.setattr(Spearman, "raw", lambda self, a, b, **p: -np.ones(len(a)))  # perfectly inverted ranks
    config = dict(comparisons=(NISSIM, CompareConfig("spearman")))
    first = small(tiny_handle, store, **config).table(tiny_samples, EPS, "all")
    again = small(tiny_handle, store, batch_size=3, **config).table(tiny_samples, EPS, "all")  # read cell by cell
    assert (first["spearman"] == 1.0).all()
    pd.testing.assert_frame_equal(again, first)


# -- "no score": NaN in memory for every scorer, stored in one way ---------------------------------------------------
def test_no_score_is_stored_as_one_mark_and_read_back_as_nan():
    assert scoring.stored(float("nan")) == scoring.NO_SCORE
    assert scoring.stored(-1.0) == -1.0  # a comparison's −1 is a score (Spearman's ρ of inverted ranks)
    np.testing.assert_array_equal(scoring.read(np.array([scoring.NO_SCORE, -1.0, 0.5])), [np.nan, -1.0, 0.5])
    with pytest.raises(GcdashError, match="mark for no score"):
        scoring.stored(scoring.NO_SCORE)


def test_a_localisation_without_a_score_is_read_back_cell_by_cell_as_nan(tiny_handle, tiny_samples, store):
    located = with_masks(tiny_samples)
    located.masks[0][:] = False  # no object: nothing to hit, no mass inside
    first = small(tiny_handle, store).table(located, EPS, ["block2"])
    assert first.loc[first["image_id"] == located.ids[0], ["hit_clean", "mass_adv"]].isna().all().all()
    engine = small(tiny_handle, store, batch_size=3)  # other batches: the rows are made from the stored cells
    pd.testing.assert_frame_equal(engine.table(located, EPS, ["block2"]), first)
    assert engine.passes == 0
    marks = store._conn().execute("SELECT COUNT(*) FROM scalars WHERE kind = 'localisation' AND value = ?",
                                  (scoring.NO_SCORE,)).fetchone()[0]  # fmt: skip
    assert marks == 2 * len(EPS)  # hit and mass of image 0's map at every eps (eps 0 is the clean map)


# -- a scorer added from outside the engine ---------------------------------------------------------------------------
class MeanScorer(scoring.MapScorer):
    """A toy scorer: each map's mean at the input size (columns ``mean_clean``, ``mean_adv``)."""

    name, scores = "mean", ("mean",)

    def score(self, ctx, batch, cell, idx, names, maps) -> dict[str, np.ndarray]:
        return {"mean": maps(cell[0], idx).double().mean(dim=(1, 2)).cpu().numpy()}


@pytest.fixture
def mean_scorer(monkeypatch):
    """The registry with :class:`MeanScorer` registered after the built-in scorers (for this test only)."""
    registry = Registry("scorer")
    for name in scoring.SCORERS.names():
        registry.add(name, scoring.SCORERS.get(name))
    monkeypatch.setattr(scoring, "SCORERS", registry)
    scoring.SCORERS.register("mean")(MeanScorer)


def test_a_registered_scorer_adds_its_columns_and_is_cached(tiny_handle, tiny_samples, store, mean_scorer):
    from gcdash.attacks import fgsm

    engine = small(tiny_handle, store)
    table = engine.table(tiny_samples, [0.0, 8 / 255], ["block2"])
    assert list(table.columns[-2:]) == ["mean_clean", "mean_adv"]
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = fgsm(tiny_handle.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255)  # the sweep attacks the label
    clean_mean = cams.compute(tiny_handle, x, ["block2"])["block2"].mean(axis=(1, 2))
    adv_mean = cams.compute(tiny_handle, adv, ["block2"])["block2"].mean(axis=(1, 2))
    attacked = table[table["eps"] > 0]
    np.testing.assert_allclose(attacked["mean_clean"], clean_mean, atol=1e-5)
    np.testing.assert_allclose(attacked["mean_adv"], adv_mean, atol=1e-5)
    np.testing.assert_array_equal(table.loc[table["eps"] == 0, "mean_adv"], table.loc[table["eps"] == 0, "mean_clean"])
    again = small(tiny_handle, store, batch_size=3)  # read cell by cell from the store
    pd.testing.assert_frame_equal(again.table(tiny_samples, [0.0, 8 / 255], ["block2"]), table)
    assert again.passes == 0


def test_an_old_caches_minus_one_for_none_is_never_read_as_a_score(tiny_handle, tiny_samples, tmp_path, monkeypatch):
    """Before NO_SCORE, localisation stored −1 for "no score"; such entries sit under keys of an older version."""
    located = with_masks(tiny_samples)
    old = Store(tmp_path / "old")
    with monkeypatch.context() as before:
        before.setattr(keys, "LOCALISATION_VERSION", 2)
        small(tiny_handle, old).table(located, EPS, ["block2"])
    marked = [k for (k,) in old._conn().execute("SELECT key FROM scalars WHERE kind = 'localisation'")]
    old.put_scalars(dict.fromkeys(marked, -1.0), "localisation")  # every score an old "none"
    table = small(tiny_handle, old, batch_size=3).table(located, EPS, ["block2"])  # cell by cell
    fresh = small(tiny_handle, Store(tmp_path / "new")).table(located, EPS, ["block2"])
    pd.testing.assert_frame_equal(table, fresh)
    assert table[["hit_clean", "mass_adv"]].notna().all().all()
