"""gcdash.plots: figures from synthetic per-image tables (no model, no streamlit)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from gcdash import plots, results
from gcdash.config import eps_text
from gcdash.ui import report

EPS = (0.0, 2 / 255, 8 / 255)
LAYERS = {"vgg": ["b1", "b2", "b3"], "res": ["s", "l1", "l2", "l3"]}


def table(layers: dict[str, list[str]] = LAYERS, n: int = 12, methods: tuple[str, ...] = ("gradcam",)) -> pd.DataFrame:
    """A per-image table whose NISSIM grows with eps and depth; labels known, some predictions flip."""
    rng = np.random.default_rng(0)
    rows = []
    for model, names in layers.items():
        for method in methods:
            for depth, layer in enumerate(names):
                for eps in EPS:
                    for i in range(n):
                        flip = eps > 0 and i % 3 == 0
                        nissim = 0.0 if eps == 0 else min(1.0, eps * 20 * (1 + depth) / len(names) + rng.random() / 10)
                        rows.append(
                            dict(
                                model=model,
                                method=method,
                                attack="fgsm",
                                source=model,
                                layer=layer,
                                eps=eps,
                                image_id=f"img-{i:02d}",
                                label=i % 4,
                                pred_clean=i % 4,
                                pred_adv=(i + flip) % 4,
                                conf_clean=0.9,
                                conf_adv=0.5,
                                ssim=1 - 2 * nissim,
                                nissim=nissim,
                                zero_clean=False,
                                zero_adv=False,
                            )
                        )
    return pd.DataFrame(rows)[results.PER_IMAGE_COLUMNS]


def default_layers() -> pd.DataFrame:
    t = table()
    return t[t["layer"].isin(["b3", "l3"])].reset_index(drop=True)


def test_eps_text():
    assert [eps_text(e) for e in (0.0, 8 / 255, 0.01)] == ["0", "8/255", "0.01"]


def test_series_names_only_what_varies():
    assert set(plots.series_of(default_layers())) == {"vgg", "res"}
    assert set(plots.series_of(table())) >= {"vgg · b1", "res · l3"}
    one = table({"vgg": ["b3"]}, methods=("gradcam", "xgradcam"))
    assert set(plots.series_of(one)) == {"gradcam", "xgradcam"}


def test_summary_with_ci_brackets_mod():
    summary = results.summary_with_ci(default_layers())
    assert len(summary) == 2 * len(EPS)
    assert (summary["mod_lo"] <= summary["mod"] + 1e-12).all() and (summary["mod"] <= summary["mod_hi"] + 1e-12).all()
    zero = summary[summary["eps"] == 0]
    assert (zero[["mod", "mod_lo", "mod_hi"]] == 0).all().all()


@pytest.mark.parametrize("kind", list(plots.DISTRIBUTIONS))
def test_distributions_name_every_image_and_mark_mod(kind):
    t = default_layers()
    fig = plots.distribution(t, kind)
    assert isinstance(fig, go.Figure) and kind in fig.layout.title.text
    named = {row[0] for trace in fig.data if trace.customdata is not None for row in trace.customdata}
    assert named == set(t["image_id"])
    mods = t.groupby(["model", "eps"])["nissim"].mean().round(6)
    marked = {round(s.x0, 6) for s in fig.layout.shapes} | {
        round(float(y), 6) for trace in fig.data if (trace.name or "").startswith("MOD") for y in trace.y
    }
    assert set(mods) <= marked


def test_mod_bands_one_line_and_band_per_series():
    fig = plots.mod_bands(results.summary_with_ci(default_layers()))
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert {t.name for t in lines} == {"vgg", "res"} and len(bands) == 2
    assert list(fig.layout.xaxis.ticktext) == ["0", "2/255", "8/255"]


def test_vid_bars_match_results():
    summary = results.summary_with_ci(default_layers())
    fig = plots.vid_bars(summary)
    expected = results.vid(summary).set_index("model")["vid"]
    shown = {t.x[0]: t.y[0] for t in fig.data}
    assert shown == pytest.approx(expected.to_dict())


def test_accuracy_and_scatter():
    summary = results.summary(default_layers())
    acc = plots.accuracy_curves(summary)
    assert len(acc.data) == 2 * 4  # two series x four panels
    assert {a.text for a in acc.layout.annotations} == set(plots.ACCURACY_METRICS.values())
    scatter = plots.mod_vs_drop(summary)
    assert sum(len(t.x) for t in scatter.data) == len(summary)
    unlabelled = results.summary(default_layers().assign(label=-1))
    flips = plots.accuracy_curves(unlabelled)
    assert {a.text for a in flips.layout.annotations} == {plots.ACCURACY_METRICS["flip_rate"]}
    assert "flip rate" in plots.mod_vs_drop(unlabelled).layout.title.text


def test_layer_depth_and_heatmap_follow_catalog_order():
    summary = results.summary(table())
    depth = plots.layer_depth(summary)
    res = depth[(depth["model"] == "res") & (depth["eps"] == EPS[-1])]
    assert list(res["layer"]) == LAYERS["res"] and list(res["depth"]) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    heat = plots.layer_heatmap(summary)
    assert [list(t.y) for t in heat.data] == [LAYERS["vgg"], LAYERS["res"]]
    assert np.asarray(heat.data[0].z).shape == (3, len(EPS))
    lines = plots.mod_vs_depth(summary)
    assert len(lines.data) == 2 * 2  # two models x two eps > 0


def test_the_floor_has_one_legend_entry_per_model_however_many_panels():
    summary = results.summary(table())
    floor = pd.DataFrame(
        [(m, layer, 0.4 + 0.01 * i) for m, names in LAYERS.items() for i, layer in enumerate(names)],
        columns=["model", "layer", "nissim"],
    )
    fig = plots.floor_vs_depth(plots.mod_vs_depth(summary), floor)
    floors = [t for t in fig.data if plots.FLOOR_NAME in t.name]
    assert len(floors) == 2 * 2  # each model's floor in each of the two panels
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert sorted(n for n in legend if plots.FLOOR_NAME in n) == [f"{m}: {plots.FLOOR_NAME}" for m in ("res", "vgg")]
    assert len(legend) == len(set(legend))  # no entry twice, the MOD lines' included
    assert {t.legendgroup for t in floors} == {"floor-vgg", "floor-res"}  # a click hides a floor in every panel
    banded = plots.floor_vs_depth(plots.mod_vs_depth(summary), floor.assign(floor_low=0.3, floor_high=0.5))
    shaded = [t for t in banded.data if t.fill == "toself"]
    assert len(shaded) == 2 * 2 and all(t.showlegend is False for t in shaded)  # the seeds' spread, in every panel


def test_the_floor_on_mod_vs_eps_shades_its_spread_over_seeds():
    fig = plots.with_floor(plots.mod_bands(results.summary_with_ci(table())), {"vgg": 0.45}, {"vgg": (0.43, 0.47)})
    assert [(s.y0, s.y1) for s in fig.layout.shapes if s.type == "rect"] == [(0.43, 0.47)]
    assert "vgg 0.450 [0.430–0.470]" in fig.layout.annotations[-1].text


def test_report_is_self_contained_html():
    text = report.report_html(default_layers(), "My report", "subtitle")
    assert text.startswith("<!doctype html>") and "My report" in text
    assert "plotly.js" in text or "Plotly" in text
    assert text.count("<section>") == len(report.comparison_figures(default_layers()))
    assert "MOD@8/255" in text


def test_the_report_says_display_names_and_has_page_margins():
    from gcdash.config import AttackConfig
    from gcdash.ui.state import Selection

    sel = Selection(method="gradcampp", attack=AttackConfig("pgd", (("steps", 3),)), comparisons=("spearman",))
    text = report.report_html(default_layers(), "r", report.selection_settings(sel, "12 from demo"))
    assert "<th>explanation</th><td>Grad-CAM++</td>" in text  # not "gradcampp"
    assert "<th>attack</th><td>PGD (L∞) (steps=3)</td>" in text
    assert "<th>map comparison</th><td>NISSIM, Spearman rank shift" in text
    assert "<th>target</th><td>pred: each map explains its own input" in text
    assert "@page{margin:" in text  # on paper
    assert re.search(r"body\{[^}]*padding:0 [0-9.]+em[^}]*max-width:", text)  # on a window narrower than the page
    assert report.display_name("method", "gone-method") == "gone-method"  # a run from another version: its id


def test_png_export_is_optional():
    fig = plots.vid_bars(results.summary(default_layers()))
    png = report.figure_png(fig)
    assert (png is None) == (not report.PNG_AVAILABLE)
    assert "<html>" in report.figure_html(fig)


def test_the_report_tells_the_story_with_settings_terms_and_images(tiny_handle, tiny_samples, store):
    from gcdash.config import ModelSpec, SweepConfig
    from gcdash.ui import compute

    config = SweepConfig(models=(ModelSpec("tiny-cnn"),), eps=(0.0, 8 / 255), layers=("block3",))
    table = compute.page_table(tiny_handle, store, tiny_samples, config)
    data = compute.build_gallery(tiny_handle, store, tiny_samples, config, 8 / 255, "block3")
    rows = report.gallery_rows(data, k=2)
    assert rows[0].caption.startswith("tiny-cnn · ") and len(rows[0].pictures) == 4
    title = report.report_title(table["attack"].unique(), ["tiny-cnn"])
    text = report.report_html(table, title, {"images": "8 from tiny", "attack": "fgsm"}, rows)
    assert "<title>How FGSM moves the explanations of tiny-cnn</title>" in text
    assert "What we found" in text and "FGSM at eps 8/255 changed the top-1 prediction" in text
    assert "<th>images</th><td>8 from tiny</td>" in text and "<th>made</th>" in text
    assert "Mean Observed Dissimilarity" in text and "Variation in Dissimilarity" in text
    assert text.count("<figure><img alt=") == 2 * 4  # two images x clean, attacked and their maps, embedded
    assert "MOD@0" not in text  # the control column of zeros is gone
    import plotly.graph_objects as go

    extra = {"Transfer at eps 8/255": go.Figure(layout={"title": "a transfer matrix"})}
    fuller = report.report_html(table, title, rows=rows, reading={"tiny-cnn": ["MOD 0.3; floor 0.4."]}, extra=extra)
    assert "<h2>Reading MOD</h2><p><b>tiny-cnn</b>: MOD 0.3; floor 0.4.</p>" in fuller
    assert "a transfer matrix" in fuller and "random-weights floor" in fuller


def test_the_fragility_bars_draw_each_attack_with_its_share_kept_and_the_floor_in_black():
    import pandas as pd

    from gcdash import plots

    rows = pd.DataFrame({
        "model": ["a", "a", "b", "b"], "layer": ["l"] * 4, "eps": [8 / 255] * 4,
        "attack": ["fgsm", "expl-topk"] * 2, "kept": [0.25, 1.0, 0.5, 1.0], "mod": [0.3, 0.5, 0.2, 0.1],
        "floor": [0.4, 0.4, 0.45, 0.45],
    })  # fmt: skip
    fig = plots.fragility_bars(rows)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars) == ["fgsm", "expl-topk"] and list(bars["fgsm"].y) == [0.3, 0.2]
    assert list(bars["fgsm"].text) == ["kept 25%", "kept 50%"]
    floor = next(t for t in fig.data if t.type == "scatter")
    assert list(floor.y) == [0.4, 0.45] and floor.marker.color == "black"
    assert "eps 8/255" in fig.layout.title.text
