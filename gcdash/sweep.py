"""One sweep path, plan → executor → sink, for the CLI, the pages' background jobs and their table fills: a
config's models run on the local executor (this process) or on Ray (:func:`gcdash.executors.ray_sweep`), a
transfer matrix as one config per source, each batch's rows to the Parquet parts when given; one
:class:`SweepResult` back, and each run indexed once (:func:`_index`) for the Runs page.

Everything already in the store is read, not recomputed; whatever finished before a failure or a cancel stays in
the store (and in the parts).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gcdash import manifest, results
from gcdash import plan as planner
from gcdash.config import SweepConfig
from gcdash.data import Samples
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.parts import Parts, parquet_bytes
from gcdash.plan import Plan, check_out_dir
from gcdash.progress import Progress, ShouldStop, shifted
from gcdash.store import Store
from gcdash.tables import in_group_order, model_table


@dataclass
class SweepResult:
    """A finished sweep: the per-image table (``results.PER_IMAGE_COLUMNS``) and how much model work it took."""

    config: SweepConfig
    per_image: pd.DataFrame
    passes: dict[str, int] = field(default_factory=dict)
    #: A sweep streamed to :class:`Parts` carries its summary, made part by part from what was written, and its
    #: row count; its ``per_image`` is empty when it has more than :data:`RUN_TABLE_ROWS` rows (read them from
    #: ``per_image.parquet``, with pandas or pyarrow, in pieces).
    streamed: pd.DataFrame | None = None
    n_rows: int | None = None

    def __post_init__(self) -> None:
        if self.n_rows is None:
            self.n_rows = len(self.per_image)

    def summary(self) -> pd.DataFrame:
        return self.streamed if self.streamed is not None else results.summary(self.per_image)

    def vid(self) -> pd.DataFrame:
        return results.vid(self.summary())

    def write(self, out_dir, per_image: bool = True, parts: Parts | None = None) -> None:
        """``per_image.parquet`` (unless it was streamed there as :class:`Parts`: give them as ``parts``, whose
        checksums were taken as they were written), ``summary.csv``, ``vid.csv`` and, last, ``manifest.json``
        (:mod:`gcdash.manifest`) into ``out_dir`` (created if needed). A full disk is one line."""
        out = check_out_dir(out_dir)
        summary = self.summary()
        if per_image and self.per_image.empty and self.n_rows:
            raise GcdashError(f"this sweep's {self.n_rows} rows are in its Parquet parts, not in memory; write it with "
                              "per_image=False (its per_image.parquet is already written)")  # fmt: skip
        held = contextlib.nullcontext() if parts is not None else manifest.FolderLock(out)  # parts hold it already
        with held:
            self._write_tables(out, summary, per_image, parts)

    def _write_tables(self, out: Path, summary: pd.DataFrame, per_image: bool, parts: Parts | None) -> None:
        try:
            (out / manifest.NAME).unlink(missing_ok=True)  # until the new one is written, the folder is unverified
            if per_image:
                table = [self._write_table(out / manifest.TABLE)]
            else:
                table = parts.written() if parts is not None else manifest.scan(out)
            summary.to_csv(out / "summary.csv", index=False)
            results.vid(summary).to_csv(out / "vid.csv", index=False)
            manifest.write(out, table, ["summary.csv", "vid.csv"], self.config.to_dict())
        except OSError as err:
            raise manifest.out_error(out, err) from None

    def _write_table(self, target: Path) -> manifest.Part:
        """The per-image table as one Parquet file at ``target`` (replacing a folder of parts), as recorded."""
        if target.is_dir():
            shutil.rmtree(target)
        data = parquet_bytes(self.per_image)
        target.write_bytes(data)
        return manifest.Part.of(target, data, len(self.per_image))


class _Kept:
    """Rows on their way to :class:`~gcdash.parts.Parts`, also kept in memory while they number at most
    :data:`gcdash.runs.RUN_TABLE_ROWS` (a sweep that small returns its table without reading it back); past that,
    dropped (``frames`` is None)."""

    def __init__(self, parts: Parts | None) -> None:
        self.parts, self.frames, self.rows, self.group = parts, [], 0, 0
        self.summary = results.StreamingSummary()  # once too many to hold: made as they go by, nothing read back

    def write(self, frame: pd.DataFrame) -> None:
        from gcdash import runs

        self.parts.write(frame)
        self.rows += len(frame)
        if self.frames is not None and self.rows <= runs.RUN_TABLE_ROWS:
            self.frames.append((self.group, frame))
            return
        for _, held in self.frames or []:
            self.summary.add(held)
        self.frames = None
        self.summary.add(frame)

    def next_group(self) -> None:
        self.group += 1
        if self.parts is not None:
            self.parts.next_group()

    def result(self, config: SweepConfig, passes: dict[str, int]) -> SweepResult:
        """The sweep these rows make: the table still in memory, or (too many to hold) the summary made as they
        were written."""
        if self.frames is not None:
            return SweepResult(config, in_group_order(self.frames), passes)
        empty = pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
        return SweepResult(config, empty, passes, streamed=self.summary.summary(), n_rows=self.rows)


@dataclass(frozen=True)
class RayPool:
    """Run the batches on Ray (:func:`gcdash.executors.ray_sweep`): ``workers`` actors with ``gpus_per_worker``
    GPUs each, on a local Ray or the cluster at ``address``."""

    workers: int = 2
    gpus_per_worker: float = 0.0
    address: str | None = None


@dataclass(frozen=True)
class _Options:
    """How one config's batches run: batch size, map retention, the pool (None: this process), the device asked
    for (Ray workers resolve it on their own machines), progress and cancel."""

    batch_size: int
    keep_maps: str
    ray: RayPool | None
    device: str | None
    progress: Progress | None
    should_stop: ShouldStop | None


def sweep(
    config: SweepConfig,
    store: Store | None = None,
    *,
    device: str | None = None,
    batch_size: int = 32,
    handles: Mapping[str, ModelHandle] | None = None,
    samples: Samples | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    keep_maps: str = "all",
    parts: Parts | None = None,
    ray: RayPool | None = None,
    transfer: bool = False,
    plan: Plan | None = None,
) -> SweepResult:
    """Run ``config`` through the cache: planned first (``plan``, or made from ``device``, ``handles`` and
    ``samples``), then each config (with ``transfer``, the attack crafted on each model in turn) on the local
    executor or on ``ray``; ``progress(done, total, what)`` after each batch, ``should_stop()`` cancels between
    batches, ``keep_maps`` is the raw-map retention (:data:`gcdash.engine.KEEP_MAPS`); with ``parts`` the rows go
    to disk batch by batch. Each config's run is indexed in the store (unless it is read-only)."""
    store = store or Store()
    ready = plan or planner.make(config, device, samples=samples, handles=handles)
    configs = config.transfers() if transfer else [config]
    per = len(ready.samples) * len(config.models)
    runs = []
    for i, each in enumerate(configs):
        options = _Options(batch_size, keep_maps, ray, device, shifted(progress, i * per, per * len(configs)),
                           should_stop)  # fmt: skip
        first = parts.group if parts is not None else 0  # parts may already hold other sweeps' rows
        run = (_local if ray is None else _on_ray)(each, ready, store, parts, options)
        _index(store, run, parts and parts.written(range(first, parts.group)))
        runs.append(run)
    return runs[0] if len(runs) == 1 else _joined(config, runs)


