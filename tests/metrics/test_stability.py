"""RIS, ROS and Max-Sensitivity equal Quantus's (0.6, the test reference) on the same inputs, maps and model, with
its perturbation replaced by the given attacked images (one sample), to 1e-6 relative or better (stated per test)."""

import numpy as np
import pytest
import quantus
import torch

from gcdash import attacks
from gcdash.metrics import stability


@pytest.fixture
def pair(tiny_handle):
    """Clean and FGSM images (16/255: some predictions change), maps with exact zeros, and the model's logits."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    x[:, :, :4, :4] = 0.0  # zero pixels: Quantus divides by ε_min there
    x_adv = attacks.attack("fgsm", tiny_handle.net, x, None, 16 / 255)
    rng = np.random.default_rng(0)
    e, e_adv = (rng.random((len(x), 1, 32, 32)) * (rng.random((len(x), 1, 32, 32)) > 0.2) for _ in range(2))
    with torch.no_grad():
        h, h_adv = tiny_handle.net(x), tiny_handle.net(x_adv)
    return x, x_adv, torch.from_numpy(e), torch.from_numpy(e_adv), h, h_adv


def reference(metric_class, tiny_handle, x, x_adv, e, e_adv, **options):
    """Quantus's score with its perturbation = our attacked images and its explainer = our attacked maps."""
    x_np, adv_np, adv_maps = x.numpy(), x_adv.numpy(), e_adv.numpy()

    def perturb(arr, indices=None, **_):
        return adv_np.reshape(arr.shape)

    def explain(model, inputs, targets, **_):
        np.testing.assert_array_equal(inputs, adv_np)  # Quantus explains exactly our attacked images
        return adv_maps.astype(np.float64)

    metric = metric_class(
        nr_samples=1, perturb_func=perturb, normalise=False, abs=False, disable_warnings=True, **options
    )
    with torch.no_grad():
        labels = tiny_handle.net(x).argmax(dim=1).numpy()
    scores = metric(model=tiny_handle.net, x_batch=x_np, y_batch=labels, a_batch=e.numpy(),
                    explain_func=explain, device="cpu", batch_size=len(x))  # fmt: skip
    return np.asarray(scores, dtype=np.float64)


def test_ris_equals_quantus(tiny_handle, pair):
    x, x_adv, e, e_adv, h, h_adv = pair
    changed = h.argmax(1) != h_adv.argmax(1)
    assert 0 < changed.sum() < len(x), "the fixture should change some predictions and keep others"
    ours = stability.ris(x, x_adv, e[:, 0], e_adv[:, 0], changed).numpy()
    theirs = reference(quantus.RelativeInputStability, tiny_handle, x, x_adv, e, e_adv)
    np.testing.assert_array_equal(np.isnan(ours), changed.numpy())
    # Quantus takes x − x' in float32 (its inputs' dtype), we in float64: 1e-7 apart relative
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, equal_nan=True)


def test_ros_equals_quantus(tiny_handle, pair):
    x, x_adv, e, e_adv, h, h_adv = pair
    changed = h.argmax(1) != h_adv.argmax(1)
    ours = stability.ros(h, h_adv, e[:, 0], e_adv[:, 0], changed).numpy()
    theirs = reference(quantus.RelativeOutputStability, tiny_handle, x, x_adv, e, e_adv)
    # Quantus's logits come from its own forward in float32: the same numbers up to the summation order
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, equal_nan=True)
    assert np.isnan(ours).sum() == int(changed.sum())


def test_max_sensitivity_equals_quantus(tiny_handle, pair):
    x, x_adv, e, e_adv, *_ = pair
    ours = stability.sensitivity(e[:, 0], e_adv[:, 0]).numpy()
    theirs = reference(quantus.MaxSensitivity, tiny_handle, x, x_adv, e, e_adv)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_an_unchanged_map_is_perfectly_stable_and_an_all_zero_clean_map_has_no_sensitivity():
    e = torch.rand(2, 8, 8, dtype=torch.float64)
    x, x_adv = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    kept = torch.zeros(2, dtype=torch.bool)
    assert (stability.ris(x, x_adv, e, e, kept) == 0).all() and (stability.sensitivity(e, e) == 0).all()
    zero = torch.zeros(1, 8, 8, dtype=torch.float64)
    assert torch.isnan(stability.sensitivity(zero, e[:1])).all()
