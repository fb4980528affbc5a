"""Train the demo models on the ``demo`` shapes and save their weights as safetensors (``python -m gcdash train-demo``).

Supervised training (the demo must show attacks working): AdamW with a one-cycle schedule, cross-entropy, random
flips; every model sees the same training images in the same seeded order. ``demo-resnet-robust`` fine-tunes
``demo-resnet``'s trained weights the same way, each batch also attacked by the attack registry's PGD at 8/255 on
the model being trained (:class:`~gcdash.models.demo.AdversarialTraining`: half clean, half adversarial loss).
``demo-vit`` trains for three times ``--steps`` (``DemoArch.steps_scale``): at 1000 steps the hybrid ViT was at 34 %
val top-1, at 3000 at 98.4 % (320 s on 2 threads).
The defaults (1000 steps of 32 images per model, 12 000 training images) train all four CNNs in about 7.5 minutes
on a 2-core CPU (``--threads 2``), to 97.9-100 % clean top-1 on the test split; same seed and thread count, same
bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from gcdash import attacks
from gcdash.data.demo import CLASS_NAMES, IMAGE_SIZE, generate_arrays
from gcdash.errors import GcdashError
from gcdash.models.checkpoint import load_into, read_checkpoint
from gcdash.models.demo import (
    ARCHITECTURES,
    FORMAT_VERSION,
    WEIGHTS_DIR,
    AdversarialTraining,
    random_net,
    weights_path,
)

DEFAULT_STEPS = 1000
DEFAULT_N_TRAIN = 12_000
DEFAULT_N_VAL = 1_000
# Channels-last memory makes plain convs ~40 % faster on CPU but depthwise ones far slower.
CHANNELS_LAST = {"demo-vgg": True, "demo-resnet": True, "demo-inception": True, "demo-xception": False,
                 "demo-resnet-robust": True, "demo-vit": False}  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (stored in each weight file's metadata)."""

    steps: int = DEFAULT_STEPS
    batch_size: int = 32
    n_train: int = DEFAULT_N_TRAIN
    n_val: int = DEFAULT_N_VAL
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass
class TrainReport:
    """What one model's training did: mean loss over the first and last tenth of the steps, val accuracy."""

    name: str
    path: str
    seconds: float
    first_loss: float
    last_loss: float
    val_accuracy: float


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float [0, 1] NCHW."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def batches(images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, seed: int) -> Iterator[tuple]:
    """``cfg.steps`` random batches (float NCHW, labels), each image flipped left-right and up-down at random."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(cfg.steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        x = to_float(images[idx])
        flips = torch.rand(2, cfg.batch_size, 1, 1, 1, generator=gen) < 0.5
        x = torch.where(flips[0], x.flip(3), x)
        yield torch.where(flips[1], x.flip(2), x), labels[idx]


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on uint8 NHWC images."""
    net.eval()
    hits = sum(
        (net(to_float(images[i : i + batch_size])).argmax(1) == labels[i : i + batch_size]).sum().item()
        for i in range(0, len(images), batch_size)
    )
    return hits / max(len(images), 1)


def adversarial(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AdversarialTraining) -> torch.Tensor:
    """The training batch ``x`` attacked by ``spec`` on ``net`` itself (eval-mode batch norm, no parameter grads)."""
    return attacks.attack(spec.attack, net, x, y, spec.eps, steps=spec.steps).detach()


