"""The ``list:FILE.csv`` source: paths relative to the CSV or absolute, labels as names, indices or WordNet ids (one
kind per file), masks by column, missing and unreadable files skipped and said, bad files refused in one line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gcdash import data, plan
from gcdash.errors import GcdashError


def images(root, names, size=(20, 16)):
    """Seeded random PNGs at ``root/name`` (sub-folders made)."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / name)
    return root


def listing(path, rows, header="path,label"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return f"list:{path}"


def test_class_names_label_the_rows_in_the_files_order(tmp_path, tiny_handle):
    images(tmp_path, ["img/b.png", "img/a.png", "img/c.png", "d.png"])
    spec = listing(
        tmp_path / "list.csv", ["img/b.png,square", "./img/a.png,circle", "img/c.png,", f"{tmp_path}/d.png,cat"]
    )
    samples = data.load(spec)
    assert samples.ids == ["img/b.png", "img/a.png", "img/c.png", f"{tmp_path}/d.png"]  # as written, ./ dropped
    assert samples.class_names == ["cat", "circle", "square"] and samples.labels.tolist() == [2, 1, -1, 0]
    assert samples.images[0].shape == (16, 20, 3) and samples.masks is None
    assert samples.meta["source"] == "list" and samples.meta["skipped"] == []
    aligned, note = data.align_labels(samples, tiny_handle.class_names, "tiny-cnn")
    assert aligned.labels.tolist() == [1, 0, -1, -1]  # by name; cat is not the model's
    assert "1 of the data's 3 classes are not classes of tiny-cnn (cat)" in note


def test_class_indices_are_kept_as_the_models_classes(tmp_path, tiny_handle):
    images(tmp_path, ["a.png", "b.png", "c.png"])
    samples = data.load(listing(tmp_path / "list.csv", ["a.png,4", "b.png,-1", "c.png,0"]))
    assert samples.class_names == [] and samples.labels.tolist() == [4, -1, 0]
    assert plan.model_samples(tiny_handle, samples).labels.tolist() == [4, -1, 0]
    past = data.load(listing(tmp_path / "past.csv", ["a.png,7"]))
    with pytest.raises(GcdashError, match="labels up to 7"):
        plan.model_samples(tiny_handle, past)


def test_wordnet_ids_map_to_imagenets_classes(tmp_path):
    from torchvision.models import ResNet18_Weights

    images(tmp_path, ["a.png", "b.png", "c.png"])
    samples = data.load(listing(tmp_path / "list.csv", ["a.png,n01443537", "b.png,n01440764", "c.png,n99999999"]))
    assert samples.class_names == ["n01440764", "n01443537", "n99999999"]
    aligned, note = data.align_labels(samples, ResNet18_Weights.IMAGENET1K_V1.meta["categories"], "tv:resnet18")
    assert aligned.labels.tolist() == [1, 0, -1] and "(n99999999)" in note


def test_a_mask_column_gives_each_image_its_mask(tmp_path):
    images(tmp_path, ["a.png", "b.png"])
    square = np.zeros((16, 20), np.uint8)
    square[2:6, 3:9] = 255
    Image.fromarray(square).save(tmp_path / "a_mask.png")
    Image.fromarray((square > 0).astype(np.uint8)).save(tmp_path / "b_mask.png")  # a 0/1 mask reads the same
    spec = listing(tmp_path / "list.csv", ["a.png,cat,a_mask.png", "b.png,dog,b_mask.png"], "path,label,mask")
    samples = data.load(spec)
    assert [int(m.sum()) for m in samples.masks] == [24, 24] and samples.masks[0][2:6, 3:9].all()
    listing(tmp_path / "list.csv", ["a.png,cat,a_mask.png", "b.png,dog,"], "path,label,mask")
    with pytest.raises(GcdashError, match=r"no mask for b\.png"):
        data.load(spec)
    listing(tmp_path / "list.csv", ["a.png,cat,a_mask.png", "b.png,dog,gone.png"], "path,label,mask")
    with pytest.raises(GcdashError, match=r"gone\.png of b\.png not found"):
        data.load(spec)


def test_missing_unreadable_and_repeated_files_are_skipped_and_said(tmp_path):
    images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "folder.png").mkdir()
    rows = ["a.png,cat", "gone.png,cat", "broken.png,dog", "a.png,cat", "folder.png,dog", "b.png,dog"]
    samples = data.load(listing(tmp_path / "list.csv", rows))
    assert samples.ids == ["a.png", "b.png"]
    assert samples.meta["skipped"] == [
        "gone.png: no such file",
        "a.png: listed again (line 5; line 2 counts)",
        "folder.png: not a regular file",
        "broken.png: not a readable PNG, JPEG, WEBP, BMP, PPM or TIFF image",
    ]
    assert data.shortfall(samples, 3) == [
        "skipped 4 files: 1 missing file, 1 row listing a file again, 1 not a regular file, 1 not a readable image",
        "asked for 3 images, the source gave 2",
    ]


