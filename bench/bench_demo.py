"""How fast the demo source draws its images (it is drawn on every first view of the dashboard).

Times ``generate("test", range(n))`` and, as the baseline in the same process, decoding the same number of PNGs of
the same size from memory (what a folder source costs per image); prints both and their ratio. This was a timed
test until it flaked on a busy machine: speed is a benchmark's job. Target: ratio ≤ 10 (about 0.2 s for 200
images on an idle 2-core CPU).

Run: ``python bench/bench_demo.py [--n 200] [--rounds 5]``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from gcdash.data.demo import generate


def best_of(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    generate("test", range(5))  # warm-up: imports, caches
    images = generate("test", range(args.n), seed=11).images
    pngs = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    drawn = best_of(args.rounds, lambda: generate("test", range(args.n), seed=11))
    decoded = best_of(args.rounds, lambda: [Image.open(io.BytesIO(b)).convert("RGB").load() for b in pngs])
    print(
        f"demo generation: {args.n} images in {drawn:.3f} s ({1e3 * drawn / args.n:.2f} ms/image, median of "
        f"{args.rounds})"
    )
    print(f"PNG decode baseline: {decoded:.3f} s; ratio {drawn / decoded:.2f} (target ≤ 10)")


if __name__ == "__main__":
    main()
