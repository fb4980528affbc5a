"""Exports for people without the app: a self-contained HTML report of the comparison charts, and single charts
as offline HTML or, where kaleido is installed, PNG. Pure Python: no streamlit here."""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from gcdash import results
from gcdash.plots import accuracy_curves, distribution, mod_bands, mod_vs_drop, vid_bars
from gcdash.results import summary_with_ci

PNG_AVAILABLE = importlib.util.find_spec("kaleido") is not None


def comparison_figures(per_image: pd.DataFrame) -> dict[str, go.Figure]:
    """The Compare page's charts (title → figure), also the body of the HTML report."""
    summary = summary_with_ci(per_image)
    return {
        "MOD vs eps": mod_bands(summary),
        "VID": vid_bars(summary),
        "Accuracy under attack": accuracy_curves(summary),
        "MOD vs accuracy drop": mod_vs_drop(summary),
        "NISSIM distributions": distribution(per_image, "box"),
    }


def report_html(per_image: pd.DataFrame, title: str = "gcdash report", subtitle: str = "") -> str:
    """A self-contained HTML page (plotly.js inlined once) with the comparison charts and the MOD/VID table."""
    figures = comparison_figures(per_image)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures.values())]
    table = results.mod_vid_table(results.summary(per_image)).to_html(index=False, float_format="{:.4f}".format)
    if "attack" in per_image:
        subtitle = f"{subtitle} · attacks: {', '.join(per_image['attack'].unique())}".lstrip(" ·")
    body = "\n".join(f"<section>{p}</section>" for p in parts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p><h2>MOD / VID</h2>{table}{body}</body></html>"
    )


def figure_html(fig: go.Figure) -> str:
    """One chart as a self-contained HTML page (works offline)."""
    return fig.to_html(full_html=True, include_plotlyjs=True)


def figure_png(fig: go.Figure) -> bytes | None:
    """PNG bytes through kaleido, or None where kaleido is not installed (:data:`PNG_AVAILABLE`)."""
    return fig.to_image(format="png", scale=2) if PNG_AVAILABLE else None


@dataclass(frozen=True)
class ChartFormat:
    """How single charts download: PNG where kaleido is installed, else offline HTML."""

    label: str
    extension: str
    mime: str
    render: Callable[[go.Figure], bytes | str | None]


CHART_FORMAT = (
    ChartFormat("PNG", "png", "image/png", figure_png)
    if PNG_AVAILABLE
    else ChartFormat("HTML", "html", "text/html", figure_html)
)
