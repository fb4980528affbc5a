"""Summary and VID tables from hand-made per-image tables: the flipped/kept split, extra comparisons, the band."""

import numpy as np
import pandas as pd
import pytest

from gcdash import results


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
