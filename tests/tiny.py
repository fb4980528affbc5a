"""Tiny seeded models for tests: built in milliseconds, no weights on disk, registered under ``tiny-*`` names."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gcdash import data, models
from gcdash.data import Samples
from gcdash.models.handle import ModelHandle, PixelSpaceNet

CLASSES = ["circle", "square", "triangle", "star", "cross"]


class TinyNet(nn.Module):
    """Three conv blocks and a linear head on 32×32 inputs; separate ReLUs, nothing in place."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block3(self.block2(self.block1(x))))


def tiny_handle(seed: int = 0, size: int = 32, name: str = "tiny-cnn") -> ModelHandle:
    torch.manual_seed(seed)
    backbone = TinyNet()
    net = PixelSpaceNet(backbone, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    layers = OrderedDict((n, getattr(backbone, n)) for n in ("block1", "block2", "block3"))
    return ModelHandle(name, net, (size, size), list(CLASSES), layers, "block3", family="test")


def register_tiny() -> None:
    """Register ``tiny-cnn`` (seed 0) and ``tiny-cnn2`` (seed 1) with the model registry, once."""
    for name, seed in (("tiny-cnn", 0), ("tiny-cnn2", 1)):
        if name not in models.MODELS:
            models.register(name, lambda weights="default", _s=seed, _n=name: tiny_handle(_s, name=_n), family="test")


def tiny_samples(n: int = 8, seed: int = 0, size: int = 32, classes: tuple[str, ...] | None = None) -> Samples:
    """Random labelled RGB images (uint8), deterministic in (n, seed)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    if classes:
        labels = np.array([label for label in labels if CLASSES[label] in classes], dtype=np.int64)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in labels]
    return Samples(images, labels, [f"tiny-{seed}-{i:04d}" for i in range(len(labels))], list(CLASSES))


def _tiny_source(arg: str | None, n: int | None = None, seed: int = 0, classes: tuple[str, ...] = ()) -> Samples:
    return tiny_samples(n or 8, seed, classes=classes or None)


def register_tiny_source() -> None:
    """Register the ``tiny`` data source (random labelled images), once."""
    if "tiny" not in data.SOURCES:
        data.register_source("tiny", _tiny_source)


def cli_command(*args: str) -> list[str]:
    """``python -m gcdash ARGS`` in a subprocess that has the tiny models and source registered (for tests that
    need a real second process: concurrent sweeps, kill -9)."""
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    script = (
        f"import sys; sys.path[:0] = [{str(tests.parent)!r}, {str(tests)!r}]\n"
        "import tiny; tiny.register_tiny(); tiny.register_tiny_source()\n"
        "from gcdash.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", script, *args]


#: Class folders the tiny models partly lack, for the labelling rule: sorted positions 0-3; tiny classes by name 1, 2
FOLDERS = {"cat": 2, "n04266014": 1, "square": 2, "triangle": 1}


def image_folder(root, folders: dict[str, int] = FOLDERS, size: int = 32) -> str:
    """``root`` with ``folders`` (name → number of images) of seeded random PNGs; returns its path."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in folders.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return str(root)


@contextlib.contextmanager
def another_sweep_holds(out: Path) -> Iterator[None]:
    """While the block runs, another process holds ``out``'s sweep lock (``.gcdash.lock``), as a second sweep would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, time\n"
         f"f = open({str(out / '.gcdash.lock')!r}, 'w'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"held"
        yield
    finally:
        holder.kill()
        holder.wait()


def disk_full_after(monkeypatch, writes: int) -> None:
    """Every Parquet write after the first ``writes`` fails as on a full disk (ENOSPC)."""
    import errno

    import pandas as pd

    written, to_parquet = [], pd.DataFrame.to_parquet

    def fill_up(frame, *args, **kwargs):
        if len(written) == writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(1)
        return to_parquet(frame, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fill_up)
