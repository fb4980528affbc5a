"""Compare models: MOD vs eps with a 95% bootstrap band, VID, accuracy under attack, MOD vs accuracy drop, and
the MOD/VID table, with CSV and chart downloads."""

import streamlit as st

from gcdash import plots, results
from gcdash.ui import cache, page, report, run

st.title("Compare models")
st.caption(
    "The paper's claim: a model whose explanation shifts less under attack (low MOD, low VID) is the "
    "more robust one. MOD = mean NISSIM at one eps; VID = std of MOD over eps > 0."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    table = run.per_image(sel)
    summary = cache.summary_ci(table)
    charts = {
        "mod_vs_eps": plots.mod_bands(summary),
        "vid": plots.vid_bars(summary),
        "accuracy": plots.accuracy_curves(summary),
        "mod_vs_accuracy_drop": plots.mod_vs_drop(summary),
    }

    left, right = st.columns([3, 2])
    left.plotly_chart(charts["mod_vs_eps"], key="cmp.mod")
    right.plotly_chart(charts["vid"], key="cmp.vid")
    st.plotly_chart(charts["accuracy"], key="cmp.acc")
    left, right = st.columns([2, 3])
    left.plotly_chart(charts["mod_vs_accuracy_drop"], key="cmp.drop")
    mod_vid = results.mod_vid_table(summary)
    right.markdown("**MOD per eps and VID**")
    right.dataframe(
        mod_vid,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in mod_vid.columns[3:]},
    )

    st.subheader("Downloads")
    run.downloads(
        {
            "summary (CSV)": (lambda: summary.to_csv(index=False), "summary.csv", "text/csv"),
            "MOD/VID (CSV)": (lambda: mod_vid.to_csv(index=False), "mod_vid.csv", "text/csv"),
            "per image (CSV)": (lambda: table.to_csv(index=False), "per_image.csv", "text/csv"),
        },
        key="cmp.tables",
    )
    fmt = report.CHART_FORMAT
    run.downloads(
        {
            f"{name} ({fmt.label})": (lambda f=fig: fmt.render(f), f"{name}.{fmt.extension}", fmt.mime)
            for name, fig in charts.items()
        },
        key="cmp.charts",
    )
    if not report.PNG_AVAILABLE:
        st.caption(
            "PNG export needs kaleido (not installed): charts download as offline HTML; the camera icon "
            "in each chart's toolbar saves a PNG from the browser."
        )
