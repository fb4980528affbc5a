"""A real browser against ``streamlit run app.py``: every page draws (images, plotly charts), no exception box,
the main controls work, the URL restores the selection, and each page leaves a screenshot.

Screenshots go to this test's tmp folder, and also to ``$GCDASH_SCREENSHOTS`` (e.g. ``docs/screenshots``) when
set, shrunk to a palette PNG for the README. Needs Debian's Chromium at /usr/bin/chromium (Playwright's own
browser download is not used): a missing browser fails the test when ``CI=true`` and skips it otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcdash.ui.state import DEFAULT_MODELS

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A smaller selection than the default keeps the cold-cache run short; every page still has real content.
QUERY = "n=16&eps=0&eps=2%2F255&eps=4%2F255&eps=8%2F255"
WORK_TIMEOUT_MS = 240_000  # cold-cache model work on a busy 2-core CPU
UI_TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_demo_weights() -> None:
    from gcdash.models import demo

    missing = [name for name in DEFAULT_MODELS if not demo.weights_path(name).is_file()]
    if missing:
        pytest.fail(f"no shipped weights for {', '.join(missing)}: run `python -m gcdash train-demo`")


STREAMLIT_FLAGS = {
    "server.headless": "true",
    "browser.gatherUsageStats": "false",
    "server.fileWatcherType": "none",
    "client.toolbarMode": "viewer",
}


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``streamlit run app.py`` on a free port with an empty cache under ``folder``; yields its base URL."""
    _require_chromium()
    _require_demo_weights()
    port = _free_port()
    flags = [arg for k, v in {**STREAMLIT_FLAGS, "server.port": str(port)}.items() for arg in (f"--{k}", v)]
    env = {**os.environ, "GCDASH_CACHE": str(folder / "cache")}
    with (folder / "streamlit.log").open("w") as log:
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", *flags]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("server")) as url:
        yield url


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not start")


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    tab = context.new_page()
    tab.set_default_timeout(UI_TIMEOUT_MS)
    yield tab
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    """Where screenshots go: the test's tmp folder, plus ``$GCDASH_SCREENSHOTS`` when set."""
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("GCDASH_SCREENSHOTS"):
        folders.append(ROOT / os.environ["GCDASH_SCREENSHOTS"])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


# -- helpers ------------------------------------------------------------------------------------------------
def idle(page) -> None:
    """Wait for the script run the last action started to finish (the status widget comes and goes)."""
    page.wait_for_timeout(400)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=WORK_TIMEOUT_MS)
    page.wait_for_timeout(300)


def no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def visit(page, server: str, title: str) -> None:
    """Open a page through the sidebar navigation and wait for its content."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.wait_for_selector(f'h1:has-text("{title}")', timeout=WORK_TIMEOUT_MS)
    idle(page)


PROBLEM = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def appears(page, selector: str) -> None:
    """Wait for ``selector``; an error or exception box that shows up first fails the test with its text."""
    page.wait_for_selector(f"{selector}, {PROBLEM}", timeout=WORK_TIMEOUT_MS)
    problems = page.locator(PROBLEM)
    assert problems.count() == 0, problems.first.inner_text()


def charts_drawn(page, n: int) -> None:
    appears(page, '[data-testid="stPlotlyChart"]')
    drawn = "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot .main-svg').length"
    page.wait_for_function(f"{drawn} >= {2 * n}", timeout=WORK_TIMEOUT_MS)  # two svg layers per chart
    idle(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= n


def choose(page, label: str, option: str | int) -> None:
    """Pick ``option`` (a name, or a position in the list) in the selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label, exact=True).click()
    options = page.get_by_role("option")
    (options.nth(option) if isinstance(option, int) else page.get_by_role("option", name=option, exact=True)).click()
    idle(page)


def screenshot(page, shots: list[Path], name: str) -> None:
    from PIL import Image

    raw = shots[0] / f"{name}.png"
    page.screenshot(path=str(raw))
    for folder in shots[1:]:  # README copies: a 256-colour palette keeps them small
        with Image.open(raw) as image:
            image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                folder / f"{name}.png", optimize=True
            )


