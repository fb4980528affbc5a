"""SSIM against skimage (the independent reference), NISSIM range, MOD/VID on a hand-made table."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gcdash import metrics, results
from gcdash.metrics import structural


def _pairs(n: int, seed: int = 0, shape=(40, 48)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((n, *shape)).astype(np.float32)
    b = rng.random((n, *shape)).astype(np.float32)
    mix = rng.random(n)[:, None, None].astype(np.float32)
    b = mix * a + (1 - mix) * b  # from identical to unrelated
    return a, b


def test_ssim_equals_skimage_on_random_pairs():
    a, b = _pairs(120)
    ref = np.array([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)])
    np.testing.assert_allclose(metrics.ssim(a, b), ref, atol=1e-5, rtol=0)


def test_ssim_at_the_input_size_spans_several_chunks_and_equals_skimage():
    a, b = (m.astype(np.float64) for m in _pairs(11, seed=6, shape=(224, 224)))  # skimage in float64 too
    step = structural._CHUNK_PIXELS["cpu"] // (224 * 224)
    assert 1 <= step < len(a)  # the pairs run in more than one chunk
    ref = np.array([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)])
    np.testing.assert_allclose(metrics.ssim(a, b), ref, atol=1e-12, rtol=0)


def test_gaussian_ssim_equals_skimage_gaussian():
    a, b = _pairs(30, seed=1)
    ref = [
        structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(metrics.ssim(a, b, gaussian=True), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros((16, 16)), np.zeros((16, 16))),
        (np.full((16, 16), 0.3), np.full((16, 16), 0.7)),
        (np.full((16, 16), 0.5), np.random.default_rng(2).random((16, 16))),
        (np.zeros((16, 16)), np.ones((16, 16))),
        (np.eye(16), 1 - np.eye(16)),
        (np.random.default_rng(3).random((7, 9)), np.random.default_rng(4).random((7, 9))),
    ],
    ids=["zeros", "constants", "constant-vs-noise", "zeros-vs-ones", "inverted", "smallest-window"],
)
def test_ssim_edge_cases_equal_skimage(a, b):
    a, b = a.astype(np.float32), b.astype(np.float32)
    ref = structural_similarity(a, b, data_range=1.0)
    np.testing.assert_allclose(metrics.ssim(a, b), [ref], atol=1e-5)


def test_ssim_runs_on_torch_tensors_and_keeps_pairs_apart():
    a, b = _pairs(4, seed=5)
    out = metrics.ssim(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(out, metrics.ssim(a, b))
    np.testing.assert_allclose(metrics.ssim(a[2], b[2]), out[2:3])
    assert metrics.ssim(a[:1], a[:1])[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("gaussian", [False, True])
def test_chunking_does_not_change_results(monkeypatch, gaussian):
    a, b = _pairs(9, seed=8)
    whole = metrics.ssim(a, b, gaussian=gaussian)
    monkeypatch.setitem(structural._CHUNK_PIXELS, "cpu", 2 * 40 * 48)  # two pairs per chunk
    np.testing.assert_array_equal(metrics.ssim(a, b, gaussian=gaussian), whole)


def test_ssim_rejects_mismatched_or_tiny_maps():
    with pytest.raises(ValueError, match="shape"):
        metrics.ssim(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))
    with pytest.raises(ValueError, match="at least 7"):
        metrics.ssim(np.zeros((6, 6)), np.zeros((6, 6)))


def test_nissim_is_in_unit_interval_and_ordered():
    a, b = _pairs(50, seed=6)
    n = metrics.nissim(a, b)
    assert ((n >= 0) & (n <= 1)).all()
    assert metrics.nissim(a[:1], a[:1])[0] == pytest.approx(0.0, abs=1e-9)
    inverted = metrics.nissim(np.eye(16)[None], (1 - np.eye(16))[None])[0]
    assert inverted > 0.5  # anti-correlated maps are more than "unrelated"
    np.testing.assert_allclose(metrics.nissim_from_ssim([1.0, 0.0, -1.0]), [0.0, 0.5, 1.0])


def test_mod_and_vid_on_a_hand_made_table():
    nissim_by_eps = {0.0: [0, 0, 0], 0.01: [0.1, 0.2, 0.3], 0.02: [0.2, 0.4, 0.6], 0.04: [0.3, 0.3, 0.3]}
    mods = {e: metrics.mod(v) for e, v in nissim_by_eps.items()}
    assert mods == pytest.approx({0.0: 0.0, 0.01: 0.2, 0.02: 0.4, 0.04: 0.3})
    # eps > 0 only: MODs 0.2, 0.4, 0.3 → mean 0.3, population variance (0.01 + 0.01 + 0) / 3
    assert metrics.vid(mods) == pytest.approx(np.sqrt(0.02 / 3))
    assert metrics.vid({0.01: 0.25}) == 0.0
    with pytest.raises(ValueError):
        metrics.vid({0.0: 0.0})
    with pytest.raises(ValueError):
        metrics.mod([])


def test_accuracy_and_attack_success():
    labels = np.array([0, 1, 2, 3, -1])
    clean = np.array([0, 1, 0, 3, 2])
    adv = np.array([1, 1, 0, 0, 0])
    assert metrics.accuracy(clean, labels) == pytest.approx(3 / 4)  # the unlabelled image does not count
    assert metrics.accuracy(adv, labels) == pytest.approx(1 / 4)
    assert metrics.attack_success(clean, adv, labels) == pytest.approx(2 / 3)  # of the 3 clean-correct, 2 flip
    assert np.isnan(metrics.attack_success(clean, adv, np.full(5, -1)))


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(7).random(200)
    lo, hi = results.bootstrap_ci(values, seed=1)
    assert lo < values.mean() < hi
    assert hi - lo < 0.2
    assert results.bootstrap_ci(values, seed=1) == (lo, hi)
