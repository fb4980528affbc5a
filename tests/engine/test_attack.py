"""Attacked images from cached attack states: a new attack reuses every clean cell; transfer attacks."""

import numpy as np
import pandas as pd
import pytest
import torch

from gcdash import cams, metrics
from tests.engine.helpers import EPS, counting, small


def test_changing_only_the_attack_reuses_every_clean_cell(tiny_handle, tiny_samples, store):
    from gcdash.config import AttackConfig

    small(tiny_handle, store).table(tiny_samples, EPS, "all")
    n, n_eps = len(tiny_samples), 2
    noise = small(tiny_handle, store, attack=AttackConfig("noise"))
    counted, hook = counting(tiny_handle)
    noise.table(tiny_samples, EPS, "all")
    hook.remove()
    assert noise.passes == sum(counted) == n * n_eps  # one CAM pass per eps > 0; the clean pass and no attack pass
    pgd = small(tiny_handle, store, attack=AttackConfig("pgd", (("steps", 3),)))
    pgd.table(tiny_samples, EPS, "all")
    assert pgd.passes == n * n_eps * (3 + 1)  # 3 gradient steps and one CAM pass per eps


def test_a_transfer_attack_is_crafted_on_its_source(tiny_handle, tiny_samples, store):
    from gcdash import models
    from gcdash.attacks import fgsm
    from gcdash.config import AttackConfig

    source = models.load("tiny-cnn2")
    engine = small(tiny_handle, store, attack=AttackConfig("fgsm", (("source", "tiny-cnn2"),)), source=source)
    table = engine.table(tiny_samples, [8 / 255], ["block2"])
    x = tiny_handle.preprocess(tiny_samples.images)
    adv = fgsm(source.net, x, torch.as_tensor(tiny_samples.labels), 8 / 255)
    clean_map = cams.compute(tiny_handle, x, ["block2"])["block2"]
    adv_map = cams.compute(tiny_handle, adv, ["block2"])["block2"]
    np.testing.assert_allclose(table["nissim"], metrics.nissim(clean_map, adv_map), atol=1e-5)
    white = small(tiny_handle, store).table(tiny_samples, [8 / 255], ["block2"])
    assert not np.allclose(white["nissim"], table["nissim"])
    itself = small(tiny_handle, store, attack=AttackConfig("fgsm", (("source", "tiny-cnn"),)), source=tiny_handle)
    pd.testing.assert_frame_equal(itself.table(tiny_samples, [8 / 255], ["block2"]), white)
    assert itself.passes == 0  # crafted on the model itself is the white-box attack, cache and all


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_shared_forward_gives_the_same_direction_and_maps_as_two_passes(tiny_handle, tiny_samples, tmp_path,
                                                                            precision):  # fmt: skip
    from gcdash.attacks import fgsm_direction, perturb
    from gcdash.config import AttackConfig
    from gcdash.engine.batch import start
    from gcdash.store import Store

    n, layers = len(tiny_samples), ["block1", "block3"]
    shared = small(tiny_handle, Store(tmp_path / "shared"), precision=precision)
    one_forward = shared.table(tiny_samples, EPS, layers)
    assert shared.shared == n and shared.adversary.passes == 0 and shared.passes == n * 3

    apart = Store(tmp_path / "apart")  # the clean cells first (under the noise control), then FGSM's own passes
    small(tiny_handle, apart, attack=AttackConfig("noise"), precision=precision).table(tiny_samples, EPS, layers)
    separate = small(tiny_handle, apart, precision=precision)
    two_passes = separate.table(tiny_samples, EPS, layers)
    assert separate.shared == 0 and separate.adversary.passes == n
    pd.testing.assert_frame_equal(one_forward, two_passes)  # the same maps, logits and scores, bit for bit

    view = tiny_handle.at_precision(precision)
    batch = start(view, tiny_samples)
    shared.cells.name_variants(batch, 0.0, None)
    shared.cam.ensure_logits(batch, 0.0, layers)  # read from the cache
    assert shared.passes == n * 3
    y = torch.from_numpy(np.where(batch.labels >= 0, batch.labels, batch.pred(0.0)))
    direction = fgsm_direction(view.net, batch.x, y)  # the formula, in a pass of its own
    every = range(n)
    assert torch.equal(shared.adversary.images(batch, 8 / 255, every), perturb(batch.x, direction, 8 / 255))


def test_an_attack_that_needs_its_own_passes_shares_none(tiny_handle, tiny_samples, store):
    from gcdash.config import AttackConfig

    pgd = small(tiny_handle, store, attack=AttackConfig("pgd", (("steps", 2),)))
    pgd.table(tiny_samples, EPS)
    assert pgd.shared == 0 and pgd.adversary.passes == len(tiny_samples) * 2 * 2
    clean_only = small(tiny_handle, store, attack=AttackConfig("fgsm"))
    clean_only.table(tiny_samples, [0.0])
    assert clean_only.shared == 0  # no attacked image asked for: no attack gradient taken


def test_an_explanation_attack_through_the_engine_keeps_predictions_and_runs_the_passes_the_plan_predicts(
    tiny_handle, tiny_samples, store
):
    from gcdash import plan
    from gcdash.config import AttackConfig, CamConfig

    attack = AttackConfig("expl-topk", (("steps", 2),))
    engine = small(tiny_handle, store, attack=attack)
    counted, hook = counting(tiny_handle)
    table = engine.table(tiny_samples, EPS, ["block2"])
    hook.remove()
    cost = plan.cost(tuple(EPS), attack, CamConfig())
    assert engine.passes == sum(counted) == len(tiny_samples) * cost.one_pass_per_input == len(tiny_samples) * (3 + 10)
    attacked = table[table["eps"] > 0]
    assert (attacked["pred_adv"] == attacked["pred_clean"]).mean() >= 0.95
    assert engine.adversary.params["layer"] == tiny_handle.default_layer  # bound to the model's default layer
    again = small(tiny_handle, store, attack=attack)
    pd.testing.assert_frame_equal(again.table(tiny_samples, EPS, ["block2"]), table)
    assert again.passes == 0  # cached
