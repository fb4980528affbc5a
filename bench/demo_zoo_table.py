"""The README's five-model demo table: MOD at each eps under FGSM, PGD and the noise control, and the
random-weights floor, for the demo zoo (four CNNs and the demo ViT), Grad-CAM at each model's default layer.

It runs the CLI (``sweep --attack fgsm|pgd|noise`` and ``sanity``) into a temporary folder and prints a markdown
table: per model, clean top-1, then MOD per attack and eps, then the floor (NISSIM of the trained model's map to the
fully randomised model's, ``sanity``'s last cascade step). Run alone: ``python bench/demo_zoo_table.py [--n 200]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash.cli import main as cli

EPS = "1/255,2/255,4/255,8/255,16/255"
ATTACKS = ("fgsm", "pgd", "noise")


def run(args: list[str]) -> None:
    if cli(args) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")


def measure(n: int, root: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    cache = ["--cache", str(root / "cache")]
    seconds = {}
    for attack in ATTACKS:
        start = time.perf_counter()
        run(["sweep", "--models", "demo-all", "--n", str(n), "--eps", EPS, "--attack", attack,
             "--out", str(root / attack), *cache])  # fmt: skip
        seconds[attack] = time.perf_counter() - start
    start = time.perf_counter()
    run(["sanity", "--models", "demo-all", "--n", str(n), "--layers", "default", "--out", str(root / "sanity"), *cache])
    seconds["sanity"] = time.perf_counter() - start
    summary = pd.concat([pd.read_csv(root / a / "summary.csv") for a in ATTACKS], ignore_index=True)
    sanity = pd.read_csv(root / "sanity" / "sanity.csv")
    return summary, sanity, seconds


def table(summary: pd.DataFrame, sanity: pd.DataFrame) -> str:
    eps = sorted(summary["eps"].unique())
    labels = [f"{round(e * 255)}/255" for e in eps]
    head = ["model", "clean top-1", *(f"{a} {lab}" for a in ATTACKS for lab in labels), "floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    last = sanity.groupby("model", sort=False).tail(1).set_index("model")["nissim"]
    for model, rows in summary.groupby("model", sort=False):
        mods = [rows[(rows["attack"] == a) & (rows["eps"] == e)]["mod"].iloc[0] for a in ATTACKS for e in eps]
        cells = [model, f"{rows['acc_clean'].iloc[0]:.1%}", *(f"{m:.3f}" for m in mods), f"{last[model]:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        summary, sanity, seconds = measure(args.n, Path(root))
    print(table(summary, sanity))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
