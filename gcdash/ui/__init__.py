"""The dashboard's support code: the only part of gcdash that imports streamlit.

- :mod:`gcdash.ui.state`: the sidebar selection (:class:`~gcdash.ui.state.Selection`) and its URL codec (pure).
- :mod:`gcdash.ui.sidebar`: the shared sidebar widgets and the URL round trip.
- :mod:`gcdash.ui.cache`: ``st.cache_resource`` (models, the store) and ``st.cache_data`` (samples, tables, views).
- :mod:`gcdash.ui.compute`: the compute path of the pages, without streamlit (tables, gallery data, sweep jobs).
- :mod:`gcdash.ui.run`: that compute path with progress bars and error boxes, for the pages.
- :mod:`gcdash.ui.images`: numpy → displayable images (CAM overlays, differences, amplified perturbations).
- :mod:`gcdash.ui.page`: page scaffolding (error guard, page registry).
"""
