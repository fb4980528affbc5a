"""The pages' compute path, without streamlit: per-image tables, gallery data, extra views, background sweeps.

Everything goes through :class:`~gcdash.engine.ModelEngine` and its store, so a cell already computed costs no
model pass. Model handles may be shared between sessions: the engine and the views take ``handle.lock`` around
every model pass, and the store is thread-safe, so two sessions computing on one model get the same numbers as
one session would (tests/ui/test_concurrency.py). :mod:`gcdash.ui.cache` wraps these functions for streamlit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from gcdash import plan, results, sweep, tables
from gcdash.config import SweepConfig
from gcdash.data import Samples
from gcdash.engine import Gallery, ModelEngine
from gcdash.errors import Cancelled, GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress
from gcdash.store import Store
from gcdash.targets import TARGETS
from gcdash.ui.pace import Pace

log = logging.getLogger(__name__)
BATCH_SIZE = 16  # images per model pass: small enough for a lively progress bar and quick interruption


def page_table(
    handle: ModelHandle,
    store: Store,
    samples: Samples,
    config: SweepConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    handles: Mapping[str, ModelHandle] | None = None,
) -> pd.DataFrame:
    """The per-image table of one model under ``config`` (its first model), through ``tables.model_table``."""
    table, _ = tables.model_table(
        handle, store, samples, config, model=config.models[0].name, batch_size=BATCH_SIZE, handles=handles,
        progress=progress, should_stop=should_stop,
    )  # fmt: skip
    return table


def build_gallery(
    handle: ModelHandle,
    store: Store,
    samples: Samples,
    config: SweepConfig,
    eps: float,
    layer: str,
    progress: Progress | None = None,
    handles: Mapping[str, ModelHandle] | None = None,
) -> Gallery:
    """The gallery of ``config``'s first model at ``eps`` and ``layer``: one pass over the batches fills the
    missing cells (with ``progress``) and keeps the images and maps the rows were computed from. Labelled as every
    table is (``plan.model_samples``), so the rows equal the CLI's; the rows carry class names, ``flipped``
    and ``conf_drop``."""
    name = config.models[0].name
    engine = ModelEngine.from_config(handle, store, config, BATCH_SIZE, handles)
    shown = engine.gallery(plan.model_samples(handle, samples, name), eps, layer, progress)
    table = shown.table.assign(model=name, method=config.cam.method, attack=config.attack.name)
    table = describe_rows(table.assign(source=config.source_column(name)), handle.class_names)
    return replace(shown, model=name, eps=eps, table=table)


def describe_rows(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Add class names, ``flipped`` (adversarial top-1 ≠ clean top-1) and ``conf_drop`` (clean − adversarial
    confidence) to engine rows; the row order (the samples' order) is kept."""

    def name(i: int) -> str:
        return class_names[i] if 0 <= i < len(class_names) else ("unlabelled" if i < 0 else str(i))

    out = table.reset_index(drop=True).copy()
    for column in ("label", "pred_clean", "pred_adv"):
        out[f"{column}_name"] = out[column].map(name)
    out["flipped"] = out["pred_adv"] != out["pred_clean"]
    out["conf_drop"] = out["conf_clean"] - out["conf_adv"]
    return out


# Which class each extra view explains, by the target policy's source: own top-1, clean top-1 or the label.
_CLASS_COLUMN = {("clean", "own"): "pred_clean", ("adv", "own"): "pred_adv", "clean": "pred_clean", "label": "label"}


def view_targets(table: pd.DataFrame, target: str, side: str) -> list[int]:
    """The classes the ``side`` ("clean" or "adv") maps explain under target policy ``target``."""
    source = getattr(TARGETS.get(target), side)
    column = _CLASS_COLUMN.get((side, source), _CLASS_COLUMN.get(source))
    return [int(c) for c in table[column]]


def extra_view(handle: ModelHandle, data: Gallery, view: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """View ``view`` (``gcdash.cams.views``) of the clean and the adversarial images: (N, H, W) each in [0, 1]."""
    from gcdash.cams import views

    maps = []
    for side, images in (("clean", data.clean), ("adv", data.adv)):
        targets = view_targets(data.table, target, side)
        maps.append(views.compute(handle, torch.from_numpy(images), view, data.layer, targets))
    return maps[0], maps[1]


@dataclass
class SweepJob:
    """A sweep over several one-model configs in a background thread, with progress and cancel.

    ``done``/``total`` count images × models; ``cancel()`` stops between batches (finished batches stay in the
    store); ``error`` holds a one-line message when the sweep failed; ``results`` the finished sweeps.
    """

    configs: list[SweepConfig]
    total: int
    done: int = 0
    what: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    results: list[sweep.SweepResult] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _pace: Pace = field(default_factory=Pace, repr=False)  # the ETA counts computed batches, not cached ones

    @classmethod
    def start(
        cls,
        configs: Sequence[SweepConfig],
        store: Store,
        handles: Mapping[str, ModelHandle],
        samples: Samples,
        device: str,
    ) -> SweepJob:
        """Start sweeping ``configs`` (each through :func:`gcdash.sweep.sweep`) and return at once."""
        job = cls(list(configs), total=len(samples) * sum(len(c.models) for c in configs))
        args = (store, dict(handles), samples, device)
        job._thread = threading.Thread(target=job._run, args=args, name="gcdash-sweep", daemon=True)
        job._thread.start()
        return job

    def _run(self, store: Store, handles: dict[str, ModelHandle], samples: Samples, device: str) -> None:
        try:
            for config in self.configs:
                offset = self.done
                self.results.append(
                    sweep.sweep(
                        config,
                        store,
                        device=device,
                        batch_size=BATCH_SIZE,
                        handles=handles,
                        samples=samples,
                        progress=lambda d, _t, w, o=offset: self._report(o + d, w),
                        should_stop=self._stop.is_set,
                    )
                )
        except Cancelled:
            self.cancelled = True
        except GcdashError as err:
            self.error = str(err)
        except Exception as err:  # shown as an error box; the traceback goes to the server log
            log.exception("sweep failed")
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.finished = time.monotonic()

    def _report(self, done: int, what: str) -> None:
        self._pace.add(done - self.done)
        self.done, self.what = done, what

    def cancel(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished is not None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate of the batches computed so far (None before the first batch): batches read
        from the cache (a resumed sweep's first ones) do not make it look faster (:mod:`gcdash.ui.pace`)."""
        if not self.done or not self.running:
            return None
        return self._pace.eta(self.total - self.done)

    def table(self) -> pd.DataFrame:
        """The finished sweeps' per-image rows, concatenated."""
        frames = [r.per_image for r in self.results]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
