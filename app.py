"""gcdash dashboard: how FGSM attacks move CNN explanations (Chakraborty et al., CVPRW 2022).

The router: page config, navigation over the page files in ``pages/`` (Gallery, Distributions, Compare models,
Layers, Methods, Runs; listed in :func:`gcdash.ui.page.pages`), and the shared sidebar, whose selection lives in
session state and in the URL. Run with ``streamlit run app.py``.
"""

import streamlit as st

from gcdash.ui import page

page.configure()
current = st.navigation(page.pages())
page.frame()
current.run()
