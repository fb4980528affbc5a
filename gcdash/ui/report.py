"""Exports for people without the app: a self-contained HTML report (the takeaway in sentences, the settings, short
definitions, the images whose explanation moved most, the MOD/VID table, the comparison charts), and single charts
as offline HTML or, where kaleido is installed, PNG. Pure Python: no streamlit here."""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.util
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from gcdash import attacks, cams, metrics, results
from gcdash.config import eps_text
from gcdash.engine import Gallery
from gcdash.errors import GcdashError
from gcdash.plots import accuracy_curves, distribution, mod_bands, mod_vs_drop, vid_bars
from gcdash.results import summary_with_ci
from gcdash.targets import TARGETS
from gcdash.ui.images import overlay, to_uint8, upscale
from gcdash.ui.state import Selection

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


DEFINITIONS = [
    (
        "NISSIM",
        "(1 − SSIM) / 2 of the clean and the attacked image's heatmaps: 0 = the same explanation, 1 = opposite.",
    ),
    ("MOD", "Mean Observed Dissimilarity: the mean NISSIM over the attacked images at one eps."),
    ("VID", "Variation in Dissimilarity: how much MOD changes across the eps levels (its standard deviation)."),
    ("eps", "the attack's budget: no pixel moves by more than eps (8/255 is 8 grey levels of 255)."),
    ("flipped / kept", "images whose top-1 prediction the attack changed / did not change."),
    ("noise control", "random ±eps per pixel, the same budget in a direction unrelated to the model."),
    (
        "random-weights floor",
        "the NISSIM between the model's map and that of the same network with re-initialised "
        "weights (Adebayo et al. 2018): how far apart unrelated maps are.",
    ),
    ("transfer", "the perturbation crafted on one model, evaluated on another (the attacker never saw it)."),
]


#: where each kind of id gets its display name ("gradcam" → "Grad-CAM"): the registries
ENTRIES: dict[str, Callable[[str], object]] = {
    "method": cams.get, "attack": attacks.get, "comparison": metrics.comparison,
}  # fmt: skip


def display_name(kind: str, name: str) -> str:
    """The registry's display name of ``name`` (a ``kind`` of :data:`ENTRIES`); the id itself where the registry
    does not have it (a run cached by another version)."""
    try:
        return str(getattr(ENTRIES[kind](name), "label", name))
    except GcdashError:
        return name


def _with_params(label: str, params: Sequence[tuple[str, object]]) -> str:
    return label + (f" ({', '.join(f'{k}={v}' for k, v in params)})" if params else "")


def selection_settings(sel: Selection, images: str) -> dict[str, str]:
    """The report's settings table for the sidebar's selection ``sel``: display names, not ids."""
    comparisons = ["NISSIM", *(display_name("comparison", c) for c in sel.comparisons)]
    return {
        "images": images, "models": ", ".join(sel.models),
        "explanation": _with_params(display_name("method", sel.method), sel.params),
        "map comparison": ", ".join(comparisons), "layers": sel.layer_mode,
        "attack": _with_params(display_name("attack", sel.attack.name), sel.attack.params),
        "eps": ", ".join(eps_text(e) for e in sel.eps), "gallery eps": eps_text(sel.gallery_eps),
        "target": f"{sel.target}: {TARGETS.get(sel.target).description}", "device": sel.device,
    }  # fmt: skip


@dataclass(frozen=True)
class GalleryRow:
    """One image of the report's gallery: a caption and its pictures (caption, PNG bytes) left to right."""

    caption: str
    pictures: tuple[tuple[str, bytes], ...]


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(upscale(image, 160)).save(buf, format="PNG")
    return buf.getvalue()


def gallery_rows(data: Gallery, k: int = 3) -> list[GalleryRow]:
    """The ``k`` images of a :class:`~gcdash.engine.Gallery` whose explanation moved most: clean image,
    attacked image, and their heatmaps."""
    order = data.table["nissim"].fillna(-1).sort_values(ascending=False).index[:k]
    rows = []
    for i in order:
        r = data.table.loc[i]
        flip = "flipped" if r.flipped else "kept"
        rows.append(
            GalleryRow(
                f"{data.model} · {r.image_id} · true {r.label_name} · NISSIM {r.nissim:.3f} ({flip})",
                (
                    (f"clean: {r.pred_clean_name} {r.conf_clean:.0%}", _png(to_uint8(data.clean[i]))),
                    (f"attacked: {r.pred_adv_name} {r.conf_adv:.0%}", _png(to_uint8(data.adv[i]))),
                    (f"clean map · {data.layer}", _png(overlay(data.clean[i], data.clean_map[i]))),
                    ("attacked map", _png(overlay(data.adv[i], data.adv_map[i]))),
                ),
            )
        )
    return rows


