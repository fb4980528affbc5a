"""Aggregate tables from the per-image table: MOD (split by whether the attack flipped the prediction), NISSIM
spread, accuracy and every extra comparison's MOD per (model, method, attack, source, layer, eps); VID per
(model, method, attack, source, layer); the bootstrap band of MOD. Pure pandas: data in, tables out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gcdash import metrics
from gcdash.config import eps_text

PER_IMAGE_COLUMNS = [
    "model", "method", "attack", "source", "layer", "eps", "image_id", "label",
    "pred_clean", "pred_adv", "conf_clean", "conf_adv", "ssim", "nissim", "zero_clean", "zero_adv",
]  # fmt: skip
GROUP = ["model", "method", "attack", "source", "layer"]
SUMMARY_COLUMNS = [
    *GROUP, "eps", "n", "mod", "mod_flipped", "mod_kept", "nissim_std", "zero_rate", "flip_rate", "acc_clean",
    "acc_adv", "attack_success",
]  # fmt: skip
VID_COLUMNS = [*GROUP, "vid"]
#: Per-image localisation scores where the images have object masks (:mod:`gcdash.metrics.localisation`); their
#: summary is the mean over the images with a score: the pointing-game hit rate and the mean mass inside, and
#: ``moved_off``, the share of images whose clean map pointed at the object and whose attacked map does not.
LOCALISATION_COLUMNS = ["hit_clean", "hit_adv", "mass_clean", "mass_adv"]
#: Deletion / insertion areas (:mod:`gcdash.metrics.faithfulness`) where the sweep asked for them; summary: means.
FAITHFULNESS_COLUMNS = ["del_clean", "del_adv", "ins_clean", "ins_adv"]
#: RIS, ROS, Max-Sensitivity (:mod:`gcdash.metrics.stability`) where the sweep asked for them; summary: means over
#: the images that have one (RIS and ROS: those whose top-1 the attack kept), and their count in ``n_stable``.
STABILITY_COLUMNS = ["ris", "ros", "max_sens"]
#: Clean / attacked pairs of per-image scores. A summary averages the clean score over every clean map that has one
#: (an all-zero map has none), so it is one number per (model, layer), the same on every eps row; the attacked score
#: over the images that have both, so "after" describes images whose "before" is known.
PAIRED = [("hit_clean", "hit_adv"), ("mass_clean", "mass_adv"), ("del_clean", "del_adv"), ("ins_clean", "ins_adv")]


def extra_comparisons(per_image: pd.DataFrame) -> list[str]:
    """The comparisons beyond NISSIM whose per-image column the table carries (in registry order)."""
    return [name for name in metrics.dissimilarities() if name != "nissim" and name in per_image.columns]


def zero_maps(table: pd.DataFrame) -> pd.Series:
    """Rows whose clean or attacked map is all zero (no explanation; their dissimilarities are NaN)."""
    if "zero_clean" not in table:
        return pd.Series(False, index=table.index)
    return table["zero_clean"].astype(bool) | table["zero_adv"].astype(bool)


def summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, attack, source, layer, eps): n, MOD, MOD over the images whose top-1 the attack
    flipped / kept (NaN where there are none), NISSIM std, the share of pairs with an all-zero map (``zero_rate``;
    those are left out of every MOD: no explanation is not the same explanation), clean/adversarial accuracy,
    attack success, ``mod_<name>`` for each extra comparison, and the localisation means where there are masks.
    The table in one part of a :class:`StreamingSummary`: one definition of every column, whether the table is
    in memory or in Parquet parts."""
    streaming = StreamingSummary()
    streaming.add(per_image)
    return streaming.summary()


def vid(summary_table: pd.DataFrame) -> pd.DataFrame:
    """VID per (model, method, attack, source, layer): the population std of MOD over the eps > 0 rows, and
    ``vid_<name>`` of each extra comparison's MOD; NaN (n/a) unless two eps > 0 at least were swept: the spread of
    one value says nothing."""
    extras = [name for name in metrics.dissimilarities() if f"mod_{name}" in summary_table.columns]
    rows = []
    for key, g in summary_table.groupby(GROUP, sort=False):
        positive = g[g["eps"] > 0]
        row = [*key]
        for column in ["mod", *(f"mod_{name}" for name in extras)]:
            row.append(metrics.vid(dict(zip(positive["eps"], positive[column]))) if len(positive) > 1 else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*VID_COLUMNS, *(f"vid_{name}" for name in extras)])


def control_gap(summary_table: pd.DataFrame, control: str = "noise") -> pd.DataFrame:
    """Per (model, method, layer, eps > 0): the attacks' MOD beside the ``control``'s at the same eps, and the gap
    (attack − control), the part of the shift the adversarial direction adds over a random one of that size."""
    keys = ["model", "method", "layer", "eps"]
    positive = summary_table[summary_table["eps"] > 0]
    base = positive[positive["attack"] == control][[*keys, "mod"]].rename(columns={"mod": f"mod_{control}"})
    attacked = positive[positive["attack"] != control][[*keys, "attack", "source", "mod"]]
    out = attacked.merge(base, on=keys)
    out["gap"] = out["mod"] - out[f"mod_{control}"]
    return out.reset_index(drop=True)


