"""First-hour timings in a real browser: what a new user waits for, from click to the page settled.

``streamlit run app.py`` (the README's command) on a free port with an empty cache, Chromium through Playwright,
the default selection. Each figure is the time from the action to the end of the script run it started (the
``data-test-script-state`` of Streamlit's app root, recorded by a MutationObserver in the page) and the expected
content on screen, so Playwright's polling does not add to it.

1. cold: a fresh server, empty cache, the landing page (Overview) with its gallery row, opened as soon as the
   server answers its health check (and the time from the command to that view);
2. a new browser session on the now warm cache (Overview again, in a new context);
3. Gallery opened from there (warm);
4. a warm layer change in the Gallery (every layer selected, each layer viewed once before);
5. a warm model added on Compare models (a model computed before, added back to the selection);
6. display-only: the Gallery's colormap (no model pass, no store read).

The issue's aims: first view ≤ 5 s, new session ≤ 2 s, warm what-if ≤ 1 s. Run alone:
``python bench/bench_browser.py [--repeat 3]``. Needs /usr/bin/chromium. Not part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "ui")]

from test_browser import ARGS, CHROMIUM, serve  # noqa: E402  (the browser test's server fixture, as a function)

WAIT_MS = 240_000
RECORD = """
window.__states = [];
new MutationObserver(() => {
  const root = document.querySelector('[data-testid="stApp"]');
  if (root) window.__states.push([performance.now(), root.getAttribute('data-test-script-state')]);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""
SETTLED = """([since, selector, count]) => {
  const s = window.__states.filter(([t]) => t >= since);
  const ran = s.some(([, v]) => v === 'running');
  const last = s.length ? s[s.length - 1][1] : null;
  return ran && last === 'notRunning' && document.querySelectorAll(selector).length >= count
    && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
IMAGES = '[data-testid="stImage"] img'


def now(page) -> float:
    return page.evaluate("performance.now()")


def settled(page, since: float, selector: str = "body", count: int = 1) -> float:
    """Seconds from ``since`` (page clock) to the run's end with ``selector`` shown ``count`` times."""
    page.wait_for_function(SETTLED, arg=[since, selector, count], timeout=WAIT_MS, polling=50)
    end = page.evaluate("([since]) => window.__states.filter(([t]) => t >= since).at(-1)[0]", [since])
    return (end - since) / 1000


def open_page(context, url: str, selector: str) -> tuple[object, float]:
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(RECORD)
    page.goto(url)
    return page, settled(page, 0.0, selector)


def act(page, action, selector: str = "body", count: int = 1) -> float:
    since = now(page)
    action()
    return settled(page, since, selector, count)


class Timings(dict):
    """Timings by name, each printed as it is measured."""

    def __setitem__(self, name: str, seconds: float) -> None:
        print(f"  {name:32s} {seconds:6.2f}", flush=True)
        super().__setitem__(name, seconds)


def choose(page, label: str, option: str | int) -> None:
    page.get_by_role("combobox", name=label, exact=True).click()
    options = page.get_by_role("option")
    (options.nth(option) if isinstance(option, int) else page.get_by_role("option", name=option, exact=True)).click()


def nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()


def once(browser, folder: Path) -> dict[str, float]:
    times = Timings()
    started = time.monotonic()
    with serve(folder) as url:
        times["server start to healthy"] = time.monotonic() - started
        first = browser.new_context(viewport={"width": 1440, "height": 2000})
        _, times["cold first view (Overview)"] = open_page(first, url, IMAGES)
        times["command to first view"] = time.monotonic() - started
        first.close()

        context = browser.new_context(viewport={"width": 1440, "height": 2000})
        page, times["new session, warm cache"] = open_page(context, url, IMAGES)
        times["Gallery from there"] = act(page, lambda: nav(page, "Gallery"), IMAGES, 8)
        times["display only (colormap)"] = act(page, lambda: choose(page, "Colormap", "viridis"), IMAGES, 8)

        page.goto(f"{url}/gallery?layers=all")  # every layer: compute them all once, view two of them once
        settled(page, 0.0, IMAGES, 8)
        act(page, lambda: choose(page, "Layer", 0), IMAGES, 8)
        act(page, lambda: choose(page, "Layer", 1), IMAGES, 8)
        times["warm layer change (Gallery)"] = act(page, lambda: choose(page, "Layer", 0), IMAGES, 8)

        page.goto(f"{url}/compare?models=demo-vgg&models=demo-resnet&models=demo-inception")
        settled(page, 0.0, '[data-testid="stPlotlyChart"]')
        page.goto(f"{url}/compare")  # the default two models
        settled(page, 0.0, '[data-testid="stPlotlyChart"]')
        add = page.locator('[data-testid="stMultiSelect"]', has_text="demo-vgg").first

        def add_model() -> None:
            add.click()
            page.get_by_role("option", name="demo-inception (demo)", exact=True).click()
            page.keyboard.press("Escape")

        times["warm model added (Compare)"] = act(page, add_model, '[data-testid="stPlotlyChart"]')
        context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="fresh servers, each with an empty cache")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    runs: list[dict[str, float]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as folder:
                runs.append(once(browser, Path(folder)))
        browser.close()
    print(f"first-hour timings, seconds (median of {len(runs)} fresh server(s), each with an empty cache)")
    for name in runs[0]:
        values = [r[name] for r in runs]
        print(f"  {name:32s} {statistics.median(values):6.2f}   ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
