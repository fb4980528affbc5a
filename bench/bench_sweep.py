"""Sweep benchmark: the cached engine against the naive loop, in one process, on this machine.

1. The issue's target: the four demo models × 200 demo images × 5 eps at the default layer, cold (empty cache)
   and warm (the same sweep again). Targets on a 2-core CPU: cold ≤ 120 s, warm ≤ 5 s.
2. Warm against cold, in process, on one model at every layer × 5 eps: the same sweep again (its batches' rows
   are kept whole: one read a batch), and again in other batches (every cell read on its own). Goal: warm ≥ 50×.
3. The engine against the fair notebook loop at every layer of each baseline model: the loop attacks once per eps,
   calls pytorch-grad-cam once per layer on the clean batch and once per (layer, eps) on the attacked one, then
   skimage's SSIM per pair — ``n_eps + n_layers·(1 + n_eps)`` passes per image (107 for ResNet50's 17 layers at 5
   eps) where the engine makes ``1 + n_eps`` (6; FGSM rides on the clean pass). Like for like: no localisation
   (the images' masks are dropped). Goal on ResNet50: ≥ 14×.
4. Each registered attack on one model, cold cache: the passes ``plan.cost`` predicts (the Runs page's
   estimate) against the passes the engine counted, and the time per pass.

Run alone: ``python bench/bench_sweep.py [--n 200] [--baseline-n 48] [--baseline-models demo-resnet,resnet50]
[--device cpu|cuda]``. resnet50 runs with random weights on demo images resized to 224² (at most 8 of them). Not
part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash import attacks, data, models, plan, sweep
from gcdash.attacks import fgsm
from gcdash.config import AttackConfig, CamConfig, DataConfig, ModelSpec, SweepConfig
from gcdash.engine import ModelEngine
from gcdash.store import Store

EPS = tuple(e / 255 for e in (1, 2, 4, 8, 16))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def target_sweep(n: int, device: str) -> None:
    config = SweepConfig(
        models=tuple(ModelSpec(m) for m in models.expand("demo-all")),
        data=DataConfig("demo", n, 0),
        eps=EPS,
        layers="default",
        cam=CamConfig("gradcam"),
    )
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        cold, t_cold = timed(lambda: sweep.sweep(config, store, device=device))
        warm, t_warm = timed(lambda: sweep.sweep(config, store, device=device))
        same = cold.per_image.equals(warm.per_image)
    threads = torch.get_num_threads()
    print(f"[target] 4 demo models × {n} images × {len(EPS)} eps, default layer ({device}, {threads} threads)")
    print(f"  cold {t_cold:7.2f} s   (target ≤ 120 s)   passes {sum(cold.passes.values())}")
    print(f"  warm {t_warm:7.2f} s   (target ≤ 5 s)     passes {sum(warm.passes.values())}   identical: {same}")
    print(f"  warm / cold = {t_warm / t_cold:.3f}")


def notebook(handle, x: torch.Tensor, y: torch.Tensor, layers: list[str]) -> np.ndarray:
    """The fair notebook loop: attack per eps; per layer, pytorch-grad-cam on the clean batch once and on each
    attacked batch; skimage's SSIM per pair."""
    from pytorch_grad_cam import GradCAM
    from skimage.metrics import structural_similarity

    attacked = [fgsm(handle.net, x, y, eps) for eps in EPS]
    out = []
    for layer in layers:
        with GradCAM(handle.net, [handle.layers[layer]]) as cam:
            clean_map = cam(x, None)
            for adv in attacked:
                adv_map = cam(adv, None)
                out += [structural_similarity(a, b, data_range=1.0) for a, b in zip(clean_map, adv_map)]
    return np.array(out)


def _load(model: str, device: str):
    return models.load(model, "default" if model.startswith("demo-") else None).to(device)


