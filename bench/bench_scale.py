"""Every paper-scale figure in one run, side by side: each benchmark below in a fresh process, one after another
(never two at once: on a 2-core machine a second process moves every ratio), their output in order.

1. ``bench_memory.py``: peak RSS of a folder sweep, 100 vs 1,000 JPEGs of 512×512 (goal: within 15%);
2. ``bench_efficiency.py``: pipeline efficiency at every layer of demo-resnet and resnet50 (goal ≥ 0.85), and of
   demo-resnet in batches of 128;
3. ``bench_sweep.py``: warm vs cold in process (goal ≥ 50×), the engine vs the fair notebook loop at every layer
   of demo-resnet and resnet50 (goal ≥ 14× on resnet50), the attacks' passes;
4. ``bench_ray.py``: the local executor vs Ray with 2 workers;
5. ``bench_storage.py``: cache bytes per image under each ``--keep-maps`` policy;
6. ``bench_projection.py``: per-pass and per-cell costs of the paper's five CNNs and the full experiment's
   projection.

Run alone: ``python bench/bench_scale.py [--quick]`` (``--quick``: fewer images, for a smoke run). Not part of the
test run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ["bench_memory.py"],
    ["bench_efficiency.py"],
    ["bench_efficiency.py", "--models", "demo-resnet", "--batch", "128", "--n", "256"],
    ["bench_sweep.py"],
    ["bench_ray.py"],
    ["bench_storage.py"],
    ["bench_projection.py"],
]
QUICK = [
    ["bench_memory.py", "--sizes", "20,60"],
    ["bench_efficiency.py", "--models", "demo-resnet", "--n", "32", "--repeats", "1"],
    ["bench_sweep.py", "--n", "32", "--baseline-n", "8", "--baseline-models", "demo-resnet"],
    ["bench_ray.py", "--n", "32"],
    ["bench_storage.py", "--models", "demo-resnet", "--n", "8"],
    ["bench_projection.py", "--models", "resnet50", "--n", "2"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    for command in QUICK if args.quick else FULL:
        print(f"\n$ python bench/{' '.join(command)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / command[0]), *command[1:]])
        print(f"  ({time.perf_counter() - start:.0f} s{'' if code == 0 else f', exit {code}'})", flush=True)
        if code:
            failed.append(command[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
