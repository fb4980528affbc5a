"""Transfer: the attack crafted on one model, evaluated on another (how real attackers work, without the target's
gradients). For every pair of the selected models and each eps: the evaluated model's adversarial accuracy (or the
flip rate, without labels) and its MOD; the diagonal is the white-box attack."""

import streamlit as st

from gcdash import plots, results
from gcdash.config import eps_text
from gcdash.ui import page, run

st.title("Transfer attacks")
st.caption(
    "Rows: the model the perturbation was crafted on. Columns: the model it was evaluated on. The diagonal is the "
    "white-box attack of the other pages; off the diagonal, how much of the attack (and of the explanation's shift) "
    "carries over to a model the attacker never saw. Each pair costs the evaluated model's CAM passes and the source's "
    "attack passes."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    if len(sel.models) < 2:
        st.info("Pick two models or more in the sidebar: the matrix pairs each with every other.")
        st.stop()
    crafted = sel.attack.crafted_on(list(sel.models))
    table = run.selection_table(sel, attacks=crafted)
    summary = results.summary(table)
    labelled = summary["acc_adv"].notna().any()
    values = ("acc_adv", "mod") if labelled else ("flip_rate", "mod")
    positive = sorted(e for e in summary["eps"].unique() if e > 0)
    figures = {f"Transfer at eps {eps_text(e)}": plots.transfer_heatmaps(summary, e, values) for e in positive}
    for name, figure in figures.items():
        st.plotly_chart(figure, key=f"transfer.{name}")
    with st.expander("Every pair (table)"):
        columns = ["source", "model", "layer", "eps", "n", "acc_clean", "acc_adv", "flip_rate", "mod"]
        st.dataframe(summary[summary["eps"] > 0][columns], hide_index=True)
    run.downloads(
        {"report (HTML)": (run.report_maker(sel, table, extra=figures), "gcdash-transfer.html", "text/html")},
        key="transfer.report",
    )
