"""Aggregate tables from the per-image table: MOD, NISSIM spread and accuracy per (model, method, layer, eps),
and VID per (model, method, layer). Pure pandas: data in, tables out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcdash import metrics
from gcdash.config import eps_text

PER_IMAGE_COLUMNS = [
    "model", "method", "layer", "eps", "image_id", "label",
    "pred_clean", "pred_adv", "conf_clean", "conf_adv", "ssim", "nissim",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "model",
    "method",
    "layer",
    "eps",
    "n",
    "mod",
    "nissim_std",
    "acc_clean",
    "acc_adv",
    "attack_success",
]
VID_COLUMNS = ["model", "method", "layer", "vid"]
GROUP = ["model", "method", "layer"]


def _summarise_group(g: pd.DataFrame) -> pd.Series:
    return pd.Series(
        {
            "n": len(g),
            "mod": metrics.mod(g["nissim"]),
            "nissim_std": float(g["nissim"].std(ddof=0)),
            "acc_clean": metrics.accuracy(g["pred_clean"], g["label"]),
            "acc_adv": metrics.accuracy(g["pred_adv"], g["label"]),
            "attack_success": metrics.attack_success(g["pred_clean"], g["pred_adv"], g["label"]),
        }
    )


def summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, layer, eps): n, MOD, NISSIM std, clean/adversarial accuracy, attack success."""
    if per_image.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    keys = [*GROUP, "eps"]
    out = per_image.groupby(keys, sort=False)[per_image.columns.difference(keys)].apply(_summarise_group)
    out = out.reset_index()
    out["n"] = out["n"].astype(int)
    return out[SUMMARY_COLUMNS]


def vid(summary_table: pd.DataFrame) -> pd.DataFrame:
    """VID per (model, method, layer): the population std of MOD over the eps > 0 rows."""
    rows = []
    for key, g in summary_table.groupby(GROUP, sort=False):
        positive = g[g["eps"] > 0]
        value = metrics.vid(dict(zip(positive["eps"], positive["mod"]))) if len(positive) else np.nan
        rows.append((*key, value))
    return pd.DataFrame(rows, columns=VID_COLUMNS)


def mod_vid_table(summary_table: pd.DataFrame) -> pd.DataFrame:
    """A wide table for people: one row per (model, method, layer), MOD per eps, VID, accuracies at each eps."""
    wide = summary_table.pivot_table(index=GROUP, columns="eps", values="mod", sort=False)
    wide.columns = [f"MOD@{eps_text(e)}" for e in wide.columns]
    table = wide.reset_index().merge(vid(summary_table), on=GROUP)
    return table
