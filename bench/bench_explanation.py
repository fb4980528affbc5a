"""Explanation-attack benchmark: what ``expl-topk`` costs against PGD-10 at the same eps, in the same process.

Both are timed on the same images (demo-resnet on demo images; with ``--n50``, a random-weight ResNet50 at 224²),
best of ``--repeat``; the ratio is expl-topk's time over PGD-10's. expl-topk makes ``2·steps + 1`` passes per image
(one real pass for the clean map, then per step one second-order pass on the β-softplus network and one real pass
that checks the prediction), PGD ``steps``. Then the engine runs expl-topk through a cold sweep and the passes the
plan predicts are compared with the passes the engine counts and with the model's forwards a hook counts.

Run alone (no test run or helper beside it): ``python bench/bench_explanation.py [--n 64] [--n50 8]``. Not part of
the test run.
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

from gcdash import attacks, data, models, plan
from gcdash.config import AttackConfig, CamConfig
from gcdash.engine import ModelEngine
from gcdash.store import Store

EPS = 8 / 255


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(handle, x: torch.Tensor, repeat: int) -> None:
    with torch.no_grad():
        pred = handle.net(x).argmax(dim=1)
    layer = attacks.get("expl-topk").bind(handle, attacks.get("expl-topk").params())["layer"]
    pgd = best_time(lambda: attacks.attack("pgd", handle.net, x, pred, EPS), repeat)
    expl = best_time(lambda: attacks.attack("expl-topk", handle.net, x, pred, EPS, layer=layer), repeat)
    n = len(x)
    per_pgd, per_expl = pgd / n / 10 * 1e3, expl / n / 21 * 1e3
    print(f"{handle.name} ({n} images, layer {layer}): PGD-10 {pgd:.2f} s ({per_pgd:.1f} ms per image-pass), "
          f"expl-topk {expl:.2f} s ({per_expl:.1f} ms per image-pass); expl-topk / PGD-10 = {expl / pgd:.2f}× "
          "the time for 2.1× the passes")  # fmt: skip


def counted(handle, samples, n: int) -> None:
    attack = AttackConfig("expl-topk")
    with tempfile.TemporaryDirectory() as tmp:
        engine = ModelEngine(handle, Store(Path(tmp)), attack=attack)
        forwards: list[int] = []
        hook = handle.net.register_forward_hook(lambda _m, i, _o: forwards.append(len(i[0])))
        start = time.perf_counter()
        engine.table(samples, [0.0, EPS], "default")
        seconds = time.perf_counter() - start
        hook.remove()
    cost = plan.cost((0.0, EPS), attack, CamConfig())
    predicted = cost.one_pass_per_input * n
    print(f"engine, cold sweep of {n} images at eps 8/255: {seconds:.2f} s; passes predicted {predicted}, "
          f"engine counted {engine.passes}, forwards hooked {sum(forwards)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--n50", type=int, default=0, help="also a random-weight ResNet50 on this many images")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    samples = data.load("demo", n=args.n)
    handle = models.load("demo-resnet")
    compare(handle, handle.preprocess(samples.images), args.repeat)
    counted(handle, samples, args.n)
    if args.n50:
        torch.set_flush_denormal(True)
        big = models.load("resnet50", None)  # random weights
        compare(big, big.preprocess(samples.images[: args.n50]), 1)


if __name__ == "__main__":
    main()
