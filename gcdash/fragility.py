"""How far an explanation moves when the prediction does not, side by side with the prediction attacks, the noise
control and the random-weights floor: the reading the paper's MOD alone does not give.

Under ``--target pred`` most of FGSM's MOD comes with a changed prediction (the map then explains another class).
The explanation attacks (:mod:`gcdash.attacks.explanation`, Ghorbani et al. 2019) keep the top-1 and move the map
as far as they can; the noise control moves every pixel by the same eps in a random direction; the floor is the
NISSIM between the model's map and the map of the same network with its weights re-initialised (Adebayo et al.
2018): unrelated maps. Each attack runs through the sweep engine (cached) with the stability measures on
(:mod:`gcdash.metrics.stability`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from gcdash import attacks
from gcdash.config import AttackConfig, SweepConfig, eps_text
from gcdash.evaluate import check_runs, each_attack, in_run_order
from gcdash.store import Store

#: The paper's attack, a stronger one, the explanation attack and the control, each at its defaults.
DEFAULT_ATTACKS = (AttackConfig("fgsm"), AttackConfig("pgd"), AttackConfig("expl-topk"), AttackConfig("noise"))
COLUMNS = [
    "model", "layer", "eps", "attack", "n", "kept", "mod", "mod_kept", "ris", "ros", "max_sens", "n_stable", "floor",
]  # fmt: skip
Floors = Mapping[tuple[str, str], float]  # (model, layer) → the random-weights floor (mean NISSIM of unrelated maps)


def attack_rows(summary: pd.DataFrame, attack: AttackConfig, floors: Floors) -> pd.DataFrame:
    """One attack's rows per (model, layer, eps > 0) from its sweep's summary: the share of images whose top-1 it
    kept, MOD over all of them and over those kept, the stability means, and the floor."""
    rows = summary[summary["eps"] > 0].copy()
    rows["attack"] = attack.name
    rows["kept"] = 1.0 - rows["flip_rate"]
    rows["floor"] = [floors.get((m, layer), np.nan) for m, layer in zip(rows["model"], rows["layer"])]
    return rows[COLUMNS].reset_index(drop=True)


def fragility(
    config: SweepConfig, store: Store, runs: Sequence[AttackConfig] = DEFAULT_ATTACKS, floors: Floors | None = None,
    **sweep_options,
) -> pd.DataFrame:  # fmt: skip
    """MOD, the share of predictions kept and RIS/ROS/Max-Sensitivity under each of ``runs`` at ``config``'s
    eps > 0 and each model's default layer (the layer the explanation attacks move; ``config``'s own attack and
    layers are not used), with ``floors`` beside them: rows ordered by model, eps, then the attacks as given.
    ``progress`` (in ``sweep_options``) moves over all the attacks' sweeps."""
    check(config, runs)
    at = replace(config, layers="default", stability=True)
    pieces = [attack_rows(result.summary(), attack, floors or {})
              for attack, result in each_attack(at, store, runs, **sweep_options)]  # fmt: skip
    return in_run_order(pd.concat(pieces, ignore_index=True), config, [a.name for a in runs])


def check(config: SweepConfig, runs: Sequence[AttackConfig]) -> None:
    """One line for what :func:`fragility` cannot run, before any work (:func:`gcdash.evaluate.check_runs`)."""
    check_runs(config, runs, "move the explanations")


def model_floors(config: SweepConfig, device: str | None = None, batch_size: int = 32) -> pd.DataFrame:
    """:func:`gcdash.sanity.floor` (3 seeds) of each of ``config``'s models at its default layer, on its images: columns
    ``model``, ``layer``, ``nissim`` (the floor), ``floor_low``, ``floor_high``. Cost: 4 CAM passes per image."""
    from gcdash import data, plan, sanity

    samples, handles = plan.load_samples(config), plan.load_handles(config, plan.resolve_device(device))
    frames = []
    for spec in config.models:
        handle = handles[spec.name]
        aligned, _ = data.align_labels(samples, handle.class_names, spec.name)
        layers = handle.resolve_layers(None)  # the default layer, where fragility reads MOD
        frames.append(sanity.floor(handle, aligned, layers, config.cam.method, batch_size,
                                   dict(config.cam.params)).assign(model=spec.name))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def floors_of(table: pd.DataFrame) -> dict[tuple[str, str], float]:
    """A :func:`gcdash.sanity.floor` table (model, layer, nissim) as :data:`Floors`."""
    return {(m, layer): float(v) for m, layer, v in zip(table["model"], table["layer"], table["nissim"])}


def sentences(table: pd.DataFrame) -> dict[str, str]:
    """Per model, at its layer and largest eps in ``table``, what a stakeholder needs: how far an attacker moves the
    explanation with the prediction unchanged, against the floor, the other attacks' kept images and the noise."""
    out = {}
    for model, mine in table.groupby("model", sort=False):
        last = mine[(mine["layer"] == mine["layer"].iloc[-1]) & (mine["eps"] == mine["eps"].max())]
        moving = last[[attacks.get(a).on_explanation for a in last["attack"]]]
        if moving.empty:
            continue
        top = moving.sort_values("mod_kept", ascending=False, kind="stable").iloc[0]
        out[str(model)] = _sentence(top, last)
    return out


def _sentence(top: pd.Series, rows: pd.DataFrame) -> str:
    """The sentence for one model from its strongest explanation attack ``top`` and the other ``rows``."""
    floor, moved = float(top["floor"]), float(top["mod_kept"])
    share = ""
    if floor > 0:
        share = f" {moved / floor:.0%} of the way to an unrelated map"
        share = " as far as an unrelated map" if moved >= floor else share
    words = [
        f"With the prediction unchanged ({top['kept']:.0%} of images kept it under {top['attack']}), an attacker can "
        f"still move this model's explanation{share}: MOD {moved:.3f} at layer {top['layer']}, eps "
        f"{eps_text(float(top['eps']))}"
    ]
    if floor > 0:
        words.append(f"random-weights floor {floor:.3f}")
    for _, row in rows.iterrows():
        method = attacks.get(row["attack"])
        if method.on_explanation or not np.isfinite(row["mod_kept"]):
            continue
        what = "random noise" if not method.uses_model else f"{method.label} on the images whose prediction it kept"
        words.append(f"{what} {row['mod_kept']:.3f} ({round(row['kept'] * row['n'])} images)")
    return "; ".join(words) + "."


def printed(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the CLI prints it: eps as fractions."""
    return table.assign(eps=table["eps"].map(eps_text))