def step_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AdversarialTraining | None) -> torch.Tensor:
    """Cross-entropy of one step: on ``x`` alone, or ``(1 − w)·CE(clean) + w·CE(adversarial)`` in one pass."""
    if spec is None:
        return F.cross_entropy(net(x), y)
    adv = adversarial(net, x, y, spec).contiguous(memory_format=_format_of(x))
    per_image = F.cross_entropy(net(torch.cat([x, adv])), torch.cat([y, y]), reduction="none")
    return (1 - spec.weight) * per_image[: len(y)].mean() + spec.weight * per_image[len(y) :].mean()


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def fit(
    net: nn.Module,
    data: tuple,
    cfg: TrainConfig,
    bar: tqdm,
    fmt: torch.memory_format,
    spec: AdversarialTraining | None = None,
) -> list[float]:
    """Train ``net`` in place for ``cfg.steps`` steps (inputs in memory format ``fmt``; adversarially when
    ``spec`` is given); the loss of every step."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.2)
    net.train()
    losses = []
    for x, y in batches(*data, cfg, seed=cfg.seed):
        loss = step_loss(net, x.contiguous(memory_format=fmt), y, spec)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return losses


def save_weights(net: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``net``'s state dict as safetensors, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        save_file(state, str(tmp), metadata=metadata)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def train_model(name: str, train: tuple, val: tuple, cfg: TrainConfig, out: Path, bar: tqdm) -> TrainReport:
    """Train demo model ``name`` from its seeded init (or fine-tune its adversarial spec's start), measure val
    accuracy, save it under ``out``."""
    start = time.perf_counter()
    fmt = torch.channels_last if CHANNELS_LAST[name] else torch.contiguous_format
    spec = ARCHITECTURES[name].adversarial
    cfg = replace(cfg, steps=cfg.steps * ARCHITECTURES[name].steps_scale)
    net = random_net(name, seed=cfg.seed)
    if spec is not None and spec.start:
        start_from = weights_path(spec.start, out)  # just retrained beside it, else the shipped file
        start_from = start_from if start_from.is_file() else weights_path(spec.start)
        load_into(net.backbone, read_checkpoint(start_from).state_dict, label=f"{spec.start} weights {start_from}")
        cfg = replace(cfg, lr=spec.lr)
    net = net.to(memory_format=fmt)
    bar.set_description(name)
    losses = fit(net, train, cfg, bar, fmt, spec)
    net = net.to(memory_format=torch.contiguous_format)
    val_acc = accuracy(net, *val)
    path = weights_path(name, out)
    save_weights(net, path, metadata(name, cfg, val_acc))
    tenth = max(len(losses) // 10, 1)
    first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
    return TrainReport(name, str(path), time.perf_counter() - start, first, last, val_acc)


def metadata(name: str, cfg: TrainConfig, val_accuracy: float) -> dict[str, str]:
    """The string metadata stored in a weight file: what it is, for which classes, how it was trained."""
    spec = ARCHITECTURES[name].adversarial
    return {
        "adversarial": json.dumps(asdict(spec) if spec else None),
        "format": FORMAT_VERSION,
        "model": name,
        "class_names": json.dumps(list(CLASS_NAMES)),
        "input_size": json.dumps([IMAGE_SIZE, IMAGE_SIZE]),
        "config": json.dumps(asdict(cfg)),
        "val_accuracy": f"{val_accuracy:.4f}",
    }


def load_split(split: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of a demo split as (uint8 NHWC tensor, int64 labels)."""
    images, _, labels = generate_arrays(split, range(n), seed)
    return torch.from_numpy(images), torch.from_numpy(labels)


def train_demo(
    models: Sequence[str] | None = None, out: str | Path | None = None, progress: bool = True, **config
) -> dict[str, TrainReport]:
    """Train the named demo models (default: all of them) with :class:`TrainConfig` ``config`` (steps, batch_size,
    n_train, n_val, lr, weight_decay, seed) and save them to ``out`` (default: the shipped weights folder)."""
    names = list(ARCHITECTURES) if not models else list(models)
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise GcdashError(f"unknown demo model {unknown[0]!r}; choose from: {', '.join(ARCHITECTURES)}")
    cfg = TrainConfig(**config)
    folder = WEIGHTS_DIR if out is None else Path(out)
    train = load_split("train", cfg.n_train, cfg.seed)
    val = load_split("val", cfg.n_val, cfg.seed)
    total = sum(cfg.steps * ARCHITECTURES[name].steps_scale for name in names)
    with tqdm(total=total, file=sys.stderr, disable=not progress, unit="step") as bar:
        return {name: train_model(name, train, val, cfg, folder, bar) for name in names}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m gcdash train-demo``."""
    defaults = TrainConfig()
    parser.add_argument(
        "--models", nargs="+", default=None, help=f"default: all ({', '.join(ARCHITECTURES)}); commas ok"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps per model")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--n-train", type=int, default=defaults.n_train, help="training images (generated once)")
    parser.add_argument("--n-val", type=int, default=defaults.n_val, help="validation images for the report")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (one-cycle)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the .safetensors files")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``train-demo``: train, save, print one line per model; 0 on success."""
    if args.threads:
        torch.set_num_threads(args.threads)
    for flag in ("steps", "batch_size", "n_train", "n_val"):
        if getattr(args, flag) < 1:
            raise GcdashError(f"--{flag.replace('_', '-')} must be ≥ 1, got {getattr(args, flag)}")
    config = {k: getattr(args, k) for k in ("steps", "batch_size", "n_train", "n_val", "lr", "seed")}
    names = [n for item in args.models or () for n in item.split(",") if n]
    reports = train_demo(names, out=args.out, progress=not args.quiet, **config)
    for r in reports.values():
        print(f"{r.name}: val top-1 {r.val_accuracy:.2%}, loss {r.first_loss:.3f} → {r.last_loss:.3f}, "
              f"{r.seconds:.0f} s → {r.path}")  # fmt: skip
    return 0
