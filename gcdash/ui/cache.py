"""Streamlit's caches over the engine (DESIGN.md section 4).

- ``st.cache_resource``: loaded model handles (one per name, weights and device, shared by every session; the
  handle's lock serialises model passes) and the store (thread-safe).
- ``st.cache_data``: samples, per-image tables, gallery data and extra views, keyed by the sweep config's key,
  the store's root and the device. Arguments with a leading underscore are not hashed: the key stands for them.

Tables are read through the engine, so a miss here on a warm store costs cache reads, not model passes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import streamlit as st

from gcdash import data, metrics, plan
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.data import Samples
from gcdash.engine import Gallery
from gcdash.models.handle import ModelHandle
from gcdash.store import Store, default_root
from gcdash.ui import compute


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def model(name: str, weights: str | None, device: str, options: tuple = ()) -> ModelHandle:
    """The handle of model ``name`` with ``weights`` and build ``options`` (pairs) on ``device`` (errors are not
    cached: a fixed problem loads next time)."""
    return plan.load_handle(ModelSpec(name, weights, options), device)


def handle(spec: ModelSpec, device: str) -> ModelHandle:
    """The handle a :class:`~gcdash.config.ModelSpec` names, on ``device``."""
    return model(spec.name, spec.weights, device, spec.options)


@st.cache_resource(max_entries=4)
def _store(root: str) -> Store:
    return Store(root)


def store() -> Store:
    """The store at ``$GCDASH_CACHE`` (or the repository's cache/), one per root per process."""
    return _store(str(default_root()))


def data_key(config: DataConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, default=str)


@st.cache_data(max_entries=16, show_spinner="Loading images…")
def _samples(key: str, _config: DataConfig) -> Samples:
    loaded = data.load(_config.source, n=_config.n, seed=_config.seed, **dict(_config.options))
    return replace(loaded, images=list(loaded.images))  # the dashboard's small subsets stay decoded in memory


def samples(config: DataConfig) -> Samples:
    """The images of ``config`` (a registered source: demo, folder:PATH, …)."""
    return _samples(data_key(config), config)


def table_key(config: SweepConfig, device: str, *extra: object) -> str:
    """What a cached table depends on beyond the config: the store it is read from and the device."""
    return "|".join(map(str, (default_root(), device, config.key(), *extra)))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_table(
    key: str, _handle: ModelHandle, _samples: Samples, _config: SweepConfig, _sources: dict | None = None
) -> pd.DataFrame:
    """The per-image table of one model (see :func:`gcdash.ui.compute.page_table`)."""
    return compute.page_table(_handle, store(), _samples, _config, handles=_sources)


@st.cache_data(max_entries=32, show_spinner="Computing view…")
def extra_view(key: str, view: str, _handle: ModelHandle, _data: Gallery, target: str) -> tuple[np.ndarray, np.ndarray]:
    """An extra view (Guided Grad-CAM, counterfactual, gradient) of the gallery's clean and adversarial images."""
    return compute.extra_view(_handle, _data, view, target)


@st.cache_data(max_entries=32, show_spinner=False)
def summary_ci(per_image_table: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with the 95% bootstrap band of MOD (hashed by content: cheap next to the bootstrap)."""
    from gcdash import results

    return results.summary_with_ci(per_image_table)


@st.cache_data(max_entries=32, show_spinner=False)
def compare_charts(
    summary: pd.DataFrame, floors: tuple[tuple[str, float], ...], bands: tuple[tuple[str, float, float], ...] = ()
) -> dict:
    """The Compare page's figures of ``summary`` (name → plotly figure; the random-weights ``floors`` drawn on MOD
    vs eps, their spread over seeds, ``bands``, shaded), built once per summary: a model added back or a page
    revisited draws them without rebuilding."""
    from gcdash import plots

    spread = {model: (low, high) for model, low, high in bands}
    charts = {
        "mod_vs_eps": plots.with_floor(plots.mod_bands(summary), dict(floors), spread),
        "vid": plots.vid_bars(summary),
        "accuracy": plots.accuracy_curves(summary),
        "mod_vs_accuracy_drop": plots.mod_vs_drop(summary),
    }
    if any(f"mod_{name}" in summary for name in metrics.dissimilarities() if name != "nissim"):
        charts["mod_by_comparison"] = plots.mod_by_comparison(summary)
    return charts


def clear_tables() -> None:
    """Forget the cached tables and views (after the store was cleared; galleries live in session state)."""
    for fn in (cached_table, extra_view, summary_ci):
        fn.clear()


@st.cache_data(max_entries=64, show_spinner="Randomising the model's weights for the sanity floor…")
def floor(
    key: str, _handle: ModelHandle, _samples: Samples, layers: tuple[str, ...], method: str, params: tuple
) -> pd.DataFrame:
    """The sanity floor of ``layers`` (:func:`gcdash.sanity.floor`, over its 3 seeds): four CAM passes per image,
    once per process."""
    from gcdash import sanity

    return sanity.floor(_handle, _samples, list(layers), method, params=dict(params))
