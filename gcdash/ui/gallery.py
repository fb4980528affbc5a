"""The gallery's view: a row per image, cells from :class:`~gcdash.engine.Gallery`, display controls.

Everything here only draws data already computed: the display controls (colormap, opacity, sort, filter, rows
per page, page, enlarged image) live in a fragment, so changing them reruns this view alone and runs no model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from gcdash.config import eps_text
from gcdash.engine import Gallery
from gcdash.ui import images
from gcdash.ui.text import plain
from gcdash.ui.values import bound, keep_valid, sync_url

THUMB, LARGE = 160, 320
SORTS: dict[str, tuple[str | None, bool]] = {
    "NISSIM, high → low": ("nissim", False),
    "NISSIM, low → high": ("nissim", True),
    "confidence drop": ("conf_drop", False),
    "image order": (None, True),
}
FILTERS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "all": lambda t: pd.Series(True, index=t.index),
    "flipped": lambda t: t["flipped"],
    "kept": lambda t: ~t["flipped"],  # short labels: the control fits its column at 1400 px
}


@dataclass(frozen=True)
class Look:
    """Display-only settings: colormap, overlay opacity, image size."""

    cmap: str = "jet"
    opacity: float = 0.5
    size: int = THUMB


# -- cells: (panel, row, look) → (image, caption) -----------------------------------------------------------
Cell = Callable[[Gallery, int, Look], tuple[np.ndarray, str]]


def _clean(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
    r = d.table.iloc[i]
    return images.upscale(images.to_uint8(d.clean[i]), look.size), f"{plain(r.pred_clean_name)} {r.conf_clean:.0%}"


def _adversarial(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
    r = d.table.iloc[i]
    image = images.upscale(images.to_uint8(d.adv[i]), look.size)
    flag = " · FLIPPED" if r.flipped else ""
    return (images.framed(image) if r.flipped else image), f"{plain(r.pred_adv_name)} {r.conf_adv:.0%}{flag}"


def _perturbation(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
    gain = images.amplification(d.eps)
    image = images.upscale(images.perturbation(d.clean[i], d.adv[i], d.eps), look.size)
    return image, f"x′ − x, amplified ×{gain:.0f}" if gain else "no perturbation (eps 0)"


def _overlay(side: str) -> Cell:
    def cell(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
        base, cam = (d.clean[i], d.clean_map[i]) if side == "clean" else (d.adv[i], d.adv_map[i])
        mask = None if d.masks is None else d.masks[i]
        shown = images.outlined(images.overlay(base, cam, look.cmap, look.opacity), mask)  # the object's outline
        return images.upscale(shown, look.size), f"{side} · {d.layer}{_where(d, i, side)}"

    return cell


def _where(d: Gallery, i: int, side: str) -> str:
    """ " · on/off the object" from the pointing game, where the images have masks."""
    hit = d.table[f"hit_{side}"].iloc[i] if f"hit_{side}" in d.table else np.nan
    return "" if pd.isna(hit) else (" · on the object" if hit else " · off the object")


def _difference(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
    diff = images.difference(d.clean_map[i], d.adv_map[i], look.cmap)
    mean = float(np.abs(d.adv_map[i] - d.clean_map[i]).mean())
    return images.upscale(diff, look.size), f"mean |Δ| {mean:.2f}"


def _extra(view: str, side: str) -> Cell:
    def cell(d: Gallery, i: int, look: Look) -> tuple[np.ndarray, str]:
        base = d.clean[i] if side == "clean" else d.adv[i]
        cam = d.extra[view][0 if side == "clean" else 1][i]
        return images.upscale(images.overlay(base, cam, look.cmap, look.opacity), look.size), f"{view} ({side})"

    return cell


CELLS: dict[str, Cell] = {
    "clean": _clean,
    "adversarial": _adversarial,
    "perturbation": _perturbation,
    "clean CAM": _overlay("clean"),
    "adversarial CAM": _overlay("adv"),
    "|difference|": _difference,
}
SHARED = ["clean"]  # drawn once per row; the other cells once per model
PER_MODEL = {
    1: ["adversarial", "perturbation", "clean CAM", "adversarial CAM", "|difference|"],
    2: ["adversarial", "clean CAM", "adversarial CAM", "|difference|"],
}


def columns_of(panels: list[Gallery]) -> list[tuple[str, Gallery, Cell]]:
    """(title, panel, cell) for each image column of a row, in order."""
    cols = [(name, panels[0], CELLS[name]) for name in SHARED]
    for d in panels:
        prefix = f"{d.model}: " if len(panels) > 1 else ""
        cols += [(prefix + name, d, CELLS[name]) for name in PER_MODEL[min(len(panels), 2)]]
        for view in d.extra:
            cols += [(f"{prefix}{view} ({side})", d, _extra(view, side)) for side in ("clean", "adv")]
    return cols


# -- rows ---------------------------------------------------------------------------------------------------
def order(table: pd.DataFrame, sort: str, show: str) -> list[int]:
    """Row positions after filtering (``show`` in :data:`FILTERS`) and sorting (``sort`` in :data:`SORTS`)."""
    kept = table[FILTERS[show](table)]
    column, ascending = SORTS[sort]
    if column is not None:
        kept = kept.sort_values(column, ascending=ascending, kind="stable")
    return list(kept.index)


def info(panels: list[Gallery], i: int) -> str:
    """The text cell of a row: image id, true label, and per model the NISSIM and whether the attack flipped it."""
    r = panels[0].table.iloc[i]
    lines = [f"**{plain(r.image_id)}**", f"true: {plain(r.label_name)}"]
    for d in panels:
        row = d.table.iloc[i]
        badge = ":red-badge[flipped]" if row.flipped else ":green-badge[kept]"
        name = f"{plain(d.model)}: " if len(panels) > 1 else ""
        score = "no map (all zero)" if pd.isna(row.nissim) else f"**{row.nissim:.3f}**"
        lines.append(f"{name}NISSIM {score} {badge}")
    return "  \n".join(lines)


def header(cols: list[tuple[str, Gallery, Cell]]) -> None:
    for column, title in zip(st.columns([1.4] + [1] * len(cols)), ["image", *(c[0] for c in cols)]):
        column.caption(f"**{title}**")


def row(panels: list[Gallery], i: int, look: Look) -> None:
    cols = columns_of(panels)
    slots = st.columns([1.4] + [1] * len(cols), vertical_alignment="center")
    slots[0].markdown(info(panels, i))
    for slot, (_, d, cell) in zip(slots[1:], cols):
        image, caption = cell(d, i, look)
        slot.image(image, caption=caption, width="stretch")


def enlarged(panels: list[Gallery], i: int, look: Look) -> None:
    """One image at a large size, every cell with its title, and the numbers of its row."""
    big = Look(look.cmap, look.opacity, LARGE)
    with st.container(border=True):
        st.markdown(info(panels, i))
        cols = columns_of(panels)
        per_row = 4
        for start in range(0, len(cols), per_row):
            for slot, (title, d, cell) in zip(st.columns(per_row), cols[start : start + per_row]):
                image, caption = cell(d, i, big)
                text = caption if caption.startswith(title) else f"{title}: {caption}"  # views caption themselves
                slot.image(image, caption=text, width="stretch")
        numbers = pd.DataFrame([{"model": d.model, **d.table.iloc[i].to_dict()} for d in panels])
        st.dataframe(numbers, hide_index=True)


def _accuracy(t: pd.DataFrame, column: str) -> str:
    labelled = t[t["label"] >= 0]
    return f"{(labelled[column] == labelled['label']).mean():.0%}" if len(labelled) else "n/a"


def summary(panels: list[Gallery]) -> None:
    """MOD, share flipped and accuracy at this eps: a row of cards per model (side by side, a row each, so that the
    labels and numbers are not cut)."""
    for d in panels:
        t = d.table
        if len(panels) > 1:
            st.markdown(f"**{plain(d.model)}** · {plain(d.layer)}")
        slots = iter(st.columns(4, border=True))
        next(slots).metric("MOD", f"{t['nissim'].mean():.3f}", help=f"mean NISSIM at this eps, layer {d.layer}")
        next(slots).metric("flipped", f"{t['flipped'].mean():.0%}", help="adversarial top-1 ≠ clean top-1")
        next(slots).metric("clean accuracy", _accuracy(t, "pred_clean"))
        next(slots).metric("adversarial accuracy", _accuracy(t, "pred_adv"))


def _clamp_page(key: str, pages: int) -> None:
    if st.session_state.get(key, 1) > pages:
        st.session_state[key] = 1


@st.fragment
def show(panels: list[Gallery]) -> None:
    """The display controls and the rows (a fragment: these controls never trigger model work)."""
    c1, c2, c3, c4, c5, c6 = st.columns([0.9, 1.1, 1.3, 1.6, 0.7, 1.6])
    cmap = c1.selectbox("Colormap", images.COLORMAPS, key="g.cmap", persist_state="session")
    opacity = c2.slider("CAM opacity", 0.0, 1.0, 0.5, 0.05, key="g.opacity", persist_state="session")
    sort = c3.selectbox("Sort by", list(SORTS), key="g.sort", persist_state="session")
    show_ = c4.segmented_control(
        "Show", list(FILTERS), default="all", key="g.filter", persist_state="session",
        help="flipped: the attack changed the top-1 prediction; kept: it did not",
    )  # fmt: skip
    per_page = c5.selectbox("Rows", [4, 8, 16, 32], index=1, key="g.rows", persist_state="session")
    look = Look(cmap, opacity)
    ids = list(panels[0].table["image_id"])
    keep_valid("image", ["", *ids], "")
    focus = bound(c6.selectbox, "Enlarge one image", "image", ["", *ids], format_func=lambda s: s or "—")
    if focus in ids:
        enlarged(panels, ids.index(focus), look)
    rows = order(panels[0].table, sort, show_ or "all")
    pages = max(1, math.ceil(len(rows) / per_page))
    _clamp_page("g.page", pages)
    attack = plain(attack_text(panels[0].table))
    st.caption(f"{len(rows)} of {len(ids)} images · {attack} at eps {eps_text(panels[0].eps)}")
    header(columns_of(panels))
    number = st.session_state.get("g.page", 1)
    for i in rows[(number - 1) * per_page : number * per_page]:
        row(panels, i, look)
    st.pagination(pages, key="g.page", persist_state="session")
    sync_url()  # the enlarged image is part of the link


def attack_text(table) -> str:
    """The attack behind a gallery's rows, for people: "FGSM", "PGD (L∞) crafted on demo-vgg"."""
    from gcdash import attacks

    first = table.iloc[0]
    label = attacks.get(first["attack"]).label
    transfer = first["source"] not in (first["model"], "none")
    return f"{label} crafted on {first['source']}" if transfer else label


def view_names() -> dict[str, str]:
    """Views that can sit beside the CAMs (name → label), from ``gcdash.cams.views``; empty without it."""
    try:
        from gcdash.cams import views
    except ImportError:
        return {}
    return {name: views.VIEWS.get(name).label for name in views.names()}


def second_layer(handle_layers: list[str], layer: str) -> str:
    """The layer of the side-by-side model: the same name when it has one, else its deepest selected layer."""
    return layer if layer in handle_layers else handle_layers[-1]