def test_subsets_as_the_folder_source_takes_them(tmp_path):
    names = [f"{i}.png" for i in range(9)]
    images(tmp_path, names)
    spec = listing(tmp_path / "list.csv", [f"{name},{'abc'[i % 3]}" for i, name in enumerate(names)])
    a, b = data.load(spec, n=4, seed=1), data.load(spec, n=4, seed=1)
    assert a.ids == b.ids and len(a) == 4
    assert sorted(data.load(spec, per_class=1).labels.tolist()) == [0, 1, 2]
    picked = data.load(spec, classes="c,a")
    assert set(picked.labels.tolist()) == {0, 2} and picked.class_names == ["a", "b", "c"]
    with pytest.raises(GcdashError, match="no label 'z' in the list; it has: a, b, c"):
        data.load(spec, classes="z")
    with pytest.raises(GcdashError, match="option 'masks' does not go with the list source"):
        data.load(spec, masks=str(tmp_path))


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label\na.png,cat\nb.png,3\n", "mixes class names (line 2: cat) and class indices (line 3: 3): use one"),
        ("path,label\na.png,n01440764\nb.png,cat\n", "mixes WordNet ids (line 2: n01440764) and class names"),
        ("file,label\na.png,cat\n", "has no column 'path' (it has: file, label); it needs path and label"),
        ("path\na.png\n", "has no column 'label'"),
        ("", "is empty: it needs a header line"),
        ("path,label\n", "lists no images"),
        ("path,label\n,cat\n", "line 2: no path"),
        ("path,label\na.png,-3\n", "line 2: label -3 is not a class index"),
        (b"path,label\n\xff\xfe.png,cat\n", "is not UTF-8 text"),
        ('path,label\n"a.png,cat\n', "not a readable CSV"),
    ],
)
def test_a_bad_list_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "list.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(GcdashError, match=re.escape(message)) as err:
        data.load(f"list:{path}")
    assert "\n" not in str(err.value)


def test_a_missing_list_and_nothing_readable_are_refused(tmp_path):
    with pytest.raises(GcdashError, match="not found"):
        data.load(f"list:{tmp_path / 'none.csv'}")
    with pytest.raises(GcdashError, match="needs the path of a CSV"):
        data.load("list")
    with pytest.raises(GcdashError, match=r"no image listed in .* can be read .*first: gone\.png: no such file"):
        data.load(listing(tmp_path / "list.csv", ["gone.png,cat"]))


def test_a_sweep_over_a_list_of_class_indices_computes_accuracy(tmp_path):
    from gcdash.cli import main

    images(tmp_path, ["a.png", "b.png", "c.png"], size=(32, 32))
    spec = listing(tmp_path / "list.csv", ["a.png,0", "b.png,3", "c.png,"])
    args = ["sweep", "--models", "tiny-cnn", "--data", spec, "--eps", "0,8/255", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert main(args) == 0
    table = pd.read_parquet(tmp_path / "out" / "per_image.parquet")
    assert table.groupby("image_id")["label"].first().to_dict() == {"a.png": 0, "b.png": 3, "c.png": -1}
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["acc_clean"].notna().all()
