"""The Ray executor on Ray Data: each batch a descriptor, ``map_batches`` over an actor pool whose workers run the
local path (:func:`gcdash.tables.model_table`) on their batch with a :class:`~gcdash.executors.buffered.BufferedStore`
over a read-only cache; the driver, the only writer, stores each batch's cells and hands its rows to the sweep's
sink, in batch order. Ray restarts a dead actor and retries its batch (:data:`MAX_RETRIES`)."""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from gcdash.config import SweepConfig
from gcdash.data import Samples
from gcdash.errors import Cancelled, GcdashError
from gcdash.executors.buffered import BufferedStore, _read_only, store_writes
from gcdash.executors.session import ray_session
from gcdash.progress import Progress, ShouldStop
from gcdash.store import Store

MAX_RETRIES = 2  # Ray restarts a dead actor and retries its batch this many times (its default: for ever)


class CellWorker:
    """The cells of one batch on a Ray worker: the callable class that Ray Data's ``map_batches`` runs in each
    actor of the pool (:func:`ray_sweep`). It holds the sweep's samples and loads each model of the sweep once, when
    its first batch arrives, on its own device; each call takes one batch descriptor (:func:`_descriptors`)."""

    def __init__(
        self, config: SweepConfig, samples: Samples, cache: str | None, device: str | None, options: dict
    ) -> None:
        from gcdash import plan

        self.config, self.samples, self.options = config, samples, options
        self.device = plan.resolve_device(device)
        self.base = _read_only(cache)
        self.handles: dict = {}

    def _handle(self, model: str):
        from gcdash import plan

        if model not in self.handles:
            spec = next(s for s in self.config.models if s.name == model)
            self.handles[model] = plan.load_handle(spec, self.device)
        return self.handles[model]

    def _source(self) -> None:
        """A transfer attack's source, loaded once: with its sweep spec's weights when it is one of the models."""
        source = self.config.attack.source
        if source and source not in self.handles:
            from gcdash import plan

            if any(s.name == source for s in self.config.models):
                self._handle(source)
            else:
                self.handles[source] = plan.load_handle(source, self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One descriptor in (``batch_size=1``), its result out: the group and batch index it came with, and the
        rows, buffered cells and passes (or the batch's :class:`GcdashError`) pickled into one bytes cell (Ray
        Data's blocks are Arrow tables: pickle keeps every float, dtype and array as the local executor made them)."""
        model, start, stop = str(batch["model"][0]), int(batch["start"][0]), int(batch["stop"][0])
        try:
            result: tuple | GcdashError = self.run(model, self.samples.subset(range(start, stop)))
        except GcdashError as err:  # a refused input: sent back as data (Ray Data's wrapper loses the cause)
            result = err
        blob = np.empty(1, dtype=object)
        blob[0] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return {"group": batch["group"], "index": batch["index"], "model": batch["model"], "result": blob}

    def run(self, model: str, samples: Samples) -> tuple[pd.DataFrame, dict, dict, int]:
        """The rows of ``samples`` (one batch) for ``model``, what computing them wrote, and the passes it took."""
        from gcdash import tables

        self._source()
        store = BufferedStore(self.base)
        table, engine = tables.model_table(
            self._handle(model), store, samples, self.config, model=model, batch_size=len(samples),
            handles=self.handles, **self.options,
        )  # fmt: skip
        arrays, scalars = store.drain()
        return table, arrays, scalars, engine.passes


def shard_ranges(n: int, batch_size: int) -> list[range]:
    """Image index ranges of the batches, in order (each batch's images are read only when it is sent)."""
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def ray_sweep(
    config: SweepConfig,
    store: Store,
    samples: Samples,
    *,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    device: str | None = None,
    batch_size: int = 32,
    sink: Callable[[int, pd.DataFrame], None] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    keep_maps: str = "all",
    worker: type = CellWorker,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Run ``config`` on a pool of ``workers`` Ray actors (each with ``gpus_per_worker`` GPUs and its own copy of
    each model); the per-image table (in the local executor's order; empty when the rows go to ``sink``, called
    with each batch's model index and rows, so the driver keeps none in memory) and the passes per model. The
    batches of every model run as one Ray Data pipeline; its results come back in batch order, and the driver
    stores each batch's cells, hands its rows to the sink, reports progress and checks ``should_stop`` before
    the next. A worker that dies
    is Ray's to restart and retry (:data:`MAX_RETRIES`); finished batches are kept (cells in ``store``, rows in
    ``sink``), so a failed or cancelled sweep resumes from them."""
    from gcdash.tables import in_group_order

    items = _descriptors(config, len(samples), batch_size)
    total, done, frames, passes = len(samples) * len(config.models), 0, [], {}
    sink = sink or (lambda group, table: frames.append((group, table)))
    args = (config, samples, str(store.root), device, {"keep_maps": keep_maps})
    with ray_session(address, workers, gpus_per_worker) as ray:  # a Ray started here is stopped on every exit
        results = _results(ray, items, worker, args, (workers, gpus_per_worker), should_stop)
        for item, (table, arrays, scalars, n) in results:
            store_writes(store, arrays, scalars)  # the driver is the only writer, batch by batch
            sink(item["group"], table)
            passes[item["model"]] = passes.get(item["model"], 0) + n
            done += int(table["image_id"].nunique())
            if progress is not None:
                progress(done, total, item["model"])
    return in_group_order(frames), passes


def _descriptors(config: SweepConfig, n: int, batch_size: int) -> list[dict]:
    """One item per batch, in the order its rows are written: each model's image ranges in turn, with the model's
    group (its table) and the batch's index in the whole sweep."""
    ranges = shard_ranges(n, batch_size)
    items = [
        {"group": group, "model": spec.name, "start": r.start, "stop": r.stop}
        for group, spec in enumerate(config.models)
        for r in ranges
    ]
    return [{**item, "index": index} for index, item in enumerate(items)]


def _results(
    ray: Any, items: list[dict], worker: type, args: tuple, pool: tuple[int, float], should_stop: ShouldStop | None
) -> Iterator[tuple[dict, tuple[pd.DataFrame, dict, dict, int]]]:
    """Each batch's item and ``(rows, arrays, scalars, passes)``, in batch order, from ``worker`` (constructed with
    ``args``) mapped over ``items`` by a pool of ``pool[0]`` actors with ``pool[1]`` GPUs each. ``should_stop`` is
    asked before each batch is taken; a failure is one line (:func:`_one_line`)."""
    import ray.data

    workers, gpus = pool
    with _ordered_and_quiet(ray.data.DataContext.get_current()), warnings.catch_warnings():
        # Ray 2.60 warns that extra remote args will go (2.64); without them Ray Data restarts actors for ever
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            worker, batch_size=1, fn_constructor_args=args, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1, num_gpus=gpus, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,  # Ray's retries
        )  # fmt: skip
        rows = iter(dataset.iter_rows())
        try:
            for expected in range(len(items)):
                if should_stop is not None and should_stop():
                    raise Cancelled(f"stopped with {len(items) - expected} of {len(items)} batches left")
                try:
                    row = next(rows)
                except Exception as err:  # Ray Data wraps what a worker raised
                    raise _one_line(err, expected, len(items)) from None
                if row["index"] != expected:
                    raise GcdashError(f"Ray returned batch {row['index'] + 1} where batch {expected + 1} was due")
                result = pickle.loads(row["result"])
                if isinstance(result, GcdashError):
                    raise result
                yield items[expected], result
        finally:
            getattr(rows, "close", lambda: None)()  # a stop or a failure ends Ray Data's execution now


@contextlib.contextmanager
def _ordered_and_quiet(context: Any) -> Iterator[None]:
    """While open: Ray Data keeps the batches' order, and says nothing on the console (the caller reports
    progress, and a failure is one line); then the driver's settings are restored."""
    logger = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, logger.level)
    context.execution_options.preserve_order = True
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.execution_options.preserve_order = saved[0]
        logger.setLevel(saved[1])


def _one_line(err: BaseException, index: int, count: int) -> GcdashError:
    """A worker's failure as one line: its own :class:`GcdashError` (found in the chain Ray wraps it in), "every
    worker died" when the actors were lost for good, else the failure's first line."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError, WorkerCrashedError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, GcdashError) and not isinstance(seen, RayTaskError):  # not Ray's wrapper subclass
            return seen
        if isinstance(seen, (ActorDiedError, ActorUnavailableError, WorkerCrashedError)):
            return GcdashError(
                f"every Ray worker died (batch {index + 1} of {count}); the finished batches are in the cache: "
                "run the sweep again to resume"
            )
        seen = getattr(seen, "cause", None) or seen.__cause__
    first = " ".join(str(err).split())[:200] or type(err).__name__
    return GcdashError(f"batch {index + 1} of {count} failed: {first}")
