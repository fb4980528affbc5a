"""Gallery: for one model and one eps, a row per image.

Each row: the clean image (true label, prediction, confidence), the adversarial image (prediction, confidence,
a red frame when the attack flips the prediction), the perturbation (amplified), the clean and the adversarial
CAM over their images, their absolute difference, and the NISSIM of the pair. A second model can sit beside the
first; extra views (Guided Grad-CAM, counterfactual Grad-CAM, input gradient) beside the CAMs.
"""

import streamlit as st

from gcdash.ui import gallery, page, run
from gcdash.ui.values import bound, keep_valid

st.title("Gallery")
st.caption(
    "How the attack at the sidebar's gallery eps moves each image's explanation. Colormap, opacity, "
    "sorting, filtering and paging only change the view."
)

with page.guard():
    sel = page.selection()
    run.require_models(sel)
    left, middle, right, far = st.columns([1, 1, 1, 2])
    keep_valid("gmodel", list(sel.models), sel.models[0])
    model = bound(left.selectbox, "Model", "gmodel", sel.models)
    others = [m for m in sel.models if m != model]
    second = middle.selectbox(
        "Side by side with",
        ["", *others],
        format_func=lambda m: m or "—",
        key="g.second",
        persist_state="session",
        disabled=not others,
    )
    loaded = run.handles(sel, [model, second] if second else [model])
    layers = loaded[model].resolve_layers(sel.layers_for(model))
    keep_valid(f"g.layer.{model}", layers, layers[-1])
    layer = bound(
        right.selectbox, "Layer", f"g.layer.{model}", layers,
        help="the layers the sidebar's Layers setting selects: choose 'every layer' or 'pick per model' there for more",
    )  # fmt: skip
    views = gallery.view_names()
    extra = far.multiselect(
        "Views beside the CAMs",
        list(views),
        format_func=views.get,
        key="g.views",
        placeholder="none (each costs extra model passes)",
    )

    panels = [run.gallery_for(sel, loaded[model], model, layer)]
    if second in loaded:
        layer2 = gallery.second_layer(loaded[second].resolve_layers(sel.layers_for(second)), layer)
        panels.append(run.gallery_for(sel, loaded[second], second, layer2))
    if extra:
        panels = [run.extra_views(sel, loaded[p.model], p, extra) for p in panels]

    gallery.summary(panels)
    gallery.show(panels)
