"""The numbers a restructuring must not move: a fixed set of sweeps run through the CLI (the stable interface),
each output table reduced to a digest of its exact values.

A table's digest is the SHA-256 of its column names, dtypes and every value's bytes (CSV tables are read back
with pandas first, so a float printed the same way hashes the same). :func:`record` runs the cases into one fresh
cache in order (later cases read earlier cells, so both the computing and the reading paths are covered) and
returns ``{case: {file: digest}}``, and the tables themselves, for a comparison with a tolerance when the
digests differ.

Used by ``tests/test_golden.py`` (a small configuration, digests and tables stored in ``tests/golden/``) and by
``bench/golden.py`` (the demo zoo at every layer, Ray included).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gcdash.cli import main

TABLES = ("per_image.parquet", "summary.csv", "vid.csv", "transfer.csv", "sanity.csv")


def small_cases(models: str = "demo-resnet,demo-vgg", n: int = 6) -> dict[str, list[str]]:
    """name → CLI arguments (without ``--out`` and ``--cache``): every path a table can take."""
    base = ["--models", models, "--n", str(n), "--eps", "0,2/255,8/255", "--layers", "all", "--batch-size", "4"]
    return {
        "fgsm": ["sweep", *base],
        "pgd": ["sweep", *base, "--attack", "pgd", "--attack-param", "steps=3"],
        "noise": ["sweep", *base, "--attack", "noise"],
        "compare": ["sweep", *base, "--dissimilarity", "nissim,spearman,topk", "--dissimilarity-param",
                    "topk.share=0.1"],
        "faith": ["sweep", *base, "--faithfulness", "--layers", "default"],
        "gradcampp": ["sweep", *base, "--method", "gradcampp", "--keep-maps", "none"],
        "label": ["sweep", *base, "--target", "label"],
        "transfer": ["sweep", *base, "--transfer", "--layers", "default"],
        "fgsm-again": ["sweep", *base],  # the same sweep warm: every batch's rows read whole
        "sanity": ["sanity", "--models", models.split(",")[0], "--n", str(n), "--layers", "all"],
    }  # fmt: skip


def digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's columns, dtypes and exact values (objects as their ``repr``)."""
    h = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        h.update(f"{name}:{column.dtype}".encode())
        values = column.to_numpy()
        if values.dtype == object:
            h.update("\x1f".join(map(repr, values)).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    """The libraries whose kernels the digests depend on: bit-identity is asked for only under the same ones."""
    import torch

    return {"torch": torch.__version__, "numpy": np.__version__}


def read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def record(
    root: Path, cases: dict[str, Sequence[str]], extra: Sequence[str] = ()
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, pd.DataFrame]]]:
    """Run ``cases`` into ``root/out/CASE`` with one cache ``root/cache``; their digests and tables."""
    digests, tables = {}, {}
    for name, args in cases.items():
        out = root / "out" / name
        code = main([*args, *extra, "--out", str(out), "--cache", str(root / "cache")])
        if code != 0:
            raise RuntimeError(f"golden case {name} exited {code}")
        found = {t: read(out / t) for t in TABLES if (out / t).exists()}
        tables[name] = found
        digests[name] = {t: digest(frame) for t, frame in found.items()}
    return digests, tables


def save(where: Path, digests: dict, tables: dict) -> None:
    """Store the digests (with :func:`versions`) and the tables themselves in ``where``."""
    import json

    where.mkdir(parents=True, exist_ok=True)
    (where / "digests.json").write_text(json.dumps({"versions": versions(), "digests": digests}, indent=1) + "\n")
    for name, found in tables.items():
        for table, frame in found.items():
            frame.to_parquet(where / f"{name}--{table.split('.')[0]}.parquet", index=False)


if __name__ == "__main__":  # python tests/golden.py: record the small configuration's tables in tests/golden/
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import torch

    torch.set_num_threads(1)  # as the test run (conftest): with 2 threads the label case's last bits differ
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(__file__).parent / "golden", *record(Path(tmp), small_cases()))
