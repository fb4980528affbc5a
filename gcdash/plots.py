"""Plotly figures from gcdash's tables: data in, figure out (no streamlit here).

Inputs are the per-image table (``results.PER_IMAGE_COLUMNS``) or summaries derived from it. A "series" is one
line or colour: the model, extended by the method and the layer when those vary. Points that stand for one
image carry ``customdata = [image_id, model, eps, layer, method]`` so a click can open that image in the gallery.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gcdash import metrics, results
from gcdash.config import eps_text

COLORS = px.colors.qualitative.Plotly
POINT_DATA = ["image_id", "model", "eps", "layer", "method"]
HOVER = "%{customdata[0]}<br>%{customdata[1]} · %{customdata[3]}<br>NISSIM %{x:.3f}<extra></extra>"
FACET_COLUMNS = 3


def series_of(table: pd.DataFrame) -> pd.Series:
    """One label per row: the model, the method, the attack and the layer, each where it varies (the model when
    none does), and "from SOURCE" on a transfer attack's rows."""
    parts = [c for c in ("model", "method", "attack") if c in table and table[c].nunique() > 1]
    if "attack" in parts and "model" not in parts:
        parts.insert(0, "model")  # "demo-vgg · noise" reads better than "noise"
    if table.groupby("model")["layer"].nunique().max() > 1:
        parts.append("layer")
    labels = table[parts or ["model"]].astype(str).agg(" · ".join, axis=1)
    if "source" in table:
        transfer = (table["source"] != table["model"]) & (table["source"] != "none")
        labels = labels.where(~transfer, labels + " · from " + table["source"].astype(str))
    return labels


def _prepared(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["series"] = series_of(out) if len(out) else pd.Series(dtype=str)
    out["eps_text"] = out["eps"].map(eps_text)
    return out


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: COLORS[i % len(COLORS)] for i, name in enumerate(dict.fromkeys(names))}


def _eps_order(table: pd.DataFrame) -> list[str]:
    return [eps_text(e) for e in sorted(table["eps"].unique())]


# -- distributions ------------------------------------------------------------------------------------------
def _mod_markers(table: pd.DataFrame, colors: dict[str, str]) -> list[go.Scatter]:
    mods = table.groupby(["series", "eps_text"], sort=False)["nissim"].mean().reset_index()
    return [
        go.Scatter(
            x=g["eps_text"],
            y=g["nissim"],
            mode="markers",
            name=f"MOD {name}",
            offsetgroup=name,
            marker=dict(symbol="diamond", size=12, color=colors[name], line=dict(width=1.5, color="black")),
            hovertemplate=f"MOD {name}<br>eps %{{x}}: %{{y:.3f}}<extra></extra>",
            legendgroup=name,
        )
        for name, g in mods.groupby("series", sort=False)
    ]


def _grouped(trace: Callable[..., go.BaseTraceType], mode: dict) -> Callable[[pd.DataFrame], go.Figure]:
    """A violin or box builder: NISSIM per eps (x) and series (colour), every image a point, MOD as diamonds."""

    def build(per_image: pd.DataFrame) -> go.Figure:
        table = _prepared(per_image)
        colors = _colors(table["series"])
        fig = go.Figure()
        for name, g in table.groupby("series", sort=False):
            fig.add_trace(
                trace(
                    x=g["eps_text"],
                    y=g["nissim"],
                    name=name,
                    offsetgroup=name,
                    legendgroup=name,
                    marker_color=colors[name],
                    customdata=g[POINT_DATA].to_numpy(),
                    hovertemplate=HOVER.replace("%{x:.3f}", "%{y:.3f}"),
                    **mode,
                )
            )
        fig.add_traces(_mod_markers(table, colors))
        fig.update_layout(**{f"{trace.__name__.lower()}mode": "group"}, scattermode="group")
        fig.update_xaxes(title="eps", categoryorder="array", categoryarray=_eps_order(table))
        fig.update_yaxes(title="NISSIM", range=[0, None])
        return fig

    return build


