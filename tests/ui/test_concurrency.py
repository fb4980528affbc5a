"""Two browser sessions computing on one model at once: the dashboard's compute path in two threads on one shared
handle and store gives the single-session results. Also: background sweeps finish and cancel cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import tiny

from gcdash import models
from gcdash.config import CamConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.engine import Gallery
from gcdash.store import Store
from gcdash.ui import cache, compute

EPS = (0.0, 4 / 255, 8 / 255)
pytestmark = pytest.mark.timeout(300)


def config(layers: str | tuple[str, ...] = "all", eps: tuple[float, ...] = EPS) -> SweepConfig:
    return SweepConfig((ModelSpec("tiny-cnn"),), DataConfig("tiny", 12, 0), eps, layers, CamConfig("gradcam"))


def session(handle, store, samples) -> tuple[pd.DataFrame, Gallery]:
    """What the Compare page and the Gallery compute for one session."""
    table = compute.page_table(handle, store, samples, config())
    gallery = compute.build_gallery(handle, store, samples, config(("block3",), (8 / 255,)), 8 / 255, "block3")
    return table, gallery


def in_threads(fn, n: int = 2) -> list:
    """Run ``fn()`` in ``n`` threads released together; re-raise the first error."""
    barrier, out, errors = threading.Barrier(n), [None] * n, []

    def work(i: int) -> None:
        try:
            barrier.wait()
            out[i] = fn()
        except BaseException as err:  # reported below, in the test thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    if errors:
        raise errors[0]
    return out


# Cells one session finds already stored by the other are computed in smaller batches, and CPU convolutions round
# differently per batch size (~1e-7, more after a CAM's min-max scaling): equal up to that, not bit for bit. Mixed-up
# activations between sessions would differ by orders of magnitude more.
ATOL = 1e-4


def assert_same(a: tuple[pd.DataFrame, Gallery], b: tuple[pd.DataFrame, Gallery]) -> None:
    pd.testing.assert_frame_equal(a[0], b[0], check_exact=False, atol=ATOL, rtol=0)
    for field in ("clean", "adv", "clean_map", "adv_map"):
        np.testing.assert_allclose(getattr(a[1], field), getattr(b[1], field), atol=ATOL, err_msg=field)
    pd.testing.assert_frame_equal(a[1].table, b[1].table, check_exact=False, atol=ATOL, rtol=0)


def test_two_sessions_on_one_shared_model_match_one_session(tmp_path):
    samples = tiny.tiny_samples(12)
    reference = session(models.load("tiny-cnn"), Store(tmp_path / "alone"), samples)

    shared, store = models.load("tiny-cnn"), Store(tmp_path / "shared")
    inside, most, callers = [0], [0], set()
    forward = shared.net.forward

    def watched(x):  # counts model passes running at once on the shared module
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        callers.add(threading.get_ident())
        try:
            time.sleep(0.001)
            return forward(x)
        finally:
            inside[0] -= 1

    shared.net.forward = watched
    results = in_threads(lambda: session(shared, store, samples))
    assert most[0] == 1, "two passes ran on one model at once"
    assert callers, "no model work was done"
    for result in results:
        assert_same(result, reference)


def test_cached_page_path_shares_the_model(monkeypatch, tmp_path):
    """Through st.cache_resource / st.cache_data (bare mode): one handle for both sessions, equal tables."""
    monkeypatch.setenv("GCDASH_CACHE", str(tmp_path / "cache"))
    samples = tiny.tiny_samples(12)
    cfg = config("default")
    key = cache.table_key(cfg, "cpu")

    def page() -> tuple:
        handle = cache.model("tiny-cnn", "default", "cpu")
        return handle, cache.cached_table(key, handle, samples, cfg)

    (h1, t1), (h2, t2) = in_threads(page)
    assert h1 is h2
    pd.testing.assert_frame_equal(t1, t2)
    alone = compute.page_table(models.load("tiny-cnn"), Store(tmp_path / "alone"), samples, cfg)
    pd.testing.assert_frame_equal(t1, alone, check_exact=False, atol=ATOL, rtol=0)


def test_background_sweep_finishes_and_is_saved(tmp_path):
    store, samples = Store(tmp_path / "cache"), tiny.tiny_samples(8)
    handles = {"tiny-cnn": models.load("tiny-cnn")}
    job = compute.SweepJob.start([config("default")], store, handles, samples, "cpu")
    assert job.wait(120) and job.error is None and not job.cancelled
    assert job.done == job.total == 8
    assert len(job.table()) == 8 * len(EPS)
    assert [r["n_rows"] for r in store.runs()] == [8 * len(EPS)]


def test_background_sweep_cancels_between_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(compute, "BATCH_SIZE", 2)
    report = compute.SweepJob._report

    def cancel_after_the_first_batch(job: compute.SweepJob, done: int, what: str) -> None:
        report(job, done, what)
        job.cancel()  # a user's click lands here, between batches (not raced against the thread: no flake)

    monkeypatch.setattr(compute.SweepJob, "_report", cancel_after_the_first_batch)
    store, samples = Store(tmp_path / "cache"), tiny.tiny_samples(8)
    handles = {"tiny-cnn": models.load("tiny-cnn")}
    job = compute.SweepJob.start([config("default")], store, handles, samples, "cpu")
    assert job.wait(120)
    assert job.cancelled and job.error is None and job.done == 2 < job.total
    assert store.runs() == []
    monkeypatch.setattr(compute.SweepJob, "_report", report)
    again = compute.SweepJob.start([config("default")], store, handles, samples, "cpu")
    assert again.wait(120) and again.done == again.total
