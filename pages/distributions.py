"""Distributions: NISSIM per eps and model as a histogram, violin, box or ECDF, with MOD marked.

Hovering a point names its image; clicking it opens that image, model and eps in the gallery (so does the
control under the chart).
"""

import streamlit as st

from gcdash import plots
from gcdash.config import eps_text
from gcdash.ui import page, run, values

st.title("Distributions")
st.caption(
    "NISSIM = (1 − SSIM) / 2 between the clean and the adversarial CAM of each image; MOD is its mean "
    "(diamonds / dashed lines). Click a point to open the image in the gallery."
)


def open_in_gallery(image_id: str, model: str, eps: float, layer: str) -> None:
    """Show this image, model, eps and layer in the gallery. The gallery's eps is the sidebar's, which the Overview
    and the reports use too: a change to it is said."""
    before = values.get("eps1")
    values.request(image=image_id, gmodel=model, eps1=eps_text(eps), **{f"g.layer.{model}": layer})
    if before != eps_text(eps):
        values.note(
            "eps1", f"Gallery eps set to {eps_text(eps)} (was {before}) to open this image: it is the sidebar's, so "
            "the Overview and the reports use it too.",
        )  # fmt: skip
    st.switch_page(page.GALLERY)


with page.guard():
    sel = page.selection()
    run.require_models(sel)
    kinds = list(plots.DISTRIBUTIONS)
    values.keep_valid("plot", kinds, "violin")
    kind = values.bound(st.segmented_control, "Plot", "plot", kinds) or "violin"

    table = run.selection_table(sel)
    event = st.plotly_chart(
        plots.distribution(table, kind), on_select="rerun", selection_mode="points", key=f"dist.chart.{kind}"
    )
    points = [p for p in event.selection.points if p.get("customdata")]
    if points:
        open_in_gallery(*points[0]["customdata"][:4])

    st.subheader("Most dissimilar explanations")
    ranked = table[table["eps"] > 0].sort_values("nissim", ascending=False).head(50).reset_index(drop=True)
    if ranked.empty:
        st.info("Add an eps > 0 in the sidebar to see attacked images.")
        st.stop()
    labels = [
        f"{r.image_id} · {r.model} · {r.layer} · eps {eps_text(r.eps)} · NISSIM {r.nissim:.3f}"
        for r in ranked.itertuples()
    ]
    pick = st.selectbox("Image", ranked.index, format_func=labels.__getitem__, key="dist.pick")
    if st.button("Open in the gallery", icon=":material/photo_library:"):
        row = ranked.loc[pick]
        open_in_gallery(row["image_id"], row["model"], float(row["eps"]), row["layer"])
