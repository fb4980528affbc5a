"""The findings in sentences (gcdash.results.narrative): the takeaway names a winner only outside the bootstrap
bands, reads a transfer source and the noise control; the reading puts a MOD beside its references."""

import numpy as np
import pandas as pd

from gcdash import results


def test_the_reading_puts_mod_beside_the_noise_the_floor_and_the_object():
    row = {"method": "gradcam", "layer": "l", "eps": 8 / 255, "source": "m", "flip_rate": 0.9, "hit_clean": 0.9,
           "hit_adv": 0.4, "moved_off": 0.55, "mass_clean": 0.37, "mass_adv": 0.21}  # fmt: skip
    summary = pd.DataFrame([
        {**row, "model": "m", "attack": "fgsm", "mod": 0.33},
        {**row, "model": "m", "attack": "noise", "mod": 0.03, "source": "none"},
    ])  # fmt: skip
    lines = " ".join(results.narrative.reading(summary, 8 / 255, {"m": 0.4})["m"])
    assert "MOD 0.330 at eps 8/255; 90% of predictions flipped" in lines
    assert "Random noise of the same size: MOD 0.030" in lines
    assert "82% of the way to an unrelated one" in lines  # 0.33 / 0.40
    assert "moved the explanation off the object in 55% of images" in lines and "37% → 21%" in lines
    faithful = summary.assign(del_clean=0.21, del_adv=0.15, ins_clean=0.91, ins_adv=0.76)
    said = " ".join(results.narrative.reading(faithful, 8 / 255)["m"])
    assert "stay as faithful" in said and "0.21 before and 0.15 after" in said and "0.91 → 0.76" in said
    worse = " ".join(results.narrative.reading(faithful.assign(del_adv=0.4), 8 / 255)["m"])
    assert "stay less faithful" in worse
    bare = " ".join(results.narrative.reading(summary.drop(columns=["hit_clean"]), 8 / 255)["m"])
    assert "object" not in bare and "unrelated" not in bare  # nothing said that was not measured


# -- the takeaway (what the Overview and the report say) -----------------------------------------------------
def _models(values: dict[str, list[float]], attack: str = "fgsm", source: str | None = None) -> pd.DataFrame:
    """A per-image table at eps 0 and 8/255: per model the NISSIMs of its images (the noise control: source none)."""
    rows = []
    for model, nissims in values.items():
        own = "none" if attack == "noise" else (source or model)
        for eps in (0.0, 8 / 255):
            for i, v in enumerate(nissims):
                rows.append(dict(model=model, method="gradcam", attack=attack, source=own, layer="l", eps=eps,
                                 image_id=f"i{i}", label=0, pred_clean=0, pred_adv=i % 2, conf_clean=0.9,
                                 conf_adv=0.5, ssim=1.0, nissim=v if eps else 0.0, zero_clean=False,
                                 zero_adv=False))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_takeaway_names_no_winner_inside_the_bootstrap_band():
    rng = np.random.default_rng(0)
    noisy = {"a": list(rng.uniform(0.1, 0.5, 24)), "b": list(rng.uniform(0.1, 0.5, 24))}
    summary = results.summary_with_ci(_models(noisy))
    text = " ".join(results.narrative.takeaway(summary, 8 / 255))
    assert "more robust" in text and "none is shown to be the more robust" in text and "moved least" not in text
    band = summary[summary["eps"] > 0].iloc[0]
    assert f"a {band['mod']:.3f}, 95% band {band.mod_lo:.3f}–{band.mod_hi:.3f}" in text and "on 24 images" in text
    apart = results.summary_with_ci(_models({"a": [0.10, 0.11, 0.12, 0.10], "b": [0.60, 0.62, 0.61, 0.63]}))
    text = " ".join(results.narrative.takeaway(apart, 8 / 255))
    assert "a moved least" in text and "b most" in text and "a is the more robust" in text
    same = results.summary(_models({"a": [0.256, 0.256], "b": [0.2561, 0.2561]}))  # no band: equal print, no winner
    assert "No clear difference" in " ".join(results.narrative.takeaway(same, 8 / 255))


def test_the_takeaway_names_a_transfer_source_and_reads_one_model_as_one_value():
    table = pd.concat([_models({"m": [0.4, 0.5]}, source="crafter"), _models({"m": [0.1, 0.1]}, attack="noise")])
    lines = results.narrative.takeaway(results.summary_with_ci(table), 8 / 255)
    assert lines[0].startswith("FGSM crafted on crafter at eps 8/255")
    control = next(line for line in lines if line.startswith("Random noise of the same size"))
    assert "MOD 0.100, 4× less" in control and "–" not in control  # not "0.100–0.100, 4–4×"
    white = results.narrative.takeaway(results.summary(_models({"m": [0.4, 0.5]})), 8 / 255)
    assert white[0].startswith("FGSM at eps") and "crafted" not in white[0]


def test_the_takeaway_under_the_noise_control_reads_the_control_rows():
    summary = results.summary_with_ci(_models({"a": [0.1, 0.12], "b": [0.05, 0.06]}, attack="noise"))
    lines = results.narrative.takeaway(summary, 8 / 255)
    assert not any("no explanation could be compared" in line for line in lines)
    assert lines[0].startswith("Random noise at eps 8/255")
    assert not any("Random noise of the same size" in line for line in lines)  # no control beside itself
    assert list(results.narrative.story_rows(summary, 8 / 255)["model"]) == ["a", "b"]
    dead = _models({"a": [np.nan, np.nan]}).assign(zero_clean=True)
    assert "every map was all zero" in results.narrative.takeaway(results.summary(dead), 8 / 255)[0]
