"""Attacked images from cached attack states: a new attack reuses every clean cell; transfer attacks."""

import numpy as np
import pandas as pd
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
