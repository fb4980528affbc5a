"""The sanity floor: the cascade covers every module once, top first; randomising leaves the model untouched; the
NISSIM of a map to itself is 0 and to a randomised model's clearly above; the CLI writes sanity.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gcdash import cams, sanity
from gcdash.cli import main


def test_the_cascade_runs_from_the_head_down_and_covers_every_module_once(tiny_handle):
    steps = sanity.groups(tiny_handle)
    assert [name for name, _ in steps] == ["head", "block3", "block2", "block1"]
    members = [m for _, group in steps for m in group]
    resettable = [n for n, m in tiny_handle.net.named_modules() if hasattr(m, "reset_parameters")]
    assert sorted(members) == sorted(resettable) and len(set(members)) == len(members)
    assert steps[0][1] == ["backbone.head.2"]  # the linear classifier


def test_randomising_copies_and_touches_only_the_named_modules(tiny_handle):
    before = {k: v.clone() for k, v in tiny_handle.net.state_dict().items()}
    model = sanity.randomised(tiny_handle, ["backbone.head.2", "backbone.block3.0"])
    after = model.net.state_dict()
    for key, value in tiny_handle.net.state_dict().items():
        assert torch.equal(value, before[key])  # the original is untouched
        changed = key.startswith(("backbone.head.2", "backbone.block3.0"))
        assert torch.equal(after[key], value) != changed, key
    assert model.layers["block3"] is model.net.get_submodule("backbone.block3")  # the catalog follows the copy


def test_a_map_is_at_zero_from_itself_and_far_from_a_randomised_models(tiny_handle, tiny_samples):
    x = tiny_handle.preprocess(tiny_samples.images)
    maps = cams.compute(tiny_handle, x, ["block3"])
    assert sanity._rows("m", "none", maps, maps)[0]["nissim"] == 0.0
    table = sanity.cascade(tiny_handle, tiny_samples, "all")
    assert list(table.columns) == sanity.SANITY_COLUMNS
    assert len(table) == 4 * 3  # every step × every layer
    floor = table[(table["randomised"] == "block1") & (table["layer"] == "block3")]["nissim"].item()
    assert floor > 0.1
    same = sanity.floor(tiny_handle, tiny_samples, ["block3"], seeds=1)
    assert np.isclose(same["nissim"].item(), floor)  # the floor is the cascade's last step
    assert same["floor_low"].item() == same["floor_high"].item() == same["nissim"].item()


def test_the_floor_is_the_mean_over_three_seeds_with_their_spread(tiny_handle, tiny_samples):
    one = sanity.floor(tiny_handle, tiny_samples, ["block2", "block3"], seeds=1)
    three = sanity.floor(tiny_handle, tiny_samples, ["block2", "block3"])
    assert sanity.SEEDS == 3 and (three["seeds"] == 3).all()
    assert (three["floor_low"] < three["floor_high"]).all()  # other seeds, other random maps
    assert (three["floor_low"] <= three["nissim"]).all() and (three["nissim"] <= three["floor_high"]).all()
    assert ((three["floor_low"] <= one["nissim"]) & (one["nissim"] <= three["floor_high"])).all()  # seed 0 among them
    assert not np.allclose(three["nissim"], one["nissim"])


def test_the_sanity_command_writes_its_table(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sanity", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--out", str(out), "--cache",
                 str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "sanity.csv")
    assert set(table["randomised"]) == {"head", "block3", "block2", "block1"}
    assert set(table["layer"]) == {"block1", "block2", "block3"}  # every layer by default
    assert "floor of unrelated maps" in capsys.readouterr().out


def test_a_catalog_of_parameter_free_outputs_still_cascades_layer_by_layer():
    """VGG's catalog names ReLU and pooling outputs, which own no weights: each step takes the convolutions that run
    between its layer and the one below, so the cascade still has one step per layer."""
    from collections import OrderedDict

    from torch import nn

    from gcdash.models.handle import ModelHandle, PixelSpaceNet

    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    net = PixelSpaceNet(nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
                        (0.5,) * 3, (0.25,) * 3).eval()  # fmt: skip
    layers = OrderedDict([("relu1", features[1]), ("relu2", features[3])])
    handle = ModelHandle("flat", net, (16, 16), ["a", "b", "c"], layers, "relu2")
    steps = sanity.groups(handle)
    assert steps == [("head", ["backbone.3"]), ("relu2", ["backbone.0.2"]), ("relu1", ["backbone.0.0"])]
    assert sanity.randomised(handle, ["backbone.3"]).digest != handle.digest  # never the trained model's cells
