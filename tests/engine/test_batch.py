"""Cell keys: the target policy decides which class each map explains (part of its key)."""

import numpy as np
import pytest

from gcdash.errors import GcdashError
from tests.engine.helpers import small


def test_target_policies_change_what_the_adversarial_map_explains(tiny_handle, tiny_samples, store):
    own = small(tiny_handle, store, target="pred").table(tiny_samples, [0.0, 0.1])
    clean = small(tiny_handle, store, target="clean-pred").table(tiny_samples, [0.0, 0.1])
    flipped = own.pred_clean != own.pred_adv
    assert flipped.any() and (~flipped).any(), "eps 0.1 should flip the tiny model's predictions, eps 0 not"
    assert not np.allclose(own.loc[flipped, "nissim"], clean.loc[flipped, "nissim"])
    np.testing.assert_allclose(own.loc[~flipped, "nissim"], clean.loc[~flipped, "nissim"], atol=1e-9)
    label = small(tiny_handle, store, target="label").table(tiny_samples, [0.0, 0.1])
    assert len(label) == len(own)
    differs = (label.pred_clean != label.label) & (label.eps > 0)  # there both label maps explain another class
    assert differs.any()
    assert not np.allclose(label.loc[differs, "nissim"], clean.loc[differs, "nissim"])


def test_label_policy_needs_labels(tiny_handle, tiny_samples, store):
    tiny_samples.labels[:] = -1
    with pytest.raises(GcdashError, match="label"):
        small(tiny_handle, store, target="label").table(tiny_samples, [0.1])
