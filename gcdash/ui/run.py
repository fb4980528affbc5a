"""The pages' compute path with progress bars: load what a page needs, fill missing cells, return cached tables.

A table is computed once per process with a progress bar (counts, elapsed, ETA) and then read through
``st.cache_data``; its key is remembered for the process (the store and ``st.cache_data`` are shared by every
session), so a rerun or a new session that needs no new cell does no model work and draws no bar. Gallery data is
kept the same way, for the last few galleries. Widget changes interrupt a running computation between batches; the
finished batches are already in the store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace

import pandas as pd
import streamlit as st

from gcdash import data, plan, sweep
from gcdash.config import AttackConfig, SweepConfig, eps_text
from gcdash.data import Samples
from gcdash.engine import Gallery
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress, shifted
from gcdash.ui import cache, compute, values
from gcdash.ui.pace import Pace
from gcdash.ui.sidebar import SELECTION, UPLOADS
from gcdash.ui.state import Selection
from gcdash.ui.text import plain

MAX_GALLERIES = 16
_WARM: set[str] = set()  # table keys computed in this process: their cells are in the store
_GALLERIES: OrderedDict[str, Gallery] = OrderedDict()  # the last few galleries, for every session
_LOCK = threading.Lock()


def current_selection() -> Selection:
    """The sidebar's selection of this run (the router draws the sidebar before the page)."""
    return st.session_state.get(SELECTION) or Selection()


def require_models(sel: Selection) -> None:
    if not sel.models:
        st.info("Pick at least one model in the sidebar.")
        st.stop()


def handles(sel: Selection, names: Sequence[str] | None = None) -> dict[str, ModelHandle]:
    """Loaded handles of ``names`` (default: the selected models); a model that fails to load gets an error box
    and is left out; the page stops when none loads."""
    out = {}
    for name in names or sel.models:
        try:
            out[name] = cache.handle(sel.spec(name), sel.device)
        except GcdashError as err:
            st.error(plain(err) if name in str(err) else f"{plain(name)}: {plain(err)}")
    if not out:
        st.stop()
    return out


def samples(sel: Selection, *, quiet: bool = False) -> Samples:
    """The selected images (uploads come from the sidebar's uploader); skipped files and short loads are said,
    unless ``quiet`` or said already in this run (a second look at the same images)."""
    if sel.data.source != "upload":
        loaded = cache.samples(sel.data)
        quiet = quiet or not values.first_time(f"samples {cache.data_key(sel.data)}")
        for line in [] if quiet else data.shortfall(loaded, sel.data.n):
            st.warning(plain(line[0].upper() + line[1:]), icon=":material/warning:")
        files = [] if quiet else data.skip_list(loaded)
        if files:
            with st.expander(f"Every file skipped or decided for ({len(files):,})"):
                st.text("\n".join(files[:2000]) + (f"\n… and {len(files) - 2000:,} more" if len(files) > 2000 else ""))
        return loaded
    uploaded = st.session_state.get(UPLOADS)
    if uploaded is None:
        st.info(
            "Upload PNG, JPEG or WebP images in the sidebar. Uploads are not part of a link and do not survive a "
            "reload of the page: after one, upload them again."
        )
        st.stop()
    return uploaded


def _warm() -> set[str]:
    return _WARM


def forget_warm() -> None:
    """After the cache was cleared: nothing is warm any more."""
    with _LOCK:
        _WARM.clear()
        _GALLERIES.clear()


def _progress_text(what: str, done: int, total: int, start: float, pace: Pace) -> str:
    elapsed = time.monotonic() - start
    left = pace.eta(total - done)  # at the computed batches' rate: cached ones do not make it look faster
    eta = f" · about {left:.0f} s left" if done and left is not None else ""
    return f"{what}: {done}/{total} images · {elapsed:.0f} s{eta}"


def _bar(what: str, total: int) -> tuple[Progress, Callable[[], None]]:
    """A progress bar with counts, elapsed time and ETA over ``total`` images: (report, close); each report says
    how many of them are done (:data:`~gcdash.progress.Progress`)."""
    start, pace, seen = time.monotonic(), Pace(), [0]
    bar = st.progress(0.0, text=f"{what}: starting…")

    def report(done: int, _: int, name: str) -> None:
        pace.add(done - seen[0])
        seen[0] = done
        text = _progress_text(f"{what} ({name})", done, total, start, pace)
        bar.progress(min(done / max(total, 1), 1.0), text=text)

    return report, bar.empty


SLOW_PASSES = 10  # model passes per explained input above which a page asks before computing
CONFIRMED = "slow.confirmed"  # session state: the slow settings a click has confirmed (for every page)
Job = tuple[ModelHandle, SweepConfig, str]


