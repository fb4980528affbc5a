"""gcdash dashboard: how adversarial attacks move CNN explanations (Chakraborty et al., CVPRW 2022).

The router, the script every session runs: page config, navigation over the page files in ``pages/`` (listed in
:func:`gcdash.ui.page.pages`), and the shared sidebar, whose selection lives in session state and in the URL.
``streamlit run app.py`` serves it (app.py loads the heavy libraries before the server opens).
"""

import streamlit as st

from gcdash.ui import page

page.configure()
current = st.navigation(page.pages())
page.frame()
current.run()
