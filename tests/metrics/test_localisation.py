"""Localisation on hand-made maps and masks: the pointing game and the mass inside the object."""

from __future__ import annotations

import numpy as np
import pytest

from gcdash.metrics.localisation import mass_inside, pointing_game


def _square_mask(size: int = 16, lo: int = 4, hi: int = 8) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_a_map_peaked_inside_the_object_hits_and_outside_misses():
    mask = _square_mask()
    inside, outside = np.zeros((16, 16)), np.zeros((16, 16))
    inside[5, 6], outside[12, 1] = 1.0, 1.0
    assert pointing_game(np.stack([inside, outside]), np.stack([mask, mask])).tolist() == [1.0, 0.0]
    assert mass_inside(np.stack([inside, outside]), np.stack([mask, mask])).tolist() == [1.0, 0.0]


def test_mass_inside_is_the_share_of_the_map_on_the_object():
    mask = _square_mask()
    uniform = np.ones((16, 16))
    assert mass_inside(uniform, mask)[0] == pytest.approx(mask.mean())  # a flat map: the object's area share
    rng = np.random.default_rng(0)
    maps = rng.random((5, 16, 16))
    masks = rng.random((5, 16, 16)) < 0.3
    expected = [(m * k).sum() / m.sum() for m, k in zip(maps, masks)]
    np.testing.assert_allclose(mass_inside(maps, masks), expected, rtol=1e-12)


def test_the_pointing_game_reads_the_mask_at_the_maximum():
    rng = np.random.default_rng(1)
    maps = rng.random((6, 12, 10))
    masks = rng.random((6, 12, 10)) < 0.5
    expected = [float(k.flat[m.argmax()]) for m, k in zip(maps, masks)]
    assert pointing_game(maps, masks).tolist() == expected


def test_an_all_zero_map_has_no_score():
    mask = _square_mask()
    assert np.isnan(pointing_game(np.zeros((16, 16)), mask)[0])
    assert np.isnan(mass_inside(np.zeros((16, 16)), mask)[0])


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same shape"):
        pointing_game(np.zeros((2, 8, 8)), np.zeros((2, 8, 9), bool))


def test_an_empty_mask_has_no_score_not_a_miss():
    """No object to point at: NaN (left out of every mean), not 0 (a miss averaged in); the other images keep
    their scores."""
    maps = np.random.default_rng(2).random((3, 16, 16))
    masks = np.stack([_square_mask(), np.zeros((16, 16), bool), np.ones((16, 16), bool)])
    hit, mass = pointing_game(maps, masks), mass_inside(maps, masks)
    assert np.isnan(hit[1]) and np.isnan(mass[1])
    assert hit[2] == 1.0 and mass[2] == pytest.approx(1.0)
    assert hit[0] == float(masks[0].flat[maps[0].argmax()]) and 0 < mass[0] < 1
    assert np.nanmean(hit) == pytest.approx((hit[0] + 1.0) / 2)  # the empty one is not averaged in
