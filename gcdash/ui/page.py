"""Page scaffolding: the page list, the frame the router (dashboard.py) draws around
every page, and the error guard.

A page gets the sidebar's selection from :func:`selection`. Normally the router has drawn the sidebar earlier in the
same run (:func:`frame`). Streamlit can also run a file of ``pages/`` on its own: a ``pages/`` folder turns on its
legacy multipage mode until ``st.navigation`` first runs in the process (so for the first deep link a fresh
server gets, and under ``AppTest.switch_page``). Then :func:`selection` does what the router does: it sets up the
navigation (which leaves the legacy mode for good) and draws the frame, so every page works either way.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from gcdash.errors import GcdashError
from gcdash.ui import run, sidebar, values
from gcdash.ui.state import Selection
from gcdash.ui.text import plain

log = logging.getLogger("gcdash.ui")
GALLERY = "pages/gallery.py"  # the target of "open in gallery" links
ROUTED = "gcdash.routed"
_router_ran = False  # has the router's router run in this process? (until it has, Streamlit runs page files alone)


def configure() -> None:
    st.set_page_config(page_title="gcdash", page_icon=":material/blur_on:", layout="wide")
    try:
        operator_models()
    except GcdashError as err:
        st.error(f"Models file: {err}", icon=":material/error:")


@st.cache_resource(show_spinner=False)
def operator_models() -> tuple[str, ...]:
    """The models the operator's models file names (own code included), registered once per server process."""
    from gcdash.models import own

    return tuple(own.read_models_file())


PAGES = [  # (file, title, icon), in menu order; the first is the default
    ("pages/overview.py", "Overview", ":material/auto_stories:"),
    ("pages/gallery.py", "Gallery", ":material/photo_library:"),
    ("pages/distributions.py", "Distributions", ":material/bar_chart:"),
    ("pages/compare.py", "Compare models", ":material/compare_arrows:"),
    ("pages/layers.py", "Layers", ":material/layers:"),
    ("pages/methods.py", "Methods", ":material/science:"),
    ("pages/transfer.py", "Transfer attacks", ":material/swap_horiz:"),
    ("pages/runs.py", "Runs", ":material/play_circle:"),
]


def pages() -> list[st.Page]:
    """The dashboard's pages, in menu order (the first is the default)."""
    return [st.Page(path, title=title, icon=icon, default=i == 0) for i, (path, title, icon) in enumerate(PAGES)]


def frame() -> None:
    """The shared sidebar (a problem in it shows as an error box, and the page still runs)."""
    global _router_ran
    _router_ran = True
    with guard():
        sidebar.render()
    st.session_state[ROUTED] = True


def selection() -> Selection:
    """The sidebar's selection for this run, drawing the frame first when the router did not run.

    Streamlit runs a page file on its own for a fresh server's first deep link, before the router ever ran. The widgets
    of such a run get other ids than the router's, so a click on one (the first "Start sweep" of a link to Runs)
    would be lost on the next run; so that run reads the link into the session, sets up the navigation and runs the
    same page again through it at once (the router's run writes the link back). AppTest runs switched-to pages on
    their own after the router: those draw the frame here.
    """
    if not st.session_state.pop(ROUTED, False):
        configure()
        listed = pages()
        st.navigation(listed)
        if not _router_ran:
            values.values()  # read the whole link into the session first: switching drops repeated parameters
            st.switch_page(_running_page(listed, sys._getframe(1).f_globals.get("__file__", "")))
        frame()
        st.session_state.pop(ROUTED, None)
    return run.current_selection()


def _running_page(listed: list[st.Page], file: str) -> st.Page:
    """The listed page of the page file ``file`` (the default page when none matches)."""
    return next((p for (path, _, _), p in zip(PAGES, listed) if Path(path).name == Path(file).name), listed[0])


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a user error (:class:`GcdashError`) as a one-line ``st.error``; any other exception as an error box
    with a short message (the traceback goes to the server log). Streamlit's stop and rerun pass through."""
    try:
        yield
    except GcdashError as err:
        st.error(plain(err), icon=":material/error:")
    except Exception as err:
        log.exception("page failed")
        st.error(
            f"Something went wrong ({type(err).__name__}: {plain(err)}). The server log has the details.",
            icon=":material/error:",
        )
