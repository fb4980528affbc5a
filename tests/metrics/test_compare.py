"""Map comparisons: identities, references (scipy's Spearman, a numpy top-k), range, constant maps."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gcdash import metrics
from gcdash.errors import GcdashError


def _maps(n: int = 6, seed: int = 0, shape=(24, 20)) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def test_the_registry_lists_the_shipped_comparisons():
    assert metrics.dissimilarities() == ["nissim", "spearman", "topk", "lens-topk"]
    with pytest.raises(GcdashError, match="unknown comparison 'ssim'; choose from: nissim, spearman, topk, lens-topk"):
        metrics.comparison("ssim")


@pytest.mark.parametrize("name", metrics.dissimilarities())
def test_a_map_against_itself_is_zero_and_every_value_is_in_the_unit_interval(name):
    a, b = _maps(seed=1), _maps(seed=2)
    np.testing.assert_allclose(metrics.dissimilarity(name, a, a), 0.0, atol=1e-9)
    values = metrics.dissimilarity(name, a, b)
    assert values.dtype == np.float64 and values.shape == (len(a),)
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


@pytest.mark.parametrize("name", metrics.dissimilarities())
def test_constant_maps_are_defined(name):
    zeros, ones, varied = np.zeros((2, 16, 16)), np.ones((2, 16, 16)), _maps(2, shape=(16, 16))
    for a, b in [(zeros, zeros), (zeros, ones), (zeros, varied), (varied, ones)]:
        values = metrics.dissimilarity(name, a, b)
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()


def test_nissim_is_the_papers():
    a, b = _maps(seed=3), _maps(seed=4)
    np.testing.assert_array_equal(metrics.dissimilarity("nissim", a, b), metrics.nissim(a, b))
    np.testing.assert_array_equal(
        metrics.dissimilarity("nissim", a, b, gaussian=True), metrics.nissim(a, b, gaussian=True)
    )


def test_spearman_is_scipys_rank_correlation_with_ties_averaged():
    rng = np.random.default_rng(5)
    a = np.round(rng.random((5, 12, 12)) * 6) / 6  # many ties
    b = np.round(rng.random((5, 12, 12)) * 4) / 4
    expected = [(1 - spearmanr(x.ravel(), y.ravel()).statistic) / 2 for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.dissimilarity("spearman", a, b), expected, atol=1e-12)


def test_spearman_of_a_map_and_its_reversal_is_one_and_constant_maps_follow_the_stated_rule():
    a = _maps(seed=6)
    np.testing.assert_allclose(metrics.dissimilarity("spearman", a, a.max() - a), 1.0, atol=1e-12)
    zeros, varied = np.zeros((1, 8, 8)), _maps(1, shape=(8, 8))
    assert metrics.dissimilarity("spearman", zeros, zeros + 3)[0] == 0.0  # neither orders a pixel: they agree
    assert metrics.dissimilarity("spearman", zeros, varied)[0] == 0.5  # no relation


def test_average_ranks_equal_scipys():
    from scipy.stats import rankdata

    from gcdash.metrics.compare import average_ranks

    v = np.round(np.random.default_rng(7).random((4, 50)) * 5)
    np.testing.assert_array_equal(average_ranks(torch.from_numpy(v)).numpy(), rankdata(v, axis=1) - 1)


def test_topk_of_maps_with_disjoint_peaks_is_one():
    a, b = np.zeros((1, 10, 10)), np.zeros((1, 10, 10))
    a[0, :2, :] = 1  # top 20 pixels: the first two rows
    b[0, -2:, :] = 1  # the last two rows
    assert metrics.dissimilarity("topk", a, b, share=0.2)[0] == 1.0
    assert metrics.dissimilarity("topk", a, a, share=0.2)[0] == 0.0


def test_topk_equals_a_numpy_reference():
    a, b = _maps(seed=8), _maps(seed=9)
    k = round(0.05 * a.shape[1] * a.shape[2])
    top = lambda m: set(np.argsort(-m.ravel(), kind="stable")[:k])  # noqa: E731
    expected = [1 - len(top(x) & top(y)) / k for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.dissimilarity("topk", a, b, share=0.05), expected)


def test_bad_parameters_are_refused():
    with pytest.raises(GcdashError, match="share must be in"):
        metrics.dissimilarity("topk", _maps(1), _maps(1), share=0.0)
    with pytest.raises(GcdashError, match="has no parameter 'k'"):
        metrics.dissimilarity("topk", _maps(1), _maps(1), k=10)


def test_lens_top_k_at_locality_zero_is_top_k():
    torch.manual_seed(1)
    a, b = torch.rand(6, 20, 24), torch.rand(6, 20, 24)
    np.testing.assert_array_equal(
        metrics.dissimilarity("lens-topk", a, b, radius=0, share=0.05), metrics.dissimilarity("topk", a, b, share=0.05)
    )


def test_lens_top_k_forgives_a_shift_within_its_window_and_not_beyond():
    a = torch.zeros(1, 30, 30)
    a[0, 10:13, 10:13] = torch.arange(9, dtype=torch.float32).view(3, 3) + 1
    one, four = torch.roll(a, 1, dims=2), torch.roll(a, 4, dims=2)
    share = 9 / 900  # the 9 peak pixels
    assert metrics.dissimilarity("topk", a, one, share=share)[0] > 0.3
    assert metrics.dissimilarity("lens-topk", a, one, share=share, radius=1)[0] == 0
    assert metrics.dissimilarity("lens-topk", a, four, share=share, radius=1)[0] == 1
    assert metrics.dissimilarity("lens-topk", a, four, share=share, radius=4)[0] == 0


def test_lens_top_k_is_the_share_of_the_other_maps_top_pixels_near_the_clean_ones():
    """Against the definition pixel by pixel: a top pixel of ``b`` counts when a top pixel of ``a`` lies within
    Chebyshev distance r (Kamath et al.'s w×w window, w = 2r + 1)."""
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 12, 15)), rng.random((3, 12, 15))
    k, r = 18, 1
    got = metrics.comparison("lens-topk").raw(torch.from_numpy(a), torch.from_numpy(b), share=k / 180, radius=r)
    for i in range(3):
        top_a = np.argwhere(np.isin(np.arange(180), np.argsort(-a[i].ravel(), kind="stable")[:k]).reshape(12, 15))
        top_b = np.argwhere(np.isin(np.arange(180), np.argsort(-b[i].ravel(), kind="stable")[:k]).reshape(12, 15))
        near = sum(bool((np.abs(top_a - p).max(axis=1) <= r).any()) for p in top_b)
        assert got[i] == pytest.approx(near / k)


def test_lens_top_k_refuses_a_negative_radius():
    from gcdash.errors import GcdashError

    with pytest.raises(GcdashError, match="radius must be ≥ 0"):
        metrics.comparison("lens-topk").params(radius=-1)
