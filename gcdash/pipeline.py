"""The sweep engine: models × images × eps × layers × method, through the cache, with progress and cancel.

``sweep(config)`` loads the data once, each model once, runs a :class:`~gcdash.engine.ModelEngine` per model
and returns a :class:`SweepResult` (the per-image table; summary and VID derive from it). Everything already in
the store is read, not recomputed; whatever finished before a failure or a cancel stays in the store.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from gcdash import data, manifest, models, results
from gcdash.config import AttackConfig, SweepConfig
from gcdash.data import Samples
from gcdash.engine import ModelEngine, canonical_order
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle
from gcdash.progress import Progress, ShouldStop, shifted
from gcdash.store import Store


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GcdashError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise GcdashError(f"unknown device {device!r}; choose from: cpu, cuda")
    try:
        torch.device(device)  # ``cpu:abc`` is refused here, not by a traceback at the first pass
    except RuntimeError:
        raise GcdashError(f"--device {device!r} is not a device; write cpu, cuda or cuda:N") from None
    return device


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
            manifest.write(out, table, ["summary.csv", "vid.csv"])
        except OSError as err:
            raise manifest.out_error(out, err) from None

    def _write_table(self, target: Path) -> manifest.Part:
        """The per-image table as one Parquet file at ``target`` (replacing a folder of parts), as recorded."""
        if target.is_dir():
            shutil.rmtree(target)
        data = parquet_bytes(self.per_image)
        target.write_bytes(data)
        return manifest.Part.of(target, data, len(self.per_image))


def check_out_dir(out_dir: str | Path) -> Path:
    """Make sure the tables can be written to ``out_dir`` (created if needed) before any work: one clear line if
    it is a file or cannot be written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GcdashError(f"--out {out} is a file; give a folder for the tables")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".gcdash-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise GcdashError(f"--out {out} cannot be written: {err.strerror or err}") from None
    return out


def load_samples(config: SweepConfig) -> Samples:
    return data.load(config.data.source, n=config.data.n, seed=config.data.seed, **dict(config.data.options))


def load_handles(config: SweepConfig, device: str) -> dict[str, ModelHandle]:
    """Load each model of ``config`` on ``device`` and check its layer selection and, for a transfer attack, that
    its source fits it (errors before any work). A source among the models is used with their weights; another
    one is loaded with its default weights and returned too."""
    from gcdash.engine.attack import checked_source

    handles = {}
    for spec in config.models:
        handle = models.load(spec.name, weights=spec.weights, **dict(spec.options)).to(device)
        handle.resolve_layers(config.layers)
        handles[spec.name] = handle
    source = config.attack.source
    if source:
        handles.setdefault(source, models.load(source).to(device))
        for spec in config.models:
            checked_source(handles[spec.name], handles[source])
    return handles


def check_labels(handle: ModelHandle, samples: Samples) -> None:
    """Labels must name classes the model has: a label past its last class has no logit to attack or explain."""
    known = samples.labels[samples.labels >= 0]
    n_classes = len(handle.class_names)
    if known.size and int(known.max()) >= n_classes:
        names = getattr(samples, "class_names", None) or []
        where = f" ({len(names)}: {', '.join(map(str, names[:8]))}{'…' if len(names) > 8 else ''})" if names else ""
        raise GcdashError(
            f"the images carry labels up to {int(known.max())}{where} but model {handle.name} has {n_classes} "
            f"classes: keep classes it knows (--classes) or give its class names (--class-names)"
        )


def model_samples(handle: ModelHandle, samples: Samples, name: str | None = None) -> Samples:
    """``samples`` labelled for ``handle``: the one labelling rule (:func:`gcdash.data.align_labels`: a class
    name maps to the model's class of that name, a class it lacks is unlabelled, -1), then checked. Every table,
    the CLI's and the pages' (gallery included), is computed from samples passed through here."""
    aligned, _ = data.align_labels(samples, handle.class_names, name or handle.name)
    check_labels(handle, aligned)
    return aligned


def check_inputs(config: SweepConfig, samples: Samples, handles: Mapping[str, ModelHandle]) -> list[str]:
    """Everything about the inputs that can be checked before any model pass; returns lines for people (classes
    of the data that a model does not have)."""
    notes = []
    for spec in config.models:
        aligned, note = data.align_labels(samples, handles[spec.name].class_names, spec.name)
        check_labels(handles[spec.name], aligned)
        notes += [note] if note else []
    return notes


def source_column(config: SweepConfig, model: str) -> str:
    """Who crafted the perturbation: the transfer source, the model itself, or "none" (the noise control)."""
    from gcdash import attacks

    if not attacks.get(config.attack.name).uses_model:
        return "none"
    return config.attack.source or model


