"""AppTest over every page, on the tiny seeded test models (tests/tiny.py) and a few demo images.

The tiny models are registered in this process by tests/conftest.py, and AppTest runs the router (dashboard.py)
in this process, so the sidebar lists them; the URL parameters below select them. The demo's first five classes
match theirs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import gcdash.cams
from gcdash.ui import state

APP = str(Path(__file__).resolve().parents[2] / "dashboard.py")  # the router app.py serves
TIMEOUT = 240
FIVE = ["circle", "square", "triangle", "star", "cross"]
TINY = {"models": ["tiny-cnn", "tiny-cnn2"], "classes": FIVE, "n": "6", "eps": ["0", "4/255", "8/255"]}

pytestmark = pytest.mark.timeout(900)


GALLERY = "pages/gallery.py"


def app(page: str | None = GALLERY, **params) -> AppTest:
    """A fresh session on ``page`` (None: the landing page, Overview) with the tiny selection (plus ``params``),
    after its first run."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = {**TINY, **params}
    at.run()
    if page is not None:
        at.switch_page(page).run()
    # AppTest starts every run in Streamlit's legacy pages/ mode, so the first run's widget ids differ from the
    # later runs' (a browser session does not see this); one more run makes the ids the tests act on stable.
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def widget(at: AppTest, kind: str, name: str):
    """The widget of kind ``kind`` showing value ``name`` (selection widgets are keyed ``w.<name>``)."""
    return next(w for w in getattr(at, kind) if w.key in (name, f"w.{name}"))


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def image_urls(at: AppTest) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def shown(markdown: str) -> str:
    """What a person reads: markdown source with its backslash escapes undone (user text is escaped)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# -- every page ---------------------------------------------------------------------------------------------
def test_gallery_rows(monkeypatch):
    at = app()
    assert_clean(at)
    assert widget(at, "selectbox", "gmodel").value == "tiny-cnn"
    # 6 images x (clean, adversarial, perturbation, clean CAM, adversarial CAM, difference) on one page of 8 rows
    assert len(image_urls(at)) == 6 * 6
    assert len(at.metric) == 4
    assert at.get("pagination")


def test_the_sidebar_attack_reaches_the_gallery_and_the_url():
    at = app(attack="pgd", **{"a.pgd.steps": "2"})
    assert_clean(at)
    assert widget(at, "selectbox", "attack").value == "pgd"
    assert widget(at, "number_input", "a.pgd.steps").value == 2
    assert any(r"PGD \(L∞\) at eps 8/255" in c.value for c in at.caption)  # user text is markdown-escaped
    assert at.query_params["attack"] in ("pgd", ["pgd"]) and at.query_params["a.pgd.steps"] in ("2", ["2"])
    widget(at, "selectbox", "a.pgd.source").set_value("tiny-cnn2").run()
    assert_clean(at)
    assert any(r"PGD \(L∞\) crafted on tiny\-cnn2 at eps" in c.value for c in at.caption)


def test_an_explanation_attack_from_the_sidebar_names_its_layer_in_a_text_box():
    at = app(attack="expl-topk", **{"a.expl-topk.steps": "2", "a.expl-topk.layer": "block2"})
    assert_clean(at)
    assert widget(at, "text_input", "a.expl-topk.layer").value == "block2"
    assert at.session_state["gcdash.selection"].attack.params == (("layer", "block2"), ("steps", 2))
    widget(at, "text_input", "a.expl-topk.layer").set_value("nope").run()
    assert any("no layer 'nope'" in e.value or "unknown layer 'nope'" in e.value for e in at.error)


def test_the_landing_page_tells_the_story():
    at = app(None)
    assert_clean(at)
    assert at.title[0].value == "What an attack does to the explanations"
    story = info_texts(at)
    assert "changed the top\\-1 prediction" in story
    assert "moved least" in story or "No clear difference" in story  # a winner only outside the bootstrap bands
    assert "Random noise of the same size moved them" in shown(story)
    assert len(at.metric) == 2  # a MOD card per model, with its gap to the noise control
    assert all("vs noise" in (m.proto.delta or "") for m in at.metric)
    assert len(image_urls(at)) == 6  # the image whose explanation moved most: one gallery row


def test_gallery_view_controls_do_no_model_work(monkeypatch):
    at = app()
    calls = []
    explain = gcdash.cams.explain
    monkeypatch.setattr(gcdash.cams, "explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    before = image_urls(at)
    widget(at, "selectbox", "g.cmap").set_value("viridis").run()
    widget(at, "slider", "g.opacity").set_value(0.9).run()
    widget(at, "selectbox", "g.sort").set_value("confidence drop").run()
    widget(at, "selectbox", "g.rows").set_value(4).run()
    assert_clean(at)
    assert calls == [], "a display-only control ran the model"
    assert image_urls(at) != before
    assert len(image_urls(at)) == 4 * 6


def test_gallery_side_by_side_and_enlarge():
    at = app()
    widget(at, "selectbox", "g.second").set_value("tiny-cnn2").run()
    assert_clean(at)
    assert len(at.metric) == 8  # four figures per model
    assert {m.label for m in at.metric} == {"MOD", "flipped", "clean accuracy", "adversarial accuracy"}  # not cut
    assert len(image_urls(at)) == 6 * (1 + 2 * 4)
    first = widget(at, "selectbox", "image").options[1]
    widget(at, "selectbox", "image").set_value(first).run()
    assert_clean(at)
    assert at.query_params["image"] == first


def test_gallery_model_change_changes_images():
    at = app()
    before = image_urls(at)
    widget(at, "selectbox", "gmodel").set_value("tiny-cnn2").run()
    assert_clean(at)
    assert image_urls(at) != before


@pytest.mark.parametrize("kind", ["violin", "box", "histogram", "ecdf"])
def test_distributions_kinds(kind):
    at = app("pages/distributions.py", plot=kind)
    assert_clean(at)
    (spec,) = charts(at)
    assert kind in spec["layout"]["title"]["text"]
    ids = {row[0] for trace in spec["data"] for row in trace.get("customdata") or [] if isinstance(row, list)}
    assert any(i.startswith("demo-test-") for i in ids), "points must name their image"


def test_distributions_control_opens_gallery():
    at = app("pages/distributions.py")
    pick = widget(at, "selectbox", "dist.pick")
    pick.set_value(pick.options[0]).run()
    next(b for b in at.button if b.label == "Open in the gallery").click().run()
    assert_clean(at)
    focus = widget(at, "selectbox", "image").value
    assert focus.startswith("demo-test-")
    assert at.query_params["image"] == focus
    assert len(image_urls(at)) > 6 * 6  # the rows plus the enlarged image


def test_compare_charts_follow_the_selection():
    at = app("pages/compare.py")
    assert_clean(at)
    specs = charts(at)
    assert len(specs) == 4 and len(at.dataframe) == 2  # the attack-vs-noise table and the MOD/VID table
    names = {t["name"] for t in specs[0]["data"] if t.get("name")}
    assert names == {f"{m} · {a}" for m in ("tiny-cnn", "tiny-cnn2") for a in ("fgsm", "noise")}
    assert specs[0]["layout"]["xaxis"]["ticktext"] == ["0", "4/255", "8/255"]
    assert len(at.get("download_button")) == 4 + 4  # tables and the report; the charts
    gap = at.dataframe[0].value
    assert set(gap["attack"]) == {"fgsm"} and (gap["gap"] == gap["mod"] - gap["mod_noise"]).all()
    widget(at, "toggle", "cmp.control").set_value(False).run()
    assert {t["name"] for t in charts(at)[0]["data"] if t.get("name")} == {"tiny-cnn", "tiny-cnn2"}
    widget(at, "multiselect", "compare").set_value(["spearman", "topk"]).run()
    assert_clean(at)
    assert "MOD under each map comparison" in [c["layout"]["title"]["text"] for c in charts(at)]
    assert {"MOD@8/255", "vid", "vid_spearman", "vid_topk"} <= set(at.dataframe[0].value.columns)
    widget(at, "multiselect", "eps").set_value(["0", "2/255", "8/255"]).run()
    assert_clean(at)
    assert charts(at)[0]["layout"]["xaxis"]["ticktext"] == ["0", "2/255", "8/255"]
    widget(at, "multiselect", "models").set_value(["tiny-cnn"]).run()
    assert {t["name"] for t in charts(at)[0]["data"] if t.get("name")} == {"tiny-cnn"}  # the control is off


def test_layers_page_uses_every_layer():
    at = app("pages/layers.py")
    assert_clean(at)
    heatmap, depth = charts(at)
    assert [t["y"] for t in heatmap["data"]] == [["block1", "block2", "block3"]] * 2
    lines = [t for t in depth["data"] if "floor" not in t["name"]]
    assert len(lines) == 2 * 2  # two models x two eps > 0
    floors = [t for t in depth["data"] if "random-weights floor" in t["name"] and t.get("fill") != "toself"]
    assert len(floors) == 2 * 2 and all(len(t["customdata"]) == 3 for t in floors)  # each model's floor in each panel
    bands = [t for t in depth["data"] if t.get("fill") == "toself"]
    assert len(bands) == 2 * 2 and all(len(t["y"]) == 2 * 3 for t in bands)  # its spread over 3 seeds, shaded


def test_methods_page():
    at = app("pages/methods.py")
    assert_clean(at)
    names = {t.get("name") for t in charts(at)[0]["data"]}
    assert {"gradcam", "gradcampp", "xgradcam", "layercam"} <= names
    widget(at, "multiselect", "m.methods").set_value(["gradcam", "hirescam"]).run()
    assert_clean(at)
    assert {t.get("name") for t in charts(at)[0]["data"]} - {None} == {"gradcam", "hirescam"}


def test_the_pages_tables_are_listed_as_runs_and_the_cache_names_models():
    at = app("pages/runs.py")
    assert_clean(at)
    runs, usage = at.dataframe[0].value, at.dataframe[1].value
    assert set(runs["models"]) >= {"tiny-cnn", "tiny-cnn2"}  # computed by the gallery the session opened on
    assert any(m.startswith("tiny-cnn ") for m in usage["model"])  # names, not bare weight digests


def test_runs_sweep_export_and_clear():
    at = app("pages/runs.py")
    assert_clean(at)
    next(b for b in at.button if b.key == "runs.start").click().run()
    deadline = time.monotonic() + TIMEOUT
    while not at.success and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    at.run()  # the finished sweep's st.rerun() changes widget ids under AppTest (see app()); settle them
    assert_clean(at)
    assert "Finished" in at.success[0].value
    assert not [b for b in at.button if b.key == "runs.cancel"]  # Cancel only while it runs, never beside this
    listed = at.dataframe[0].value
    assert (listed["models"] == "tiny-cnn, tiny-cnn2").sum() == 1  # the sweep: one run, both models
    assert len(listed) > 1  # and the tables the pages computed, one run each
    assert {b.label for b in at.get("download_button")} >= {"per image (Parquet)", "per image (CSV)", "report (HTML)"}
    widget(at, "checkbox", "runs.sure").check().run()
    next(b for b in at.button if b.key == "runs.clear").click().run()
    assert_clean(at)
    assert any("Cache cleared" in s.value for s in at.success)
    assert any("No run yet" in i.value for i in at.info)


# -- selection, URL and errors ------------------------------------------------------------------------------
def test_url_round_trip():
    at = app(target="label", eps1="4/255", layers="all", method="gradcampp")
    assert widget(at, "selectbox", "target").value == "label"
    assert widget(at, "select_slider", "eps1").value == "4/255"
    assert widget(at, "multiselect", "models").value == ["tiny-cnn", "tiny-cnn2"]
    assert widget(at, "radio", "layers").value == "all"
    widget(at, "selectbox", "target").set_value("clean-pred").run()
    assert at.query_params["target"] == "clean-pred"
    assert at.query_params["models"] == ["tiny-cnn", "tiny-cnn2"]
    widget(at, "selectbox", "target").set_value("pred").run()
    assert "target" not in at.query_params  # defaults stay out of the link
    again = app(**{k: v for k, v in at.query_params.items() if k not in TINY})
    assert widget(again, "select_slider", "eps1").value == "4/255"


def test_url_and_state_codec():
    values, problems = state.url_to_state({"n": ["x"], "models": ["a", "b"], "p.samples": ["5"], "zzz": ["1"]})
    assert values == {"models": ["a", "b"], "p.samples": "5"} and len(problems) == 1
    url = state.state_to_url({"n": 24, "models": ["a"], "eps1": "2/255", "p.sigma": 0.2}, {"p.sigma": 0.15})
    assert url == {"models": ["a"], "eps1": ["2/255"], "p.sigma": ["0.2"]}
    assert state.state_to_url({"classes": []}) == {}


def test_a_slow_method_says_its_cost_and_waits_for_a_click(monkeypatch):
    calls = []
    explain = gcdash.cams.explain
    monkeypatch.setattr(gcdash.cams, "explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    at = app(method="intgradcam", **{"p.steps": "12"})
    assert_clean(at)
    cost = "Integrated Grad-CAM makes 12 passes for each of 12 inputs (144 model passes"
    assert any(cost in w.value for w in at.warning)
    assert calls == [] and not image_urls(at)  # nothing computed before the click
    next(b for b in at.button if b.label == "Compute it").click().run()
    assert_clean(at)
    assert calls and image_urls(at)


def test_method_parameters_come_from_defaults():
    at = app(method="smoothgradcampp", **{"p.samples": "3"})
    assert_clean(at)
    assert widget(at, "number_input", "p.samples").value == 3
    assert {w.key for w in at.number_input} >= {"w.p.samples", "w.p.sigma", "w.p.seed"}
    assert at.query_params["p.samples"] == "3"


def test_bad_input_shows_an_error_box_not_a_traceback():
    at = app(eps=["0", "abc"])
    assert not at.exception
    assert any("abc" in e.value for e in at.error)
    at = app(models=["no-such-model"])
    assert not at.exception
    assert any("Pick at least one model" in w.value for w in at.warning)
    at = app(n="-3", seed="abc")
    assert_clean(at)
    assert widget(at, "number_input", "n").value == 1
    assert any("seed" in w.value for w in at.warning)
    at = app(source="folder", folder="/nonexistent/folder")
    assert not at.exception
    assert any("not found" in e.value for e in at.error)


def test_unloadable_model_is_an_error_box(monkeypatch):
    monkeypatch.setenv("GCDASH_OFFLINE", "1")
    at = app("pages/compare.py", models=["tiny-cnn", "vgg16"])
    assert not at.exception
    assert any("vgg16" in e.value for e in at.error)
    names = {t["name"] for t in charts(at)[0]["data"] if t.get("name")}
    assert names == {"tiny-cnn · fgsm", "tiny-cnn · noise"}, "the other model still shows"


def test_a_folder_of_other_classes_is_said_and_shows_the_flip_rate(tmp_path):
    import numpy as np
    from PIL import Image

    for name in ("astronaut", "coffee"):  # classes the tiny models do not have
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    at = app("pages/compare.py", source="folder", folder=str(tmp_path), classes=[])
    assert_clean(at)
    notes = [shown(i.value) for i in at.info]
    assert any("2 of the data's 2 classes are not classes of tiny-cnn (astronaut, coffee)" in n for n in notes)
    accuracy = next(c for c in charts(at) if "flip rate" in c["layout"]["title"]["text"])
    assert {a["text"] for a in accuracy["layout"]["annotations"]} == {"prediction flipped (no labels needed)"}


def test_typing_an_eps_adds_exactly_that_eps_and_chips_stay_sorted():
    at = app(eps=["8/255", "0", "4/255"])
    assert widget(at, "multiselect", "eps").value == ["0", "4/255", "8/255"]  # sorted, whatever the link's order
    next(t for t in at.text_input if t.key == "eps.add").input("3/255").run()
    assert_clean(at)
    assert widget(at, "multiselect", "eps").value == ["0", "3/255", "4/255", "8/255"]  # not 32/255
    next(t for t in at.text_input if t.key == "eps.add").input("2").run()
    assert any("above 1" in e.value for e in at.error)
    assert widget(at, "multiselect", "eps").value == ["0", "3/255", "4/255", "8/255"]


def test_user_text_cannot_inject_markdown():
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(buf, format="PNG")
    names = ["![b](http://127.0.0.1:8765/x.png).png", "[link](http://127.0.0.1:8765).png", "**x**.png"]
    at = app(source="upload")
    at.file_uploader[0].set_value([(name, buf.getvalue(), "image/png") for name in names]).run()
    at.run()
    assert_clean(at)
    text = info_texts(at)
    for raw in ("![b](", "[link](", "**x**"):
        assert raw not in text, f"{raw!r} reached the page's markdown unescaped"
    assert r"\!\[b\]\(http" in text and r"\*\*x\*\*" in text
    assert "![b](http://127.0.0.1:8765/x.png)" in shown(text)  # shown as written


def test_uploaded_images():
    import io

    import numpy as np
    from PIL import Image

    def png(seed: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        return buf.getvalue()

    at = app(source="upload")
    assert any("Upload" in i.value for i in at.info)
    files = [(f"img{i}.png", png(i), "image/png") for i in range(3)] + [("junk.png", b"not an image", "image/png")]
    at.file_uploader[0].set_value(files).run()
    at.run()
    assert not at.exception
    assert any("junk.png" in shown(w.value) for w in at.warning)
    assert len(image_urls(at)) == 3 * 6
    assert "true: unlabelled" in info_texts(at)  # as the CLI and every page say it


def info_texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_pages_sharing_a_table_do_no_new_model_work(monkeypatch):
    at = app("pages/compare.py")
    calls = []
    explain = gcdash.cams.explain
    monkeypatch.setattr(gcdash.cams, "explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    at.switch_page("pages/distributions.py").run()
    widget(at, "selectbox", "target").set_value("pred").run()  # unchanged value: same cells
    at.switch_page("pages/compare.py").run()
    assert_clean(at)
    assert calls == []
    widget(at, "multiselect", "eps").set_value(["0", "4/255", "8/255", "16/255"]).run()
    assert calls, "a new eps needs new cells"


def test_gallery_views_beside_the_cams():
    at = app()
    views = widget(at, "multiselect", "g.views")
    assert {"Guided Grad-CAM", "Counterfactual Grad-CAM"} <= set(views.options)  # options show the labels
    views.set_value(["gradient", "gradcam-cf"]).run()
    assert_clean(at)
    assert len(image_urls(at)) == 6 * (6 + 2 * 2)  # a clean and an adversarial map per view


# -- weights and preprocessing ----------------------------------------------------------------------------
def test_selection_carries_checkpoints_into_every_config():
    from gcdash.config import ModelSpec

    spec = ModelSpec("vgg16", "/ckpt/faces.pt", (("crop", False), ("class_names", "/ckpt/names.txt")))
    sel = state.Selection(models=("demo-vgg", "vgg16"), model_specs=(("vgg16", spec),))
    assert sel.spec("vgg16") == spec and sel.spec("demo-vgg") == ModelSpec("demo-vgg")
    assert sel.config("vgg16").models == (spec,)
    assert sel.config("vgg16").key() != state.Selection(models=("vgg16",)).config("vgg16").key()
    assert sel.sweep_configs()[0].models == (ModelSpec("demo-vgg"), spec)
    values, problems = state.url_to_state({"weights.vgg16": ["/ckpt/faces.pt"], "crop": ["0"]})
    assert values == {"weights.vgg16": "/ckpt/faces.pt", "crop": False} and not problems


def test_a_checkpoint_from_the_sidebar_is_the_model_the_gallery_uses(tmp_path):
    from gcdash import models
    from gcdash.models.checkpoint import save_checkpoint

    save_checkpoint(models.load("demo-vgg", weights=None), tmp_path / "random-vgg.safetensors")
    demo = {"models": ["demo-vgg"], "n": "12"}
    shipped = app(**demo)
    tuned = app(**demo, **{"weights.demo-vgg": str(tmp_path / "random-vgg.safetensors")})
    assert_clean(shipped)
    assert_clean(tuned)
    assert widget(tuned, "text_input", "weights.demo-vgg").value.endswith("random-vgg.safetensors")
    accuracy = {at: next(m.value for m in at.metric if m.label == "clean accuracy") for at in (shipped, tuned)}
    assert accuracy[shipped] == "100%" and accuracy[tuned] != "100%"


def test_a_missing_checkpoint_is_an_error_box_not_a_traceback(tmp_path):
    at = app(models=["demo-vgg"], n="4", **{"weights.demo-vgg": str(tmp_path / "nope.pt")})
    assert not at.exception
    assert any("nope.pt" in shown(e.value) and "not found" in e.value for e in at.error)


# -- first-hour defects, one test each ------------------------------------------------------------------------
def test_identical_methods_are_said_on_the_methods_page():
    """demo-resnet's default layer is followed by global average pooling and a linear head: Grad-CAM and
    XGrad-CAM give the same maps there, and the page says why their lines coincide."""
    at = app("pages/methods.py", models=["demo-resnet"], classes=[], n="4")
    widget(at, "multiselect", "m.methods").set_value(["gradcam", "xgradcam"]).run()
    assert_clean(at)
    assert any("Grad-CAM and XGrad-CAM give the same maps here" in c.value for c in at.caption)


def test_the_gallery_layer_box_says_where_more_layers_come_from():
    at = app()
    layer = next(s for s in at.selectbox if s.label == "Layer")
    assert len(layer.options) == 1 and "every layer" in layer.help  # only the default layer, and why


def test_enlarged_captions_do_not_repeat_their_title():
    at = app()
    widget(at, "multiselect", "g.views").set_value(["gradient"]).run()
    widget(at, "selectbox", "image").set_value(widget(at, "selectbox", "image").options[1]).run()
    assert_clean(at)
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs if img.caption]
    assert captions
    for caption in captions:
        head, _, rest = caption.partition(": ")
        assert not rest.startswith(head), caption  # not "gradient (clean): gradient (clean)"


def test_a_missing_folder_is_worded_for_the_sidebar_not_the_cli():
    at = app(source="folder", folder="/nonexistent/folder")
    errors = [e.value for e in at.error]
    assert errors and not any("folder:" in e for e in errors), errors


def test_an_upload_link_without_its_files_says_what_to_do():
    at = app("pages/compare.py", source="upload")
    assert_clean(at)
    assert any("Upload" in i.value for i in at.info)  # not an empty page
    assert not at.get("plotly_chart")


def test_the_transfer_page_pairs_every_model_and_its_diagonal_is_the_white_box_attack():
    at = app("pages/transfer.py")
    assert_clean(at)
    figures = charts(at)
    assert len(figures) == 2  # one per eps > 0
    acc, mod = figures[-1]["data"]  # 8/255: adversarial top-1 and MOD
    assert acc["y"] == ["tiny-cnn", "tiny-cnn2"] and acc["x"] == ["tiny-cnn", "tiny-cnn2"]
    gap = app("pages/compare.py").dataframe[0].value  # the white-box attack beside the noise control
    for i, name in enumerate(["tiny-cnn", "tiny-cnn2"]):
        white = gap[(gap["model"] == name) & (gap["eps"] == "8/255")]["mod"].item()
        assert mod["z"][i][i] == pytest.approx(white, abs=1e-12)  # the diagonal is the white-box MOD
    assert mod["z"][0][1] != pytest.approx(mod["z"][1][1])  # crafted on another model: another shift


def test_the_faithfulness_switch_reaches_the_tables_and_the_reading():
    at = app("pages/compare.py", faith="true")
    assert any("faithfulness makes 34 passes" in w.value for w in at.warning)  # its cost, asked before computing
    next(b for b in at.button if b.label == "Compute it").click().run()
    assert_clean(at)
    assert any("stay" in m.value and "faithful" in m.value for m in at.markdown)
    assert any("random weights sit at" in m.value for m in at.markdown)  # the floor, beside MOD
    plain = app("pages/compare.py")
    assert not any("faithful" in m.value for m in plain.markdown)


def test_a_damaged_run_table_is_an_error_box_not_a_download():
    from gcdash.store import Store

    at = app("pages/runs.py")
    assert_clean(at)
    store = Store()  # the session's cache ($GCDASH_CACHE of this test)
    key = store.runs()[0]["key"]  # the newest run: the one the page offers first
    conn = store._conn()
    blob = bytearray(conn.execute("SELECT blob FROM runs WHERE key=?", (key,)).fetchone()[0])
    blob[len(blob) // 2] ^= 0x01
    with conn:
        conn.execute("UPDATE runs SET blob=? WHERE key=?", (bytes(blob), key))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [shown(e.value) for e in at.error]
    assert any("is damaged (its checksum does not match)" in e for e in errors), errors
    assert not at.get("download_button")


# -- small things in the pages (issue 18, 18b) -----------------------------------------------------------------
def test_the_overview_names_the_chosen_method():
    at = app(None, method="gradcampp")
    assert_clean(at)
    intro = [shown(c.value) for c in at.caption if "where the network looks" in c.value]
    assert intro and "here by Grad-CAM++)" in intro[0] and "Grad-CAM heatmap" not in intro[0]


def test_a_short_load_is_said_once_a_page(tmp_path):
    import numpy as np
    from PIL import Image

    for label, name in enumerate(FIVE[:2]):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), 60 * label + 20 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = {**TINY, "source": "folder", "folder": str(tmp_path), "classes": [], "n": "24"}
    at.run()  # the first view computes the table and the gallery row: both load the images
    assert_clean(at)
    said = [w.value for w in at.warning if "Asked for 24 images, the source gave 4" in shown(w.value)]
    assert len(said) == 1, said


def test_the_gallery_show_control_has_short_labels():
    at = app()
    show = widget(at, "button_group", "g.filter")
    assert show.options and sum(map(len, show.options)) <= len("all") + len("flipped") + len("kept")
    assert "kept" in show.help


def test_opening_an_image_in_the_gallery_says_the_gallery_eps_changed():
    at = app("pages/distributions.py")
    pick = widget(at, "selectbox", "dist.pick")
    pick.select_index(next(i for i, o in enumerate(pick.options) if " eps 4/255 " in o)).run()
    next(b for b in at.button if b.label == "Open in the gallery").click().run()
    assert_clean(at)
    assert widget(at, "select_slider", "eps1").value == "4/255"
    said = [shown(t.value) for t in [*at.sidebar.info, *at.toast]]
    assert any("Gallery eps set to 4/255 (was 8/255)" in s and "Overview" in s for s in said), said
    at.run()
    assert not [i for i in at.sidebar.info if "Gallery eps set" in i.value]  # said once


def test_the_precision_in_advanced_reaches_the_tables_and_a_cpu_offers_no_fp16():
    at = app(GALLERY, precision="bf16")
    assert widget(at, "selectbox", "precision").value == "bf16"
    assert "fp16" not in widget(at, "selectbox", "precision").options  # CUDA only: not offered on this CPU
    assert at.session_state["gcdash.selection"].config("tiny-cnn").precision == "bf16"
    assert_clean(at)
    refused = app(GALLERY, precision="fp16")
    assert widget(refused, "selectbox", "precision").value == "fp32"
    assert any("precision\\='fp16' is not among the choices; using 'fp32'" in w.value for w in refused.warning)


def test_compare_evaluates_the_worst_case_when_asked_with_its_budgets():
    at = app("pages/compare.py")
    worst_button = next(b for b in at.button if b.label.startswith("Evaluate the worst case"))
    assert "212 gradient passes per image and model" in worst_button.label  # 10 (PGD-10) + 2 × 101 (APGD)
    worst_button.click().run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "n_robust" in d.value.columns)
    assert list(table["attack"])[:4] == ["pgd", "apgd-ce", "apgd-dlr", "worst case"]
    for _, g in table.groupby("model"):
        assert g["accuracy"].iloc[3] <= g["accuracy"].iloc[:3].min()
    assert any("apgd-ce restarts=1 seed=0 steps=100" in c.value for c in at.caption)


def test_compare_moves_the_explanations_with_the_prediction_kept_when_asked():
    at = app("pages/compare.py")
    button = next(b for b in at.button if b.label.startswith("Attack the explanations"))
    assert "31 passes per image and model" in button.label  # FGSM on the clean pass, PGD 10, expl-topk 2·10 + 1
    button.click().run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "mod_kept" in d.value.columns and "floor" in d.value.columns)
    assert list(dict.fromkeys(table["attack"])) == ["fgsm", "pgd", "expl-topk", "noise"]
    expl = table[table["attack"] == "expl-topk"]
    assert (expl["kept"] >= 0.95).all() and expl["floor"].notna().all()
    assert any("With the prediction unchanged" in m.value for m in at.markdown)
    assert any(c.key == "cmp.fragility.chart" for c in at.get("plotly_chart"))


def test_the_compare_boxes_cover_every_model_when_layers_are_picked_per_model(monkeypatch):
    from gcdash.ui import run, state

    sel = state.Selection(models=("tiny-cnn", "tiny-cnn2"), layer_mode="custom",
                          custom_layers=(("tiny-cnn", ("block2",)), ("tiny-cnn2", ("block3",))))  # fmt: skip
    monkeypatch.setattr(run, "handles", lambda s: {name: None for name in s.models})
    config = run._default_layer_config(sel)
    assert [spec.name for spec in config.models] == ["tiny-cnn", "tiny-cnn2"]
    assert config.layers == "default" and config.eps == (0.0, sel.gallery_eps)
