"""Page scaffolding: the page list, the frame app.py draws around every page, and the error guard.

A page gets the sidebar's selection from :func:`selection`. Normally app.py has drawn the sidebar earlier in the
same run (:func:`frame`). Streamlit can also run a file of ``pages/`` on its own: a ``pages/`` folder turns on its
legacy multipage mode until ``st.navigation`` first runs in the process (so for the first deep link a fresh
server gets, and under ``AppTest.switch_page``). Then :func:`selection` does what app.py does: it sets up the
navigation (which leaves the legacy mode for good) and draws the frame, so every page works either way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import streamlit as st

from gcdash.errors import GcdashError
from gcdash.ui import run, sidebar
from gcdash.ui.state import Selection
from gcdash.ui.text import plain

log = logging.getLogger("gcdash.ui")
GALLERY = "pages/gallery.py"  # the target of "open in gallery" links
ROUTED = "gcdash.routed"


def configure() -> None:
    st.set_page_config(page_title="gcdash", page_icon=":material/blur_on:", layout="wide")


def pages() -> list[st.Page]:
    """The dashboard's pages, in menu order (the first is the default)."""
    return [
        st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:", default=True),
        st.Page("pages/distributions.py", title="Distributions", icon=":material/bar_chart:"),
        st.Page("pages/compare.py", title="Compare models", icon=":material/compare_arrows:"),
        st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
        st.Page("pages/methods.py", title="Methods", icon=":material/science:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/play_circle:"),
    ]


def frame() -> None:
    """The shared sidebar (a problem in it shows as an error box, and the page still runs)."""
    with guard():
        sidebar.render()
    st.session_state[ROUTED] = True


def selection() -> Selection:
    """The sidebar's selection for this run, drawing the frame first when app.py did not run."""
    if not st.session_state.pop(ROUTED, False):
        configure()
        st.navigation(pages())
        frame()
        st.session_state.pop(ROUTED, None)
    return run.selection()


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
