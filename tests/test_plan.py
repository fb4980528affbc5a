"""The plan: one model loader for every caller, the one pass-count formula, and everything a sweep needs resolved
before its first pass (:mod:`gcdash.plan`); the one sweep path's transfer matrix (:mod:`gcdash.sweep`)."""

from __future__ import annotations

import pandas as pd
import pytest

from gcdash import plan, sweep
from gcdash.config import AttackConfig, CamConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.errors import GcdashError
from gcdash.store import Store

CONFIG = SweepConfig(models=(ModelSpec("tiny-cnn"),), data=DataConfig("tiny", 6, 0), eps=(0.0, 4 / 255, 8 / 255))


def test_the_cost_counts_one_cam_pass_per_input_and_the_attacks_own():
    fgsm = plan.cost(CONFIG.eps, AttackConfig("fgsm"), CamConfig())  # its gradient rides on the clean CAM pass
    assert (fgsm.inputs, fgsm.cam_per_input, fgsm.attack, fgsm.shared, fgsm.one_pass_per_input) == (3, 1, 0, 1, 3)
    transfer = plan.cost(CONFIG.eps, AttackConfig("fgsm", (("source", "other"),)), CamConfig())
    assert (transfer.attack, transfer.shared) == (1, 0)  # crafted on another model: a pass of its own
    score = plan.cost(CONFIG.eps, AttackConfig("fgsm"), CamConfig("scorecam"))
    assert (score.attack, score.shared) == (1, 0)  # a method of many passes shares none
    assert plan.cost((0.0,), AttackConfig("fgsm"), CamConfig()).shared == 0  # no attacked image: no attack
    pgd = plan.cost(CONFIG.eps, AttackConfig("pgd", (("steps", 5),)), CamConfig())
    assert pgd.attack == 10  # steps × eps > 0
    assert plan.cost(CONFIG.eps, AttackConfig("noise"), CamConfig()).attack == 0
    faithful = plan.cost(CONFIG.eps, AttackConfig("fgsm"), CamConfig(), n_layers=2)
    assert faithful.maps == 6 and faithful.faithfulness_per_map > 0


def test_one_loader_gives_the_same_weights_by_name_or_spec():
    by_name, by_spec = plan.load_handle("tiny-cnn", "cpu"), plan.load_handle(ModelSpec("tiny-cnn"), "cpu")
    assert by_name.digest == by_spec.digest and by_name.device.type == "cpu"


def test_a_plan_resolves_everything_before_the_first_pass(tiny_handle):
    made = plan.make(CONFIG, "cpu", handles={"tiny-cnn": tiny_handle})
    assert made.handles["tiny-cnn"] is tiny_handle and made.device == "cpu"
    assert len(made.samples) == 6 and made.cost.one_pass_per_input == 3
    with pytest.raises(GcdashError, match="not a device"):
        plan.make(CONFIG, "cpu:abc")


def test_a_transfer_sweep_is_one_run_per_source_through_the_one_sweep(tmp_path):
    config = SweepConfig(
        models=(ModelSpec("tiny-cnn"), ModelSpec("tiny-cnn2")), data=DataConfig("tiny", 4, 0), eps=(0.0, 8 / 255)
    )
    store = Store(tmp_path / "cache")
    result = sweep.sweep(config, store, batch_size=4, transfer=True)
    assert sorted(result.summary()["source"].unique()) == ["tiny-cnn", "tiny-cnn2"]
    assert len(store.runs()) == 2  # each source's run indexed once
    white = sweep.sweep(config, Store(tmp_path / "white"), batch_size=4).summary()
    diagonal = result.summary()[result.summary()["source"] == result.summary()["model"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(diagonal.drop(columns="source"), white.drop(columns="source"))
