"""The Runs page's parts: a background sweep with a progress bar and a cancel button, the list of cached runs,
their exports, and the cache's housekeeping."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from gcdash import plan
from gcdash import runs as index
from gcdash.config import CamConfig, eps_text
from gcdash.errors import GcdashError
from gcdash.ui import cache, compute, report, run
from gcdash.ui.state import Selection
from gcdash.ui.text import plain

JOB = "gcdash.job"


def start(sel: Selection) -> None:
    """Start sweeping the selection in a background thread of this session (unless one is running)."""
    job = st.session_state.get(JOB)
    if job is not None and job.running:
        return
    loaded = run.handles(sel)
    configs = sel.sweep_configs(tuple(loaded))
    st.session_state[JOB] = compute.SweepJob.start(configs, cache.store(), loaded, run.samples(sel), sel.device)


def cost(sel: Selection, n_images: int) -> str:
    """What a cold cache costs: per image and model, one CAM pass for the clean image and one per eps > 0 (all
    layers), plus the attack's own passes (``Attack.passes``: FGSM 1, PGD steps × eps, noise 0): :func:`plan.cost`."""
    from gcdash import attacks

    attack, each = attacks.get(sel.attack.name), plan.cost(sel.eps, sel.attack, CamConfig(), precision=sel.precision)
    per_image = each.one_pass_per_input
    passes = n_images * len(sel.models) * per_image
    how = "its gradient from the clean CAM pass" if each.shared else attack.cost(dict(sel.attack.params))
    return (
        f"{n_images} images × {len(sel.models)} models: at most {passes} model passes on a cold cache "
        f"({per_image} per image: {each.inputs} CAM passes, {attack.name} {how})"
    )


def _job_text(job: compute.SweepJob) -> str:
    eta = f" · about {job.eta:.0f} s left" if job.eta is not None else ""
    return f"{job.done}/{job.total} images ({job.what or 'starting'}) · {job.elapsed:.0f} s{eta}"


def progress() -> None:
    """The current sweep: a self-refreshing progress bar with Cancel while it runs, its outcome after."""
    job: compute.SweepJob | None = st.session_state.get(JOB)
    if job is None:
        return
    st.fragment(_progress_body, run_every=1.0 if job.running else None)(job)


def _progress_body(job: compute.SweepJob) -> None:
    slot = st.empty()  # one slot: the outcome replaces the bar and its Cancel button at once, never beside them
    if job.running:
        with slot.container():
            st.progress(job.done / max(job.total, 1), text=_job_text(job))
            st.button("Cancel", on_click=job.cancel, icon=":material/stop_circle:", key="runs.cancel")
        return
    _outcome(slot, job)
    if st.session_state.get("runs.shown") is not job:  # just finished: redraw the page once (the runs list)
        st.session_state["runs.shown"] = job
        st.rerun()


def _outcome(slot: DeltaGenerator, job: compute.SweepJob) -> None:
    """How the finished ``job`` ended, in ``slot``."""
    if job.error is not None:
        slot.error(f"Sweep failed: {plain(job.error)}")
    elif job.cancelled:
        slot.warning(
            f"Cancelled after {job.done} of {job.total} images; the finished batches are cached and will "
            "not be recomputed."
        )
    else:
        slot.success(f"Finished {job.total} images in {job.elapsed:.0f} s; the run is listed below.")


def _report(per_image: pd.DataFrame, runs: str) -> str:
    title = report.report_title(per_image["attack"].unique(), per_image["model"].unique())
    return report.report_html(per_image, title, {"runs": runs, "rows": str(len(per_image))})


def _attack_text(attack: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in attack.get("params", []))
    name = report.display_name("attack", attack["name"])
    return f"{name} ({params})" if params else name


def runs_table() -> pd.DataFrame:
    """The cached runs, newest first, one row each, described for people."""
    rows = []
    for r in cache.store().runs():
        cfg = r["config"]
        rows.append(
            {
                "key": r["key"],
                "created": dt.datetime.fromtimestamp(r["created"]),
                "models": ", ".join(m["name"] for m in cfg.get("models", [])),
                "method": report.display_name("method", cfg.get("cam", {}).get("method", "")),
                "attack": _attack_text(cfg.get("attack") or {"name": "fgsm"}),
                "images": cfg.get("data", {}).get("n"),
                "source": cfg.get("data", {}).get("source", ""),
                "eps": ", ".join(eps_text(e) for e in cfg.get("eps", [])),
                "layers": cfg.get("layers") if isinstance(cfg.get("layers"), str) else ", ".join(cfg.get("layers")),
                "target": cfg.get("target", ""),
                "rows": r["n_rows"],
                "table size (kB)": round(r["nbytes"] / 1024, 1),
            }
        )
    return pd.DataFrame(rows)


def exports(chosen: pd.DataFrame) -> None:
    """Download buttons for the ``chosen`` rows of :func:`runs_table`: their per-image rows (Parquet, CSV) and an
    HTML report of the comparison charts (all made on click)."""
    keys = list(chosen["key"])
    for run_key in keys:  # a damaged stored table, a large run's part gone: said here, before any download
        try:
            index.check_run(cache.store(), run_key)
        except GcdashError as err:
            st.error(plain(str(err)))
            return
    key = keys[0] if len(keys) == 1 else f"{keys[0]}+{len(keys) - 1}"
    subtitle = " / ".join(f"{r.models} · {r.method} · {r.attack} · eps {r.eps}" for r in chosen.itertuples())
    st.markdown(
        f"Export {len(keys)} run(s) ({plain(subtitle)}; {chosen['rows'].sum()} rows; select rows above to choose):"
    )

    def table() -> pd.DataFrame:
        frames = [index.load_run(cache.store(), k) for k in keys]
        return pd.concat([f for f in frames if f is not None], ignore_index=True)

    def parquet() -> bytes:
        buf = io.BytesIO()
        table().to_parquet(buf, index=False)
        return buf.getvalue()

    run.downloads(
        {
            "per image (Parquet)": (parquet, f"gcdash-{key}.parquet", "application/vnd.apache.parquet"),
            "per image (CSV)": (lambda: table().to_csv(index=False), f"gcdash-{key}.csv", "text/csv"),
            "report (HTML)": (
                lambda: _report(table(), subtitle),
                f"gcdash-{key}.html",
                "text/html",
            ),
        },
        key=f"runs.{key}",
    )


def housekeeping() -> None:
    """Cache size, usage per model and kind, and a confirmed Clear."""
    store = cache.store()
    if st.session_state.pop("runs.cleared", False):
        st.success("Cache cleared.")
    st.metric("Cache size", f"{store.size_bytes() / 2**20:.1f} MB", help=str(store.path))
    usage = pd.DataFrame(store.usage())
    if not usage.empty:
        usage["MB"] = (usage.pop("nbytes") / 2**20).round(2)
        st.dataframe(usage, hide_index=True)
    sure = st.checkbox("I want to delete every cached result", key="runs.sure")
    if st.button("Clear cache", disabled=not sure, icon=":material/delete:", key="runs.clear"):
        store.clear()
        cache.clear_tables()
        run.forget_warm()
        st.session_state["runs.cleared"] = True
        st.rerun()