def _slow_costs(jobs: list[Job], n_images: int) -> dict[str, list]:
    """What is slow in ``jobs``: "what makes N passes for each of" → [passes per unit (None: one per channel),
    units ("inputs" or "maps"), how many]; the counts summed over the jobs."""
    from gcdash import cams

    costs: dict[str, list] = {}
    for handle, config, _ in jobs:
        n_layers = len(handle.resolve_layers(config.layers)) if config.faithfulness else 0
        cost = plan.cost(config.eps, config.attack, config.cam, n_layers, config.precision)  # per image: one formula
        per_input = cost.cam_per_input
        if per_input is None or per_input >= SLOW_PASSES:
            costs.setdefault(cams.get(config.cam.method).label, [per_input, "inputs", 0])[2] += n_images * cost.inputs
        if config.faithfulness:
            costs.setdefault("faithfulness", [cost.faithfulness_per_map, "maps", 0])[2] += n_images * cost.maps
    return costs


def slow_sentence(costs: dict[str, list]) -> str:
    """The cost of ``costs`` (:func:`_slow_costs`) in one sentence, each slow thing said once."""
    parts = [
        f"{what} makes {'one pass per channel of each layer' if p is None else f'{p} passes'} for each of "
        f"{count:,} {unit}"
        for what, (p, unit, count) in costs.items()
    ]
    known = [p * count for p, _, count in costs.values() if p is not None]
    total = f"{sum(known):,}{'+' if len(known) < len(costs) else ''}" if known else "hundreds of"
    return (
        f"Slow on a CPU: {' and '.join(parts)} ({total} model passes; Grad-CAM makes 1 per input): compute it, or "
        "pick fewer images or eps, a one-pass method or no faithfulness, in the sidebar."
    )


def confirm_slow(sel: Selection, jobs: list[Job], n_images: int) -> None:
    """Before slow work starts on a cold cache (a many-pass method, faithfulness), say what it costs and wait for
    a click (the page stops). One click holds for these settings on every page of the session; the warning goes
    away with it."""
    costs = _slow_costs(jobs, n_images)
    if not costs:
        return
    key = "|".join([cache.data_key(sel.data), ",".join(sel.models), sel.method, str(sel.params), *sorted(costs)])
    confirmed = st.session_state.setdefault(CONFIRMED, set())
    if key in confirmed:
        return
    box = st.empty()
    with box.container():
        st.warning(slow_sentence(costs), icon=":material/hourglass_top:")
        clicked = st.button("Compute it", key=f"confirm.{abs(hash(key))}", icon=":material/play_arrow:")
    if not clicked:
        st.stop()
    confirmed.add(key)
    box.empty()  # confirmed: the results take its place


def _sources(sel: Selection, configs: Sequence[SweepConfig]) -> dict[str, ModelHandle]:
    """Handles of the transfer attacks' source models (loaded like any selected model)."""
    names = sorted({c.attack.source for c in configs if c.attack.source})
    return handles(sel, names) if names else {}


def _fill(jobs: list[Job], imgs: Samples, what: str, sources: dict) -> None:
    """Compute the cold ``jobs`` (handle, config, key) with one progress bar, then mark them warm."""
    total = len(imgs) * len(jobs)
    report, close = _bar(what, total)
    for i, (handle, config, key) in enumerate(jobs):
        progress = shifted(report, i * len(imgs), total)
        sweep.sweep(  # indexed by the sweep: listed on the Runs page, exportable like the CLI's
            config, cache.store(), device=str(handle.device), batch_size=compute.BATCH_SIZE,
            handles={**sources, config.models[0].name: handle}, samples=imgs, progress=progress,
        )  # fmt: skip
        _warm().add(key)
    close()


def tables(
    sel: Selection,
    configs: Sequence[tuple[str, SweepConfig]],
    what: str = "Computing explanations",
) -> pd.DataFrame:
    """The per-image rows of ``configs`` ((model name, one-model config) pairs), concatenated."""
    loaded = handles(sel, list(dict.fromkeys(name for name, _ in configs)))
    imgs = samples(sel)
    jobs = [(loaded[name], config, cache.table_key(config, sel.device)) for name, config in configs if name in loaded]
    sources = _sources(sel, [c for _, c in configs])
    for name, handle in loaded.items():
        note = data.align_labels(imgs, handle.class_names, name)[1]
        if note:
            st.info(plain(note[0].upper() + note[1:]), icon=":material/label_off:")
    cold = [job for job in jobs if job[2] not in _warm()]
    if cold:
        confirm_slow(sel, cold, len(imgs))
        _fill(cold, imgs, what, sources)
    return pd.concat([cache.cached_table(key, h, imgs, c, sources) for h, c, key in jobs], ignore_index=True)


