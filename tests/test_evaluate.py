"""The worst-case evaluation: no attack's accuracy below the worst case, MOD on the attack's own point (APGD's
highest-loss iterate for an image it did not fool), the CLI's table, bad input in one line."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from gcdash import attacks, cams, data, evaluate, metrics
from gcdash.cli import main
from gcdash.config import AttackConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.store import Store

EPS = 12 / 255
RUNS = (AttackConfig("pgd", (("steps", 3),)), AttackConfig("apgd-ce", (("steps", 6),)),
        AttackConfig("apgd-dlr", (("steps", 6),)))  # fmt: skip


def config(models=("tiny-cnn", "tiny-cnn2")) -> SweepConfig:
    return SweepConfig(models=tuple(ModelSpec(m) for m in models), data=DataConfig("tiny", 12, 0), eps=(0.0, EPS))


def test_the_worst_case_is_below_every_attack_and_counts_images_no_attack_fooled(tmp_path):
    table = evaluate.evaluate(config(), Store(tmp_path), RUNS, batch_size=4)
    assert list(table.columns) == evaluate.COLUMNS
    assert list(table["attack"]) == ["pgd", "apgd-ce", "apgd-dlr", "worst case"] * 2
    for _, g in table.groupby("model"):
        worst = g[g["attack"] == "worst case"].iloc[0]
        attacked = g[g["attack"] != "worst case"]
        assert worst["accuracy"] <= attacked["accuracy"].min()
        strongest = attacked.sort_values(["accuracy", "mod"], ascending=[True, False]).iloc[0]  # ties: higher MOD
        assert worst["mod"] == strongest["mod"] and strongest["attack"] in worst["budget"]
        assert (attacked["n"] == 12).all() and worst["n_robust"] == round(worst["accuracy"] * 12)
    assert "pgd random_start=True seed=0 step_size=0.0 steps=3" in set(table["budget"])
    again = evaluate.evaluate(config(), Store(tmp_path), RUNS, batch_size=4)  # all from the cache
    pd.testing.assert_frame_equal(table, again)


def test_mod_of_an_image_apgd_did_not_fool_is_taken_on_its_highest_loss_iterate(tmp_path, tiny_handle):
    from gcdash.sweep import sweep

    run = replace(config(("tiny-cnn",)), attack=RUNS[1])
    rows = sweep(run, Store(tmp_path), batch_size=4).per_image
    rows = rows[rows["eps"] > 0].reset_index(drop=True)
    held = (rows["pred_adv"] == rows["label"]).to_numpy()
    assert held.any()
    samples = data.load("tiny", n=12, seed=0)
    x = tiny_handle.preprocess(samples.images)
    y = torch.from_numpy(samples.labels).long()
    adv = attacks.attack("apgd-ce", tiny_handle.net, x, y, EPS, steps=6)  # the highest-loss iterate where not fooled
    layer = tiny_handle.default_layer
    clean = cams.compute(tiny_handle, x, [layer])[layer]
    moved = cams.compute(tiny_handle, adv, [layer])[layer]
    expected = metrics.dissimilarity("nissim", clean, moved)
    np.testing.assert_allclose(rows["nissim"].to_numpy()[held], expected[held], atol=1e-4)
    assert (expected[held] > 0).all()  # not the clean image, whose NISSIM would be 0


def test_bad_evaluations_are_one_line(tmp_path):
    with pytest.raises(GcdashError, match="give an eps > 0"):
        evaluate.evaluate(replace(config(), eps=(0.0,)), Store(tmp_path), RUNS)
    with pytest.raises(GcdashError, match="noise ignores the model"):
        evaluate.evaluate(config(), Store(tmp_path), (AttackConfig("noise"),))
    with pytest.raises(GcdashError, match="keeps the prediction by construction"):
        evaluate.evaluate(config(), Store(tmp_path), (AttackConfig("pgd"), AttackConfig("expl-topk")))


def test_the_cli_writes_evaluation_csv_and_refuses_an_unknown_attack(tmp_path, capsys):
    args = ["evaluate", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--eps", "12/255", "--batch-size", "4",
            "--cache", str(tmp_path / "c")]  # fmt: skip
    assert main([*args, "--attacks", "pgd,apgd-ce", "--out", str(tmp_path / "o")]) == 0
    written = pd.read_csv(tmp_path / "o" / "evaluation.csv")
    assert list(written["attack"]) == ["pgd", "apgd-ce", "worst case"]
    printed = capsys.readouterr().out
    assert "apgd-ce: apgd-ce restarts=1 seed=0 steps=100" in printed and "12/255" in printed
    assert main([*args, "--attacks", "pgd,cw", "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "unknown attack 'cw'; choose from:" in err and err.count("\n") == 1