def transfer_attacks(attack: AttackConfig, sources: Sequence[str]) -> list[AttackConfig]:
    """``attack`` crafted on each of ``sources`` (``source=NAME``), for the transfer matrix: evaluated on every
    model, the source equal to the model is the white-box attack (the same cells)."""
    from gcdash import attacks

    if not attacks.get(attack.name).uses_model:
        raise GcdashError(f"attack {attack.name} ignores the model, so it has no transfer matrix; use fgsm or pgd")
    own = [(k, v) for k, v in attack.params if k != "source"]
    return [AttackConfig(attack.name, tuple(sorted([*own, ("source", name)]))) for name in sources]


def model_table(
    handle: ModelHandle,
    store: Store,
    samples: Samples,
    config: SweepConfig,
    *,
    model: str | None = None,
    batch_size: int = 32,
    handles: Mapping[str, ModelHandle] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    keep_maps: str = "all",
    sink: Callable[[pd.DataFrame], None] | None = None,
) -> tuple[pd.DataFrame, ModelEngine]:
    """The per-image table (``results.PER_IMAGE_COLUMNS``, a column per extra comparison, and the localisation
    columns where the images have masks) of one model under ``config``: the one path from a config to numbers,
    used by the CLI, :func:`sweep` and the pages. With ``sink`` each batch's rows go to it as they are made and
    the returned table is empty (nothing is kept in memory)."""
    name = model or handle.name
    samples = model_samples(handle, samples, name)
    engine = ModelEngine.from_config(handle, store, config, batch_size, handles, keep_maps)
    if sink is not None:
        for rows in engine.rows(samples, config.eps, config.layers, progress, should_stop):
            sink(_labelled(rows, config, name))
        return pd.DataFrame(columns=results.PER_IMAGE_COLUMNS), engine
    return _labelled(engine.table(samples, config.eps, config.layers, progress, should_stop), config, name), engine


def _labelled(table: pd.DataFrame, config: SweepConfig, name: str) -> pd.DataFrame:
    """Engine rows with the columns that say whose they are (model, method, attack, source), in table order."""
    for column, value in reversed(
        (("model", name), ("method", config.cam.method), ("attack", config.attack.name),
         ("source", source_column(config, name)))
    ):  # fmt: skip
        table.insert(0, column, value)
    extras = [c.name for c in config.comparisons[1:]]
    located = [c for c in results.FAITHFULNESS_COLUMNS + results.LOCALISATION_COLUMNS if c in table]
    return table[results.PER_IMAGE_COLUMNS + extras + located]


