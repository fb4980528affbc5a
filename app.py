"""gcdash dashboard: how adversarial attacks move CNN explanations (Chakraborty et al., CVPRW 2022).

Run with ``streamlit run app.py``. This file is the server: a Streamlit ``st.App`` serving the router script
``dashboard.py`` (every session runs it), with a start-up hook that imports torch, pytorch-grad-cam (which brings
torchvision and scikit-learn) and gcdash's pages' modules before the server accepts its first connection, then
opens the browser when the server answers (unless headless). Those imports are about 3.5 s on a laptop CPU;
without the hook the first visitor would wait for them.
"""

import contextlib
from collections.abc import AsyncIterator

import streamlit as st

from gcdash.ui import serve

#: What the first page needs that is slow to import, loaded once when the server starts.
WARM = ("torch", "pytorch_grad_cam", "gcdash.cams", "gcdash.engine", "gcdash.plots", "gcdash.ui.run")


@contextlib.asynccontextmanager
async def warm_up(_app: st.App) -> AsyncIterator[None]:
    """Import :data:`WARM` before the server opens; open a browser tab once it is up."""
    serve.warm(WARM)
    serve.open_when_up(serve.browser_url())
    yield


app = st.App("dashboard.py", lifespan=warm_up)
