"""Methods: MOD vs eps for one model across CAM methods (with the 95% bootstrap band), VID per method and the
MOD/VID table. The sidebar's method parameters apply to the sidebar's method; the others use their defaults."""

import streamlit as st

from gcdash import cams, plots, results
from gcdash.ui import cache, page, run
from gcdash.ui.values import bound, keep_valid

DEFAULT_METHODS = ["gradcam", "gradcampp", "xgradcam", "layercam"]

st.title("Methods")
st.caption(
    "Does the explanation shift depend on the explainer? The same attacked images, explained by several "
    "CAM methods at the selected layers."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    left, right = st.columns([1, 3])
    keep_valid("m.model", list(sel.models), sel.models[0])
    model = bound(left.selectbox, "Model", "m.model", sel.models)
    names = cams.names()
    methods = right.multiselect(
        "Methods",
        names,
        default=[m for m in DEFAULT_METHODS if m in names],
        format_func=lambda m: cams.get(m).label,
        key="m.methods",
        persist_state="session",
    )
    if not methods:
        st.info("Pick at least one method.")
        st.stop()
    with st.expander("Cost of each method"):
        st.markdown("\n".join(f"- **{cams.get(m).label}** ({cams.get(m).paper}): {cams.get(m).cost}" for m in methods))

    table = run.selection_table(sel, models=[model], methods=methods)
    summary = cache.summary_ci(table)
    for group in results.identical_methods(table):
        labels = " and ".join(cams.get(m).label for m in group)
        st.caption(
            f"{labels} give the same maps here, so their lines lie on top of each other: at a layer followed by "
            "global average pooling and a linear head the gradient is constant over each channel, and their "
            "weights coincide. That is mathematics, not a bug; at other layers they differ."
        )
    st.plotly_chart(
        plots.mod_bands(summary, title=f"{model}: MOD vs eps per method (95% bootstrap band)"), key="methods.mod"
    )
    left, right = st.columns([2, 3])
    left.plotly_chart(plots.vid_bars(summary), key="methods.vid")
    right.dataframe(results.mod_vid_table(summary), hide_index=True)
