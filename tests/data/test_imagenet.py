"""ImageNet's validation layout: class folders named by WordNet id map to a model whose 1000 classes are ImageNet's
(torchvision's or timm's naming), by the shipped table; other wnids and other models leave them
unlabelled, said."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gcdash import data, models
from gcdash.data import imagenet

TENCH, GOLDFISH, BOGUS = "n01440764", "n01443537", "n99999999"


def wnid_folder(root: Path) -> Path:
    """ImageNet's validation layout, tiny: one image of tench, one of goldfish, two of a wnid ImageNet-1k lacks."""
    rng = np.random.default_rng(0)
    for wnid, count in ((TENCH, 1), (GOLDFISH, 1), (BOGUS, 2)):
        (root / wnid).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / wnid / f"ILSVRC2012_val_{wnid[-3:]}{i}.png")
    return root


def torchvision_names() -> list[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def timm_names() -> list[str]:
    from timm.data import ImageNetInfo

    return [name.split(",")[0].strip() for name in ImageNetInfo().label_descriptions()]


def test_the_shipped_table_is_timms_standard_order_and_is_packaged():
    from timm.data import ImageNetInfo

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    info = ImageNetInfo()
    assert [wnid for wnid, _ in imagenet.table()] == list(info.label_names())
    assert [name for _, name in imagenet.table()] == list(info.label_descriptions())
    package_data = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(imagenet.TABLE.name, pattern) for pattern in package_data["gcdash.data"])


@pytest.mark.parametrize("names", [torchvision_names, timm_names])
def test_torchvisions_and_timms_1000_classes_are_imagenets(names):
    assert imagenet.is_imagenet(names())
    assert imagenet.wnid_index(names())[GOLDFISH] == 1


def test_other_class_lists_are_not_imagenets():
    names = torchvision_names()
    assert not imagenet.is_imagenet(names[:999])
    assert not imagenet.is_imagenet(sorted(names))  # the same names in another order
    short = timm_names()  # every position matches: the boundary of the rule is exact
    assert imagenet.is_imagenet([*short[:990], *(f"other {i}" for i in range(10))])
    assert not imagenet.is_imagenet([*short[:989], *(f"other {i}" for i in range(11))])
    assert imagenet.wnid_index(["cat", "dog"]) == {}
    assert not imagenet.is_imagenet([f"class {i}" for i in range(1000)])  # unnamed: not said to be ImageNet's


def test_a_wnid_folder_maps_to_a_torchvision_models_classes_and_an_unknown_wnid_is_said(tmp_path):
    samples = data.load(f"folder:{wnid_folder(tmp_path / 'val')}")
    assert samples.class_names == [TENCH, GOLDFISH, BOGUS]
    class_names = models.load("tv:resnet18", weights=None).class_names  # random weights, ImageNet's names
    for names in (class_names, torchvision_names()):
        aligned, note = data.align_labels(samples, names, "tv:resnet18")
        assert aligned.labels.tolist() == [0, 1, -1, -1]
        assert note.startswith(
            f"1 of the data's 3 classes are not classes of tv:resnet18 ({BOGUS}): their images count as unlabelled"
        )


def test_wnids_on_a_model_that_is_not_imagenets_stay_unlabelled_with_a_hint(tmp_path, tiny_handle):
    samples = data.load(f"folder:{wnid_folder(tmp_path / 'val')}")
    aligned, note = data.align_labels(samples, tiny_handle.class_names, "tiny-cnn")
    assert (aligned.labels == -1).all()
    assert "3 of the data's 3 classes are not classes of tiny-cnn" in note and "ImageNet's 1000" in note


def test_a_model_class_named_like_a_wnid_keeps_its_own_index():
    names = torchvision_names()
    names[5] = TENCH  # a model whose class 5 is called "n01440764"
    index = data.label_index([TENCH, GOLDFISH], names)
    assert index[TENCH] == 5 and index[GOLDFISH] == 1 and index["goldfish"] == 1


def test_a_sweep_over_a_wnid_folder_computes_accuracy(tmp_path, capsys):
    from gcdash.cli import main

    root, out = wnid_folder(tmp_path / "val"), tmp_path / "out"
    args = [
        "sweep", "--models", "tv:resnet18", "--weights", "random", "--data", f"folder:{root}", "--n", "4",
        "--eps", "0,8/255", "--out", str(out), "--cache", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(args) == 0
    table = pd.read_parquet(out / "per_image.parquet")
    labels = table.groupby(table["image_id"].str.split("/").str[0])["label"].unique().map(list).to_dict()
    assert labels == {TENCH: [0], GOLDFISH: [1], BOGUS: [-1]}
    summary = pd.read_csv(out / "summary.csv")
    assert summary["acc_clean"].notna().all() and summary["acc_adv"].notna().all()
    assert f"are not classes of tv:resnet18 ({BOGUS})" in capsys.readouterr().err
