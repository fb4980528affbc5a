"""What the paper's full experiment costs, from measured per-pass and per-cell costs and measured bytes.

The experiment: VGGFace2's test split (~330k images) × the paper's five CNNs × every layer of each catalog × 5 eps,
FGSM, Grad-CAM, NISSIM. Per image and model the engine makes ``1 + n_eps = 6`` image-passes and one more backward
(one CAM pass on the clean image for every layer, whose forward also gives FGSM's gradient, one per eps on the
attacked image); the projection counts 7 full passes, as it did before that forward was shared (an upper bound),
and compares
``n_layers × n_eps`` pairs of maps at the input size.

Measured here, per paper model (random weights: the cost does not depend on the values), in this process:

- ``t_pass``: one forward + backward to the input per image, in batches of 8 (what each of the 7 passes costs at
  most: a CAM pass backpropagates only to the layers it records);
- ``t_cells``: the per-cell work of one image at every layer (CAM maths, upsampling, SSIM, localisation, keys,
  store), as the time per image of a cold sweep less its 7 passes × ``t_pass`` (an upper bound on the cells: a CAM
  pass may cost less than ``t_pass``);
- bytes per image under each ``--keep-maps`` policy: a cold sweep into a fresh cache, the SQLite file after a
  checkpoint, divided by the images.

It then prints the projection for this CPU and, for an accelerator, as a function of the model pass's speed-up
over this CPU (not measured here: no GPU was lent), and the disk the full experiment would fill under each policy.

Run alone: ``python bench/bench_projection.py [--models vgg16,resnet50,resnet101,inception_v3,xception] [--n 8]
[--images 330000]``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash import data, models, sweep
from gcdash.attacks.base import loss_gradient
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.engine import KEEP_MAPS
from gcdash.store import Store

EPS = (0.0, *(e / 255 for e in (1, 2, 4, 8, 16)))
PASSES = 2 + len(EPS) - 1  # per image and model


def pass_time(handle, x: torch.Tensor, batch: int = 8) -> float:
    """Seconds per image of a bare forward + backward to the input (best of 3 after a warm-up)."""
    y = torch.zeros(len(x), dtype=torch.long)

    def once() -> float:
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            loss_gradient(handle.net, x[i : i + batch], y[i : i + batch])
        return time.perf_counter() - start

    once()
    return min(once() for _ in range(3)) / len(x)


def sweep_cost(handle, samples, policy: str) -> tuple[float, int]:
    """A cold sweep of every layer: (seconds, cache bytes)."""
    config = SweepConfig(
        models=(ModelSpec(handle.name, None),), data=DataConfig("demo", len(samples), 0), eps=EPS, layers="all"
    )
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        start = time.perf_counter()
        sweep.sweep(config, store, batch_size=8, handles={handle.name: handle}, samples=samples, keep_maps=policy)
        seconds = time.perf_counter() - start
        store._run(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        size = store.size_bytes()
        store.close()
    return seconds, size


def measure(model: str, n: int) -> dict:
    handle = models.load(model, None)
    samples = data.load("demo", n=n, seed=5)
    x = handle.preprocess(samples.images)
    t_pass = pass_time(handle, x)
    out = {"model": model, "layers": len(handle.layers), "size": handle.input_size, "t_pass": t_pass}
    for policy in KEEP_MAPS:
        seconds, size = sweep_cost(handle, samples, policy)
        out[f"bytes_{policy}"] = size / n
        if policy == "all":
            out["t_sweep"] = seconds / n
    out["t_cells"] = max(out["t_sweep"] - PASSES * t_pass, 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,resnet50,resnet101,inception_v3,xception")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--images", type=int, default=330_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [measure(m, args.n) for m in args.models.split(",")]
    threads = torch.get_num_threads()
    print(f"[measured] {args.n} images a model, every layer × {len(EPS) - 1} eps, cold cache ({threads} CPU threads)")
    print(f"  {'model':<13s} {'layers':>6s} {'input':>7s} {'pass ms':>8s} {'sweep s/img':>11s} {'cells s/img':>11s}"
          f" {'KB/img all':>10s} {'gallery':>8s} {'none':>8s}")  # fmt: skip
    for r in rows:
        print(
            f"  {r['model']:<13s} {r['layers']:6d} {r['size'][0]:>4d}²  {1000 * r['t_pass']:8.1f} {r['t_sweep']:11.2f}"
            f" {r['t_cells']:11.3f} {r['bytes_all'] / 1e3:10.0f} {r['bytes_gallery'] / 1e3:8.0f} "
            f"{r['bytes_none'] / 1e3:8.0f}"
        )
    images = args.images
    passes = images * PASSES * len(rows)
    cpu = images * sum(r["t_sweep"] for r in rows)
    model_s = images * PASSES * sum(r["t_pass"] for r in rows)
    cells_s = images * sum(r["t_cells"] for r in rows)
    print(
        f"\n[projection] {images:,} images × {len(rows)} models × every layer × {len(EPS) - 1} eps: {passes:,} passes"
    )
    print(f"  this CPU: {cpu / 86400:.1f} days ({model_s / 86400:.1f} in model passes, {cells_s / 86400:.1f} per-cell)")
    print("  one accelerator whose model passes run k× and per-cell work c× faster than here (k, c not measured):")
    for k in (50, 100, 200):
        for c in (10, k):
            hours = (model_s / k + cells_s / c) / 3600
            print(f"    k = {k:3d}, c = {c:3d}: {hours:7.1f} h on one; a Ray cluster of N of them: {hours:.1f} h / N")
    for policy in KEEP_MAPS:
        total = images * sum(r[f"bytes_{policy}"] for r in rows)
        print(f"  disk, --keep-maps {policy:8s}: {total / 1e12:6.2f} TB")


if __name__ == "__main__":
    main()