class Parts:
    """``DIR/per_image.parquet`` as a folder of Parquet parts, one per finished batch, each written whole (a
    temporary name, then a rename) as soon as its batch is done: a killed sweep loses at most the batch in flight,
    and ``pandas.read_parquet(DIR/per_image.parquet)`` reads the folder as one table. A new sweep starts it empty
    (a rerun after a kill rewrites it from the cache, making no model pass for the finished batches), after
    taking the folder's lock (:class:`~gcdash.manifest.FolderLock`, held until :meth:`close` or the process ends;
    a use as a context manager closes it) and removing an earlier sweep's summary and manifest. Each part's rows
    and checksum are recorded as it is written and checked whenever it is read back."""

    NAME = manifest.TABLE

    def __init__(self, out_dir: str | Path) -> None:
        out = check_out_dir(out_dir)
        self.lock = manifest.FolderLock(out)  # another sweep into this folder is refused, in one line
        self.path = out / self.NAME
        try:
            manifest.clear_stale(out)
            if self.path.is_dir():
                shutil.rmtree(self.path)
            elif self.path.exists():
                self.path.unlink()
            self.path.mkdir()
        except OSError as err:
            self.close()
            raise manifest.out_error(out, err) from None
        self.count, self.group, self._written = 0, 0, []

    def __enter__(self) -> Parts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Give the folder back (the parts stay)."""
        self.lock.release()

    def next_group(self) -> None:
        """The parts written from now on are another model's (or another attack's) table."""
        self.group += 1

    def write(self, frame: pd.DataFrame) -> None:
        """One part, whole (a temporary name, then a rename), its checksum recorded; a full disk is one line."""
        if not self.lock.held:
            raise GcdashError(f"--out {self.path.parent} is no longer this sweep's (closed, or taken by a newer one)")
        name = f"part-{self.group:04d}-{self.count:06d}.parquet"
        tmp = self.path / f".{name}.tmp"
        try:
            data = parquet_bytes(frame)
            tmp.write_bytes(data)
            os.replace(tmp, self.path / name)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise manifest.out_error(self.path.parent, err) from None
        self._written.append((self.group, manifest.Part.of(self.path / name, data, len(frame))))
        self.count += 1

    def written(self, groups: range | None = None) -> list[manifest.Part]:
        """The parts written (those of ``groups``), in the order they were written, with their checksums."""
        return [part for group, part in self._written if groups is None or group in groups]

    def files(self, groups: range | None = None) -> list[Path]:
        """The parts written (those of ``groups``), in the order they were written."""
        return [Path(part.path) for part in self.written(groups)]

    def summary(self, groups: range | None = None) -> results.StreamingSummary:
        """The summary of the parts (those of ``groups``), read one part at a time, each checked."""
        summary = results.StreamingSummary()
        for part in self.written(groups):
            summary.add(manifest.read_part(part))
        return summary

    def result(self, config: SweepConfig, passes: dict[str, int], groups: range | None = None) -> SweepResult:
        """The sweep whose rows are the parts of ``groups``: its summary made part by part, its per-image table
        read back whole only up to :data:`RUN_TABLE_ROWS` rows."""
        summary = self.summary(groups)
        small = summary.rows <= RUN_TABLE_ROWS
        per_image = self.read(groups) if small else pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
        return SweepResult(config, per_image, passes, streamed=summary.summary(), n_rows=summary.rows)

    def read(self, groups: range | None = None) -> pd.DataFrame:
        """Every part (or those of ``groups``), in the order :func:`sweep` would have returned the rows in memory."""
        return read_parts(self.written(groups))


class _Kept:
    """Rows on their way to :class:`Parts`, also kept in memory while they number at most :data:`RUN_TABLE_ROWS`
    (a sweep that small returns its table without reading it back); past that, dropped (``frames`` is None)."""

    def __init__(self, parts: Parts | None) -> None:
        self.parts, self.frames, self.rows, self.group = parts, [], 0, 0
        self.summary = results.StreamingSummary()  # once too many to hold: made as they go by, nothing read back

    def write(self, frame: pd.DataFrame) -> None:
        self.parts.write(frame)
        self.rows += len(frame)
        if self.frames is not None and self.rows <= RUN_TABLE_ROWS:
            self.frames.append((self.group, frame))
            return
        for _, held in self.frames or []:
            self.summary.add(held)
        self.frames = None
        self.summary.add(frame)

    def next_group(self) -> None:
        self.group += 1

    def table(self) -> pd.DataFrame:
        return in_group_order(self.frames or [])


def read_parts(files: Sequence[Path | manifest.Part]) -> pd.DataFrame:
    """Parquet parts written by :class:`Parts`, as one table in the order :func:`sweep` returns rows in memory.
    Each is checked: a :class:`~gcdash.manifest.Part` against its checksum, a path against its folder's manifest
    where there is one (one line for a part it does not list or that does not match it)."""
    listed: dict[Path, dict[str, manifest.Part] | None] = {}
    frames = []
    for file in files:
        part = file if isinstance(file, manifest.Part) else _listed_part(Path(file), listed)
        frame = manifest.read_part(part) if part is not None else pd.read_parquet(file)
        frames.append((int(Path(getattr(file, "path", file)).name.split("-")[1]), frame))
    return in_group_order(frames)


def _listed_part(file: Path, listed: dict[Path, dict[str, manifest.Part] | None]) -> manifest.Part | None:
    """``file`` as its output folder's manifest lists it (None without a manifest: a sweep still writing)."""
    if file.resolve().parent.name != manifest.TABLE:  # not in a sweep's output folder: nothing to check it against
        return None
    out = file.resolve().parent.parent
    if out not in listed:
        listed[out] = manifest.listed(out)
    if listed[out] is None:
        return None
    if str(file.resolve()) not in listed[out]:
        raise GcdashError(f"{file} is not listed in {out / manifest.NAME}: it was added after that sweep")
    return listed[out][str(file.resolve())]


