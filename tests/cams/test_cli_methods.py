"""``python -m gcdash sweep --method M`` end to end for every registered CAM method, on the tiny model."""

from __future__ import annotations

import pandas as pd
import pytest

from gcdash import cams
from gcdash.cli import main

FAST = {"smoothgradcampp": ["samples=2", "sigma=0.1"], "intgradcam": ["steps=3"]}


@pytest.mark.parametrize("method", cams.names())
def test_sweep_runs_with_every_method(tmp_path, method):
    params = [arg for item in FAST.get(method, []) for arg in ("--cam-param", item)]
    args = ["sweep", "--models", "tiny-cnn", "--data", "tiny", "--n", "2", "--eps", "0,8/255", "--batch-size", "2"]
    code = main([*args, "--layers", "block2,block3", "--method", method, *params,
                 "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")])  # fmt: skip
    assert code == 0
    per_image = pd.read_parquet(tmp_path / "out" / "per_image.parquet")
    assert len(per_image) == 2 * 2 * 2  # layers × eps × images
    assert per_image["nissim"].between(0, 1).all()
    # eps = 0 attacks nothing: the same image gets the same map (Smooth Grad-CAM++'s noise follows the image).
    assert per_image.loc[per_image["eps"] == 0, "nissim"].abs().max() < 1e-6