def _faceted(add: Callable[[go.Figure, pd.DataFrame, str, int, int], None], y_title: str):
    """A histogram or ECDF builder: one panel per eps, one colour per series, MOD as a dashed line."""

    def build(per_image: pd.DataFrame) -> go.Figure:
        table = _prepared(per_image)
        colors, order = _colors(table["series"]), _eps_order(table)
        cols = min(len(order), FACET_COLUMNS) or 1
        fig = make_subplots(
            rows=math.ceil(len(order) / cols) or 1,
            cols=cols,
            subplot_titles=[f"eps {e}" for e in order],
            shared_yaxes=True,
            horizontal_spacing=0.04,
        )
        for i, eps in enumerate(order):
            row, col = i // cols + 1, i % cols + 1
            for name, g in table[table["eps_text"] == eps].groupby("series", sort=False):
                add(fig, g, colors[name], row, col)
                fig.add_vline(x=g["nissim"].mean(), line=dict(color=colors[name], dash="dash"), row=row, col=col)
        fig.update_xaxes(title="NISSIM", range=[0, max(0.05, table["nissim"].max() * 1.05) if len(table) else 1])
        fig.update_yaxes(title=y_title, col=1)
        fig.update_layout(height=300 * math.ceil(len(order) / cols) + 60, barmode="overlay")
        return fig

    return build


def _trace_kw(g: pd.DataFrame, color: str, first: bool) -> dict:
    name = g["series"].iloc[0]
    return dict(name=name, legendgroup=name, showlegend=first, marker_color=color)


def _add_histogram(fig: go.Figure, g: pd.DataFrame, color: str, row: int, col: int) -> None:
    first = row == col == 1
    fig.add_trace(go.Histogram(x=g["nissim"], nbinsx=20, opacity=0.6, **_trace_kw(g, color, first)), row, col)
    rug = go.Scatter(
        x=g["nissim"],
        y=np.zeros(len(g)),
        mode="markers",
        customdata=g[POINT_DATA].to_numpy(),
        marker=dict(symbol="line-ns-open", size=14, color=color),
        hovertemplate=HOVER,
        **{**_trace_kw(g, color, False), "name": f"{g['series'].iloc[0]} images"},
    )
    fig.add_trace(rug, row, col)


def _add_ecdf(fig: go.Figure, g: pd.DataFrame, color: str, row: int, col: int) -> None:
    s = g.sort_values("nissim")
    y = np.arange(1, len(s) + 1) / len(s)
    fig.add_trace(
        go.Scatter(
            x=s["nissim"],
            y=y,
            mode="lines+markers",
            line_shape="hv",
            customdata=s[POINT_DATA].to_numpy(),
            hovertemplate=HOVER,
            **_trace_kw(s, color, row == col == 1),
        ),
        row,
        col,
    )


DISTRIBUTIONS: dict[str, Callable[[pd.DataFrame], go.Figure]] = {
    "violin": _grouped(go.Violin, dict(box_visible=True, points="all", pointpos=0, jitter=0.4, spanmode="hard")),
    "box": _grouped(go.Box, dict(boxpoints="all", jitter=0.4, pointpos=0)),
    "histogram": _faceted(_add_histogram, "images"),
    "ecdf": _faceted(_add_ecdf, "share of images ≤ x"),
}


def distribution(per_image: pd.DataFrame, kind: str = "violin") -> go.Figure:
    """NISSIM per eps and series as ``kind`` (one of :data:`DISTRIBUTIONS`), MOD marked."""
    fig = DISTRIBUTIONS[kind](per_image)
    fig.update_layout(title=f"NISSIM per image ({kind}); MOD marked", legend_title="series", clickmode="event+select")
    return fig


# -- comparisons --------------------------------------------------------------------------------------------
def mod_bands(summary: pd.DataFrame, title: str = "MOD vs eps (95% bootstrap band)") -> go.Figure:
    """MOD against eps, one line per series, with the ``mod_lo``–``mod_hi`` band (see :func:`summary_with_ci`)."""
    table = _prepared(summary)
    order = _eps_order(table)
    colors = _colors(table["series"])
    fig = go.Figure()
    for name, g in table.groupby("series", sort=False):
        x = [order.index(e) for e in g["eps_text"]]
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=list(g["mod_hi"]) + list(g["mod_lo"])[::-1],
                mode="lines",
                fill="toself",
                line=dict(width=0),
                fillcolor=colors[name],
                opacity=0.2,
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g["mod"],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line_color=colors[name],
                customdata=g[["eps_text", "mod_lo", "mod_hi"]].to_numpy(),
                hovertemplate=f"{name}<br>eps %{{customdata[0]}}: MOD %{{y:.3f}} "
                "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]<extra></extra>",
            )
        )
    fig.update_xaxes(title="eps", tickvals=list(range(len(order))), ticktext=order)
    fig.update_yaxes(title="MOD (mean NISSIM)", rangemode="tozero")
    return fig.update_layout(title=title, legend_title="series")


