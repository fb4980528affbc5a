"""Layers: the paper's every-layer analysis. MOD over layer depth × eps per model (heatmap), and MOD against
relative depth across models (lines). Uses every layer of each model, whatever the sidebar's layer choice."""

import streamlit as st

from gcdash import plots, results
from gcdash.ui import page, run

st.title("Layers")
st.caption(
    "Where in the network does the attack move the explanation most? Every layer of each model; the "
    "first visit computes them all (one pass per eps for all layers at once)."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    table = run.selection_table(sel, layers="all")
    summary = plots.layer_depth(results.summary(table))

    st.plotly_chart(plots.layer_heatmap(summary), key="layers.heatmap")
    floor = run.floors(sel, layers="all")
    st.plotly_chart(plots.floor_vs_depth(plots.mod_vs_depth(summary), floor), key="layers.depth")
    st.caption(
        "Dotted: the random-weights floor per layer (Adebayo et al. 2018), the NISSIM between the model's map and "
        "that of the same network with re-initialised weights (mean over 3 seeds; shaded: lowest to highest): a MOD "
        "near it means the attack left nothing of the explanation."
    )
    with st.expander("MOD per layer and eps, and VID (table)"):
        st.dataframe(results.mod_vid_table(summary), hide_index=True)