def _gallery_html(rows: Sequence[GalleryRow]) -> str:
    figures = []
    for row in rows:
        cells = "".join(
            f"<figure><img alt='{html.escape(c)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"<figcaption>{html.escape(c)}</figcaption></figure>"
            for c, png in row.pictures
        )
        figures.append(f"<div class='row'><p>{html.escape(row.caption)}</p>{cells}</div>")
    return "".join(figures)


def report_html(
    per_image: pd.DataFrame,
    title: str = "gcdash report",
    settings: Mapping[str, str] | str | None = None,
    rows: Sequence[GalleryRow] = (),
    reading: Mapping[str, Sequence[str]] | None = None,
    extra: Mapping[str, go.Figure] | None = None,
) -> str:
    """A self-contained HTML page for people without the app (plotly.js inlined once, images embedded): the
    takeaway in sentences, the settings, short definitions, the images whose explanation moved most, the per-model
    reading of MOD (``reading``: model → sentences), the MOD/VID table, the comparison charts and ``extra`` ones
    (the transfer matrix)."""
    summary = results.summary_with_ci(per_image)  # the takeaway names a winner only outside the bands
    settings = {"settings": settings} if isinstance(settings, str) else dict(settings or {})
    settings.setdefault("made", dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    figures = {**comparison_figures(per_image), **(extra or {})}
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures.values())]
    table = results.mod_vid_table(summary).to_html(index=False, float_format="{:.4f}".format, na_rep="n/a")
    takeaway = "".join(f"<li>{html.escape(line)}</li>" for line in results.narrative.takeaway(summary))
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    terms = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in DEFINITIONS)
    gallery = f"<h2>The images whose explanation moved most</h2>{_gallery_html(rows)}" if rows else ""
    if reading:
        said = "".join(
            f"<p><b>{html.escape(model)}</b>: {html.escape(' '.join(lines))}</p>" for model, lines in reading.items()
        )
        gallery += f"<h2>Reading MOD</h2>{said}"
    body = "\n".join(f"<section>{p}</section>" for p in parts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><h2>What we found</h2><ul class='takeaway'>{takeaway}</ul>"
        f"<h2>Settings</h2><table class='facts'>{facts}</table><h2>Terms</h2><dl>{terms}</dl>{gallery}"
        f"<h2>MOD / VID</h2>{table}{body}<p class='foot'>Made with gcdash; method after Chakraborty et al., "
        "Generalizing Adversarial Explanations with Grad-CAM, CVPRW 2022.</p></body></html>"
    )


_STYLE = (  # margins on any window and on paper; wide tables and charts scroll instead of running off the page
    "body{font-family:sans-serif;margin:2em auto;padding:0 2.5em;max-width:1200px;color:#222;line-height:1.45}"
    "@page{margin:2cm 1.8cm} @media print{body{padding:0;max-width:none} section{break-inside:avoid}}"
    "section{max-width:100%;overflow-x:auto} table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} .facts th,.facts td{text-align:left}"
    ".takeaway li{font-size:1.15em;margin:.4em 0} dt{font-weight:bold} dd{margin:0 0 .5em 1.5em}"
    ".row{margin:1em 0} .row figure{display:inline-block;margin:0 .6em 0 0;text-align:center}"
    ".row img{image-rendering:pixelated;border:1px solid #ddd} figcaption{font-size:.85em} .foot{color:#777}"
)


def report_title(attacks: Sequence[str], models: Sequence[str]) -> str:
    """A title a person reads: "How FGSM moves the explanations of demo-vgg and demo-resnet"."""
    names = list(dict.fromkeys(models))
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    what = " and ".join(a.upper() for a in dict.fromkeys(a for a in attacks if a != "noise")) or "noise"
    return f"How {what} moves the explanations of {who}"


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
