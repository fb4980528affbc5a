"""One model's per-image table under a config: the images labelled for the model (the one labelling rule,
:func:`gcdash.plan.model_samples`), the engine's rows, and the columns that say whose they are. The one path from
a config to numbers, below everything that runs it: the sweep (local), a Ray worker on its batch, the pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from gcdash import results
from gcdash.config import SweepConfig
from gcdash.data import Samples
from gcdash.engine import ModelEngine, canonical_order
from gcdash.models.handle import ModelHandle
from gcdash.plan import model_samples
from gcdash.progress import Progress, ShouldStop
from gcdash.store import Store


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
    used by :func:`gcdash.sweep.sweep`, the Ray workers and the pages. With ``sink`` each batch's rows go to it as
    they are made and the returned table is empty (nothing is kept in memory)."""
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
         ("source", config.source_column(name)))
    ):  # fmt: skip
        table.insert(0, column, value)
    extras = [c.name for c in config.comparisons[1:]]
    known = results.FAITHFULNESS_COLUMNS + results.LOCALISATION_COLUMNS + results.STABILITY_COLUMNS
    located = [c for c in known if c in table]
    return table[results.PER_IMAGE_COLUMNS + extras + located]


def in_group_order(frames: Sequence[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """Batches of rows, each with its group (a model's or an attack's table), as one table in the order
    :func:`gcdash.sweep.sweep` returns rows in memory (:func:`~gcdash.engine.canonical_order` within each group)."""
    if not frames:
        return pd.DataFrame(columns=results.PER_IMAGE_COLUMNS)
    table = pd.concat([frame.assign(_group=group) for group, frame in frames], ignore_index=True)
    return canonical_order(table, "_group").drop(columns="_group")