def _local(config: SweepConfig, ready: Plan, store: Store, parts: Parts | None, options: _Options) -> SweepResult:
    """``config``'s models one after another in this process (rows to ``parts`` batch by batch when given)."""
    samples, frames, passes, kept = ready.samples, [], {}, _Kept(parts)
    total = len(samples) * len(config.models)
    for i, spec in enumerate(config.models):
        table, engine = model_table(
            ready.handles[spec.name], store, samples, config, model=spec.name, batch_size=options.batch_size,
            handles=ready.handles, progress=shifted(options.progress, i * len(samples), total),
            should_stop=options.should_stop, keep_maps=options.keep_maps, sink=parts and kept.write,
        )  # fmt: skip
        frames.append(table)
        kept.next_group()
        passes[spec.name] = engine.passes
    if parts is None:
        return SweepResult(config, pd.concat(frames, ignore_index=True), passes)
    return kept.result(config, passes)


def _on_ray(config: SweepConfig, ready: Plan, store: Store, parts: Parts | None, options: _Options) -> SweepResult:
    """``config`` on a pool of Ray actors; the driver writes each batch's rows to ``parts`` (model ``i``'s as
    the parts' group ``first + i``) and reads a small table back from them."""
    from gcdash import executors

    first = parts.group if parts is not None else 0

    def sink(index: int, rows: pd.DataFrame) -> None:
        while parts.group < first + index:
            parts.next_group()
        parts.write(rows)

    pool = options.ray
    table, passes = executors.ray_sweep(
        config, store, ready.samples, workers=pool.workers, gpus_per_worker=pool.gpus_per_worker,
        address=pool.address, device=options.device, batch_size=options.batch_size,
        sink=sink if parts is not None else None, progress=options.progress, should_stop=options.should_stop,
        keep_maps=options.keep_maps,
    )  # fmt: skip
    if parts is None:
        return SweepResult(config, table, passes)
    while parts.group < first + len(config.models):
        parts.next_group()
    return _read_back(parts, config, passes, range(first, parts.group))


def _read_back(parts: Parts, config: SweepConfig, passes: dict[str, int], groups: range) -> SweepResult:
    """The sweep whose rows are the parts of ``groups``: its summary made part by part, its per-image table read
    back whole only up to :data:`gcdash.runs.RUN_TABLE_ROWS` rows."""
    from gcdash import runs

    summary = parts.summary(groups)
    small = summary.rows <= runs.RUN_TABLE_ROWS
    per_image = parts.read(groups) if small else pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
    return SweepResult(config, per_image, passes, streamed=summary.summary(), n_rows=summary.rows)


def _index(store: Store, result: SweepResult, files: list[manifest.Part] | None) -> None:
    """The one place a run is indexed for the Runs page (a read-only cache serves the sweep; only the index is
    not written)."""
    from gcdash import runs

    if not store.read_only:
        runs.save_run(store, result, files=files)


def _joined(config: SweepConfig, runs: list[SweepResult]) -> SweepResult:
    """The runs of one transfer sweep (one per source) as one result: their summaries joined, passes added (the
    rows are in each run's parts)."""
    passes = {m: sum(r.passes.get(m, 0) for r in runs) for m in runs[0].passes}
    summary = pd.concat([r.summary() for r in runs], ignore_index=True)  # each run's groups are its own (its source)
    return SweepResult(config, runs[0].per_image.iloc[:0], passes, streamed=summary,
                       n_rows=sum(r.n_rows for r in runs))  # fmt: skip
