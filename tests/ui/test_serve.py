"""Server start-up: warming imports never fails the server, and the browser opens once the server answers, only
when it is not headless."""

from __future__ import annotations

import http.server
import threading
import time

from streamlit import config

from gcdash.ui import serve


def test_warming_survives_a_module_that_cannot_import():
    serve.warm(["json", "no_such_module_anywhere", "gcdash.metrics"])  # no exception


def test_no_browser_for_a_headless_server(monkeypatch):
    monkeypatch.setattr(config, "get_option", lambda name: {"server.headless": True}.get(name))
    assert serve.browser_url() is None
    opened = []
    serve.open_when_up(None, opener=opened.append)
    assert opened == []


def test_the_browser_opens_when_the_server_answers(monkeypatch):
    options = {"server.headless": False, "browser.serverAddress": "127.0.0.1", "browser.serverPort": 0}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/_stcore/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options["browser.serverPort"] = server.server_address[1]
        monkeypatch.setattr(config, "get_option", options.get)
        url = serve.browser_url()
        assert url == f"http://127.0.0.1:{server.server_address[1]}"
        opened = []
        serve.open_when_up(url, timeout=10, opener=opened.append)
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened == [url]
    finally:
        server.shutdown()
