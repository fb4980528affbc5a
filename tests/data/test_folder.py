"""The ``folder:PATH`` source on generated trees: ImageFolder labels, subsets with a seed, skipped files, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gcdash import data
from gcdash.errors import GcdashError

PEOPLE = {"carol": 2, "alice": 4, "bob": 3}  # identity → number of images


@pytest.fixture
def faces(tmp_path):
    """VGGFace2-style tree: one folder per identity (one image nested deeper), plus files to ignore or skip."""
    root = tmp_path / "faces"
    for person, count in PEOPLE.items():
        for i in range(count):
            sub = root / person / ("nested" if i == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            shade = 40 * i + len(person)
            Image.new("L" if i == 1 else "RGB", (20 + i, 16), shade).save(sub / f"{i:04d}.{'png' if i % 2 else 'jpg'}")
    (root / "alice" / "notes.txt").write_text("not an image")
    (root / "alice" / ".hidden.jpg").write_bytes(b"ignored")
    (root / ".cache").mkdir()
    (root / "bob" / "broken.jpg").write_bytes(b"not really a jpeg")
    (root / "loose.png").write_bytes(b"files beside the class folders are ignored, as in ImageFolder")
    return root


def test_loads_imagefolder_layout(faces):
    samples = data.load(f"folder:{faces}")
    assert samples.class_names == ["alice", "bob", "carol"]
    assert len(samples) == sum(PEOPLE.values())
    assert samples.ids[:2] == ["alice/0001.png", "alice/0002.jpg"]
    assert "alice/nested/0000.jpg" in samples.ids
    for sample_id, label in zip(samples.ids, samples.labels):
        assert samples.class_names[label] == sample_id.split("/")[0]
    assert all(im.dtype == np.uint8 and im.shape[2] == 3 for im in samples.images)
    assert samples.meta["skipped"] == ["bob/broken.jpg: not a readable PNG, JPEG, WEBP, BMP, PPM or TIFF image"]


def test_labels_match_torchvision_imagefolder(faces):
    """Same class indices as ImageFolder (which, unlike us, would also count hidden folders as classes)."""
    from torchvision.datasets import ImageFolder

    (faces / ".cache").rmdir()
    reference = ImageFolder(str(faces))
    samples = data.load(f"folder:{faces}")
    assert reference.classes == samples.class_names
    assert samples.labels.tolist() == [reference.class_to_idx[i.split("/")[0]] for i in samples.ids]


def test_random_subset_is_seeded(faces):
    a = data.load(f"folder:{faces}", n=4, seed=1)
    b = data.load(f"folder:{faces}", n=4, seed=1)
    others = {tuple(data.load(f"folder:{faces}", n=4, seed=s).ids) for s in range(2, 8)}
    assert a.ids == b.ids and len(a) == 4 and a.ids == sorted(a.ids)
    assert len(others | {tuple(a.ids)}) > 1


def test_per_class_and_class_filter(faces):
    one_each = data.load(f"folder:{faces}", per_class=1, seed=0)
    assert sorted(one_each.labels.tolist()) == [0, 1, 2]
    picked = data.load(f"folder:{faces}", classes="carol, bob")
    assert set(picked.labels.tolist()) == {1, 2}  # labels stay the full folder's indices
    assert picked.class_names == ["alice", "bob", "carol"]
    assert len(data.load(f"folder:{faces}", classes=["alice"], per_class=2, n=1)) == 1


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    samples = data.load(f"folder:{tmp_path}")
    assert samples.labels.tolist() == [-1, -1, -1] and samples.class_names == []


def test_errors(faces, tmp_path):
    (tmp_path / "empty" / "someone").mkdir(parents=True)
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "a.jpg").write_bytes(b"garbage")
    cases = {
        "folder": "needs the path of a folder",
        f"folder:{tmp_path / 'nope'}": "not found",
        f"folder:{tmp_path / 'empty'}": "no images",
        f"folder:{tmp_path / 'bad'}": "no readable images",
    }
    for spec, message in cases.items():
        with pytest.raises(GcdashError, match=message):
            data.load(spec)
    with pytest.raises(GcdashError, match="no class folder 'dave'; the folder has: alice, bob, carol"):
        data.load(f"folder:{faces}", classes="dave")
    with pytest.raises(GcdashError, match="per_class must be"):
        data.load(f"folder:{faces}", per_class=0)
    with pytest.raises(GcdashError, match="n must be"):
        data.load(f"folder:{faces}", n=-1)


def test_a_parallel_masks_folder_gives_each_image_its_mask(tmp_path):
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    for name in ("cat", "dog"):
        (images / name).mkdir(parents=True)
        (masks / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((12, 10, 3), 50 + i, np.uint8)).save(images / name / f"{i}.jpg")
            mask = np.zeros((12, 10), np.uint8)
            mask[i : i + 4, 2:6] = 255
            Image.fromarray(mask).save(masks / name / f"{i}.png")
    samples = data.load(f"folder:{images}", masks=str(masks))
    assert len(samples.masks) == 4
    assert [int(m.sum()) for m in samples.masks] == [16] * 4 and samples.masks[1][1:5, 2:6].all()
    (masks / "dog" / "1.png").unlink()
    with pytest.raises(GcdashError, match=r"no mask for dog/1\.jpg"):
        data.load(f"folder:{images}", masks=str(masks))


def test_a_folder_is_decoded_a_batch_at_a_time_and_gives_the_same_numbers(tmp_path, tiny_handle):
    from dataclasses import replace

    from gcdash.data.folder import FolderImages
    from gcdash.engine import ModelEngine
    from gcdash.store import Store

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                tmp_path / "img" / name / f"{i}.png"
            )
    lazy = data.load(f"folder:{tmp_path / 'img'}")
    assert isinstance(lazy.images, FolderImages) and len(lazy) == 10  # no pixels held
    eager = replace(lazy, images=list(lazy.images))
    assert all(np.array_equal(a, b) for a, b in zip(lazy.subset(range(3, 7)).images, eager.images[3:7]))
    tables = [ModelEngine(tiny_handle, Store(tmp_path / f"c{i}"), batch_size=4).table(s, [0.0, 8 / 255])
              for i, s in enumerate((lazy, eager))]  # fmt: skip
    assert tables[0].equals(tables[1])
