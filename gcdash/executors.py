"""Where a sweep's batches run: in this process (``local``, :func:`gcdash.sweep.sweep`) or spread over a Ray
cluster (``ray``, :func:`ray_sweep`).

The Ray executor shards each model's images into batches and maps them with Ray Data (``map_batches`` over an actor
pool, in batch order) onto actors each holding its own copy of the models on its own device; Ray restarts a dead
actor and retries its batch. A worker runs exactly the local path (:func:`gcdash.sweep.model_table` on
its batch), reading cells from the cache read-only and keeping what it computes in a :class:`BufferedStore`; the
driver, the only writer, stores what each batch computed, writes its rows as a Parquet part and reports progress.
So the per-image results equal the local executor's, and a killed sweep resumes from every finished batch.

The workers read the cache folder: on one host (``ray.init()``) that is the same folder; on a cluster put it on a
filesystem every node mounts (``--cache /shared/...``). A worker that cannot read it recomputes what it does not
find: the numbers are the same, only the work is not saved.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gcdash.config import SweepConfig
from gcdash.data import Samples
from gcdash.errors import Cancelled, GcdashError
from gcdash.progress import Progress, ShouldStop
from gcdash.store import Store

MAX_RETRIES = 2  # Ray restarts a dead actor and retries its batch this many times (its default: for ever)
CONNECT_TIMEOUT_S = 3.0  # how long a --ray-address may take to accept a connection before it is refused


class BufferedStore:
    """The store interface the engine uses (``get_arrays``, ``put_arrays``, ``get_scalars``, ``put_scalars``):
    reads go to the buffer, then to ``base`` (a read-only cache, or None); writes stay in the buffer until
    :meth:`drain` hands them over."""

    read_only = False

    def __init__(self, base: Store | None) -> None:
        self.base = base
        self.arrays: dict[str, tuple[np.ndarray, str, str]] = {}
        self.scalars: dict[str, tuple[float, str, str]] = {}

    def _base(self, method: str, keys: Sequence[str]) -> dict:
        if self.base is None:
            return {}
        try:
            return getattr(self.base, method)(keys)
        except (GcdashError, OSError):
            self.base = None  # an unreadable cache: compute instead, as an empty one would
            return {}

    def get_arrays(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found = {k: self.arrays[k][0] for k in keys if k in self.arrays}
        rest = [k for k in keys if k not in found]
        return {**found, **(self._base("get_arrays", rest) if rest else {})}

    def get_scalars(self, keys: Sequence[str]) -> dict[str, float]:
        found = {k: self.scalars[k][0] for k in keys if k in self.scalars}
        rest = [k for k in keys if k not in found]
        return {**found, **(self._base("get_scalars", rest) if rest else {})}

    def put_arrays(self, items: Mapping[str, np.ndarray], kind: str, model: str = "") -> None:
        self.arrays.update({k: (np.asarray(v), kind, model) for k, v in items.items()})

    def put_scalars(self, items: Mapping[str, float], kind: str, model: str = "") -> None:
        self.scalars.update({k: (float(v), kind, model) for k, v in items.items()})

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Every write already waits in the buffer for :meth:`drain` (the store's one-transaction block)."""
        yield

    def drain(self) -> tuple[dict, dict]:
        """Everything written since the last drain, emptied from the buffer."""
        out = (self.arrays, self.scalars)
        self.arrays, self.scalars = {}, {}
        return out


def store_writes(store: Store, arrays: Mapping[str, tuple], scalars: Mapping[str, tuple]) -> None:
    """Write a worker's buffered entries into ``store`` in one transaction, grouped by (kind, model) as the engine
    wrote them."""
    with store.deferred():
        for items, put in ((arrays, store.put_arrays), (scalars, store.put_scalars)):
            groups: dict[tuple[str, str], dict] = {}
            for key, (value, kind, model) in items.items():
                groups.setdefault((kind, model), {})[key] = value
            for (kind, model), values in groups.items():
                put(values, kind, model)


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
        from gcdash import sweep

        self._source()
        store = BufferedStore(self.base)
        table, engine = sweep.model_table(
            self._handle(model), store, samples, self.config, model=model, batch_size=len(samples),
            handles=self.handles, **self.options,
        )  # fmt: skip
        arrays, scalars = store.drain()
        return table, arrays, scalars, engine.passes