# -- the test -----------------------------------------------------------------------------------------------
def test_every_page_in_a_browser(server, page, shots):
    page.goto(f"{server}/?{QUERY}")
    page.wait_for_selector('h1:has-text("What an attack does to the explanations")', timeout=WORK_TIMEOUT_MS)
    appears(page, '[data-testid="stImage"] img')
    idle(page)
    no_exception(page)
    assert page.locator('[data-testid="stMetric"]').count() == 2  # the landing page: a MOD card per model
    # the ranking sentence: a winner outside the bootstrap bands, else "no clear difference" (16 images: often so)
    assert page.get_by_text("moved least").count() + page.get_by_text("No clear difference").count() >= 1
    screenshot(page, shots, "overview")

    visit(page, server, "Gallery")
    appears(page, '[data-testid="stImage"] img')
    idle(page)
    assert page.locator('[data-testid="stImage"] img').count() >= 8 * 6
    assert "n=16" in page.url
    screenshot(page, shots, "gallery")

    choose(page, "Colormap", "viridis")
    page.get_by_role("radio", name="flipped", exact=True).click()
    idle(page)
    choose(page, "Enlarge one image", 1)
    no_exception(page)
    assert "image=" in page.url

    visit(page, server, "Distributions")
    charts_drawn(page, 1)
    no_exception(page)
    screenshot(page, shots, "distributions")
    page.get_by_role("radio", name="ecdf", exact=True).click()
    idle(page)
    charts_drawn(page, 1)
    page.get_by_role("button", name="Open in the gallery").click()
    page.wait_for_selector('h1:has-text("Gallery")', timeout=WORK_TIMEOUT_MS)
    idle(page)
    no_exception(page)
    assert "image=" in page.url

    visit(page, server, "Compare models")
    charts_drawn(page, 4)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    no_exception(page)
    screenshot(page, shots, "compare")
    with page.expect_download(timeout=WORK_TIMEOUT_MS) as download:
        page.get_by_role("button", name="report (HTML)").click()
    sent = shots[0] / "report.html"
    download.value.save_as(sent)
    reader = page.context.new_page()
    reader.goto(sent.as_uri())
    reader.wait_for_selector('h2:has-text("What we found")')
    reader.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8")  # drawn offline
    assert reader.locator(".row figure img").count() >= 2 * 4
    assert "How FGSM moves the explanations of demo-vgg and demo-resnet" in reader.title()
    screenshot(reader, shots, "report")
    reader.close()

    visit(page, server, "Layers")
    charts_drawn(page, 2)
    no_exception(page)
    screenshot(page, shots, "layers")

    visit(page, server, "Methods")
    charts_drawn(page, 2)
    no_exception(page)
    screenshot(page, shots, "methods")

    visit(page, server, "Transfer attacks")
    charts_drawn(page, 3)  # one matrix per eps > 0
    no_exception(page)
    screenshot(page, shots, "transfer")

    visit(page, server, "Runs")
    page.get_by_role("button", name="Start sweep").click()
    appears(page, '[data-testid="stAlertContentSuccess"]:has-text("Finished")')
    idle(page)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    no_exception(page)
    screenshot(page, shots, "runs")


def test_a_link_restores_the_selection(tmp_path, page):
    """A shared link opened as a fresh server's first request (Streamlit's legacy pages/ mode) still works."""
    with serve(tmp_path) as fresh:
        page.goto(f"{fresh}/compare?{QUERY}&models=demo-resnet&target=clean-pred")
        charts_drawn(page, 4)
        no_exception(page)
        assert page.locator('[data-testid="stSidebarNav"] a', has_text="Compare models").count() == 1
        models = page.locator('[data-testid="stMultiSelect"]', has_text="demo-resnet")
        assert models.count() >= 1 and "demo-vgg" not in models.first.inner_text()
        assert page.get_by_role("combobox", name="Target policy", exact=True).input_value() == "clean-pred"
        assert page.locator('[data-testid="stNumberInput"] input').first.input_value() == "16"
        assert "target=clean-pred" in page.url
        assert all(f"eps={e}" in page.url for e in ("2%2F255", "4%2F255", "8%2F255"))  # repeated parameters kept


def test_the_first_click_on_a_deep_linked_page_of_a_fresh_server_counts(tmp_path, page):
    """A fresh server's first request, a deep link to Runs: one click on Start sweep starts the sweep (it used to
    be lost: the first run's widget ids, from Streamlit's legacy pages/ mode, differ from the router's)."""
    with serve(tmp_path) as fresh:
        page.goto(f"{fresh}/runs?n=4&eps=0&eps=8%2F255&models=demo-vgg")
        appears(page, 'button:has-text("Start sweep")')
        idle(page)
        page.get_by_role("button", name="Start sweep").click()
        started = 'button:has-text("Cancel"), [data-testid="stAlertContentSuccess"]:has-text("Finished")'
        page.wait_for_selector(f"{started}, {PROBLEM}", timeout=60_000)
        appears(page, '[data-testid="stAlertContentSuccess"]:has-text("Finished")')
        no_exception(page)
