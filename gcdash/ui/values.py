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
from gcdash.ui.text import plain

VALUES = "gcdash.values"
DYNAMIC = "gcdash.dynamic"  # dynamic names shown this run (method parameters, custom layers) → their defaults
PROBLEMS = "gcdash.url_problems"
LINKED = "gcdash.linked"  # names read from the URL whose value no check has looked at yet
BOX = "gcdash.problem_box"  # this run's place for the link's problems (the top of the sidebar)
SAID = "gcdash.said"  # what this run has said already (see first_time)


def values() -> dict[str, Any]:
    """The session's values; on its first run, the defaults updated from the URL."""
    ss = st.session_state
    if VALUES not in ss:
        found, problems = url_to_state({k: st.query_params.get_all(k) for k in st.query_params})
        ss[VALUES] = {**{k: p.default for k, p in PARAMS.items()}, **found}
        ss[PROBLEMS] = problems
        ss[LINKED] = set(found)
    return ss[VALUES]


def problems() -> list[str]:
    """What was wrong with the link this session opened on (one line each)."""
    values()
    return st.session_state[PROBLEMS]


def problem_box() -> None:
    """Show the link's problems here, from the first view on; problems found later in this run join them."""
    st.session_state[BOX] = st.empty()
    _draw_problems()


def _draw_problems() -> None:
    box = st.session_state.get(BOX)
    if box is not None and problems():
        with box.container():
            for problem in problems():
                st.warning(plain(problem), icon=":material/link_off:")


def link_problem(name: str, line: str) -> None:
    """Say ``line`` about the link's value of ``name`` when it came from the link and was not checked yet (a value
    the user picked later is not the link's); each value is checked once."""
    linked = st.session_state.get(LINKED, set())
    if name not in linked:
        return
    linked.discard(name)
    if line:
        problems().append(f"link parameter {line}")
        _draw_problems()


def get(name: str, default: Any = None) -> Any:
    return values().get(name, default)


NOTES = "gcdash.notes"  # value name → a line for its widget's next draw (a change made from code, said once)


def note(name: str, line: str) -> None:
    """Say ``line`` beside the widget of ``name`` the next time it is drawn (after a change made from code)."""
    st.session_state.setdefault(NOTES, {})[name] = line


def take_note(name: str) -> str | None:
    """The line left by :func:`note` for ``name``, once."""
    return st.session_state.get(NOTES, {}).pop(name, None)


def request(**changes: Any) -> None:
    """Change values from code (e.g. before ``st.switch_page`` to the gallery); widgets follow on their next draw."""
    values().update(changes)


def start_run() -> None:
    """Forget last run's dynamic names (the sidebar registers the ones it draws), its problem box and what it
    said."""
    st.session_state[DYNAMIC] = {}
    st.session_state.pop(BOX, None)
    st.session_state[SAID] = set()


def first_time(what: str) -> bool:
    """True the first time ``what`` is asked about in this run (so a page says a thing once, however many of its
    parts look at it)."""
    said = st.session_state.setdefault(SAID, set())
    if what in said:
        return False
    said.add(what)
    return True


def dynamic(name: str, default: Any) -> None:
    """Register a dynamic name for the URL, with its default, and give it a value if it has none."""
    st.session_state.setdefault(DYNAMIC, {})[name] = default
    values().setdefault(name, default)


def keep_valid(name: str, options: list, default: Any) -> None:
    """Reset a value that is no longer among ``options`` (for lists: drop the strays); a link's value that is
    reset is said."""
    value = values().get(name, default)
    if isinstance(value, list):
        kept = [v for v in value if v in options]
        strays = ", ".join(repr(v) for v in value if v not in options)
        line = f"{name}: {strays} not among the choices; left out" if strays else ""
    elif value not in options:
        kept = default if default in options or not options else options[0]
        line = f"{name}={value!r} is not among the choices; using {kept!r}"
    else:
        kept, line = value, ""
    link_problem(name, line)
    values()[name] = kept


def keep_in_range(name: str, low: float, high: float) -> None:
    """Clip a numeric value into ``[low, high]`` (a link may carry any number: a clipped one is said)."""
    value = values()[name]
    clipped = min(max(value, low), high)
    side = "above the largest allowed" if value > high else "below the smallest allowed"
    link_problem(name, f"{name}={value} is {side}; using {clipped}" if clipped != value else "")
    values()[name] = clipped


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
