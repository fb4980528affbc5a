"""Peak memory of a folder sweep against the number of images: 100 vs 1,000 JPEGs of 512×512.

Writes the images once to a temporary folder, then runs ``python -m gcdash sweep`` on the first N of them in a
fresh process each (empty cache, demo-resnet, eps 0 and 8/255) and reads the child's peak RSS from ``wait4``. The
issue's goal: the peak at 1,000 within 15% of the peak at 100 (before streaming: 1.24 GB vs 2.14 GB at 1,200).

Run: ``python bench/bench_memory.py [--sizes 100,1000]``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def write_images(folder: Path, n: int, size: int = 512) -> None:
    """``n`` smooth random RGB JPEGs in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        target = folder / ("a" if i % 2 else "b")
        target.mkdir(parents=True, exist_ok=True)
        image.save(target / f"{i:05d}.jpg", quality=90)


def peak_rss(folder: Path, n: int, work: Path) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one sweep over ``n`` images of ``folder``, in a fresh process."""
    cmd = [sys.executable, "-m", "gcdash", "sweep", "--models", "demo-resnet", "--data", f"folder:{folder}",
           "--n", str(n), "--eps", "0,8/255", "--out", str(work / f"out{n}"),
           "--cache", str(work / f"cache{n}")]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep of {n} images failed: {proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is in KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_images(work / "images", max(sizes))
        peaks = {}
        for n in sizes:
            peaks[n], seconds = peak_rss(work / "images", n, work)
            print(f"  {n:6d} images of 512×512: peak RSS {peaks[n]:7.0f} MB   ({seconds:.1f} s)")
        first, last = peaks[sizes[0]], peaks[sizes[-1]]
        print(f"  peak at {sizes[-1]} / peak at {sizes[0]} = {last / first:.3f}   (goal ≤ 1.15)")


if __name__ == "__main__":
    main()