def identical_methods(per_image: pd.DataFrame, atol: float = 1e-9) -> list[list[str]]:
    """Groups of CAM methods whose per-image NISSIM agree everywhere (per model and layer): their lines would lie
    on top of each other. Grad-CAM and XGrad-CAM do at a layer followed by global average pooling and a linear
    head, where ∂S/∂A_k is constant over (i, j), so both weights are the channel's gradient."""
    groups: list[list[str]] = []
    for _, g in per_image.groupby(["model", "layer"], sort=False):
        wide = g.pivot_table(index=["image_id", "eps"], columns="method", values="nissim", sort=False)
        methods = list(wide.columns)
        seen: set[str] = set()
        for i, a in enumerate(methods):
            same = [
                b
                for b in methods[i + 1 :]
                if b not in seen and np.allclose(wide[a], wide[b], atol=atol, equal_nan=True)
            ]
            if same:
                seen.update(same)
                groups.append([a, *same])
    return [list(x) for x in dict.fromkeys(tuple(g) for g in groups)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (e.g. the 95% band around MOD)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_boot, arr.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summary_with_ci(per_image: pd.DataFrame, level: float = 0.95, n_boot: int = 1000) -> pd.DataFrame:
    """:func:`summary` plus ``mod_lo``/``mod_hi``: the percentile bootstrap interval of MOD (the mean NISSIM)."""
    table = summary(per_image)
    bands = {
        key: bootstrap_ci(g["nissim"].dropna().to_numpy(), level, n_boot)
        for key, g in per_image.groupby([*GROUP, "eps"], sort=False)
    }
    keys = list(table[[*GROUP, "eps"]].itertuples(index=False, name=None))
    table["mod_lo"] = [bands[k][0] for k in keys]
    table["mod_hi"] = [bands[k][1] for k in keys]
    return table


def mod_vid_table(summary_table: pd.DataFrame) -> pd.DataFrame:
    """A wide table for people: one row per (model, method, attack, source, layer), MOD per eps > 0 and VID
    (eps = 0, the control, is 0 by construction and left out)."""
    positive = summary_table[summary_table["eps"] > 0]
    if positive.empty:
        positive = summary_table
    wide = positive.pivot_table(index=GROUP, columns="eps", values="mod", sort=False)
    wide.columns = [f"MOD@{eps_text(e)}" for e in wide.columns]
    return wide.reset_index().merge(vid(summary_table), on=GROUP)


def transfer_matrix(summary_table: pd.DataFrame, eps: float, value: str = "mod") -> pd.DataFrame:
    """``value`` (``mod``, ``acc_adv``, ``flip_rate``, …) at ``eps`` for every pair: rows the model the perturbation
    was crafted on (``source``), columns the model it was evaluated on, in the order the models first appear. The
    diagonal is the white-box attack. Each model contributes its deepest layer in the table (as the narrative's
    ``reading``)."""
    rows = summary_table[np.isclose(summary_table["eps"], eps) & (summary_table["source"] != "none")]
    deepest = rows.groupby("model", sort=False)["layer"].transform("last")  # one layer per model: its deepest
    rows = rows[rows["layer"] == deepest]
    order = list(dict.fromkeys(summary_table["model"]))
    matrix = rows.pivot_table(index="source", columns="model", values=value, aggfunc="first")
    return matrix.reindex(index=[m for m in order if m in matrix.index], columns=[m for m in order if m in matrix])


class StreamingSummary:
    """:func:`summary` of a per-image table seen one part at a time (a sweep's Parquet parts), in memory that does
    not grow with the number of images: per group, the counts and sums each column of the summary is a ratio of,
    and the NISSIM spread as (n, mean, M2) combined part by part (Chan et al.'s pairwise update). Equal to
    the whole table in one part up to float round-off (tested to 1e-12, and against a per-group pandas reference),
    whatever the parts: groups first seen in a later part, columns that only some parts carry (NaN in the others,
    as in the concatenated table)."""

    def __init__(self) -> None:
        self._sums: pd.DataFrame | None = None  # group key → sums (columns: "<summary column>:sum" / ":count")
        self._order: dict[tuple, None] = {}  # the groups in the order they first appear
        self._spread: dict[tuple, tuple[float, float, float]] = {}  # group key → (n, mean, M2) of NISSIM
        self._columns: dict[str, None] = {}  # every column seen, in the order first seen
        self.rows = 0

    def add(self, part: pd.DataFrame) -> None:
        """Fold one part (rows of the per-image table, whole groups or not) into the sums."""
        self._columns.update(dict.fromkeys(part.columns))
        if part.empty:
            return
        keys = [*GROUP, "eps"]
        sums = pd.concat([part[keys], self._terms(part)], axis=1).groupby(keys, sort=False).sum()
        self._order.update(dict.fromkeys(sums.index))
        self._sums = sums if self._sums is None else self._sums.add(sums, fill_value=0.0)
        nissim = part[keys].assign(x=part["nissim"]).dropna(subset=["x"]).groupby(keys, sort=False)["x"]
        stats = pd.DataFrame({"n": nissim.count(), "mean": nissim.mean(), "var": nissim.var(ddof=0)})
        for key, n, mean, var in zip(stats.index, stats["n"], stats["mean"], stats["var"]):
            self._spread[key] = _combine(self._spread.get(key, (0.0, 0.0, 0.0)), (float(n), mean, var * n))
        self.rows += len(part)

    def _terms(self, g: pd.DataFrame) -> pd.DataFrame:
        """Per row, the addends of every sum (a value where it counts, 0 elsewhere, and the indicator of that)."""
        flipped = (g["pred_adv"] != g["pred_clean"]).to_numpy()
        labelled = (g["label"] >= 0).to_numpy()
        correct = labelled & (g["pred_clean"] == g["label"]).to_numpy()
        out: dict[str, np.ndarray] = {"n": np.ones(len(g))}

        def mean_of(name: str, values: pd.Series, where: np.ndarray | None = None) -> None:
            present = values.notna().to_numpy() & (True if where is None else where)
            out[f"{name}:sum"] = np.where(present, values.fillna(0).to_numpy(dtype=np.float64), 0.0)
            out[f"{name}:count"] = present.astype(np.float64)

        mean_of("mod", g["nissim"])
        mean_of("mod_flipped", g["nissim"], flipped)
        mean_of("mod_kept", g["nissim"], ~flipped)
        out["zero_rate:sum"] = zero_maps(g).to_numpy(dtype=np.float64)
        out["flip_rate:sum"] = flipped.astype(np.float64)
        for name, hit in (("acc_clean", g["pred_clean"]), ("acc_adv", g["pred_adv"])):
            out[f"{name}:sum"] = (labelled & (hit == g["label"]).to_numpy()).astype(np.float64)
            out[f"{name}:count"] = labelled.astype(np.float64)
        out["attack_success:sum"] = (correct & flipped).astype(np.float64)
        out["attack_success:count"] = correct.astype(np.float64)
        for name in extra_comparisons(g):
            mean_of(f"mod_{name}", g[name])
        for clean, adv in PAIRED:
            if clean in g:
                mean_of(clean, g[clean])
                mean_of(adv, g[adv], g[[clean, adv]].notna().all(axis=1).to_numpy())
        for name in STABILITY_COLUMNS:
            if name in g:
                mean_of(name, g[name])
        if "ris" in g:
            out["n_stable:sum"] = g["ris"].notna().to_numpy(dtype=np.float64)
        if "hit_clean" in g:
            both = g[["hit_clean", "hit_adv"]].notna().all(axis=1).to_numpy()
            moved = ((g["hit_clean"] == 1) & (g["hit_adv"] == 0)).to_numpy()
            out["moved_off:sum"] = (both & moved).astype(np.float64)
            out["moved_off:count"] = both.astype(np.float64)
        return pd.DataFrame(out, index=g.index)

    def summary(self) -> pd.DataFrame:
        """The summary of everything added (the columns :func:`summary` describes)."""
        seen = pd.DataFrame(columns=list(self._columns))
        extras = extra_comparisons(seen)
        located = [c for c in LOCALISATION_COLUMNS if c in seen]
        located += ["moved_off"] if located else []
        faithful = [c for c in FAITHFULNESS_COLUMNS if c in seen]
        stable = [c for c in STABILITY_COLUMNS if c in seen] + (["n_stable"] if "ris" in seen else [])
        columns = SUMMARY_COLUMNS + [f"mod_{name}" for name in extras] + faithful + located + stable
        if self._sums is None:
            return pd.DataFrame(columns=columns)
        sums = self._sums.loc[list(self._order)]
        out = sums.index.to_frame(index=False)
        out["n"] = sums["n"].to_numpy().astype(int)
        for column in columns[len(GROUP) + 2 :]:
            if column == "nissim_std":
                spread = [self._spread.get(key) for key in self._order]
                out[column] = [np.sqrt(s[2] / s[0]) if s and s[0] else np.nan for s in spread]
            elif column == "n_stable":
                out[column] = sums["n_stable:sum"].to_numpy().astype(int)
            elif column in ("zero_rate", "flip_rate"):
                out[column] = (sums[f"{column}:sum"] / sums["n"]).to_numpy()
            else:
                count = sums[f"{column}:count"] if f"{column}:count" in sums else pd.Series(0.0, index=sums.index)
                total = sums[f"{column}:sum"] if f"{column}:sum" in sums else pd.Series(0.0, index=sums.index)
                out[column] = (total / count.where(count > 0)).astype(np.float64).to_numpy()
        return out[columns]


def _combine(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    """Two (n, mean, M2) of disjoint samples as one (Chan, Golub & LeVeque 1979)."""
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    if not nb:
        return a
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n
