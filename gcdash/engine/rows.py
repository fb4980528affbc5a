"""A batch's per-image rows: one block per (layer, eps), made as whole columns from the batch's logits and every
scorer's scores; and the whole-batch memo, a finished batch's rows kept as one structured array under
:func:`gcdash.keys.rows`, so a warm batch is one read instead of one per cell.

Rows are listed layer-major, then eps, then image (the samples' order); :func:`canonical_order` puts any table
of rows back in that order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from gcdash.engine.batch import Batch
from gcdash.engine.scoring import Scorer
from gcdash.store import Store

#: The columns every row has after layer, eps and image id; each scorer adds its own after them.
BASE_COLUMNS = ["label", "pred_clean", "pred_adv", "conf_clean", "conf_adv"]


def value_columns(scorers: Sequence[Scorer]) -> list[str]:
    """The columns of a batch's rows after layer, eps and image id, in order (what :func:`batch_rows` makes)."""
    return [*BASE_COLUMNS, *(c for scorer in scorers for c in scorer.columns())]


def batch_rows(
    batch: Batch, ids: Sequence[str], scorers: Sequence[Scorer], eps_list: Sequence[float], layers: Sequence[str]
) -> pd.DataFrame:
    """The per-image rows of one batch (its images ``ids``), one block per (layer, eps), made as whole columns."""
    probs = {e: _softmax(batch.logits[e]) for e in {0.0, *eps_list}}
    blocks = [_block(batch, probs, scorers, layer, e) for layer in layers for e in eps_list]
    names = value_columns(scorers)
    return _frame(layers, eps_list, ids, {n: np.concatenate([b[n] for b in blocks]) for n in names})


def _block(
    batch: Batch, probs: Mapping[float, np.ndarray], scorers: Sequence[Scorer], layer: str, e: float
) -> dict[str, np.ndarray]:
    """The columns of one (layer, eps) block but its layer, eps and image ids."""
    clean, adv = probs[0.0], probs[e]
    block = {
        "label": batch.labels.astype(int), "pred_clean": clean.argmax(1), "pred_adv": adv.argmax(1),
        "conf_clean": clean.max(1).astype(np.float64), "conf_adv": adv.max(1).astype(np.float64),
    }  # fmt: skip
    for scorer in scorers:
        block.update(scorer.block(batch.scores[scorer.name], e, layer))
    return block


def canonical_order(table: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Rows sorted as :meth:`~gcdash.engine.ModelEngine.table` returns them: by layer and image in the order they
    first appear (each batch lists the layers in catalog order and its images in the samples' order), then eps;
    within each value of the ``group`` column first (one model's table), when given."""
    if table.empty:
        return table.reset_index(drop=True)
    groups = table[group] if group else pd.Series(0, index=table.index)

    def first_seen(column: str) -> np.ndarray:  # within each group: another model's layers are its own
        return table.groupby(groups, sort=False)[column].transform(lambda s: pd.factorize(s)[0]).to_numpy()

    keys = [groups.to_numpy(), first_seen("layer"), table["eps"].to_numpy(), first_seen("image_id")]
    return table.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)


def _frame(layers: Sequence[str], eps_list: Sequence[float], ids: Sequence[str], values: Mapping) -> pd.DataFrame:
    """Rows of one batch from their value columns (label first), layer-major then eps then image."""
    n = len(ids)
    front = {
        "layer": np.repeat(np.array(list(layers), dtype=object), n * len(eps_list)),
        "eps": np.repeat(np.tile(np.asarray(eps_list, dtype=np.float64), len(layers)), n),
        "image_id": np.tile(np.array(list(ids), dtype=object), len(layers) * len(eps_list)),
    }
    return pd.DataFrame({**front, **{name: np.asarray(values[name]) for name in values}})


def kept_rows(
    store: Store, memo: str, layers: Sequence[str], eps_list: Sequence[float], ids: Sequence[str], columns: list[str]
) -> pd.DataFrame | None:
    """The rows kept under ``memo`` with this batch's image ids; None if there are none or they do not fit the
    batch (other columns, another number of rows: a damaged or foreign entry is made again from the cells)."""
    kept = store.get_arrays([memo]).get(memo)
    if kept is None or kept.dtype.names != tuple(columns) or kept.ndim != 1:
        return None
    if len(kept) != len(layers) * len(eps_list) * len(ids):
        return None
    return _frame(layers, eps_list, ids, {name: kept[name] for name in kept.dtype.names})


def keep_rows(store: Store, memo: str, rows: pd.DataFrame, owner: str) -> None:
    """Keep a batch's value columns under ``memo`` as one structured array (no object field, so it is saved and
    read without pickle); layer, eps and image ids follow from the batch and the sweep. Not on a read-only cache."""
    if not store.read_only:
        packed = rows.drop(columns=["layer", "eps", "image_id"]).to_records(index=False).view(np.ndarray)
        store.put_arrays({memo: packed}, "rows", owner)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