def in_group_order(frames: Sequence[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """Batches of rows, each with its group (a model's or an attack's table), as one table in the order
    :func:`sweep` returns rows in memory (:func:`~gcdash.engine.canonical_order` within each group)."""
    if not frames:
        return pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
    table = pd.concat([frame.assign(_group=group) for group, frame in frames], ignore_index=True)
    return canonical_order(table, "_group").drop(columns="_group")


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
) -> SweepResult:
    """Run ``config`` through the cache. ``handles`` (name → loaded handle) and ``samples`` skip loading;
    ``progress(done, total, what)`` is called after each batch; ``should_stop()`` cancels between batches;
    ``keep_maps`` is the raw-map retention policy (:data:`gcdash.engine.KEEP_MAPS`); with ``parts`` the rows are
    written to disk batch by batch and the table returned is read back from what was written."""
    store = store or Store()
    samples = samples if samples is not None else load_samples(config)
    device = resolve_device(device)
    total = len(samples) * len(config.models)
    frames, passes, kept = [], {}, _Kept(parts)
    first_group = parts.group if parts is not None else 0  # parts may already hold other sweeps' rows
    handles = dict(handles or {})
    for i, spec in enumerate(config.models):
        handle = handles.get(spec.name) or models.load(spec.name, weights=spec.weights, **dict(spec.options))
        handle.to(device)
        report = shifted(progress, i * len(samples), total)
        table, engine = model_table(
            handle, store, samples, config, model=spec.name, batch_size=batch_size, handles=handles,
            progress=report, should_stop=should_stop, keep_maps=keep_maps, sink=parts and kept.write,
        )  # fmt: skip
        frames.append(table)
        kept.next_group()
        passes[spec.name] = engine.passes
        if parts is not None:
            parts.next_group()
    if parts is None:
        result = SweepResult(config, pd.concat(frames, ignore_index=True), passes)
    elif kept.frames is not None:  # small enough: the rows written are still in memory, read nothing back
        result = SweepResult(config, kept.table(), passes)
    else:  # too many to hold: the summary was made as they were written
        empty = pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
        result = SweepResult(config, empty, passes, streamed=kept.summary.summary(), n_rows=kept.rows)
    if not store.read_only:  # a read-only cache serves the sweep; only the Runs page's index is not written
        save_run(store, result, files=parts and parts.written(range(first_group, parts.group)))
    return result


#: Runs with more per-image rows than this are indexed by where their table was written, not with a copy of it in
#: the cache (a full-scale sweep's table is gigabytes: it belongs in its output folder, not in SQLite).
RUN_TABLE_ROWS = 1_000_000


def save_run(store: Store, result: SweepResult, files: Sequence[manifest.Part] | None = None) -> None:
    """Index the run in the store for the Runs page: its config and per-image table as Parquet (the store keeps a
    CRC of both), or, for a table of more than :data:`RUN_TABLE_ROWS` rows written as the Parquet parts
    ``files`` (:meth:`Parts.written`), where they are with each one's size, rows and SHA-256, so that a part
    damaged or rewritten by a later sweep is refused when read."""
    config = result.config.to_dict()
    if files and result.n_rows > RUN_TABLE_ROWS:
        config["table_files"] = [[p.path, p.size, p.rows, p.sha256] for p in files]
        store.put_run(result.config.key(), config, b"", result.n_rows, 0)
        return
    table = parquet_bytes(result.per_image)
    store.put_run(result.config.key(), config, table, len(result.per_image), len(table))


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet bytes (the bytes ``frame.to_parquet(path, index=False)`` would write)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def load_run(store: Store, key: str) -> pd.DataFrame | None:
    """A run's per-image table (None if the run is unknown), checked: its stored copy against its CRC, or each of
    its parts against its checksum; one clear error if either is damaged or a part is gone."""
    stored = store.get_run(key)
    if stored is None:
        return None
    config, blob = stored
    if blob:
        return pd.read_parquet(io.BytesIO(blob))
    return read_parts(run_parts(config, key))


def check_run(store: Store, key: str) -> None:
    """What :func:`load_run` checks short of reading a large run's parts (for the Runs page, before it offers a
    download): the stored copy against its CRC, or each part there and of its size. One clear error if not."""
    stored = store.get_run(key)
    if stored is not None and not stored[1]:
        run_parts(stored[0], key)


def run_parts(config: Mapping, key: str) -> list[manifest.Part]:
    """The parts listed in a large run's ``config``, each there and of its size (one clear error if not)."""
    entries = config.get("table_files", [])
    if any(len(entry) != 4 for entry in entries):
        raise GcdashError(f"run {key}'s parts were indexed without checksums (an older gcdash); sweep it again")
    parts = [manifest.Part(*entry) for entry in entries]
    changed = [p.path for p in parts if not Path(p.path).is_file() or Path(p.path).stat().st_size != p.size]
    if changed or not parts:
        where = Path(changed[0]).parent if changed else "its output folder"
        raise GcdashError(
            f"run {key}'s per-image table in {where} is gone or was rewritten by a later sweep; sweep it again"
        )
    return parts
