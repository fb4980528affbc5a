"""Pipeline efficiency: how much of a sweep's time is the model's own forward and backward passes.

``efficiency = (attack passes × t_attack + CAM passes × t_cam) ÷ sweep time``, where, measured in the same process
on the same batches:

- ``t_attack``: one bare forward + backward to the input per image (``loss_gradient``, FGSM's pass);
- ``t_cam``: one bare forward + backward to the sweep's layers per image (:func:`gcdash.cams.taps.tap`: the
  least a gradient CAM pass must do; at a deep layer it is cheaper than a backward to the input, so counting it
  as a full pass would flatter the pipeline);
- the sweep: ``sweep.sweep`` on a cold cache, FGSM at 5 eps, Grad-CAM, NISSIM, rows streamed to Parquet parts
  (the full-scale path), localisation included where the images have masks (the demo's do).

1.0 means nothing but the model's passes; the rest of the sweep (CAM maths, upsampling, comparisons, keys,
store, Parquet) is ``1 − efficiency``. Each layer alone, then every layer in one sweep. Also printed: the same
ratio with every pass counted as a full forward + backward to the input (``full-pass``, the issue's wording; above
1 at deep layers), and ``in-sweep``, the share of the sweep's own time spent inside those model calls (``tap`` and
FGSM's ``loss_gradient``, timed where the sweep makes them): the figure least moved by a busy machine, since
numerator and denominator are measured together. Each figure is the median of ``--repeats`` rounds, each round
timing the bare passes right before its sweep.

Run alone (nothing else on the CPU): ``python bench/bench_efficiency.py [--models demo-resnet,resnet50]
[--n 64] [--device cpu|cuda]``. resnet50 runs with random weights (no download) on demo images resized to 224².
Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GCDASH_OFFLINE", "1")

from gcdash import data, models, plan, sweep
from gcdash.attacks.base import loss_gradient
from gcdash.cams import base as cam_base
from gcdash.cams.taps import tap
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.parts import Parts
from gcdash.store import Store

fgsm_module = importlib.import_module("gcdash.attacks.fgsm")  # the module (the package's ``fgsm`` is a function)
EPS = tuple(e / 255 for e in (1, 2, 4, 8, 16))
BATCH = 32


def per_image(fn, x: torch.Tensor, repeats: int = 4) -> float:
    """Seconds per image of ``fn`` over ``x`` in batches of :data:`BATCH` (best of ``repeats`` after a warm-up)."""

    def once() -> float:
        start = time.perf_counter()
        for i in range(0, len(x), BATCH):
            fn(x[i : i + BATCH])
        if x.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()
    return min(once() for _ in range(repeats)) / len(x)


class ModelClock:
    """Wall time spent inside the sweep's model calls: the CAM tap and FGSM's gradient, wrapped where called."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def measure(handle, samples, layers: list[str], device: str, repeats: int) -> dict:
    """Median over ``repeats`` rounds of (bare passes, cold sweep of ``layers``)."""
    rounds = [_round(handle, samples, layers, device) for _ in range(repeats)]
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def _round(handle, samples, layers: list[str], device: str) -> dict:
    """One cold sweep of ``layers`` and the bare passes it is made of, timed right before it."""
    x = handle.preprocess(samples.images).to(device)
    modules = {name: handle.layers[name] for name in layers}
    t_attack = per_image(lambda b: loss_gradient(handle.net, b, torch.zeros(len(b), dtype=torch.long)), x)
    t_cam = per_image(lambda b: tap(handle.net, b, modules), x)
    config = SweepConfig(
        models=(ModelSpec(handle.name),), data=DataConfig("demo", len(samples), 0), eps=(0.0, *EPS), layers=layers
    )
    clock = ModelClock()
    with tempfile.TemporaryDirectory() as root, _clocked(clock):
        store = Store(Path(root) / "cache")
        parts = Parts(Path(root) / "out")
        start = time.perf_counter()
        result = sweep.sweep(
            config, store, device=device, batch_size=BATCH, handles={handle.name: handle}, samples=samples, parts=parts
        )
        seconds = time.perf_counter() - start
        store.close()
    n = len(samples)
    attack_passes = n  # FGSM: one gradient per image for every eps (on the clean CAM pass's forward: a full pass
    cam_passes = result.passes[handle.name]  # is counted for it, so model_time is an upper bound; passes are CAM's)
    model_time = attack_passes * t_attack + cam_passes * t_cam
    return {
        "passes": result.passes[handle.name],
        "t_attack": t_attack,
        "t_cam": t_cam,
        "sweep": seconds,
        "efficiency": model_time / seconds,
        "full": (cam_passes + attack_passes) * t_attack / seconds,
        "in_sweep": clock.seconds / seconds,
    }


@contextlib.contextmanager
def _clocked(clock: ModelClock):
    """The engine's model calls timed by ``clock`` for the duration."""
    originals = (cam_base.tap, fgsm_module.loss_gradient)
    cam_base.tap, fgsm_module.loss_gradient = clock.wrap(cam_base.tap), clock.wrap(fgsm_module.loss_gradient)
    try:
        yield
    finally:
        cam_base.tap, fgsm_module.loss_gradient = originals


def run(model: str, n: int, device: str, repeats: int) -> None:
    weights = "default" if model.startswith("demo-") else None
    handle = models.load(model, weights).to(device)
    samples = data.load("demo", n=n, seed=3)
    threads = torch.get_num_threads()
    print(f"[{model}] {n} demo images, FGSM × {len(EPS)} eps, Grad-CAM, cold cache, batch {BATCH}", end="")
    print(f" ({device}, {threads} threads)")
    heads = ("passes", "attack ms", "cam ms", "sweep s", "efficiency", "full-pass", "in-sweep")
    print(f"  {'layer':<12s} " + " ".join(f"{h:>{max(6, len(h))}s}" for h in heads))
    rows = [(layer, measure(handle, samples, [layer], device, repeats)) for layer in handle.layers]
    rows.append(("(all)", measure(handle, samples, list(handle.layers), device, repeats)))
    for layer, r in rows:
        print(
            f"  {layer:<12s} {r['passes']:6d} {1000 * r['t_attack']:9.2f} {1000 * r['t_cam']:6.2f} "
            f"{r['sweep']:7.2f} {r['efficiency']:10.3f} {r['full']:9.3f} {r['in_sweep']:8.3f}"
        )
    single = [r["efficiency"] for layer, r in rows[:-1]]
    inside = [r["in_sweep"] for layer, r in rows[:-1]]
    every = rows[-1][1]
    print(f"  each layer alone: efficiency {min(single):.3f}–{max(single):.3f}, in-sweep {min(inside):.3f}–", end="")
    print(f"{max(inside):.3f}; every layer in one sweep: {every['efficiency']:.3f}, in-sweep {every['in_sweep']:.3f}")


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo-resnet,resnet50")
    parser.add_argument("--n", type=int, default=64, help="demo images per sweep (resnet50 uses at most 8)")
    parser.add_argument("--device", default=plan.default_device())
    parser.add_argument("--batch", type=int, default=BATCH, help="images per batch, for the sweep and the bare passes")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per figure (their median is printed)")
    args = parser.parse_args()
    device = plan.resolve_device(args.device)
    BATCH = args.batch
    torch.manual_seed(0)
    for model in args.models.split(","):
        run(model, args.n if model.startswith("demo-") else min(args.n, 8), device, args.repeats)


if __name__ == "__main__":
    main()