def vid_bars(summary: pd.DataFrame) -> go.Figure:
    """VID (std of MOD over eps > 0) per series, as bars."""
    table = _prepared(summary)
    vid = results.vid(table)
    vid["series"] = series_of(vid) if len(vid) else []
    fig = px.bar(
        vid,
        x="series",
        y="vid",
        color="series",
        color_discrete_map=_colors(table["series"]),
        title="VID: variation of MOD across eps > 0",
        labels={"vid": "VID", "series": ""},
    )
    return fig.update_layout(showlegend=False)


ACCURACY_METRICS = {
    "acc_clean": "clean accuracy",
    "acc_adv": "adversarial accuracy",
    "attack_success": "attack success",
    "flip_rate": "prediction flipped (no labels needed)",
}


def _facet_lines(table: pd.DataFrame, columns: dict[str, str], facet: str, y: str, title: str) -> go.Figure:
    """One panel per ``columns`` entry (column → panel title), value against eps, one line per series."""
    long = table.melt(id_vars=["series", "eps_text"], value_vars=list(columns), var_name=facet, value_name=y)
    long[facet] = long[facet].map(columns)
    fig = px.line(
        long,
        x="eps_text",
        y=y,
        color="series",
        facet_col=facet,
        markers=True,
        color_discrete_map=_colors(table["series"]),
        labels={"eps_text": "eps", y: y},
        category_orders={"eps_text": _eps_order(table), facet: list(columns.values())},
        title=title,
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    return fig.update_yaxes(range=[0, 1.02])


def accuracy_curves(summary: pd.DataFrame) -> go.Figure:
    """Clean and adversarial accuracy, attack success and the flip rate against eps, one panel each; panels with
    no value at all (accuracy of unlabelled images) are left out and the title says why."""
    shown = {k: v for k, v in ACCURACY_METRICS.items() if k in summary and summary[k].notna().any()}
    title = "Accuracy under attack" if len(shown) == len(ACCURACY_METRICS) else (
        "Under attack: the images carry no labels the model knows, so only the flip rate is shown")  # fmt: skip
    fig = _facet_lines(
        _prepared(summary), shown or {"flip_rate": ACCURACY_METRICS["flip_rate"]}, "metric", "value", title
    )
    return fig.update_yaxes(title="")


def mod_vs_drop(summary: pd.DataFrame) -> go.Figure:
    """MOD against the accuracy drop (clean − adversarial) at each eps: is a larger shift a weaker model? Without
    labels, against the flip rate (the share of predictions the attack changed)."""
    table = _prepared(summary)
    table["accuracy drop"] = table["acc_clean"] - table["acc_adv"]
    x = "accuracy drop" if table["accuracy drop"].notna().any() else "flip_rate"
    last = table["eps"] == table.groupby("series")["eps"].transform("max")
    table["label"] = table["eps_text"].where(last, "")  # one label per series (all of them overlap); eps on hover
    fig = px.scatter(
        table,
        x=x,
        y="mod",
        color="series",
        text="label",
        hover_data=["eps_text", "layer", "n"],
        color_discrete_map=_colors(table["series"]),
        labels={"mod": "MOD", "flip_rate": "prediction flipped", "eps_text": "eps", "label": "largest eps"},
        title=f"MOD vs {'accuracy drop' if x == 'accuracy drop' else 'flip rate (no labels)'} (one point per eps)",
    )
    return fig.update_traces(textposition="top center", marker_size=10)


def mod_by_comparison(summary: pd.DataFrame) -> go.Figure:
    """MOD against eps under each comparison the summary carries (NISSIM and ``mod_<name>``), one panel each:
    does the conclusion depend on how the maps are compared?"""
    extras = [name for name in metrics.dissimilarities() if f"mod_{name}" in summary.columns]
    columns = {"mod": "nissim", **{f"mod_{name}": name for name in extras}}
    return _facet_lines(_prepared(summary), columns, "comparison", "MOD", "MOD under each map comparison")


# -- layers -------------------------------------------------------------------------------------------------
def layer_depth(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` plus ``layer_index`` (0 = shallowest, in the table's order) and ``depth`` = index / (n − 1)."""
    out = summary.copy()
    out["layer_index"] = out.groupby("model", sort=False)["layer"].transform(lambda s: pd.factorize(s)[0])
    n_layers = out.groupby("model", sort=False)["layer"].transform("nunique")
    out["depth"] = out["layer_index"] / (n_layers - 1).where(n_layers > 1, 1)
    return out


def layer_heatmap(summary: pd.DataFrame) -> go.Figure:
    """MOD over layer (shallow at the top → deep) × eps, one panel per model, one colour scale."""
    table = _prepared(layer_depth(summary))
    names = list(dict.fromkeys(table["model"]))
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names, horizontal_spacing=0.12)
    for i, (name, g) in enumerate(table.groupby("model", sort=False)):
        grid = g.pivot_table(index="layer", columns="eps", values="mod", sort=False)
        grid = grid.loc[list(dict.fromkeys(g.sort_values("layer_index")["layer"])), sorted(grid.columns)]
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(),
                x=[eps_text(e) for e in grid.columns],
                y=list(grid.index),
                coloraxis="coloraxis",
                hovertemplate=f"{name}<br>%{{y}} · eps %{{x}}: MOD %{{z:.3f}}<extra></extra>",
            ),
            1,
            i + 1,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    fig.update_xaxes(title="eps", type="category")
    fig.update_layout(
        title="MOD per layer (shallow → deep) and eps", coloraxis=dict(colorscale="Viridis", cmin=0), height=380
    )
    return fig


def mod_vs_depth(summary: pd.DataFrame) -> go.Figure:
    """MOD against relative layer depth (0 shallowest, 1 deepest), one line per model, one panel per eps > 0."""
    table = _prepared(layer_depth(summary))
    table = table[table["eps"] > 0]
    order = _eps_order(table)
    fig = px.line(
        table,
        x="depth",
        y="mod",
        color="model",
        color_discrete_map=_colors(table["model"]),
        facet_col="eps_text",
        markers=True,
        hover_data=["layer"],
        facet_col_wrap=FACET_COLUMNS,
        category_orders={"eps_text": order},
        title="MOD vs relative depth",
        labels={"depth": "relative depth", "mod": "MOD", "eps_text": "eps"},
    )
    return fig.update_layout(height=300 * math.ceil(max(len(order), 1) / FACET_COLUMNS) + 80)


TRANSFER_VALUES = {"acc_adv": "adversarial top-1", "flip_rate": "prediction flipped", "mod": "MOD"}


def transfer_heatmaps(summary: pd.DataFrame, eps: float, values: Sequence[str] = ("acc_adv", "mod")) -> go.Figure:
    """One heatmap per value at ``eps``: rows the model the perturbation was crafted on, columns the model it was
    evaluated on; the diagonal is the white-box attack."""
    fig = make_subplots(
        rows=1, cols=len(values), subplot_titles=[TRANSFER_VALUES[v] for v in values], horizontal_spacing=0.18
    )
    for i, value in enumerate(values):
        matrix = results.transfer_matrix(summary, eps, value)
        fig.add_trace(
            go.Heatmap(
                z=matrix.to_numpy().tolist(), x=list(matrix.columns), y=list(matrix.index),
                coloraxis="coloraxis", texttemplate="%{z:.3f}",
                hovertemplate="crafted on %{y}<br>evaluated on %{x}: " + TRANSFER_VALUES[value]
                + " %{z:.3f}<extra></extra>",
            ),
            1, i + 1,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", title="crafted on" if i == 0 else None, row=1, col=i + 1)
        fig.update_xaxes(title="evaluated on", row=1, col=i + 1)
    fig.update_layout(
        title=f"Transfer at eps {eps_text(eps)} (diagonal: white-box)", height=420,
        coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1),
    )  # fmt: skip
    return fig


FLOOR_NAME = "random-weights floor"


def with_floor(
    fig: go.Figure, floors: dict[str, float], bands: dict[str, tuple[float, float]] | None = None
) -> go.Figure:
    """Dotted horizontal lines at each model's sanity floor (the NISSIM of unrelated maps, :mod:`gcdash.sanity`):
    the level a MOD would reach if the attack left nothing of the explanation; ``bands`` (model → lowest and
    highest over the floor's seeds) shade its spread."""
    shown = {model: level for model, level in floors.items() if np.isfinite(level)}
    bands = {m: b for m, b in (bands or {}).items() if m in shown and all(np.isfinite(b))}
    for level in shown.values():
        fig.add_hline(y=level, line_dash="dot", line_color="grey", opacity=0.8)
    for low, high in bands.values():
        fig.add_hrect(y0=low, y1=high, fillcolor="grey", opacity=0.12, line_width=0)
    if shown:  # one label for all the lines: close floors would print their labels over each other
        spread = {m: f" [{b[0]:.3f}–{b[1]:.3f}]" for m, b in bands.items()}
        text = f"dotted: {FLOOR_NAME} (" + ", ".join(f"{m} {v:.3f}{spread.get(m, '')}" for m, v in shown.items())
        text += ", shaded: lowest–highest over its seeds)" if bands else ")"
        fig.add_annotation(
            text=text, x=0, xref="paper", y=max(shown.values()), yref="y", yanchor="bottom", xanchor="left",
            showarrow=False, font=dict(size=11, color="grey"),
        )  # fmt: skip
    return fig


def floor_vs_depth(fig: go.Figure, floor: pd.DataFrame) -> go.Figure:
    """The sanity floor per layer (``model``, ``layer``, ``nissim``) as dotted lines in every panel of
    :func:`mod_vs_depth`: one legend entry per model (a click on it hides that floor in every panel)."""
    table = layer_depth(floor)
    colors = _colors(list(dict.fromkeys(table["model"])))
    for model, g in table.sort_values("depth").groupby("model", sort=False):
        if {"floor_low", "floor_high"} <= set(g.columns):  # the spread over the floor's seeds, shaded
            fig.add_trace(
                go.Scatter(
                    x=[*g["depth"], *g["depth"][::-1]], y=[*g["floor_high"], *g["floor_low"][::-1]], fill="toself",
                    mode="lines", line=dict(width=0), fillcolor=colors[model], opacity=0.15, hoverinfo="skip",
                    legendgroup=f"floor-{model}", showlegend=False, name=f"{model}: {FLOOR_NAME} spread",
                ),
                row="all", col="all",
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=g["depth"], y=g["nissim"], mode="lines", line=dict(dash="dot", color=colors[model]),
                name=f"{model}: {FLOOR_NAME}", legendgroup=f"floor-{model}", showlegend=False,
                customdata=g[["layer"]].to_numpy(), hovertemplate="%{customdata[0]}: floor %{y:.3f}<extra></extra>",
            ),
            row="all", col="all",
        )  # fmt: skip
        lines = (t for t in fig.data if t.legendgroup == f"floor-{model}" and t.fill != "toself")
        next(lines).showlegend = True  # the first panel's copy of the line
    return fig


def fragility_bars(table: pd.DataFrame) -> go.Figure:
    """MOD per model under each attack of a :func:`gcdash.fragility.fragility` table (each model's deepest layer,
    largest eps): one bar per attack, the share of predictions it kept in the hover and under the bar, and each
    model's random-weights floor (unrelated maps) as a black mark."""
    last = pd.concat([g[(g["layer"] == g["layer"].iloc[-1]) & (g["eps"] == g["eps"].max())]
                      for _, g in table.groupby("model", sort=False)])  # fmt: skip
    fig = go.Figure()
    for i, (attack, g) in enumerate(last.groupby("attack", sort=False)):
        fig.add_bar(
            x=g["model"], y=g["mod"], name=attack, marker_color=COLORS[i % len(COLORS)],
            text=[f"kept {k:.0%}" for k in g["kept"]], textposition="outside",
            hovertemplate="%{x}<br>" + attack + ": MOD %{y:.3f}<br>prediction %{text}<extra></extra>",
        )  # fmt: skip
    floors = last.drop_duplicates("model")
    fig.add_scatter(
        x=floors["model"], y=floors["floor"], mode="markers", name="random-weights floor",
        marker={"symbol": "line-ew-open", "size": 40, "color": "black", "line": {"width": 3, "color": "black"}},
        hovertemplate="%{x}<br>floor (unrelated maps) %{y:.3f}<extra></extra>",
    )  # fmt: skip
    eps = ", ".join(dict.fromkeys(eps_text(e) for e in last["eps"]))
    return fig.update_layout(
        barmode="group", title=f"MOD under each attack at eps {eps}, beside the floor of unrelated maps",
        yaxis_title="MOD (mean NISSIM)", xaxis_title="",
    )  # fmt: skip
