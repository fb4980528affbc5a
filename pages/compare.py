"""Compare models: MOD vs eps with a 95% bootstrap band beside the random-noise control, VID, accuracy under
attack, MOD vs accuracy drop, MOD under each map comparison, the MOD/VID table, the worst case, and MOD with the
prediction kept (the explanation attack), with CSV and chart downloads."""

import streamlit as st

from gcdash import evaluate, fragility, plots, results
from gcdash.config import eps_text
from gcdash.ui import cache, page, report, run
from gcdash.ui.text import plain

st.title("Compare models")
st.caption(
    "The paper's claim: a model whose explanation shifts less under attack (low MOD, low VID) is the "
    "more robust one. MOD = mean NISSIM at one eps; VID = std of MOD over eps > 0. The random-noise control "
    "moves every pixel by the same eps in a random direction: the gap to it is what the attack's direction adds."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    with_control = sel.attack.name != "noise" and st.toggle(
        "Beside the random-noise control", value=True, key="cmp.control", help="one CAM pass per image and eps"
    )
    attacks = run.with_noise_control(sel, with_control)
    table = run.selection_table(sel, attacks=attacks, faithfulness=True)  # faithfulness: shown in the reading
    summary = cache.summary_ci(table)
    run.warn_zero_maps(summary)
    floor = run.floors(sel).groupby("model", sort=False).last()  # at each model's deepest chosen layer
    floors = floor["nissim"]
    bands = tuple(zip(floor.index, floor["floor_low"], floor["floor_high"]))  # its spread over 3 seeds
    charts = cache.compare_charts(summary, tuple(floors.items()), bands)

    left, right = st.columns([3, 2])
    left.plotly_chart(charts["mod_vs_eps"], key="cmp.mod")
    right.plotly_chart(charts["vid"], key="cmp.vid")
    if with_control:
        gap = results.control_gap(summary).assign(eps=lambda t: t["eps"].map(eps_text))
        st.markdown("**The attack against the noise control** (gap = attack MOD − noise MOD at the same eps)")
        st.dataframe(
            gap[["model", "layer", "eps", "attack", "source", "mod", "mod_noise", "gap"]],
            hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("mod", "mod_noise", "gap")},
        )
    eps = results.narrative.headline_eps(summary, sel.gallery_eps)
    reading = results.narrative.reading(summary, eps, floors.to_dict()) if eps is not None else {}
    if eps is not None:
        st.subheader(f"Reading MOD at eps {eps_text(eps)}")
        st.caption(
            "Against the random-noise control (what any perturbation of that size does) and the random-weights "
            "floor (Adebayo et al. 2018: the NISSIM between the model's map and the map of the same network with "
            "its weights re-initialised, i.e. unrelated maps, mean over 3 seeds; the dotted lines above, their spread "
            "shaded)."
        )
        for model, lines in reading.items():
            st.markdown(f"**{plain(model)}**: " + " ".join(plain(line) for line in lines))
    if "mod_by_comparison" in charts:
        st.plotly_chart(charts["mod_by_comparison"], key="cmp.comparisons")
    st.plotly_chart(charts["accuracy"], key="cmp.acc")
    left, right = st.columns([2, 3])
    left.plotly_chart(charts["mod_vs_accuracy_drop"], key="cmp.drop")
    mod_vid = results.mod_vid_table(summary)
    right.markdown("**MOD per eps and VID**")
    right.dataframe(
        mod_vid,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in mod_vid.columns[len(results.GROUP) :]},
    )

    st.subheader("Robustness, stated as reviewers check it")
    st.caption(
        "Accuracy under attack depends on the attack: a 10-step PGD overstates robustness. Here each model at the "
        "gallery eps under PGD-10, APGD-CE and APGD-DLR (Croce & Hein 2020, 100 steps, AutoAttack's), and the "
        "per-image worst case over the three; MOD under each attack is taken on its own point (for an image it "
        "did not fool, APGD's highest-loss iterate), and the worst case carries the strongest attack's MOD."
    )
    worst = run.worst_case(sel)
    if worst is not None:
        st.dataframe(
            evaluate.printed(worst), hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("accuracy", "mod", "mod_robust")},
        )  # fmt: skip
        st.caption("Budgets: " + "; ".join(dict.fromkeys(worst.loc[worst["attack"] != evaluate.WORST, "budget"])))

    st.subheader("Explanations moved with the prediction kept")
    st.caption(
        "Under the paper's attack most of MOD comes with a changed prediction (the map then explains another class). "
        "The explanation attack (Ghorbani et al. 2019) keeps each image's top-1 and moves its Grad-CAM map as far "
        "as it can; beside it FGSM, PGD, the noise control and the random-weights floor (unrelated maps, black). "
        "RIS / ROS (Agarwal et al. 2022) and Max-Sensitivity (Yeh et al. 2019) as Quantus computes them: lower is "
        "more stable; RIS and ROS only over images whose prediction the attack kept."
    )
    fragile = run.fragility(sel)
    extra = {} if fragile is None else {"fragility": plots.fragility_bars(fragile)}
    if fragile is not None:
        st.plotly_chart(extra["fragility"], key="cmp.fragility.chart")
        for model, sentence in fragility.sentences(fragile).items():
            st.markdown(f"**{plain(model)}**: {plain(sentence)}")
            reading.setdefault(model, []).append(sentence)
        st.dataframe(
            fragility.printed(fragile), hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.4g") for c in fragility.COLUMNS[5:]},
        )  # fmt: skip

    st.subheader("Downloads")
    run.downloads(
        {
            "summary (CSV)": (lambda: summary.to_csv(index=False), "summary.csv", "text/csv"),
            "MOD/VID (CSV)": (lambda: mod_vid.to_csv(index=False), "mod_vid.csv", "text/csv"),
            "per image (CSV)": (lambda: table.to_csv(index=False), "per_image.csv", "text/csv"),
            "report (HTML)": (run.report_maker(sel, table, reading, extra or None), "gcdash-report.html", "text/html"),
        },
        key="cmp.tables",
    )
    fmt = report.CHART_FORMAT
    run.downloads(
        {
            f"{name} ({fmt.label})": (lambda f=fig: fmt.render(f), f"{name}.{fmt.extension}", fmt.mime)
            for name, fig in {**charts, **extra}.items()
        },
        key="cmp.charts",
    )
    if not report.PNG_AVAILABLE:
        st.caption(
            "PNG export needs kaleido (not installed): charts download as offline HTML; the camera icon "
            "in each chart's toolbar saves a PNG from the browser."
        )
