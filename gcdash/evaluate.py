"""Robustness stated the way reviewers check it: accuracy under several attacks at one budget and the per-image
worst case across them (an image counts as robust only if no attack run fooled it: RobustBench's reading of
AutoAttack), beside MOD under the strongest attack.

Each attack runs through the sweep engine (:func:`gcdash.sweep.sweep`, so everything is cached and a second
evaluation is a read); MOD under an attack is the mean NISSIM of its rows; for the images it did not fool, the map is
compared on the attack's own point: APGD's highest-loss iterate (:func:`gcdash.attacks.apgd.apgd`), PGD's last
iterate, never the clean image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gcdash import attacks
from gcdash.config import AttackConfig, SweepConfig, eps_text
from gcdash.errors import GcdashError
from gcdash.progress import per_run
from gcdash.store import Store

if TYPE_CHECKING:
    from gcdash.sweep import SweepResult

#: AutoAttack's two untargeted white-box attacks beside the 10-step PGD most papers quote.
DEFAULT_ATTACKS = (AttackConfig("pgd"), AttackConfig("apgd-ce"), AttackConfig("apgd-dlr"))
WORST = "worst case"
COLUMNS = ["model", "layer", "eps", "attack", "budget", "n", "accuracy", "mod", "mod_robust", "n_robust"]


def budget(attack: AttackConfig) -> str:
    """The attack's budget in words: its name and every parameter (defaults included), e.g. ``pgd steps=10 …``."""
    method = attacks.get(attack.name)
    params = method.params(**dict(attack.params))
    return " ".join([attack.name, *(f"{k}={v}" for k, v in sorted(params.items()))])


def attack_rows(table: pd.DataFrame, attack: AttackConfig) -> pd.DataFrame:
    """One attack's per-(model, layer, eps > 0) row from its per-image table: accuracy on the labelled images,
    MOD over all of them and over those it did not fool (``mod_robust``)."""
    rows = []
    attacked = table[(table["eps"] > 0) & (table["label"] >= 0)]
    for (model, layer, eps), g in attacked.groupby(["model", "layer", "eps"], sort=False):
        robust = g["pred_adv"] == g["label"]
        rows.append({
            "model": model, "layer": layer, "eps": eps, "attack": attack.name, "budget": budget(attack),
            "n": len(g), "accuracy": float(robust.mean()), "mod": float(g["nissim"].mean()),
            "mod_robust": float(g.loc[robust, "nissim"].mean()) if robust.any() else np.nan,
            "n_robust": int(robust.sum()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def worst_case(tables: dict[str, pd.DataFrame], rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, eps): the share of labelled images no attack fooled, with MOD of the strongest attack
    (the one of lowest accuracy, of highest MOD among equals; named in ``budget``)."""
    keys = ["model", "layer", "eps", "image_id"]
    robust = None
    for name, table in tables.items():
        attacked = table[(table["eps"] > 0) & (table["label"] >= 0)].set_index(keys)
        held = (attacked["pred_adv"] == attacked["label"]).rename(name)
        robust = held.to_frame() if robust is None else robust.join(held, how="inner")
    every = robust.all(axis=1).groupby(level=["model", "layer", "eps"], sort=False)
    out = []
    for (model, layer, eps), held in every:
        mine = rows[(rows["model"] == model) & (rows["layer"] == layer) & (rows["eps"] == eps)]
        strongest = mine.sort_values(["accuracy", "mod"], ascending=[True, False], kind="stable").iloc[0]
        out.append({
            "model": model, "layer": layer, "eps": eps, "attack": WORST,
            "budget": f"per image over {', '.join(tables)}; MOD of the strongest, {strongest['attack']}",
            "n": len(held), "accuracy": float(held.mean()), "mod": strongest["mod"],
            "mod_robust": strongest["mod_robust"], "n_robust": int(held.sum()),
        })  # fmt: skip
    return pd.DataFrame(out, columns=COLUMNS)


def check_runs(config: SweepConfig, runs: Sequence[AttackConfig], purpose: str) -> None:
    """One line, before any work, for what a run of several attacks at one budget cannot do: no eps > 0 (to
    ``purpose`` at), an attack named twice, an unknown attack."""
    if not any(e > 0 for e in config.eps):
        raise GcdashError(f"give an eps > 0 to {purpose} at, e.g. --eps 8/255")
    if len({a.name for a in runs}) != len(runs):
        raise GcdashError("name each attack once")
    for attack in runs:
        attacks.get(attack.name)  # an unknown name: one line listing the valid ones


def each_attack(
    config: SweepConfig, store: Store, runs: Sequence[AttackConfig], **sweep_options
) -> Iterator[tuple[AttackConfig, SweepResult]]:
    """``config`` swept under each of ``runs`` in turn (through the cache), with eps 0 added; ``progress`` (in
    ``sweep_options``) moves over all the sweeps."""
    from gcdash import sweep

    progress, eps = sweep_options.pop("progress", None), tuple(sorted({0.0, *config.eps}))
    for i, attack in enumerate(runs):
        each = replace(config, attack=attack, eps=eps)
        yield attack, sweep.sweep(each, store, progress=per_run(progress, i, len(runs), attack.name), **sweep_options)


def in_run_order(table: pd.DataFrame, config: SweepConfig, attack_names: Sequence[str]) -> pd.DataFrame:
    """Rows ordered by model (as ``config`` lists them), layer (as first seen), eps, then ``attack_names``."""
    rank = {
        "model": {spec.name: i for i, spec in enumerate(config.models)},
        "layer": {name: i for i, name in enumerate(dict.fromkeys(table["layer"]))},
        "attack": {name: i for i, name in enumerate(attack_names)},
    }

    def key(column: pd.Series) -> pd.Series:
        return column.map(rank[column.name]) if column.name in rank else column

    return table.sort_values(["model", "layer", "eps", "attack"], key=key, kind="stable").reset_index(drop=True)


def evaluate(
    config: SweepConfig, store: Store, runs: Sequence[AttackConfig] = DEFAULT_ATTACKS, **sweep_options
) -> pd.DataFrame:
    """Accuracy and MOD under each of ``runs`` at ``config``'s eps > 0 (its own attack is ignored), then the
    per-image worst case: rows ordered by model, layer, eps, with the attacks as given and the worst case last.
    ``progress`` (in ``sweep_options``) moves over all the attacks' sweeps."""
    check_runs(config, runs, "evaluate robustness")
    for attack in runs:  # before any work
        if not attacks.get(attack.name).uses_model:
            raise GcdashError(f"{attack.name} ignores the model: it is a control, not an attack to evaluate with")
        if attacks.get(attack.name).on_explanation:
            raise GcdashError(f"{attack.name} keeps the prediction by construction: see `fragility`, not `evaluate`")
    tables, pieces = {}, []
    for attack, result in each_attack(config, store, runs, **sweep_options):
        table = result.per_image
        if not (table["label"] >= 0).any():
            raise GcdashError("robust accuracy needs labelled images; these have no labels the models know")
        tables[attack.name] = table
        pieces.append(attack_rows(table, attack))
    rows = pd.concat(pieces, ignore_index=True)
    return in_run_order(pd.concat([rows, worst_case(tables, rows)], ignore_index=True), config, [*tables, WORST])


def printed(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the CLI prints it: eps as fractions, the budget left to the CSV."""
    shown = table.drop(columns=["budget"]).copy()
    shown["eps"] = shown["eps"].map(eps_text)
    return shown
