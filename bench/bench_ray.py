"""Local executor against Ray with 2 workers on this machine: the same sweep (demo-resnet and demo-vgg, every
layer, 5 eps, cold caches), wall time of each and whether the tables are equal. Ray's figure includes starting the
local Ray and the actors (each imports torch and loads the models). On a 2-core CPU two workers share the cores
that the local executor's torch threads use, so no speed-up is expected here: the point is the overhead.

Run alone: ``python bench/bench_ray.py [--n 200]``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcdash import executors, plan, sweep
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    config = SweepConfig(
        models=(ModelSpec("demo-resnet"), ModelSpec("demo-vgg")), data=DataConfig("demo", args.n, 0),
        eps=tuple(e / 255 for e in (0, 1, 2, 4, 8, 16)), layers="all",
    )  # fmt: skip
    samples = plan.load_samples(config)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        start = time.perf_counter()
        local = sweep.sweep(config, Store(a), samples=samples)
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        table, _ = executors.ray_sweep(config, Store(b), samples, workers=2)
        t_ray = time.perf_counter() - start
    print(f"[ray] 2 models × {args.n} images × every layer × 5 eps, cold caches")
    print(f"  local {t_local:6.1f} s   ray (2 workers, start-up included) {t_ray:6.1f} s   ratio {t_ray / t_local:.2f}")
    print(f"  identical per-image tables: {table.equals(local.per_image)}")


if __name__ == "__main__":
    main()
