"""The ``folder:PATH`` source on generated trees: ImageFolder labels, subsets with a seed, skipped files, errors."""

from __future__ import annotations

import re

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
    (root / "loose.png").write_bytes(b"files beside the class folders are skipped (ImageFolder ignores them)")
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
    assert samples.meta["skipped"] == [
        "loose.png: image beside the class folders (ImageFolder layout: images go in a class folder)",
        "alice/notes.txt: not an image (.txt)",
        "bob/broken.jpg: not a readable PNG, JPEG, WEBP, BMP, PPM or TIFF image",
    ]  # every file left out is said, hidden ones aside
    assert data.shortfall(samples, None) == [
        "skipped 3 files: 1 beside the class folders, 1 not an image (.txt), 1 not a readable image"
    ]


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


def _masked_pair(tmp_path, mask: Image.Image, ext: str = "png", **save) -> tuple:
    """One 20×20 image and its mask saved as ``mask`` (an 8×8 object at rows/cols 4..11 in the tests below)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    (images / "cat").mkdir(parents=True)
    (masks / "cat").mkdir(parents=True)
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(images / "cat" / "a.jpg")
    mask.save(masks / "cat" / f"a.{ext}", **save)
    return images, masks


def _square(high: int = 255) -> np.ndarray:
    levels = np.zeros((20, 20), np.uint8)
    levels[4:12, 4:12] = high
    return levels


def test_a_transparent_background_mask_is_read_from_its_alpha(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: by colour alone all of it is "object"
    rgba[..., 3] = _square()
    images, masks = _masked_pair(tmp_path, Image.fromarray(rgba, "RGBA"))
    samples = data.load(f"folder:{images}", masks=str(masks))
    assert samples.masks[0].sum() == 64 and samples.masks[0][4:12, 4:12].all()
    assert "notes" not in samples.meta or not samples.meta["notes"]


def test_a_lossy_jpeg_mask_is_thresholded_at_the_middle_and_said(tmp_path):
    noisy = _square().astype(np.int16) + np.random.default_rng(0).integers(-20, 21, (20, 20))
    images, masks = _masked_pair(tmp_path, Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), "jpg", quality=60)
    samples = data.load(f"folder:{images}", masks=str(masks))
    assert abs(int(samples.masks[0].sum()) - 64) <= 6  # the square, not every pixel above 0
    assert samples.meta["note_counts"] == {"non-binary mask{s} thresholded at the middle": 1}
    assert "1 non-binary mask thresholded at the middle" in data.shortfall(samples, None)[0]
    assert str(masks / "cat" / "a.jpg") in samples.meta["notes"][0]


def test_a_zero_one_mask_is_binary(tmp_path):
    images, masks = _masked_pair(tmp_path, Image.fromarray(_square(high=1)))
    samples = data.load(f"folder:{images}", masks=str(masks))
    assert samples.masks[0].sum() == 64 and not samples.meta["notes"]


def test_an_empty_mask_is_said_and_scores_nan(tmp_path, tiny_handle):
    from gcdash.engine import ModelEngine
    from gcdash.store import Store

    images, masks = _masked_pair(tmp_path, Image.fromarray(np.zeros((20, 20), np.uint8)))
    samples = data.load(f"folder:{images}", masks=str(masks))
    assert not samples.masks[0].any()
    assert data.shortfall(samples, None) == [
        "read with a choice made for 1 file: 1 empty mask (hit and mass NaN, left out of the means)"
    ]
    table = ModelEngine(tiny_handle, Store(tmp_path / "c"), batch_size=4).table(samples, [0.0, 8 / 255])
    assert table[["hit_clean", "hit_adv", "mass_clean", "mass_adv"]].isna().all().all()  # not a miss


def test_a_corrupt_mask_is_named_by_its_path(tmp_path):
    images, masks = _masked_pair(tmp_path, Image.fromarray(_square()))
    (masks / "cat" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(GcdashError, match=f"^{re.escape(str(masks / 'cat' / 'a.png'))}: not a readable"):
        data.load(f"folder:{images}", masks=str(masks))


def test_an_option_of_another_source_is_one_line(faces):
    with pytest.raises(GcdashError, match=r"option 'split' does not go with the folder source \(it goes with: demo\)"):
        data.load(f"folder:{faces}", split="test")


def test_a_strip_image_is_skipped_before_decoding(faces):
    Image.new("L", (1, 30000), 7).save(faces / "carol" / "strip.png")  # 1 KB on disk, gigabytes resized to 224
    samples = data.load(f"folder:{faces}")
    assert "carol/strip.png" not in samples.ids
    assert any(s.startswith("carol/strip.png: image too elongated (1×30000") for s in samples.meta["skipped"])
    assert "1 too large or too elongated" in data.shortfall(samples, None)[0]


def test_an_integer_tiff_is_read_by_its_range_and_said(tmp_path):
    (tmp_path / "t" / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 200, np.int32)).save(tmp_path / "t" / "a" / "eight.tif")  # mode "I", 0..255 data
    samples = data.load(f"folder:{tmp_path / 't'}")
    assert samples.images[0].max() == 200  # not 200/65535 of white: black
    assert samples.meta["notes"] == ["a/eight.tif: integer pixels span 200..200: read as 8-bit"]
    assert data.shortfall(samples, None) == ["read with a choice made for 1 file: 1 integer image read as 8-bit"]
