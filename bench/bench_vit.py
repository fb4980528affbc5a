"""Vision-transformer benchmark: the engine against the fair notebook loop at every block of a random ViT-S.

The notebook loop is bench_sweep's (attack once per eps; per layer, pytorch-grad-cam on the clean batch once and on
each attacked batch; skimage's SSIM per pair), with pytorch-grad-cam's ViT ``reshape_transform`` from its tutorial
(class token dropped, 14×14 grid): ``n_eps + n_layers·(1 + n_eps)`` passes per image (77 for ViT-S's 12 catalogued
layers at 5 eps) where the engine makes ``2 + n_eps`` (7), every layer tapped in one pass. The engine's passes are
counted, and a forward hook counts the model's forwards of one CAM call at every layer (must be 1).

Run alone: ``python bench/bench_vit.py [--n 8] [--model timm:vit_small_patch16_224] [--device cpu|cuda]``; random
weights, demo images resized to 224². Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from bench_sweep import EPS, timed

from gcdash import cams, data, models, plan
from gcdash.attacks import fgsm
from gcdash.engine import ModelEngine
from gcdash.store import Store


def tutorial_reshape(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """pytorch-grad-cam's ViT tutorial ``reshape_transform``."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def notebook(handle, x: torch.Tensor, y: torch.Tensor, layers: list[str]) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from skimage.metrics import structural_similarity

    attacked = [fgsm(handle.net, x, y, eps) for eps in EPS]
    out = []
    for layer in layers:
        with GradCAM(handle.net, [handle.layers[layer]], reshape_transform=tutorial_reshape) as cam:
            clean_map = cam(x, None)
            for adv in attacked:
                adv_map = cam(adv, None)
                out += [structural_similarity(a, b, data_range=1.0) for a, b in zip(clean_map, adv_map)]
    return np.array(out)


def forwards_per_cam_call(handle, x: torch.Tensor) -> int:
    calls: list[int] = []
    hook = handle.net.register_forward_hook(lambda *_: calls.append(1))
    try:
        cams.compute(handle, x, "all", "gradcam")
    finally:
        hook.remove()
    return len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--model", default="timm:vit_small_patch16_224")
    parser.add_argument("--device", default=plan.default_device())
    args = parser.parse_args()
    device = plan.resolve_device(args.device)
    torch.manual_seed(0)
    handle = models.load(args.model, weights="random").to(device)
    samples = replace(data.load("demo", n=args.n, seed=1), masks=None)
    layers = list(handle.layers)
    x, y = handle.preprocess(samples.images).to(device), torch.as_tensor(samples.labels)
    _, t_naive = timed(lambda: notebook(handle, x, y, layers))
    with tempfile.TemporaryDirectory() as root:
        engine = ModelEngine(handle, Store(root))
        _, t_engine = timed(lambda: engine.table(samples, EPS, layers))
    loop_passes = len(EPS) + len(layers) * (1 + len(EPS))
    print(f"[vit] {args.model} (random), {args.n} images × {len(EPS)} eps × {len(layers)} layers (all), cold cache")
    print(f"  forwards in one CAM call at every layer: {forwards_per_cam_call(handle, x[:2])}")
    print(f"  notebook loop {t_naive:7.2f} s   ({loop_passes} passes per image)")
    print(f"  engine        {t_engine:7.2f} s   ({engine.passes // args.n} passes per image)")
    print(f"  notebook / engine = {t_naive / t_engine:.2f}×")


if __name__ == "__main__":
    main()
