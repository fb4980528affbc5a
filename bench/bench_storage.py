"""Cache bytes per image under each map-retention policy (``--keep-maps all|gallery|none``).

A sweep of every layer at 5 eps (FGSM, Grad-CAM) into a fresh cache per policy; prints the cache's bytes per image
(the SQLite file with its WAL, after a checkpoint) and the raw-array bytes by kind (maps, logits, attack states).
Scalars (comparisons) are in the total. Also checks that the three policies give identical per-image tables.

Run: ``python bench/bench_storage.py [--models demo-resnet,resnet50] [--n 48]``. resnet50 runs with random
weights (no download). Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash import sweep
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.engine import KEEP_MAPS
from gcdash.store import Store

EPS = (0.0, *(e / 255 for e in (1, 2, 4, 8, 16)))


def measure(model: str, n: int) -> None:
    weights = "default" if model.startswith("demo-") else None
    config = SweepConfig(models=(ModelSpec(model, weights),), data=DataConfig("demo", n, 0), eps=EPS, layers="all")
    tables = {}
    print(f"[{model}] every layer × {len(EPS) - 1} eps, {n} demo images (resized to the model's input)")
    for policy in KEEP_MAPS:
        with tempfile.TemporaryDirectory() as root:
            store = Store(root)
            result = sweep.sweep(config, store, keep_maps=policy)
            tables[policy] = result.per_image
            store._run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
            kinds = {row["kind"]: row["nbytes"] for row in store.usage()}
            total = store.size_bytes()
            parts = ", ".join(f"{k} {v / n / 1e3:.1f} KB" for k, v in sorted(kinds.items()))
            print(f"  keep-maps {policy:8s} {total / n / 1e3:8.1f} KB per image   ({parts})")
    same = all(tables[p].equals(tables["all"]) for p in KEEP_MAPS)
    print(f"  identical per-image tables under every policy: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo-resnet,resnet50")
    parser.add_argument("--n", type=int, default=48)
    args = parser.parse_args()
    for model in args.models.split(","):
        measure(model, args.n if model.startswith("demo-") else min(args.n, 8))


if __name__ == "__main__":
    main()
