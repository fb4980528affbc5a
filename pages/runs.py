"""Runs: sweep the current selection in the background (progress with counts and ETA, cancel), list the cached
runs with their size, export one (per-image table as Parquet or CSV, a self-contained HTML report of the
comparison charts), and clear the cache."""

import streamlit as st

from gcdash.ui import page, run, runs
from gcdash.ui.text import plain

st.title("Runs")

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    st.subheader("Sweep the current selection")
    st.caption(plain(sel.describe()))  # user text (a folder path) must not become markdown
    st.caption(plain(runs.cost(sel, len(run.samples(sel)))))
    job = st.session_state.get(runs.JOB)
    busy = job is not None and job.running
    if st.button("Start sweep", type="primary", disabled=busy, icon=":material/play_arrow:", key="runs.start"):
        runs.start(sel)
    runs.progress()

    st.subheader("Cached runs")
    table = runs.runs_table()
    if table.empty:
        st.info("No run yet: start a sweep above (or run `python -m gcdash sweep`).")
    else:
        event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs.table")
        runs.exports(table.iloc[event.selection.rows or [0]])

    st.subheader("Cache")
    runs.housekeeping()
