"""The demo image source: deterministic, split-disjoint, masks aligned with the drawn object, fast."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gcdash import data
from gcdash.data.demo import CLASS_NAMES, IMAGE_SIZE, NOISE_STD, SPLITS, generate, generate_arrays, render
from gcdash.errors import GcdashError


def _digests(split: str, n: int, seed: int = 0) -> set[str]:
    return {hashlib.sha256(im.tobytes()).hexdigest() for im in generate(split, range(n), seed).images}


def test_render_is_deterministic_per_split_seed_index():
    a_img, a_mask, a_scene = render("test", 42, seed=3)
    b_img, b_mask, b_scene = render("test", 42, seed=3)
    assert a_img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and a_img.dtype == np.uint8
    assert a_mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and a_mask.dtype == bool
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert a_scene == b_scene
    assert not np.array_equal(a_img, render("test", 42, seed=4)[0])
    assert not np.array_equal(a_img, render("test", 43, seed=3)[0])


def test_subset_equals_the_same_images_of_a_larger_set():
    full = generate("val", range(12), seed=1)
    part = generate("val", [7, 3], seed=1)
    assert part.ids == ["demo-val-000007", "demo-val-000003"]
    for i, j in zip([7, 3], range(2)):
        np.testing.assert_array_equal(full.images[i], part.images[j])
        np.testing.assert_array_equal(full.masks[i], part.masks[j])
    assert list(part.labels) == [7 % len(CLASS_NAMES), 3 % len(CLASS_NAMES)]


def test_splits_never_share_an_image():
    digests = {split: _digests(split, 150) for split in SPLITS}
    assert all(len(d) == 150 for d in digests.values())
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def _on_object(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> float:
    """Fraction of the masked pixels whose colour is the object's within 4 noise sigmas in every channel."""
    return float((np.abs(image[mask].astype(int) - color).max(axis=1) <= 4 * NOISE_STD).mean())


def test_mask_covers_exactly_the_object():
    """Under the mask the pixels are the object's colour up to noise; the one-pixel rim just outside is not (the
    object contrasts with its background); and a mask shifted by a single pixel already fails the first check."""
    for index in range(48):
        image, mask, scene = render("test", index)
        assert mask.sum() > 60, "object too small or mask empty"
        assert _on_object(image, mask, scene.color) > 0.985, f"image {index}: pixels under the mask are off-colour"
        rim = _dilate(mask) & ~mask
        assert _on_object(image, rim, scene.color) < 0.5, f"image {index}: the object extends beyond its mask"
        for axis, step in [(0, 1), (0, -1), (1, 1), (1, -1)]:
            assert _on_object(image, np.roll(mask, step, axis=axis), scene.color) < 0.985


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def test_mask_lies_inside_the_object_circle():
    for index in range(12):
        _, mask, scene = render("train", index)
        ys, xs = np.nonzero(mask)
        dist = np.hypot(xs - scene.center[0], ys - scene.center[1])
        assert dist.max() <= scene.radius + 1.5


def test_loader_spec_split_and_class_filter():
    samples = data.load("demo", n=12, classes=["star", "ring"])
    assert set(samples.labels) == {CLASS_NAMES.index("star"), CLASS_NAMES.index("ring")}
    assert all(s.startswith("demo-test-") for s in samples.ids)
    unfiltered = generate("test", [3])
    np.testing.assert_array_equal(samples.images[0], unfiltered.images[0])
    assert samples.ids[0] == unfiltered.ids[0]
    val = data.load("demo:val", n=4, seed=2)
    assert val.ids == [f"demo-val-{i:06d}" for i in range(4)]
    assert len(data.load("demo", n=3, classes="circle,cross")) == 3
    assert len(data.load("demo")) > 0


def test_per_class_counts_and_n_caps_the_total():
    two_each = data.load("demo", per_class=2, classes=["star", "ring"])
    assert sorted(two_each.labels) == [3, 3, 5, 5]
    assert len(data.load("demo", n=3, per_class=2, classes=["star", "ring"])) == 3
    assert len(data.load("demo:train", per_class=1)) == len(CLASS_NAMES)


def test_arrays_match_samples():
    images, masks, labels = generate_arrays("train", range(5), seed=7)
    samples = generate("train", range(5), seed=7)
    np.testing.assert_array_equal(images, np.stack(samples.images))
    np.testing.assert_array_equal(masks, np.stack(samples.masks))
    np.testing.assert_array_equal(labels, samples.labels)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "holdout"},
        {"classes": ["hexagon"]},
        {"n": -1},
        {"per_class": -2},
        {"n": 0},
        {"classes": []},
        {"classes": " , "},
    ],
)
def test_bad_options_are_user_errors(kwargs):
    with pytest.raises(GcdashError):
        data.load("demo", **kwargs)


def test_split_given_twice_must_agree():
    with pytest.raises(GcdashError, match="twice"):
        data.load("demo:val", split="test")


def test_an_option_of_another_source_is_one_line():
    with pytest.raises(GcdashError, match=r"option 'masks' does not go with the demo source \(it goes with: folder\)"):
        data.load("demo", n=4, masks="/tmp/masks")