def selection_table(
    sel: Selection,
    *,
    models: Sequence[str] | None = None,
    layers: str | tuple[str, ...] | None = None,
    methods: Sequence[str] | None = None,
    attacks: Sequence[AttackConfig] | None = None,
    eps: tuple[float, ...] | None = None,
    faithfulness: bool = False,
) -> pd.DataFrame:
    """The per-image table of the selection (or of ``models`` × ``methods`` × ``attacks``, at ``layers`` and
    ``eps``), computed with one progress bar; with the faithfulness columns only for a page that shows them
    (``faithfulness``) and when the sidebar asks for them."""
    configs = [
        (name, page_config(sel, name, faithfulness, layers=layers, method=method, attack=attack, eps=eps))
        for name in (models or sel.models)
        for method in (methods or [sel.method])
        for attack in (attacks or [sel.attack])
    ]
    return tables(sel, configs)


def page_config(sel: Selection, model: str, faithfulness: bool = False, **overrides) -> SweepConfig:
    """``sel.config(model, **overrides)``, asking for faithfulness only where the page shows it: a page that does
    not must not pay its forward passes (nor get another table key)."""
    config = sel.config(model, **overrides)
    return replace(config, faithfulness=config.faithfulness and faithfulness)


def gallery_config(sel: Selection, model: str, layer: str) -> SweepConfig:
    """The config of ``model``'s gallery at ``layer`` and the sidebar's gallery eps (no faithfulness: not shown)."""
    return page_config(sel, model, layers=(layer,), eps=(sel.gallery_eps,))


def with_noise_control(sel: Selection, control: bool = True) -> list[AttackConfig]:
    """The selected attack, and the random-noise control beside it when ``control`` (and it is not the control)."""
    return [sel.attack, *([AttackConfig("noise")] if control and sel.attack.name != "noise" else [])]


def gallery_for(sel: Selection, handle: ModelHandle, model: str, layer: str) -> Gallery:
    """Gallery data of ``model`` at the sidebar's gallery eps and ``layer``: computed once (cells filled with a
    progress bar, images and maps kept from the same pass), then kept for every session (read-only)."""
    eps = sel.gallery_eps
    config = gallery_config(sel, model, layer)
    key = cache.table_key(config, sel.device, "gallery")
    if key not in _GALLERIES:
        imgs = samples(sel)
        confirm_slow(sel, [(handle, config, key)], len(imgs))
        report, close = _bar("Computing the gallery", len(imgs))
        data = compute.build_gallery(handle, cache.store(), imgs, config, eps, layer, report, _sources(sel, [config]))
        close()
        with _LOCK:
            _GALLERIES[key] = data
            while len(_GALLERIES) > MAX_GALLERIES:
                _GALLERIES.popitem(last=False)
    return _GALLERIES[key]


def extra_views(sel: Selection, handle: ModelHandle, data: Gallery, names: Sequence[str]) -> Gallery:
    """``data`` with the extra views ``names`` (gcdash.cams.views) of its clean and adversarial images."""
    base = cache.table_key(page_config(sel, data.model, layers=(data.layer,), eps=(data.eps,)), sel.device)
    with st.spinner("Computing extra views…"):
        extra = {name: cache.extra_view(base, name, handle, data, sel.target) for name in names}
    return replace(data, extra=extra)  # a copy: the gallery data is shared between sessions


def report_maker(
    sel: Selection,
    table: pd.DataFrame,
    reading: dict[str, list[str]] | None = None,
    extra: dict | None = None,
) -> Callable[[], str]:
    """The HTML report of ``table`` under the selection, made on click: settings from the sidebar, and the images
    whose explanation moved most for each model (read from the cache: the pages computed them), the ``reading``
    of MOD and ``extra`` figures."""
    from gcdash.ui import report

    imgs = samples(sel, quiet=True)

    def make() -> str:
        rows = []
        for name in sel.models:
            try:
                handle = cache.handle(sel.spec(name), sel.device)
            except GcdashError:
                continue  # the page already said why it does not load
            layer = handle.resolve_layers(sel.layers_for(name))[-1]
            config = gallery_config(sel, name, layer)
            data = _GALLERIES.get(cache.table_key(config, sel.device, "gallery")) or compute.build_gallery(
                handle, cache.store(), imgs, config, sel.gallery_eps, layer, handles=_sources(sel, [config])
            )
            rows += report.gallery_rows(data, k=2)
        settings = report.selection_settings(sel, f"{len(imgs)} from {sel.data.source}")
        title = report.report_title(table["attack"].unique(), sel.models)
        return report.report_html(table, title, settings, rows, reading, extra)

    return make


