"""The findings of a summary in sentences people follow without the paper: the eps a story is told at, whose
explanation moved least and most (only outside the bootstrap bands), how much a random perturbation of the same
size explains, and per model what its MOD means against the noise control, the sanity floor, the object masks and
faithfulness. Data in, sentences out; the numbers come from :mod:`gcdash.results.summary`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gcdash.config import eps_text


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
    ``mod_hi`` from :func:`~gcdash.results.summary.summary_with_ci`, do not overlap), and how much of it a random
    perturbation of the same size explains (when the ``control`` was run beside the attack). Per model at its
    deepest layer in the table."""
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