def _read_only(cache: str | None) -> Store | None:
    if cache is None or not Path(cache).is_dir():
        return None
    try:
        return Store(cache, read_only=True)
    except GcdashError:
        return None


def shard_ranges(n: int, batch_size: int) -> list[range]:
    """Image index ranges of the batches, in order (each batch's images are read only when it is sent)."""
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def check_pool(workers: int, gpus_per_worker: float) -> None:
    """The pool's own numbers, before Ray is touched: at least one worker, a finite GPU share ≥ 0 each."""
    if workers < 1:
        raise GcdashError(f"--workers must be ≥ 1, got {workers}")
    if not 0 <= gpus_per_worker < float("inf"):
        raise GcdashError(f"--gpus-per-worker must be ≥ 0 (0: CPU workers), got {gpus_per_worker:g}")


def probe_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) where nothing accepts a TCP connection within ``timeout``:
    ``ray.init`` retries such an address for minutes. The connect runs in a daemon thread joined with a deadline,
    because name resolution ignores socket timeouts. ``auto`` (and no address) is left to Ray, which fails fast."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise GcdashError(f"--ray-address {address!r}: write HOST:PORT, ray://HOST:10001 or auto")
    failed: list[str] = ["no answer"]

    def connect() -> None:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            failed.clear()
        except OSError as err:
            failed[:] = [err.strerror or type(err).__name__]

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if failed:
        raise GcdashError(
            f"--ray-address {address}: nothing answers at {host}:{port} within {timeout:g} s ({failed[0]}); "
            "start the cluster (ray start --head) or check the address"
        )


def check_resources(ray: Any, workers: int, gpus_per_worker: float) -> None:
    """Refuse a pool the cluster cannot host (its actors would wait for ever): one CPU per worker, and
    ``gpus_per_worker`` GPUs each. Checked against the cluster's totals before any actor is made."""
    have = ray.cluster_resources()
    cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
    if workers > cpus:
        raise GcdashError(
            f"--workers {workers}: the Ray cluster has {cpus:g} CPUs and each worker takes one; "
            f"use --workers {max(int(cpus), 1)} or fewer, or a larger cluster (--ray-address)"
        )
    if workers * gpus_per_worker > gpus:
        raise GcdashError(
            f"--workers {workers} × --gpus-per-worker {gpus_per_worker:g} asks for {workers * gpus_per_worker:g} "
            f"GPUs and the Ray cluster has {gpus:g} GPUs; use --gpus-per-worker 0 for CPU workers, or fewer workers"
        )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GcdashError("--executor ray needs Ray: pip install -r requirements-ray.txt") from None
    return ray


def _start_ray(ray: Any, address: str | None) -> None:
    """Connect to ``address``, or start a local Ray sized by this machine (not by the number of workers)."""
    probe_address(address)
    root = str(Path(__file__).resolve().parent.parent)  # workers import gcdash from this checkout
    try:
        ray.init(
            address=address or None, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
            runtime_env={"env_vars": {"PYTHONPATH": root}},
        )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        where = f"at {address}" if address else "on this machine"
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise GcdashError(f"could not start or reach Ray {where}: {first}") from None


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While open (in the main thread), SIGTERM raises SystemExit, so ``finally`` blocks run; then restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0) -> Iterator[Any]:
    """The ``ray`` module, connected: to the Ray this process already runs (left running), or to one started here
    (local, or ``address``) and shut down on every exit path: a return, an exception, Ctrl-C, or SIGTERM (made a
    SystemExit while the session is open). SIGKILL cannot be caught: a driver killed with it leaves a local Ray's
    processes running (``ray stop`` ends them). The pool of ``workers`` is checked against the cluster first."""
    check_pool(workers, gpus_per_worker)
    ray = _import_ray()
    if ray.is_initialized():
        check_resources(ray, workers, gpus_per_worker)
        yield ray
        return
    with _sigterm_exits():
        try:
            _start_ray(ray, address)
            check_resources(ray, workers, gpus_per_worker)
            yield ray
        finally:
            ray.shutdown()


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
    from gcdash.parts import in_group_order

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
