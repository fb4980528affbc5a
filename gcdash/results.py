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
#: Clean / attacked pairs of per-image scores; a summary averages both over the images that have both (an all-zero
#: map has neither score), so "before" and "after" describe the same images.
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


def headline_eps(summary_table: pd.DataFrame, preferred: float = 8 / 255) -> float | None:
    """The eps a story is told at: ``preferred`` if swept, else the largest eps > 0 (None without one)."""
    positive = sorted(e for e in summary_table["eps"].unique() if e > 0)
    if not positive:
        return None
    return min(positive, key=lambda e: abs(e - preferred)) if preferred in positive else positive[-1]


def story_rows(summary_table: pd.DataFrame, eps: float, control: str = "noise") -> pd.DataFrame:
    """Per model, the row a story is told from at ``eps``: its deepest layer in the table under the attack, or
    under the ``control`` when the control is the only attack (the noise control chosen as the attack)."""
    at = summary_table[np.isclose(summary_table["eps"].astype(float), eps)]
    attacked = at[at["attack"] != control]
    return (attacked if len(attacked) else at).groupby("model", sort=False).tail(1)


def takeaway(summary_table: pd.DataFrame, eps: float | None = None, control: str = "noise") -> list[str]:
    """The findings of a summary in plain sentences, for people who have not read the paper: what the attack did
    to the predictions, whose explanation moved least and most (only where their bootstrap bands, ``mod_lo`` /
    ``mod_hi`` from :func:`summary_with_ci`, do not overlap), and how much of it a random perturbation of the same
    size explains (when the ``control`` was run beside the attack). Per model at its deepest layer in the table."""
    eps = headline_eps(summary_table) if eps is None else eps
    if eps is None:
        return ["Only eps = 0 was computed: pick an eps above 0 to attack the images."]
    rows = story_rows(summary_table, eps, control)
    at = rows.dropna(subset=["mod"])
    if at.empty:
        said = "no rows were computed" if rows.empty else "every map was all zero"
        return [f"At eps {eps_text(eps)} no explanation could be compared ({said})."]
    lines = []
    flips = ", ".join(f"{r.model} {r.flip_rate:.0%}" for r in at.itertuples())
    attack = _attack_words(at, control)
    lines.append(f"{attack} at eps {eps_text(eps)} changed the top-1 prediction of {flips} of the images.")
    lines.append(_ranking_line(at))
    if str(at["attack"].iloc[0]) != control:
        lines += _control_line(summary_table, at, eps, control)
    kept = at.dropna(subset=["mod_kept"])
    if len(kept):
        less = bool((kept["mod_kept"] < kept["mod"]).all())
        values = ", ".join(f"{r.model} {r.mod_kept:.3f}" for r in kept.itertuples())
        lines.append(
            f"On the images whose prediction survived, the maps moved less (MOD {values}): much of the shift comes "
            "with a changed prediction, when the map explains another class."
            if less
            else f"On the images whose prediction survived, the maps moved about as much (MOD {values})."
        )
    return lines


def _attack_words(at: pd.DataFrame, control: str) -> str:
    """The attack of the story's rows, for people: "FGSM", "FGSM crafted on demo-vgg", "Random noise"."""
    first = at.iloc[0]
    if str(first["attack"]) == control:
        return "Random noise"
    crafted = [str(s) for s, m in zip(at["source"], at["model"]) if s not in (m, "none")]
    return str(first["attack"]).upper() + (f" crafted on {crafted[0]}" if crafted else "")


def _band(r) -> tuple[float, float]:
    """A row's bootstrap band of MOD (its MOD alone where the summary has no band)."""
    lo, hi = getattr(r, "mod_lo", np.nan), getattr(r, "mod_hi", np.nan)
    return (r.mod, r.mod) if pd.isna(lo) or pd.isna(hi) else (float(lo), float(hi))


def _with_band(r) -> str:
    """``0.317, 95% band 0.290–0.341``: a row's MOD with its band, where it has one."""
    lo, hi = _band(r)
    return f"{r.mod:.3f}" + ("" if lo == hi else f", 95% band {lo:.3f}–{hi:.3f}")


def _ranking_line(at: pd.DataFrame) -> str:
    """Whose explanation moved least and most; no winner where the bands of the two ends overlap."""
    ranked = list(at.sort_values("mod").itertuples())
    low, high = ranked[0], ranked[-1]
    if len(ranked) == 1:
        return f"Its explanation moved by MOD {low.mod:.3f} (0 = the same map, 1 = the opposite)."
    if _band(low)[1] >= _band(high)[0] or f"{low.mod:.3f}" == f"{high.mod:.3f}":
        each = "; ".join(f"{r.model} {_with_band(r)}" for r in ranked)
        return (
            f"No clear difference between the models' explanations (MOD {each}): the bands overlap, so on "
            f"{int(at['n'].min())} images none is shown to be the more robust."
        )
    banded = "mod_lo" in at and bool(at[["mod_lo", "mod_hi"]].notna().all(axis=None))
    verdict = (
        f"the bands do not overlap, so in the paper's reading {low.model} is the more robust"
        if banded
        else "without bootstrap bands, whether that is more than chance is not known"
    )
    return (
        f"The explanation of {low.model} moved least (MOD {_with_band(low)}), that of {high.model} most "
        f"(MOD {_with_band(high)}); {verdict}."
    )


