"""Overview: the story of the current selection on one screen, for someone who has not read the paper: what was
attacked, how far the explanations moved (beside random noise of the same size), whose moved least, and the image
whose explanation moved most."""

import pandas as pd
import streamlit as st

from gcdash import cams, results
from gcdash.config import eps_text
from gcdash.ui import cache, gallery, page, run
from gcdash.ui.text import plain

st.title("What an attack does to the explanations")

with page.guard():
    sel = page.selection()
    st.caption(
        f"A CNN's explanation (a heatmap of where the network looks to decide, here by "
        f"{plain(cams.get(sel.method).label)}) should not change much when an image is changed imperceptibly. Here "
        "each image is attacked (every pixel moved by at most eps), explained before and after, and the two heatmaps "
        "are compared: MOD is 0 when they are the same, 1 when opposite."
    )
    run.require_models(sel)
    story = (0.0, sel.gallery_eps)  # one eps tells the story (and costs a third of the full set on a cold cache)
    table = run.selection_table(sel, attacks=run.with_noise_control(sel), eps=story)
    summary = cache.summary_ci(table)
    run.warn_zero_maps(summary)
    eps = results.narrative.headline_eps(summary, sel.gallery_eps)

    st.subheader("What we found")
    st.markdown("\n".join(f"- {plain(line)}" for line in results.narrative.takeaway(summary, eps)))

    if eps is not None:
        attacked = results.narrative.story_rows(summary, eps)  # the noise control itself when it is the attack
        noise = summary[(summary["eps"] == eps) & (summary["attack"] == "noise")].groupby("model").tail(1)
        noise = noise.set_index("model")["mod"] if sel.attack.name != "noise" else pd.Series(dtype=float)
        cards = st.columns(max(1, len(attacked)))
        for card, r in zip(cards, attacked.itertuples()):
            base = noise.get(r.model)
            delta = None if base is None or pd.isna(base) else f"{r.mod - base:+.3f} vs noise"
            card.metric(r.model, f"{r.mod:.3f}", delta, delta_color="inverse", border=True,
                        help=f"MOD at eps {eps_text(eps)}; {r.flip_rate:.0%} of predictions flipped")  # fmt: skip

        moved = attacked.sort_values("mod").iloc[-1].model if len(attacked) else sel.models[0]
        handle = run.handles(sel, [moved])[moved]
        layer = handle.resolve_layers(sel.layers_for(moved))[-1]
        data = run.gallery_for(sel, handle, moved, layer)
        best = int(data.table["nissim"].fillna(-1).to_numpy().argmax())
        st.subheader(f"The image whose explanation moved most ({plain(moved)}, eps {eps_text(sel.gallery_eps)})")
        gallery.header(gallery.columns_of([data]))
        gallery.row([data], best, gallery.Look())
        st.caption(
            f"At the sidebar's gallery eps ({eps_text(sel.gallery_eps)}). The Gallery page shows every image; Compare "
            "models has the curves over every eps, the noise control beside them, and the report."
        )
