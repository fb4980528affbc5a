"""The stability scorer: RIS, ROS and Max-Sensitivity columns from the sweep's own maps, images and logits, no pass
of its own, and nothing else in the table moved."""

import numpy as np
import pandas as pd
import torch

from gcdash import attacks, cams
from gcdash.metrics import stability
from gcdash.results.summary import summary
from tests.engine.helpers import EPS, counting, small


def test_stability_columns_come_from_the_sweeps_maps_at_no_extra_pass(tiny_handle, tiny_samples, store, tmp_path):
    from gcdash.store import Store

    plain = small(tiny_handle, Store(tmp_path / "plain")).table(tiny_samples, EPS, ["block2"])
    engine = small(tiny_handle, store, stability=True)
    counted, hook = counting(tiny_handle)
    table = engine.table(tiny_samples, EPS, ["block2"])
    hook.remove()
    assert engine.passes == sum(counted) == len(tiny_samples) * (1 + 2)  # the clean and two attacked CAM passes
    pd.testing.assert_frame_equal(table[plain.columns], plain)  # every other column as without it
    assert list(table.columns[-3:]) == ["ris", "ros", "max_sens"]

    x = tiny_handle.preprocess(tiny_samples.images)
    clean = torch.from_numpy(cams.compute(tiny_handle, x, ["block2"])["block2"])
    at = table[table["eps"] == 8 / 255]
    ascended = np.where(tiny_samples.labels >= 0, tiny_samples.labels, at["pred_clean"].to_numpy())
    adv = attacks.attack("fgsm", tiny_handle.net, x, torch.from_numpy(ascended), 8 / 255)
    attacked = torch.from_numpy(cams.compute(tiny_handle, adv, ["block2"])["block2"])
    changed = torch.from_numpy((at["pred_adv"] != at["pred_clean"]).to_numpy().copy())
    np.testing.assert_allclose(at["max_sens"], stability.sensitivity(clean, attacked).numpy(), rtol=1e-4)
    np.testing.assert_allclose(at["ris"], stability.ris(x, adv, clean, attacked, changed).numpy(), rtol=1e-3,
                               equal_nan=True)  # fmt: skip
    assert at["ris"].isna().to_numpy().tolist() == changed.tolist()

    labelled = table.assign(model="tiny-cnn", method="gradcam", attack="fgsm", source="tiny-cnn")
    row = summary(labelled).query("eps > 0").iloc[-1]
    assert row["n_stable"] == int((~changed).sum())
    assert row["max_sens"] == at["max_sens"].mean()
    again = small(tiny_handle, store, stability=True)
    pd.testing.assert_frame_equal(again.table(tiny_samples, EPS, ["block2"]), table)
    assert again.passes == 0