def _span(values: Sequence[float], fmt: str) -> str:
    """``lo–hi`` of ``values`` as people read them; one value when they print alike."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}–{high}"


def _control_line(summary_table: pd.DataFrame, attacked: pd.DataFrame, eps: float, control: str) -> list[str]:
    """How the attack's MOD compares with the random control's at the same eps, where the control was run."""
    at = summary_table[np.isclose(summary_table["eps"].astype(float), eps)]
    base = at[at["attack"] == control]
    base = base.groupby("model", sort=False).tail(1).set_index("model")["mod"].dropna()
    paired = [(r.mod, base[r.model]) for r in attacked.itertuples() if r.model in base.index]
    if not paired:
        return []
    noise = _span([c for _, c in paired], ".3f")
    ratios = [m / c for m, c in paired if c > 0]
    if ratios and min(ratios) >= 1.5:
        return [
            f"Random noise of the same size moved them by MOD {noise}, {_span(ratios, '.0f')}× less: the shift is "
            "the attack's direction, not the size of the perturbation."
        ]
    return [f"Random noise of the same size moved them by MOD {noise}: compare before reading MOD."]


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
    diagonal is the white-box attack. Each model contributes its deepest layer in the table (as :func:`reading`)."""
    rows = summary_table[np.isclose(summary_table["eps"], eps) & (summary_table["source"] != "none")]
    deepest = rows.groupby("model", sort=False)["layer"].transform("last")  # one layer per model: its deepest
    rows = rows[rows["layer"] == deepest]
    order = list(dict.fromkeys(summary_table["model"]))
    matrix = rows.pivot_table(index="source", columns="model", values=value, aggfunc="first")
    return matrix.reindex(index=[m for m in order if m in matrix.index], columns=[m for m in order if m in matrix])


def reading(summary_table: pd.DataFrame, eps: float, floors: dict[str, float] | None = None) -> dict[str, list[str]]:
    """Per model, what its MOD at ``eps`` means, in sentences a stakeholder follows: against the random-noise
    control and the sanity floor (the NISSIM of unrelated maps, :mod:`gcdash.sanity`); where the images have
    object masks, whether the explanation was on the object before the attack and was pushed off it; where
    faithfulness was computed, whether the attacked map still explains the attacked prediction."""
    floors = floors or {}
    at = summary_table[np.isclose(summary_table["eps"], eps)]
    noise = at[at["attack"] == "noise"].groupby("model", sort=False).tail(1).set_index("model")["mod"]
    out: dict[str, list[str]] = {}
    for r in at[at["attack"] != "noise"].groupby("model", sort=False).tail(1).itertuples():
        lines = [f"MOD {r.mod:.3f} at eps {eps_text(eps)}; {r.flip_rate:.0%} of predictions flipped."]
        if r.model in noise.index and pd.notna(noise[r.model]):
            lines.append(f"Random noise of the same size: MOD {noise[r.model]:.3f}.")
        floor = floors.get(r.model)
        if floor is not None and np.isfinite(floor) and floor > 0:
            lines.append(
                f"Maps of the same model with random weights sit at {floor:.3f} from its own: the attack took the "
                f"explanation {min(r.mod / floor, 9.99):.0%} of the way to an unrelated one."
            )
        if "hit_clean" in at and pd.notna(getattr(r, "hit_clean", np.nan)) and pd.notna(r.moved_off):
            lines.append(
                f"Before the attack the map's peak was on the object in {r.hit_clean:.0%} of images, after it in "
                f"{r.hit_adv:.0%}: the attack moved the explanation off the object in {r.moved_off:.0%} of images "
                f"(share of the map on the object {r.mass_clean:.0%} → {r.mass_adv:.0%})."
            )
        if "del_clean" in at and pd.notna(getattr(r, "del_clean", np.nan)) and pd.notna(r.ins_clean):
            lines.append(
                f"As explanations of what the model predicts, the maps stay "
                f"{'as' if r.del_adv <= r.del_clean + 0.02 else 'less'} faithful: removing the pixels they mark "
                f"leaves the predicted class a mean probability of {r.del_clean:.2f} before and {r.del_adv:.2f} after "
                f"the attack (deletion area, lower = more faithful; insertion {r.ins_clean:.2f} → {r.ins_adv:.2f}, "
                "higher = more faithful)."
            )
        out[r.model] = lines
    return out


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
        for pair in PAIRED:
            if pair[0] in g:
                both = g[list(pair)].notna().all(axis=1).to_numpy()
                for column in pair:
                    mean_of(column, g[column], both)
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
        columns = SUMMARY_COLUMNS + [f"mod_{name}" for name in extras] + faithful + located
        if self._sums is None:
            return pd.DataFrame(columns=columns)
        sums = self._sums.loc[list(self._order)]
        out = sums.index.to_frame(index=False)
        out["n"] = sums["n"].to_numpy().astype(int)
        for column in columns[len(GROUP) + 2 :]:
            if column == "nissim_std":
                spread = [self._spread.get(key) for key in self._order]
                out[column] = [np.sqrt(s[2] / s[0]) if s and s[0] else np.nan for s in spread]
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
