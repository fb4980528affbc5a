"""Server start-up for ``streamlit run app.py`` (app.py is an ``st.App``): warm the slow imports, and open the
browser once the server answers, as Streamlit's classic server does when it is not headless (the ``st.App``
server prints the URL but opens no browser)."""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Callable, Sequence

from streamlit import config


def warm(names: Sequence[str]) -> None:
    """Import ``names``; whatever fails (a missing package, a broken CUDA library) is left for the page, which
    imports the same modules and shows the error where a person sees it."""
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def browser_url() -> str | None:
    """The URL to open for a person at this machine, or None when the server is headless."""
    if config.get_option("server.headless"):
        return None
    host = config.get_option("browser.serverAddress") or "localhost"
    port = config.get_option("browser.serverPort") or config.get_option("server.port")
    return f"http://{host}:{port}"


def open_when_up(url: str | None, timeout: float = 30.0, opener: Callable[[str], object] = webbrowser.open) -> None:
    """In the background: wait until ``url`` answers its health check, then open it (nothing when ``url`` is None
    or the server does not come up within ``timeout`` seconds)."""
    if url is None:
        return

    def wait_then_open() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as reply:
                    if reply.status == 200:
                        opener(url)
                        return
            except OSError:
                time.sleep(0.2)

    threading.Thread(target=wait_then_open, name="gcdash-open-browser", daemon=True).start()
