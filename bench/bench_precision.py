"""Precision benchmark: fp32 against bf16 sweeps, time and error, in one process on this machine (issue 21).

1. Speed, cold cache, at every layer × 5 eps under FGSM + Grad-CAM, for random-weight ResNet50 (demo images resized
   to 224²) and demo-resnet: the sweep as it ran before this change (FGSM's gradient in a pass of its own), fp32
   with the shared forward (today's default: bit-identical tables), bf16 in the contiguous format, bf16 as
   shipped (channels_last input), and bf16-cam (CAM passes at bf16, the attack at fp32). Goal: bf16 ≥ 1.6× fp32.
2. Error of bf16 against fp32 on the same images, from those tables and from the demo zoo at every layer: the
   largest |ΔNISSIM| of one image, the largest |ΔMOD| of one (model, layer, eps) row, and top-1 agreement (clean
   and attacked predictions). Goal: |ΔMOD| ≤ 0.005 and agreement ≥ 99%.
3. channels_last in fp32 (one forward + backward of ResNet50): faster here, but it moves float32 results in the
   last bits, so fp32 keeps the contiguous format (its tables stay bit-identical); the figure says what it leaves.

Run alone (no test run beside it): ``python bench/bench_precision.py [--n 200] [--n50 16] [--device cpu|cuda]``.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash import data, models, precision, sweep
from gcdash.config import CamConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.engine.attack import Adversary
from gcdash.store import Store

EPS = (0.0, *(e / 255 for e in (1, 2, 4, 8, 16)))
ZOO = ("demo-vgg", "demo-resnet", "demo-inception", "demo-xception", "demo-vit", "demo-resnet-robust")
KEYS = ["model", "layer", "eps", "image_id"]


@contextmanager
def unshared():
    """The engine as it was before the shared forward: FGSM's gradient in a pass of its own."""
    original = Adversary.rides_on_clean_pass
    Adversary.rides_on_clean_pass = property(lambda self: False)
    try:
        yield
    finally:
        Adversary.rides_on_clean_pass = original


@contextmanager
def contiguous_bf16():
    """bf16 without the channels_last input."""
    shipped = precision.get("bf16")
    precision.PRECISIONS.add("bf16", replace(shipped, channels_last=False), replace=True)
    try:
        yield
    finally:
        precision.PRECISIONS.add("bf16", shipped, replace=True)


def config(model: str, weights: str | None, n: int, prec: str, seed: int = 0) -> SweepConfig:
    return SweepConfig(
        models=(ModelSpec(model, weights),), data=DataConfig("demo", n, seed), eps=EPS, layers="all",
        cam=CamConfig("gradcam"), precision=prec,
    )  # fmt: skip


def run(cfg: SweepConfig, handles: dict, samples, device: str) -> tuple[pd.DataFrame, float, int]:
    """One cold sweep: its per-image table, seconds, passes."""
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        start = time.perf_counter()
        result = sweep.sweep(cfg, store, device=device, handles=handles, samples=samples)
        seconds = time.perf_counter() - start
        store.close()
    return result.per_image, seconds, sum(result.passes.values())


def errors(exact: pd.DataFrame, half: pd.DataFrame) -> dict[str, float]:
    """Largest |ΔNISSIM| of one image, largest |ΔMOD| of one (model, layer, eps), top-1 agreement (clean and
    attacked predictions over every row with eps > 0)."""
    joined = exact.merge(half, on=KEYS, suffixes=("", "_h"))
    assert len(joined) == len(exact) == len(half)
    mod = joined.groupby(["model", "layer", "eps"])[["nissim", "nissim_h"]].mean()
    attacked = joined[joined["eps"] > 0]
    clean = joined[joined["eps"] == 0]
    return {
        "max |dNISSIM| image": float((joined["nissim"] - joined["nissim_h"]).abs().max()),
        "max |dMOD|": float((mod["nissim"] - mod["nissim_h"]).abs().max()),
        "mean |dMOD|": float((mod["nissim"] - mod["nissim_h"]).abs().mean()),
        "top-1 clean agree": float((clean["pred_clean"] == clean["pred_clean_h"]).mean()),
        "top-1 attacked agree": float((attacked["pred_adv"] == attacked["pred_adv_h"]).mean()),
    }


