"""Links: every page under a link whose text values are hostile (markdown images and links, HTML, ``javascript:``),
and what a link's bad values are said to be on the very first view.

Streamlit renders markdown in text, captions, alerts, labels and help, so a value that reaches them unescaped can
make the browser fetch a URL (``![x](http://…)``) or show a link. Every such element of every page must hold the
hostile text only backslash-escaped (:func:`gcdash.ui.text.plain`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from gcdash.ui import page, state

APP = str(Path(__file__).resolve().parents[2] / "dashboard.py")
TIMEOUT = 240
PAGES = [path for path, _, _ in page.PAGES]
HOSTILE = "![x](http://127.0.0.1:1/x.png) <img src=http://127.0.0.1:1/y.png> [a](javascript:alert(1)) **b**"
#: what must never reach the page's markdown unescaped (each comes from HOSTILE only)
MARKERS = ("![x]", "](http", "<img", "javascript:", "](javascript", "**b**")
MARKDOWN_TYPES = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success", "toast"}

pytestmark = pytest.mark.timeout(900)


def first_view(query: dict, page_file: str | None = None) -> AppTest:
    """A fresh session on ``query`` after its first run (on ``page_file``: after the switch's first run too)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = query
    at.run()
    if page_file is not None:
        at.switch_page(page_file).run()
    return at


def rendered_markdown(at: AppTest) -> list[str]:
    """Every text of the page that Streamlit renders as markdown: text elements and alerts, widget labels and
    help, expander labels."""
    texts = []
    for node in [*at.main, *at.sidebar]:
        if getattr(node, "type", None) in MARKDOWN_TYPES:
            texts.append(node.value)
        texts += [t for t in (getattr(node, "label", None), getattr(node, "help", None)) if isinstance(t, str)]
        expandable = getattr(getattr(node, "proto", None), "expandable", None)
        if expandable is not None and expandable.label:
            texts.append(expandable.label)
    return texts


def assert_escaped(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    texts = rendered_markdown(at)
    assert texts
    for text in texts:
        literal = re.sub(r"\\.", "", text)  # what is left once the escaped characters are taken out
        found = [m for m in MARKERS if m in literal]
        assert not found, f"{found} reached the page's markdown unescaped in {text!r}"


def hostile_values(**valid) -> dict:
    """A hostile value in every text parameter of the selection (lists get one among ``valid``'s values)."""
    query: dict = {}
    for key, param in state.PARAMS.items():
        if isinstance(param.default, list | tuple):
            query[key] = [*valid.get(key, []), HOSTILE]
        elif not isinstance(param.default, bool | int):
            query[key] = valid.get(key, HOSTILE)
    return {**query, "n": HOSTILE, "seed": HOSTILE, "faith": HOSTILE, "crop": HOSTILE}


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> str:
    """An image folder (classes the tiny models know) whose path is the hostile text."""
    root = str(tmp_path_factory.mktemp("links")) + "/" + HOSTILE
    for label, name in enumerate(("circle", "square")):
        Path(root, name).mkdir(parents=True)
        for i in range(2):
            pixels = np.full((32, 32, 3), 60 * label + 20 * i, np.uint8)
            Image.fromarray(pixels).save(Path(root, name, f"{i}.png"))
    return root


@pytest.mark.parametrize("page_file", PAGES)
def test_every_sidebar_value_is_escaped_on_every_page(page_file):
    """Every parameter hostile (the pages stop where no model loads): what the sidebar says of each is escaped."""
    plain_methods = hostile_values(models=["tiny-cnn"])
    with_params = {
        **plain_methods, "method": "intgradcam", "attack": "pgd", "p.steps": HOSTILE, "p.authors": HOSTILE,
        "a.pgd.steps": HOSTILE, "a.pgd.random_start": HOSTILE, "a.pgd.source": HOSTILE,
    }  # fmt: skip
    for query in (plain_methods, with_params):
        at = first_view({**query, "weights.tiny-cnn": HOSTILE, "layers.tiny-cnn": HOSTILE}, page_file)
        assert_escaped(at)
        at.run()
        assert_escaped(at)
        assert any("link parameter" in w.value for w in at.sidebar.warning)


@pytest.mark.parametrize("page_file", PAGES)
def test_a_hostile_folder_path_and_values_are_escaped_on_every_page(page_file, hostile_folder):
    """The pages compute on a folder whose path is hostile, with hostile values wherever the view still works."""
    query = hostile_values(models=["tiny-cnn", "tiny-cnn2"], source="folder")
    query.update(folder=hostile_folder, eps=["0", "8/255"], n="4", seed="0", faith="0", crop="1")
    query["a.fgsm.source"] = HOSTILE
    at = first_view(query, page_file)
    at.run()
    assert_escaped(at)
    assert not at.error, [e.value for e in at.error]
    shown = [re.sub(r"\\(.)", r"\1", t) for t in rendered_markdown(at)]
    assert any(HOSTILE in t for t in shown), "the hostile values are said (escaped), not dropped"
    if page_file == "pages/runs.py":
        assert any(hostile_folder in t for t in shown), "the folder path is shown as written"


# -- a link's bad values, said on the first view ----------------------------------------------------------------
SMALL = {"models": ["tiny-cnn"], "classes": ["circle", "square", "triangle", "star", "cross"], "n": "4"}


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"n": "1e9"}, "n='1e9' is not valid; using 24"),
        ({"faith": "maybe"}, "faith='maybe' is not valid; using off"),
        ({"n": "999999999"}, "n=999999999 is above the largest allowed; using 5000"),
        ({"method": "nope"}, "method='nope' is not among the choices; using 'gradcam'"),
        ({"models": ["tiny-cnn", "nope"]}, "models: 'nope' not among the choices; left out"),
        ({"models": ["tiny-cnn", "py:/tmp/x.py:build"]}, "models: 'py:/tmp/x.py:build' not among the choices; left"),
    ],
)
def test_bad_link_values_are_said_on_the_first_view(query, said):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = {**SMALL, **query}
    at.run()
    assert any(said in w for w in sidebar_warnings(at)), sidebar_warnings(at)
    at.run()
    assert sum(said in w for w in sidebar_warnings(at)) == 1  # still said, once


def sidebar_warnings(at: AppTest) -> list[str]:
    """The sidebar's warnings as a person reads them (the link's text is backslash-escaped)."""
    return [re.sub(r"\\(.)", r"\1", w.value) for w in at.sidebar.warning]


def test_a_value_in_range_or_picked_later_is_not_a_link_problem():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params = {**SMALL, "method": "gradcampp"}
    at.run()
    assert not [w.value for w in at.sidebar.warning if "link parameter" in w.value]


def test_a_link_may_name_a_library_model_and_the_operators_models_file_adds_own_code(tmp_path, monkeypatch):
    builder = tmp_path / "mine.py"
    builder.write_text("from torch import nn\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),"
                       " nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n")  # fmt: skip
    (tmp_path / "models.txt").write_text(f"py:{builder}:build\n")
    monkeypatch.setenv("GCDASH_MODELS_FILE", str(tmp_path / "models.txt"))
    page.operator_models.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params = {**SMALL, "models": ["tiny-cnn", "tv:resnet18", f"py:{builder}:build"]}
        at.run()
        picker = at.multiselect(key="w.models")
        assert picker.value == ["tiny-cnn", "tv:resnet18", f"py:{builder}:build"], sidebar_warnings(at)
        assert "timm:convnext_tiny" in picker.options and not sidebar_warnings(at)
    finally:
        page.operator_models.clear()
