"""The one labelling rule: a class folder's name maps to the model's class of that name; a class the model lacks is
unlabelled (-1), whatever the folder's position among the others (``data.align_labels``, ``plan.model_samples``)."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import image_folder

from gcdash import data, plan
from gcdash.errors import GcdashError


def test_a_folder_is_labelled_by_class_name_and_classes_the_model_lacks_are_unlabelled(tmp_path, tiny_handle):
    samples = data.load(f"folder:{image_folder(tmp_path)}")
    assert list(samples.labels) == [0, 0, 1, 2, 2, 3]  # the folder's own numbering, by position
    aligned, note = data.align_labels(samples, tiny_handle.class_names, "tiny-cnn")
    assert list(aligned.labels) == [-1, -1, -1, 1, 1, 2]  # not circle, circle, square, triangle by position
    assert aligned.class_names == tiny_handle.class_names
    assert "2 of the data's 4 classes are not classes of tiny-cnn (cat, n04266014)" in note
    assert list(plan.model_samples(tiny_handle, samples).labels) == list(aligned.labels)


def test_labels_already_in_the_models_classes_are_kept_and_a_label_past_them_is_refused(tiny_handle, tiny_samples):
    assert plan.model_samples(tiny_handle, tiny_samples) is tiny_samples
    unnamed = data.Samples(tiny_samples.images, np.full(len(tiny_samples), 7), tiny_samples.ids, [])
    with pytest.raises(GcdashError, match="labels up to 7"):
        plan.model_samples(tiny_handle, unnamed)
