"""The fragility reading: per attack the share of predictions kept, MOD over all and over those kept, the stability
means and the floor; the sentence a stakeholder reads; the CLI's table; bad input in one line."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from gcdash import fragility
from gcdash.cli import main
from gcdash.config import AttackConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.store import Store

EPS = 12 / 255
RUNS = (AttackConfig("fgsm"), AttackConfig("expl-topk", (("steps", 2),)), AttackConfig("noise"))


def config(models=("tiny-cnn",)) -> SweepConfig:
    return SweepConfig(models=tuple(ModelSpec(m) for m in models), data=DataConfig("tiny", 12, 0), eps=(0.0, EPS))


def test_each_attacks_row_reads_its_sweeps_summary_with_the_floor_beside_it(tmp_path):
    from gcdash import sweep

    floors = {("tiny-cnn", "block3"): 0.4}
    table = fragility.fragility(config(), Store(tmp_path), RUNS, floors, batch_size=4)
    assert list(table.columns) == fragility.COLUMNS and list(table["attack"]) == ["fgsm", "expl-topk", "noise"]
    assert (table["floor"] == 0.4).all() and (table["n"] == 12).all()
    expl = table[table["attack"] == "expl-topk"].iloc[0]
    assert expl["kept"] >= 0.95 and expl["n_stable"] == round(expl["kept"] * 12)
    per_image = sweep.sweep(replace(config(), attack=RUNS[0], stability=True), Store(tmp_path), batch_size=4).per_image
    attacked = per_image[per_image["eps"] > 0]
    fgsm = table.iloc[0]
    kept = attacked["pred_adv"] == attacked["pred_clean"]
    assert fgsm["kept"] == kept.mean() and fgsm["n_stable"] == kept.sum()
    assert fgsm["mod"] == pytest.approx(attacked["nissim"].mean())
    assert fgsm["ris"] == pytest.approx(attacked["ris"].mean())  # NaN (a changed prediction) left out
    assert np.isnan(attacked.loc[~kept, "ris"]).all()


def test_the_sentence_says_how_far_the_map_moves_with_the_prediction_kept():
    rows = pd.DataFrame({
        "model": ["m"] * 3, "layer": ["l"] * 3, "eps": [8 / 255] * 3, "attack": ["fgsm", "expl-topk", "noise"],
        "n": [10] * 3, "kept": [0.3, 1.0, 1.0], "mod": [0.3, 0.2, 0.01], "mod_kept": [0.1, 0.2, 0.01],
        "ris": [1.0] * 3, "ros": [1.0] * 3, "max_sens": [0.1] * 3, "n_stable": [3, 10, 10], "floor": [0.4] * 3,
    })  # fmt: skip
    text = fragility.sentences(rows)["m"]
    assert text.startswith("With the prediction unchanged (100% of images kept it under expl-topk)")
    assert "50% of the way to an unrelated map" in text and "random-weights floor 0.400" in text
    assert "FGSM on the images whose prediction it kept 0.100 (3 images)" in text
    assert "random noise 0.010 (10 images)" in text
    far = rows.assign(mod_kept=[0.1, 0.5, 0.01])
    assert "as far as an unrelated map" in fragility.sentences(far)["m"]
    assert fragility.sentences(rows[rows["attack"] != "expl-topk"]) == {}  # no explanation attack: no claim


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(GcdashError, match="give an eps > 0"):
        fragility.fragility(replace(config(), eps=(0.0,)), Store(tmp_path))
    with pytest.raises(GcdashError, match="name each attack once"):
        fragility.fragility(config(), Store(tmp_path), (AttackConfig("fgsm"), AttackConfig("fgsm")))


def test_the_cli_writes_fragility_csv_with_the_floor_and_the_sentence(tmp_path, capsys):
    args = ["fragility", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--eps", "12/255", "--batch-size", "4",
            "--cache", str(tmp_path / "c")]  # fmt: skip
    assert main([*args, "--attacks", "fgsm,expl-topk,noise", "--out", str(tmp_path / "o")]) == 0
    written = pd.read_csv(tmp_path / "o" / "fragility.csv")
    assert list(written["attack"]) == ["fgsm", "expl-topk", "noise"]
    assert written["floor"].between(0, 1).all() and written["floor"].nunique() == 1
    printed = capsys.readouterr().out
    assert "tiny-cnn: With the prediction unchanged" in printed and "12/255" in printed
    assert main([*args, "--attacks", "fgsm,cw", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "unknown attack 'cw'; choose from:" in err and err.count("\n") == 1


def test_progress_moves_over_every_attacks_sweep_to_one_total(tmp_path):
    seen = []
    fragility.fragility(config(), Store(tmp_path), RUNS, batch_size=4,
                        progress=lambda done, total, what: seen.append((done, total, what)))  # fmt: skip
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] == 12 * len(RUNS)
    assert {w.split(" · ")[0] for _, _, w in seen} == {"fgsm", "expl-topk", "noise"}
