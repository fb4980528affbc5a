"""Summary and VID tables from hand-made per-image tables: the flipped/kept split, extra comparisons, the band."""

import numpy as np
import pandas as pd
import pytest

from gcdash import metrics, results


def _table(extra: bool = False) -> pd.DataFrame:
    rows = []
    for eps, nissim, flips in [(0.0, [0, 0, 0, 0], [0, 0, 0, 0]), (0.1, [0.1, 0.3, 0.5, 0.7], [0, 1, 0, 1]),
                               (0.2, [0.2, 0.4, 0.6, 0.8], [1, 1, 1, 1])]:  # fmt: skip
        for i, (v, flip) in enumerate(zip(nissim, flips)):
            row = dict(model="m", method="gradcam", attack="fgsm", source="m", layer="l", eps=eps,
                       image_id=f"i{i}", label=0, pred_clean=0, pred_adv=flip, conf_clean=0.9, conf_adv=0.5,
                       ssim=1 - 2 * v, nissim=v)  # fmt: skip
            if extra:
                row["spearman"] = v / 2
            rows.append(row)
    return pd.DataFrame(rows)


def test_mod_is_split_by_whether_the_attack_flipped_the_prediction():
    summary = results.summary(_table()).set_index("eps")
    assert summary.loc[0.1, "mod"] == pytest.approx(0.4)
    assert summary.loc[0.1, "mod_flipped"] == pytest.approx(0.5)  # images 1 and 3
    assert summary.loc[0.1, "mod_kept"] == pytest.approx(0.3)  # images 0 and 2
    assert summary.loc[0.2, "mod_flipped"] == pytest.approx(0.5)
    assert np.isnan(summary.loc[0.2, "mod_kept"])  # none kept: undefined, not 0
    assert summary.loc[0.1, "attack_success"] == pytest.approx(0.5)


def test_extra_comparisons_get_their_own_mod_and_vid():
    summary = results.summary(_table(extra=True))
    assert summary.set_index("eps").loc[0.2, "mod_spearman"] == pytest.approx(0.25)
    vid = results.vid(summary)
    assert list(vid.columns) == [*results.VID_COLUMNS, "vid_spearman"]
    assert vid["vid"].iloc[0] == pytest.approx(0.05)  # population std of 0.4 and 0.5
    assert vid["vid_spearman"].iloc[0] == pytest.approx(0.025)
    assert "mod_spearman" not in results.summary(_table()).columns


def test_groups_keep_attacks_apart():
    both = pd.concat([_table(), _table().assign(attack="noise", source="none", nissim=0.0)])
    summary = results.summary(both)
    assert set(summary["attack"]) == {"fgsm", "noise"}
    assert (summary.loc[summary.attack == "noise", "mod"] == 0).all()
    wide = results.mod_vid_table(summary)
    assert len(wide) == 2 and "MOD@0" not in wide.columns  # eps = 0 is the control, 0 by construction


def test_bootstrap_band_brackets_mod():
    summary = results.summary_with_ci(_table())
    assert ((summary["mod_lo"] <= summary["mod"] + 1e-12) & (summary["mod"] <= summary["mod_hi"] + 1e-12)).all()


def test_methods_with_the_same_maps_are_found():
    a = _table().assign(method="gradcam")
    b = _table().assign(method="xgradcam")
    c = _table().assign(method="layercam", nissim=_table()["nissim"] * 0.5)
    assert results.identical_methods(pd.concat([a, b, c])) == [["gradcam", "xgradcam"]]


def test_moved_off_counts_images_whose_map_left_the_object():
    base = {"model": "m", "method": "g", "attack": "fgsm", "source": "m", "layer": "l", "eps": 0.1, "label": 0,
            "pred_clean": 0, "pred_adv": 1, "conf_clean": 0.9, "conf_adv": 0.5, "ssim": 0.5, "nissim": 0.25,
            "zero_clean": False, "zero_adv": False, "mass_clean": 0.5, "mass_adv": 0.5}  # fmt: skip
    hits = [(1, 0), (1, 1), (0, 0), (1, np.nan)]
    table = pd.DataFrame([{**base, "image_id": str(i), "hit_clean": a, "hit_adv": b} for i, (a, b) in enumerate(hits)])
    row = results.summary(table).iloc[0]
    assert row["moved_off"] == pytest.approx(1 / 3)  # of the three images with both scores
    assert row["hit_adv"] == pytest.approx(1 / 3)  # of the same three
    assert row["hit_clean"] == pytest.approx(3 / 4)  # every clean map with a score: the fourth's counts too


def test_the_clean_localisation_score_is_one_number_over_every_clean_map_whatever_the_eps():
    base = {"model": "m", "method": "g", "attack": "fgsm", "source": "m", "layer": "l", "label": 0, "pred_clean": 0,
            "pred_adv": 0, "conf_clean": 0.9, "conf_adv": 0.9, "ssim": 1.0, "nissim": 0.0, "zero_clean": False,
            "zero_adv": False, "mass_clean": 0.5, "mass_adv": 0.5}  # fmt: skip
    clean = [1, 1, 0, 1]
    adv = {0.0: [1, 1, 0, 1], 0.1: [1, np.nan, 0, 0], 0.2: [np.nan, np.nan, np.nan, 0]}  # attacked maps go blank
    table = pd.DataFrame([{**base, "eps": e, "image_id": str(i), "hit_clean": c, "hit_adv": a}
                          for e, hits in adv.items() for i, (c, a) in enumerate(zip(clean, hits))])  # fmt: skip
    summary = results.summary(table)
    assert (summary["hit_clean"] == 0.75).all()  # before this rule: 0.75, 2/3 and 0 as eps grew
    assert list(summary["hit_adv"]) == pytest.approx([0.75, 1 / 3, 0.0])