def baseline(n: int, model: str, device: str) -> None:
    handle = _load(model, device)
    samples = replace(data.load("demo", n=n, seed=1), masks=None)  # like for like: the loop scores no masks
    layers = list(handle.layers)
    x, y = handle.preprocess(samples.images).to(device), torch.as_tensor(samples.labels)
    _, t_naive = timed(lambda: notebook(handle, x, y, layers))
    with tempfile.TemporaryDirectory() as root:
        engine = ModelEngine(handle, Store(root))
        _, t_engine = timed(lambda: engine.table(samples, EPS, layers))
    loop_passes = len(EPS) + len(layers) * (1 + len(EPS))
    print(f"[notebook] {model}, {n} images × {len(EPS)} eps × {len(layers)} layers (all), cold cache")
    print(f"  notebook loop {t_naive:7.2f} s   ({loop_passes} passes per image)")
    print(f"  engine        {t_engine:7.2f} s   ({engine.passes // n} passes per image)")
    print(f"  notebook / engine = {t_naive / t_engine:.2f}×")


def warm_cold(n: int, model: str, device: str) -> None:
    """Cold, warm (same batches) and warm in other batches, at every layer × 5 eps, in this process."""
    handle = _load(model, device)
    samples = data.load("demo", n=n, seed=4)
    config = SweepConfig(
        models=(ModelSpec(model),), data=DataConfig("demo", n, 4), eps=(0.0, *EPS), layers="all"
    )  # fmt: skip
    run = {"handles": {model: handle}, "samples": samples, "device": device}
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        cold, t_cold = timed(lambda: sweep.sweep(config, store, batch_size=32, **run))
        warm, t_warm = timed(lambda: sweep.sweep(config, store, batch_size=32, **run))
        cells, t_cells = timed(lambda: sweep.sweep(config, store, batch_size=24, **run))
    same = cold.per_image.equals(warm.per_image) and cold.per_image.equals(cells.per_image)
    print(f"[warm] {model}, {n} images × every layer × {len(EPS)} eps, in process")
    print(f"  cold {t_cold:7.2f} s   warm {t_warm:6.3f} s ({t_cold / t_warm:5.1f}×)   ", end="")
    print(f"warm, other batches {t_cells:6.3f} s ({t_cold / t_cells:5.1f}×)   passes warm "
          f"{sum(warm.passes.values())}, {sum(cells.passes.values())}   identical: {same}")  # fmt: skip


def attack_costs(n: int, model: str, device: str) -> None:
    """Predicted against counted passes per attack, and the time each pass takes, cold cache."""
    handle = models.load(model).to(device)
    samples = data.load("demo", n=n, seed=2)
    n_eps = len(EPS)
    print(f"[attacks] {model}, {n} images × {n_eps} eps, default layer, cold cache")
    for name in attacks.names():
        predicted = n * plan.cost((0.0, *EPS), AttackConfig(name), CamConfig()).one_pass_per_input
        with tempfile.TemporaryDirectory() as root:
            engine = ModelEngine(handle, Store(root), attack=AttackConfig(name))
            _, seconds = timed(lambda e=engine: e.table(samples, EPS))
        print(
            f"  {name:6s} predicted {predicted:6d} passes, counted {engine.passes:6d}   {seconds:7.2f} s   "
            f"{1000 * seconds / max(engine.passes, 1):6.2f} ms per pass"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--baseline-n", type=int, default=48)
    parser.add_argument("--baseline-models", default="demo-resnet,resnet50")
    parser.add_argument("--warm-model", default="demo-resnet")
    parser.add_argument("--device", default=plan.default_device())
    args = parser.parse_args()
    device = plan.resolve_device(args.device)
    torch.manual_seed(0)
    target_sweep(args.n, device)
    warm_cold(args.n, args.warm_model, device)
    for model in args.baseline_models.split(","):
        baseline(args.baseline_n if model.startswith("demo-") else min(args.baseline_n, 8), model, device)
    attack_costs(args.baseline_n, args.warm_model, device)


if __name__ == "__main__":
    main()
