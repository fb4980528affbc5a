"""Sweep benchmark: the cached engine against the naive loop, in one process, on this machine.

1. The issue's target: the four demo models × 200 demo images × 5 eps at the default layer, cold (empty cache)
   and warm (the same sweep again). Targets on a 2-core CPU: cold ≤ 120 s, warm ≤ 5 s.
2. The engine against a naive baseline on one model, several layers: the naive loop attacks once per eps and
   calls pytorch-grad-cam once per (input, layer), then skimage's SSIM per pair — ``n_eps + n_layers·(1 + n_eps)``
   passes per image where the engine makes ``2 + n_eps``. Prints both times and the ratio.
3. Each registered attack on one model, cold cache: the passes its ``Attack.passes`` predicts (the Runs page's
   estimate) against the passes the engine counted, and the time per pass.

Run: ``python bench/bench_sweep.py [--n 200] [--baseline-n 48] [--device cpu|cuda]``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcdash import attacks, data, models, pipeline
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
        cold, t_cold = timed(lambda: pipeline.sweep(config, store, device=device))
        warm, t_warm = timed(lambda: pipeline.sweep(config, store, device=device))
        same = cold.per_image.equals(warm.per_image)
    threads = torch.get_num_threads()
    print(f"[target] 4 demo models × {n} images × {len(EPS)} eps, default layer ({device}, {threads} threads)")
    print(f"  cold {t_cold:7.2f} s   (target ≤ 120 s)   passes {sum(cold.passes.values())}")
    print(f"  warm {t_warm:7.2f} s   (target ≤ 5 s)     passes {sum(warm.passes.values())}   identical: {same}")
    print(f"  warm / cold = {t_warm / t_cold:.3f}")


def naive(handle, x: torch.Tensor, y: torch.Tensor, layers: list[str]) -> np.ndarray:
    """The notebook way: attack per eps, one pytorch-grad-cam call per (input, layer), skimage SSIM per pair."""
    from pytorch_grad_cam import GradCAM
    from skimage.metrics import structural_similarity

    out = []
    for eps in EPS:
        adv = fgsm(handle.net, x, y, eps)
        for layer in layers:
            with GradCAM(handle.net, [handle.layers[layer]]) as cam:
                clean_map, adv_map = cam(x, None), cam(adv, None)
            out += [structural_similarity(a, b, data_range=1.0) for a, b in zip(clean_map, adv_map)]
    return np.array(out)


def baseline(n: int, model: str, device: str) -> None:
    handle = models.load(model).to(device)
    samples = data.load("demo", n=n, seed=1)
    layers = list(handle.layers)
    x, y = handle.preprocess(samples.images).to(device), torch.as_tensor(samples.labels)
    _, t_naive = timed(lambda: naive(handle, x, y, layers))
    with tempfile.TemporaryDirectory() as root:
        engine = ModelEngine(handle, Store(root))
        _, t_engine = timed(lambda: engine.table(samples, EPS, layers))
    print(f"[baseline] {model}, {n} images × {len(EPS)} eps × {len(layers)} layers (all), cold cache")
    print(f"  naive loop  {t_naive:7.2f} s   ({len(EPS) + len(layers) * 2 * len(EPS)} passes per image)")
    print(f"  engine      {t_engine:7.2f} s   ({2 + len(EPS)} passes per image)")
    print(f"  naive / engine = {t_naive / t_engine:.2f}×")


def attack_costs(n: int, model: str, device: str) -> None:
    """Predicted against counted passes per attack, and the time each pass takes, cold cache."""
    handle = models.load(model).to(device)
    samples = data.load("demo", n=n, seed=2)
    n_eps = len(EPS)
    print(f"[attacks] {model}, {n} images × {n_eps} eps, default layer, cold cache")
    for name in attacks.names():
        attack = attacks.get(name)
        predicted = n * (1 + n_eps + attack.passes(n_eps, attack.params()))
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
    parser.add_argument("--baseline-model", default="demo-resnet")
    parser.add_argument("--device", default=pipeline.default_device())
    args = parser.parse_args()
    device = pipeline.resolve_device(args.device)
    torch.manual_seed(0)
    target_sweep(args.n, device)
    baseline(args.baseline_n, args.baseline_model, device)
    attack_costs(args.baseline_n, args.baseline_model, device)


if __name__ == "__main__":
    main()