def _mean_or_nan(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")


def _reference_group(g: pd.DataFrame, extras: list[str]) -> pd.Series:
    """One group's summary written the direct way, per group in pandas (the independent reference)."""
    flipped = g["pred_adv"] != g["pred_clean"]
    row = {
        "n": len(g),
        "mod": _mean_or_nan(g["nissim"]),
        "mod_flipped": _mean_or_nan(g.loc[flipped, "nissim"]),
        "mod_kept": _mean_or_nan(g.loc[~flipped, "nissim"]),
        "nissim_std": float(g["nissim"].dropna().std(ddof=0)) if g["nissim"].notna().any() else float("nan"),
        "zero_rate": float(results.zero_maps(g).mean()),
        "flip_rate": float(flipped.mean()),
        "acc_clean": metrics.accuracy(g["pred_clean"], g["label"]),
        "acc_adv": metrics.accuracy(g["pred_adv"], g["label"]),
        "attack_success": metrics.attack_success(g["pred_clean"], g["pred_adv"], g["label"]),
    }
    row.update({f"mod_{name}": _mean_or_nan(g[name]) for name in extras})
    for clean, adv in results.PAIRED:
        if clean in g:
            row[clean] = _mean_or_nan(g[clean])  # every clean map with a score
            row[adv] = _mean_or_nan(g[[clean, adv]].dropna()[adv])  # the images with both
    if "hit_clean" in g:
        both = g[["hit_clean", "hit_adv"]].dropna()
        row["moved_off"] = float(((both["hit_clean"] == 1) & (both["hit_adv"] == 0)).mean()) if len(both) else np.nan
    return pd.Series(row)


def _reference_summary(table: pd.DataFrame) -> pd.DataFrame:
    extras = results.extra_comparisons(table)
    keys = [*results.GROUP, "eps"]
    out = table.groupby(keys, sort=False)[table.columns.difference(keys)].apply(lambda g: _reference_group(g, extras))
    out = out.reset_index()
    out["n"] = out["n"].astype(int)
    return out


def _random_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A per-image table with every optional column, NaN scores, unlabelled images and all-zero maps."""
    rng = np.random.default_rng(seed)

    def sometimes_nan(values, share=0.1):
        return np.where(rng.random(n) < share, np.nan, values)

    return pd.DataFrame({
        "model": rng.choice(["a", "b"], n), "method": "gradcam", "attack": "fgsm", "source": "a",
        "layer": rng.choice(["layer4", "layer10", "conv"], n), "eps": rng.choice([0.0, 4 / 255, 8 / 255], n),
        "image_id": [f"i{i}" for i in range(n)], "label": rng.integers(-1, 4, n),
        "pred_clean": rng.integers(0, 4, n), "pred_adv": rng.integers(0, 4, n),
        "conf_clean": rng.random(n), "conf_adv": rng.random(n), "ssim": rng.random(n),
        "nissim": sometimes_nan(rng.random(n)), "zero_clean": rng.random(n) < 0.05, "zero_adv": rng.random(n) < 0.05,
        "topk": sometimes_nan(rng.random(n)), "del_clean": rng.random(n), "del_adv": sometimes_nan(rng.random(n)),
        "ins_clean": rng.random(n), "ins_adv": rng.random(n),
        "hit_clean": sometimes_nan(rng.integers(0, 2, n).astype(float)),
        "hit_adv": sometimes_nan(rng.integers(0, 2, n).astype(float)),
        "mass_clean": rng.random(n), "mass_adv": sometimes_nan(rng.random(n), 0.2),
    })  # fmt: skip


@pytest.mark.parametrize("part", [1, 337, 5000])
def test_the_summary_made_part_by_part_equals_the_whole_tables(part):
    table = _random_table(3000)
    streaming = results.StreamingSummary()
    for start in range(0, len(table), part):
        streaming.add(table.iloc[start : start + part])
    assert streaming.rows == len(table)
    reference = _reference_summary(table)
    ours = streaming.summary()
    pd.testing.assert_frame_equal(ours, reference[list(ours.columns)], check_exact=False, atol=1e-12, rtol=0)
    assert set(reference.columns) == set(ours.columns)


def test_an_empty_streaming_summary_has_the_summarys_columns():
    assert list(results.StreamingSummary().summary().columns) == results.SUMMARY_COLUMNS


def test_groups_first_seen_late_and_columns_only_some_parts_carry_are_summarised_as_in_the_whole_table():
    table = _random_table(900, seed=1)
    first = table[table["layer"] == "conv"].drop(columns=["topk", "hit_clean", "hit_adv"])  # conv only, fewer columns
    rest = table[table["layer"] != "conv"]
    streaming = results.StreamingSummary()
    for part in (first, rest.iloc[:400], rest.iloc[400:]):
        streaming.add(part)
    whole = pd.concat([first, rest], ignore_index=True)
    ours = streaming.summary()
    pd.testing.assert_frame_equal(ours, _reference_summary(whole)[list(ours.columns)], check_exact=False, atol=1e-12,
                                  rtol=0)  # fmt: skip