def speed(model: str, weights: str | None, n: int, device: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    handle = models.load(model, weights).to(device)
    handles = {model: handle}
    samples = data.load("demo", n=n, seed=0)
    samples = replace(samples, masks=None)
    run(config(model, weights, 2, "bf16"), handles, samples.subset(range(2)), device)  # oneDNN's bf16 kernels built
    run(config(model, weights, 2, "fp32"), handles, samples.subset(range(2)), device)
    cases = {}
    fp32, bf16 = config(model, weights, n, "fp32"), config(model, weights, n, "bf16")
    with unshared():
        cases["fp32, attack in its own pass (before)"] = run(fp32, handles, samples, device)
    cases["fp32, shared forward (default)"] = run(fp32, handles, samples, device)
    with contiguous_bf16():
        cases["bf16, contiguous"] = run(bf16, handles, samples, device)
    cases["bf16, channels_last (shipped)"] = run(bf16, handles, samples, device)
    cases["bf16-cam (attack at fp32)"] = run(config(model, weights, n, "bf16-cam"), handles, samples, device)
    base = cases["fp32, shared forward (default)"][1]
    before = cases["fp32, attack in its own pass (before)"][1]
    layers = len(handle.layers)
    print(f"\n{model} ({'random weights' if weights is None else 'demo weights'}), {n} images × {layers} layers × "
          f"{len(EPS) - 1} eps > 0, FGSM + Grad-CAM, cold cache, {device}:")  # fmt: skip
    for name, (_, seconds, passes) in cases.items():
        print(f"  {name:40s} {seconds:7.1f} s  {passes:5d} passes  {base / seconds:5.2f}× fp32  "
              f"{before / seconds:5.2f}× before")  # fmt: skip
    exact = cases["fp32, shared forward (default)"][0]
    same = cases["fp32, attack in its own pass (before)"][0]
    print(f"  shared forward's table identical to before: {exact.equals(same)}")
    return exact, cases["bf16, channels_last (shipped)"][0], cases["bf16-cam (attack at fp32)"][0]


def zoo_errors(n: int, device: str) -> None:
    print(f"\nbf16 and bf16-cam against fp32 on the demo zoo, {n} demo test images, every layer, FGSM + Grad-CAM, "
          f"{device}:")  # fmt: skip
    rows = []
    for model in ZOO:
        handles = {model: models.load(model).to(device)}
        samples = data.load("demo", n=n, seed=0)
        exact, t32, _ = run(config(model, "default", n, "fp32"), handles, samples, device)
        for prec in ("bf16", "bf16-cam"):
            half, t16, _ = run(config(model, "default", n, prec), handles, samples, device)
            rows.append({"model": model, "precision": prec, **errors(exact, half), "speed-up": t32 / t16})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def channels_last_fp32(device: str) -> None:
    net = models.load("resnet50", None).to(device).net
    x = torch.rand(16, 3, 224, 224, device=device)

    def step(fmt) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            xg = x.contiguous(memory_format=fmt).requires_grad_(True)
            torch.autograd.grad(net(xg).max(dim=1).values.sum(), xg)
            best = min(best, time.perf_counter() - start)
        return best

    plain, last = step(torch.contiguous_format), step(torch.channels_last)
    with torch.no_grad():
        moved = (net(x) - net(x.contiguous(memory_format=torch.channels_last))).abs().max().item()
    print(
        f"\nfp32 ResNet50 forward + backward, 16 images: contiguous {plain:.2f} s, channels_last {last:.2f} s "
        f"({plain / last:.2f}×), logits moved by up to {moved:.2e}: not used at fp32 (its tables stay exact)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="demo images for demo-resnet and the zoo")
    parser.add_argument("--n50", type=int, default=16, help="images for random-weight ResNet50 at 224²")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for model, weights, n in (("resnet50", None, args.n50), ("demo-resnet", "default", args.n)):
        exact, half, cam_only = speed(model, weights, n, args.device)
        for name, table in (("bf16", half), ("bf16-cam", cam_only)):
            figures = errors(exact, table)
            print(f"  {name} against fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    zoo_errors(args.n, args.device)
    channels_last_fp32(args.device)


if __name__ == "__main__":
    main()