def floors(sel: Selection, layers: str | None = None) -> pd.DataFrame:
    """The sanity floor (NISSIM to the maps of the same model with random weights) of each selected model at its
    selected layers (or ``layers``: "all", "default"), with the sidebar's CAM method and parameters."""
    imgs = samples(sel, quiet=True)
    frames = []
    for name, handle in handles(sel).items():
        names = tuple(handle.resolve_layers(layers or sel.layers_for(name)))
        params = sel.method_params(sel.method)
        key = "|".join(
            [handle.digest, cache.data_key(sel.data), ",".join(names), sel.method, str(params), str(len(imgs))]
        )
        frames.append(cache.floor(key, handle, imgs, names, sel.method, params).assign(model=name))
    return pd.concat(frames, ignore_index=True)


def warn_zero_maps(summary: pd.DataFrame) -> None:
    """Say where maps were all zero (a dead layer, a constant map): those pairs are left out of MOD."""
    dead = summary[summary["zero_rate"] > 0]
    if dead.empty:
        return
    cells = "; ".join(
        f"{plain(r.model)} {plain(r.layer)} at eps {eps_text(r.eps)}: {r.zero_rate:.0%}"
        for r in dead.head(6).itertuples()
    )
    more = f" and {len(dead) - 6} more" if len(dead) > 6 else ""
    st.warning(
        f"Some maps are all zero, so there is no explanation to compare; those images are left out of MOD "
        f"(shown as NaN where none is left): {cells}{more}",
        icon=":material/warning:",
    )


def downloads(items: dict[str, tuple[Callable[[], bytes | str], str, str]], key: str) -> None:
    """A row of download buttons: label → (data maker, file name, mime); data is made on click."""
    for column, (label, (make, name, mime)) in zip(st.columns(len(items)), items.items()):
        column.download_button(label, make, file_name=name, mime=mime, key=f"{key}.{name}", on_click="ignore")


def _default_layer_config(sel: Selection) -> SweepConfig:
    """One sweep config for every selected model (that loads) at the gallery eps and each model's default layer."""
    loaded = handles(sel)
    first = sel.sweep_configs(tuple(loaded))[0]  # one per model when layers are picked per model: keep them all
    return replace(first, models=tuple(sel.spec(name) for name in loaded), eps=(0.0, sel.gallery_eps),
                   layers="default")  # fmt: skip


def worst_case(sel: Selection) -> pd.DataFrame | None:
    """Robust accuracy of the selected models at the gallery eps under PGD-10, APGD-CE and APGD-DLR and the
    per-image worst case (:func:`gcdash.evaluate.evaluate`), computed when asked for (a button: about 200 gradient
    passes per image and model) and kept for the session; None until then."""
    from gcdash import attacks, evaluate

    config = _default_layer_config(sel)
    key = f"gcdash.worst.{config.key()}"
    if key not in st.session_state:
        passes = sum(attacks.get(a.name).passes(1, attacks.get(a.name).params()) for a in evaluate.DEFAULT_ATTACKS)
        if not st.button(f"Evaluate the worst case at eps {eps_text(sel.gallery_eps)} ({passes} gradient passes "
                         "per image and model)", key="cmp.worst"):  # fmt: skip
            return None
        with st.spinner("Attacking with PGD-10, APGD-CE and APGD-DLR…"):
            st.session_state[key] = evaluate.evaluate(
                config, cache.store(), handles=handles(sel), samples=samples(sel), device=sel.device
            )
    return st.session_state[key]


def fragility(sel: Selection) -> pd.DataFrame | None:
    """MOD with the prediction kept: the selected models at the gallery eps and their default layers under FGSM, PGD,
    the explanation attack and the noise control, with RIS/ROS/Max-Sensitivity (:func:`gcdash.fragility.fragility`)
    and the random-weights floor at that layer (:func:`floors`); computed when asked for (a button: its passes said)
    and kept for the session; None until then."""
    from gcdash import fragility

    config = _default_layer_config(sel)
    key = f"gcdash.fragility.{config.key()}"  # the floor follows from the config (data, models, CAM method)
    if key not in st.session_state:
        passes = sum(plan.cost(config.eps, a, config.cam, precision=config.precision).attack
                     for a in fragility.DEFAULT_ATTACKS)  # fmt: skip
        if not st.button(f"Attack the explanations at eps {eps_text(sel.gallery_eps)} ({passes} passes per image and "
                         "model, besides one CAM pass per attack)", key="cmp.fragility"):  # fmt: skip
            return None
        with st.spinner("Attacking with FGSM, PGD, the explanation attack and the noise control…"):
            at = fragility.floors_of(floors(sel, layers="default"))
            st.session_state[key] = fragility.fragility(
                config, cache.store(), floors=at, handles=handles(sel), samples=samples(sel), device=sel.device
            )
    return st.session_state[key]
