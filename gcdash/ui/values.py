"""The selection's values in session state, mirrored in the URL.

Values live in one plain dict in session state (``gcdash.values``), not in widget state: Streamlit drops widget
state on ``st.switch_page`` and when a widget moves between scripts, but never a plain value. Each run seeds
every widget from the dict (:func:`bound`) and the widget's ``on_change`` writes back to it. On a session's first
run the dict is read from the URL; after a run :func:`sync_url` rewrites the query string from it, so the
address bar always holds a link to the current view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from gcdash.ui.state import PARAMS, state_to_url, url_to_state

VALUES = "gcdash.values"
DYNAMIC = "gcdash.dynamic"  # dynamic names shown this run (method parameters, custom layers) → their defaults
PROBLEMS = "gcdash.url_problems"


def values() -> dict[str, Any]:
    """The session's values; on its first run, the defaults updated from the URL."""
    ss = st.session_state
    if VALUES not in ss:
        found, problems = url_to_state({k: st.query_params.get_all(k) for k in st.query_params})
        ss[VALUES] = {**{k: p.default for k, p in PARAMS.items()}, **found}
        ss[PROBLEMS] = problems
    return ss[VALUES]


def get(name: str, default: Any = None) -> Any:
    return values().get(name, default)


def request(**changes: Any) -> None:
    """Change values from code (e.g. before ``st.switch_page`` to the gallery); widgets follow on their next draw."""
    values().update(changes)


def start_run() -> None:
    """Forget last run's dynamic names (the sidebar registers the ones it draws)."""
    st.session_state[DYNAMIC] = {}


def dynamic(name: str, default: Any) -> None:
    """Register a dynamic name for the URL, with its default, and give it a value if it has none."""
    st.session_state.setdefault(DYNAMIC, {})[name] = default
    values().setdefault(name, default)


def keep_valid(name: str, options: list, default: Any) -> None:
    """Reset a value that is no longer among ``options`` (for lists: drop the strays)."""
    value = values().get(name, default)
    if isinstance(value, list):
        value = [v for v in value if v in options]
    elif value not in options:
        value = default if default in options or not options else options[0]
    values()[name] = value


def keep_in_range(name: str, low: float, high: float) -> None:
    """Clip a numeric value into ``[low, high]`` (a link may carry any number)."""
    values()[name] = min(max(values()[name], low), high)


def _commit(name: str) -> None:
    values()[name] = st.session_state[f"w.{name}"]


def bound(widget: Callable[..., Any], label: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Draw ``widget(label, *args, **kwargs)`` showing value ``name``; a change by the user is written back."""
    st.session_state[f"w.{name}"] = values()[name]
    return widget(label, *args, key=f"w.{name}", on_change=_commit, args=(name,), **kwargs)


def sync_url() -> None:
    """Rewrite the query string from the values when they differ (page navigation clears it)."""
    dyn = st.session_state.get(DYNAMIC, {})
    current = values()
    shown = {k: current[k] for k in [*PARAMS, *dyn] if k in current}
    desired = state_to_url(shown, dyn)
    if {k: st.query_params.get_all(k) for k in st.query_params} != desired:
        st.query_params.from_dict(desired)
