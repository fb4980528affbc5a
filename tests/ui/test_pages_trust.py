"""What the pages say must be what the CLI computes: one labelling rule (the Gallery's table equals the CLI's for a
folder of classes the model partly lacks), the noise control read as the attack when it is the attack, and slow
work (many-pass methods, faithfulness) asked for once, in one sentence, and only where it is shown."""

from __future__ import annotations

import pandas as pd
import pytest
from tiny import image_folder

from gcdash import data, sweep
from gcdash.config import AttackConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.metrics import faithfulness
from gcdash.store import Store
from gcdash.ui import compute
from tests.ui.test_app import GALLERY, app, assert_clean, image_urls, info_texts, shown

pytestmark = pytest.mark.timeout(900)
SLOW = "Slow on a CPU"


def slow_warnings(at) -> list[str]:
    return [w.value for w in at.warning if SLOW in w.value]


def compute_it(at):
    return next(b for b in at.button if b.label == "Compute it")


def test_the_gallerys_table_equals_the_clis_for_a_folder_of_other_classes(tmp_path):
    import tiny

    folder = image_folder(tmp_path / "images")
    eps = 8 / 255
    config = SweepConfig(
        models=(ModelSpec("tiny-cnn"),), data=DataConfig(f"folder:{folder}", None), eps=(0.0, eps),
        attack=AttackConfig("fgsm"),
    )  # fmt: skip
    samples = data.load(config.data.source)
    handle = tiny.tiny_handle()
    cli = sweep.sweep(config, Store(tmp_path / "cli"), handles={"tiny-cnn": handle}, samples=samples).per_image
    shown_ = compute.build_gallery(handle, Store(tmp_path / "ui"), samples, config, eps, handle.default_layer).table
    cli = cli[cli["eps"] == eps].reset_index(drop=True)
    columns = ["image_id", "label", "pred_clean", "pred_adv", "conf_clean", "conf_adv", "ssim", "nissim"]
    pd.testing.assert_frame_equal(shown_[columns], cli[columns], check_dtype=False, atol=1e-9)
    assert list(shown_["label"]) == [-1, -1, -1, 1, 1, 2]  # cat, n04266014 unlabelled; square, triangle by name
    assert list(shown_["label_name"][:3]) == ["unlabelled"] * 3


def test_the_gallery_page_labels_a_folder_by_class_name(tmp_path):
    at = app(GALLERY, source="folder", folder=image_folder(tmp_path), classes=[])
    assert_clean(at)
    cells = shown(" ".join(m.value for m in at.markdown))
    assert cells.count("true: unlabelled") == 3 and cells.count("true: square") == 2
    assert "true: circle" not in cells and "true: star" not in cells  # not by folder position


def test_the_overview_under_the_noise_control_reads_the_noise_rows():
    at = app(None, attack="noise")
    assert_clean(at)
    story = shown(info_texts(at))
    assert "no explanation could be compared" not in story
    assert "Random noise at eps 8/255 changed the top-1 prediction" in story
    assert len(at.metric) == 2  # a MOD card per model


def test_faithfulness_is_asked_for_once_and_computed_only_where_it_is_shown(monkeypatch):
    calls = []
    curves = faithfulness.curves
    monkeypatch.setattr(faithfulness, "curves", lambda *a, **k: calls.append(1) or curves(*a, **k))
    at = app("pages/layers.py", faith="true")
    assert_clean(at)
    assert not slow_warnings(at) and calls == [] and at.get("plotly_chart")  # Layers shows none: computes none
    at.switch_page("pages/compare.py").run()
    assert calls == [] and not at.get("plotly_chart")  # nothing before the click
    (warning,) = slow_warnings(at)
    assert warning.count("faithfulness makes") == 1 and warning.count(".") <= 2  # one clause, one sentence
    compute_it(at).click().run()
    assert_clean(at)
    assert calls and not slow_warnings(at)  # computed; the warning is gone
    assert any("faithful" in m.value for m in at.markdown)
    at.switch_page(GALLERY).run()
    assert_clean(at)
    assert not slow_warnings(at) and image_urls(at)


def test_one_click_on_a_slow_method_holds_across_pages():
    at = app(None, method="intgradcam", **{"p.steps": "12"})
    (warning,) = slow_warnings(at)
    assert warning.count("Integrated Grad-CAM makes 12 passes for each of") == 1
    compute_it(at).click().run()
    assert_clean(at)
    assert not slow_warnings(at) and len(image_urls(at)) == 6  # no second warning below the cards
    at.switch_page(GALLERY).run()
    assert_clean(at)
    assert not slow_warnings(at) and image_urls(at)  # the Gallery does not ask again
