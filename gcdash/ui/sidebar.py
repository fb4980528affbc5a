"""The shared sidebar: data, models, CAM method and parameters, layers, eps, target policy, device.

Its values live in :mod:`gcdash.ui.values` (session state and the URL); :func:`render` draws the widgets and
returns the :class:`~gcdash.ui.state.Selection` the pages read with :func:`gcdash.ui.page.selection`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from typing import Any

import streamlit as st
import torch

from gcdash import attacks, cams, data, metrics, models, plan
from gcdash import precision as precisions
from gcdash.config import DEFAULT_EPS, AttackConfig, DataConfig, ModelSpec, eps_text
from gcdash.errors import GcdashError
from gcdash.targets import TARGETS
from gcdash.ui import cache, values
from gcdash.ui.state import (
    ATTACK_PREFIX,
    LAYERS_PREFIX,
    NAMES_PREFIX,
    PARAM_PREFIX,
    PARAMS,
    WEIGHTS_PREFIX,
    Selection,
    decode_value,
    parse_eps_texts,
    value_text,
)
from gcdash.ui.text import plain
from gcdash.ui.values import bound, keep_valid

SELECTION = "gcdash.selection"
UPLOADS = "gcdash.uploads"
EXTRA_EPS = ["32/255"]
MAX_IMAGES, MAX_SEED = 5000, 10**6
NAMED_CLASSES = ("paper", "library", "own")  # families whose checkpoints may need class names
LAYER_MODES = {"default": "default (deepest)", "all": "every layer", "custom": "pick per model"}


def render() -> Selection:
    """Draw the sidebar and return the selection (also kept in session state for the pages)."""
    values.start_run()
    with st.sidebar:
        values.problem_box()
        data_config = _data_section()
        chosen = _models_section()
        specs = _weights_section(chosen)
        method, params = _method_section()
        layer_mode, custom = _layers_section(specs)
        comparisons = _comparisons_section()
        faithfulness = _faithfulness_switch()
        attack = _attack_section()
        eps, gallery_eps = _eps_section()
        keep_valid("target", TARGETS.names(), "pred")
        target = bound(st.selectbox, "Target policy", "target", TARGETS.names(), help=_targets_help())
        device = _device_caption()
        precision = _advanced_section(device)
    values.sync_url()
    sel = Selection(
        data_config, tuple(chosen), method, params, layer_mode, custom, eps, gallery_eps, target, device, specs,
        attack, comparisons, faithfulness, precision,
    )  # fmt: skip
    st.session_state[SELECTION] = sel
    return sel


# -- data ---------------------------------------------------------------------------------------------------
def _demo() -> DataConfig:
    from gcdash.data.demo import CLASS_NAMES

    n, seed = _count()
    keep_valid("split", ["test", "val", "train"], "test")
    keep_valid("classes", list(CLASS_NAMES), [])
    split = bound(st.selectbox, "Split", "split", ["test", "val", "train"])
    classes = bound(st.multiselect, "Classes", "classes", list(CLASS_NAMES), placeholder="all classes")
    options = (("split", split),) + ((("classes", tuple(classes)),) if classes else ())
    return DataConfig("demo", n, seed, options)


def _count() -> tuple[int, int]:
    values.keep_in_range("n", 1, MAX_IMAGES)
    values.keep_in_range("seed", 0, MAX_SEED)
    n = bound(st.number_input, "Images", "n", min_value=1, max_value=MAX_IMAGES, step=4, help="how many to draw")
    seed = bound(st.number_input, "Subset seed", "seed", min_value=0, max_value=MAX_SEED)
    return int(n), int(seed)


def _folder() -> DataConfig:
    from gcdash.data.folder import class_folders

    n, seed = _count()
    path = bound(st.text_input, "Folder", "folder", placeholder="/path/to/images", help="one sub-folder per class")
    try:
        names = class_folders(path) if path else []
    except OSError:
        names = []
    keep_valid("classes", names, [])
    classes = bound(st.multiselect, "Classes", "classes", names, placeholder="all classes")
    options = (("classes", tuple(classes)),) if classes else ()
    return DataConfig(f"folder:{path}", n, seed, options)


def _listing() -> DataConfig:
    n, seed = _count()
    path = bound(
        st.text_input, "List file", "listing", placeholder="/path/to/images.csv",
        help="a CSV with columns path, label (a class name, an index or a WordNet id) and optionally mask; paths "
        "relative to the file's folder",
    )  # fmt: skip
    return DataConfig(f"list:{path}", n, seed)


def _upload() -> DataConfig:
    files = st.file_uploader(
        "Images", type=["png", "jpg", "jpeg", "webp"], accept_multiple_files=True, key="upload_files"
    )
    blobs = [(f.name, f.getvalue()) for f in files or []]
    digest = hashlib.sha256(b"".join(n.encode() + hashlib.sha256(b).digest() for n, b in blobs)).hexdigest()[:16]
    samples, problems = _decode_uploads(digest, blobs) if blobs else (None, [])
    for problem in problems:
        st.warning(plain(problem))
    st.session_state[UPLOADS] = samples if samples is not None and len(samples) else None
    return DataConfig("upload", None, 0, (("files", digest),))


@st.cache_data(max_entries=4, show_spinner="Decoding uploads…")
def _decode_uploads(digest: str, _blobs: list[tuple[str, bytes]]) -> tuple:
    from gcdash.data.uploads import from_uploads

    return from_uploads(_blobs)


SOURCES: dict[str, tuple[str, Callable[[], DataConfig]]] = {
    "demo": ("built-in demo shapes", _demo),
    "folder": ("image folder (class sub-folders)", _folder),
    "list": ("list of files (CSV)", _listing),
    "upload": ("upload images", _upload),
}


def _available_sources() -> list[str]:
    present = {
        "demo": "demo" in data.names(),
        "folder": "folder" in data.names(),
        "list": "list" in data.names(),
        "upload": importlib.util.find_spec("gcdash.data.uploads") is not None,
    }
    return [name for name in SOURCES if present[name]]


def _data_section() -> DataConfig:
    st.header("Data")
    sources = _available_sources()
    keep_valid("source", sources, "demo")
    source = bound(st.selectbox, "Source", "source", sources, format_func=lambda s: SOURCES[s][0])
    return SOURCES[source][1]()


# -- models, method, layers ---------------------------------------------------------------------------------
def _models_section() -> list[str]:
    st.header("Models")
    names = _model_options()
    keep_valid("models", names, [])
    chosen = bound(
        st.multiselect,
        "Models",
        "models",
        names,
        format_func=_model_label,
        label_visibility="collapsed",
        placeholder="Choose or type: demo-resnet, tv:resnet18, timm:convnext_tiny…",
        help="demo-*: small CNNs trained on the demo shapes (fast); the paper's ImageNet architectures; tv:… and "
        "timm:…: any torchvision or timm classifier (its pretrained weights where cached, or a checkpoint, or "
        "random); own-code models (py:…) are those the server's models file names",
    )
    if not chosen:
        st.warning("Pick at least one model.")
    return chosen


def _weights_section(chosen: list[str]) -> tuple[tuple[str, ModelSpec], ...]:
    """Per model: a checkpoint path (and, for the paper's architectures, class names); the centre-crop switch."""
    with st.expander("Weights and preprocessing"):
        crop = bound(st.checkbox, "Centre-crop to each model's input", "crop", help="untick for pre-aligned face crops")
        return tuple((name, _model_spec(name, crop)) for name in chosen)


def _model_spec(name: str, crop: bool) -> ModelSpec:
    key = f"{WEIGHTS_PREFIX}{name}"
    values.dynamic(key, "")
    path = bound(
        st.text_input,
        f"Checkpoint for {name}",
        key,
        placeholder="its default weights",
        help='a fine-tuned state dict: .pt, .pth (read with weights_only=True) or .safetensors; "random" for random '
        "weights (a sanity check)",
    )
    options: list[tuple[str, Any]] = [] if crop else [("crop", False)]
    if models.entry(name).family in NAMED_CLASSES:
        names_key = f"{NAMES_PREFIX}{name}"
        values.dynamic(names_key, "")
        names = bound(
            st.text_input,
            f"Class names for {name}",
            names_key,
            placeholder="from the checkpoint",
            help=".txt (one per line), .json, or an image folder whose sub-folders name the classes",
        )
        if names.strip():
            options.append(("class_names", names.strip()))
    return ModelSpec(name, path.strip() or "default", tuple(options))


def _model_options() -> list[str]:
    """The registered models, then every torchvision and timm classifier by name (registered when chosen)."""
    registered = models.names()
    return [*registered, *(n for n in _library_names() if n not in registered)]


@st.cache_data(show_spinner=False)
def _library_names() -> list[str]:
    from gcdash.models import library

    return library.available()


def _model_label(name: str) -> str:
    family = models.MODELS.get(name).family if name in models.MODELS else ""
    return f"{name} ({family})" if family and family != "library" else name


PARAM_WIDGETS: dict[type, Callable[..., Any]] = {
    bool: lambda label, name, help=None: bound(st.checkbox, label, name, help=help),
    int: lambda label, name, help=None: bound(st.number_input, label, name, step=1, help=help),
    float: lambda label, name, help=None: bound(st.number_input, label, name, step=0.001, format="%.4f", help=help),
    str: lambda label, name, help=None: bound(st.text_input, label, name, help=help),
}


def _typed(name: str, default: Any) -> None:
    """Give a method parameter the type of its default (a value read from the URL is a string)."""
    value = values.get(name, default)
    try:  # a link's text is read like every link value ("0" is off); a widget's value is already typed
        values.request(**{name: decode_value([value], default) if isinstance(value, str) else type(default)(value)})
        values.link_problem(name, "")
    except (TypeError, ValueError):
        values.link_problem(name, f"{name}={value!r} is not valid; using {value_text(default)}")
        values.request(**{name: default})


def _param_widgets(
    prefix: str, defaults: dict[str, Any], hints: dict[str, str] | None = None
) -> tuple[tuple[str, Any], ...]:
    """One widget per parameter, typed by its default; returns the values that differ from the defaults."""
    chosen = {}
    for param, default in defaults.items():
        key = f"{prefix}{param}"
        values.dynamic(key, default)
        _typed(key, default)
        value = PARAM_WIDGETS.get(type(default), PARAM_WIDGETS[float])(param, key, (hints or {}).get(param))
        if value != default:
            chosen[param] = value
    return tuple(sorted(chosen.items()))


def _method_section() -> tuple[str, tuple[tuple[str, Any], ...]]:
    st.header("Explanation")
    keep_valid("method", cams.names(), "gradcam")
    name = bound(st.selectbox, "CAM method", "method", cams.names(), format_func=lambda m: cams.get(m).label)
    method = cams.get(name)
    st.caption(f"{method.paper} · cost: {method.cost}")
    return method.name, _param_widgets(PARAM_PREFIX, method.defaults)


def _comparisons_section() -> tuple[str, ...]:
    extra = [name for name in metrics.dissimilarities() if name != "nissim"]
    keep_valid("compare", extra, [])
    picked = bound(
        st.multiselect,
        "Also compare maps by",
        "compare",
        extra,
        format_func=lambda c: metrics.comparison(c).label,
        placeholder="NISSIM only (the paper's)",
        help="computed from the cached maps: no model pass. Spearman: rank correlation of the pixels; "
        "top-k: share of the hottest pixels that moved (Ghorbani et al., AAAI 2019)",
    )
    return tuple(picked)


def _faithfulness_switch() -> bool:
    from gcdash.metrics.faithfulness import Faithfulness

    settings = Faithfulness()
    return bound(
        st.checkbox, "Faithfulness (deletion / insertion)", "faith",
        help=f"Petsiuk et al., BMVC 2018: remove the map's pixels most important first ({settings.steps} steps, "
        f"black) and reveal them on a blurred copy (σ {settings.sigma:g} px); the areas under the explained "
        f"class's probability. Cost: {settings.passes} forward passes per map, about {settings.passes // 2}× a "
        "CAM pass per image and eps; cached like every cell",
    )  # fmt: skip


def _attack_section() -> AttackConfig:
    st.header("Attack")
    keep_valid("attack", attacks.names(), "fgsm")
    name = bound(st.selectbox, "Attack", "attack", attacks.names(), format_func=lambda a: attacks.get(a).label)
    attack = attacks.get(name)
    st.caption(f"{attack.paper} · cost: {attack.cost()}")
    params = _param_widgets(f"{ATTACK_PREFIX}{name}.", attack.defaults, attack.hints)
    if not attack.uses_model:
        return AttackConfig(name, params)
    key = f"{ATTACK_PREFIX}{name}.source"
    values.dynamic(key, "")
    keep_valid(key, ["", *models.names()], "")
    source = bound(
        st.selectbox,
        "Crafted on",
        key,
        ["", *models.names()],
        format_func=lambda m: m or "each model itself (white-box)",
        help="transfer attack: the perturbation is computed on this model and evaluated on the selected ones",
    )
    return AttackConfig(name, tuple(sorted((*params, *((("source", source),) if source else ())))))


def _layers_section(specs: tuple[tuple[str, ModelSpec], ...]) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    keep_valid("layers", list(LAYER_MODES), "default")
    mode = bound(st.radio, "Layers", "layers", list(LAYER_MODES), format_func=LAYER_MODES.get, horizontal=True)
    if mode != "custom":
        return mode, ()
    custom = []
    for name, spec in specs:
        try:
            catalog = list(cache.handle(spec, plan.default_device()).layers)
        except GcdashError:
            continue
        key = f"{LAYERS_PREFIX}{name}"
        values.dynamic(key, [])
        keep_valid(key, catalog, [])
        picked = bound(st.multiselect, f"Layers of {name}", key, catalog, placeholder="default layer")
        custom.append((name, tuple(picked)))
    return mode, tuple(custom)


# -- eps, target, device ------------------------------------------------------------------------------------
def _eps_section() -> tuple[tuple[float, ...], float]:
    _sort_eps()
    options = list(dict.fromkeys([*PARAMS["eps"].default, *EXTRA_EPS, *values.get("eps", [])]))
    texts = bound(
        st.multiselect,
        "eps set (sweeps)",
        "eps",
        sorted(options, key=_eps_value),
        help="L∞ budgets in pixel units (x/255 of the [0, 1] range); add one below",
    )
    st.text_input(
        "Add an eps",
        key="eps.add",
        placeholder="e.g. 3/255 or 0.02, then Enter",
        on_change=_add_eps,
        help="a fraction or a decimal in (0, 1]",
    )
    if st.session_state.get("eps.problem"):
        st.error(plain(st.session_state["eps.problem"]))
    try:
        eps = parse_eps_texts(texts) if texts else DEFAULT_EPS
    except GcdashError as err:  # a bad value from a link
        st.error(plain(err))
        eps = DEFAULT_EPS
    choices = _eps_choices(eps)
    keep_valid("eps1", choices, PARAMS["eps1"].default)
    one = bound(st.select_slider, "eps (gallery)", "eps1", choices)
    said = values.take_note("eps1")  # changed by a page (Distributions' "Open in the gallery"): say so, here
    if said:
        st.info(plain(said), icon=":material/info:")
        st.toast(plain(said), icon=":material/info:")
    return eps, parse_eps_texts([one])[0]


def _eps_value(text: str) -> float:
    try:
        return parse_eps_texts([text])[0]
    except GcdashError:
        return float("inf")


def _sort_eps() -> None:
    """Chips in increasing order, whatever order they were picked in."""
    values.request(eps=sorted(values.get("eps", []), key=_eps_value))


def _add_eps() -> None:
    """Parse the typed eps (exactly what was typed: no fuzzy match onto another option) and add it to the set."""
    text = st.session_state.get("eps.add", "").strip()
    st.session_state["eps.problem"] = ""
    if not text:
        return
    try:
        value = parse_eps_texts([text])[0]
    except GcdashError as err:
        st.session_state["eps.problem"] = str(err)
        return
    label = eps_text(value)
    values.request(eps=sorted({*values.get("eps", []), label}, key=_eps_value))
    st.session_state["eps.add"] = ""


def _eps_choices(eps: tuple[float, ...]) -> list[str]:
    positive = [eps_text(e) for e in eps if e > 0]
    return positive or ["0"]


def _targets_help() -> str:
    return "  \n".join(f"**{name}**: {TARGETS.get(name).description}" for name in TARGETS.names())


def _advanced_section(device: str) -> str:
    """Settings most people leave alone: the precision of the model passes (those the device runs)."""
    kind = torch.device(device).type
    offered = [name for name in precisions.names() if kind in precisions.get(name).devices]
    keep_valid("precision", offered, precisions.FP32)
    with st.expander("Advanced"):
        return bound(
            st.selectbox, "Precision", "precision", offered, format_func=lambda p: precisions.get(p).label,
            help="fp32 gives the exact numbers. bf16 runs the model passes under autocast (maps and scores stay in "
            "float32): several times faster where the CPU or GPU has bf16 units, with MOD within the bound the "
            "README measures; a bf16 result is cached apart from the fp32 one",
        )  # fmt: skip


def _device_caption() -> str:
    device = plan.default_device()
    where = torch.cuda.get_device_name(0) if device == "cuda" else "no CUDA GPU visible"
    st.caption(f"Device: **{device.upper()}** ({where})")
    return device
