"""The numbers a restructuring must not move, at demo scale: the demo zoo at every layer under fgsm, pgd and the
noise control, extra comparisons, faithfulness, masks (the demo's own), a transfer matrix, ``sanity`` and a Ray
sweep, each table reduced to a digest (:mod:`tests.golden`).

Run alone: ``python bench/golden.py --save FILE`` before a change and ``python bench/golden.py --check FILE`` after
(exit 1 and the cases that moved if any did). ``tests/test_golden.py`` keeps the same check on a small
configuration in the test run. Not part of the test run (about five minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GCDASH_OFFLINE", "1")
root = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(root), str(root / "tests")]

import golden  # noqa: E402

CNNS = "demo-vgg,demo-resnet,demo-inception,demo-xception"  # demo-all when the digests were recorded


def cases(n: int) -> dict[str, list[str]]:
    zoo = ["--models", CNNS, "--n", str(n), "--layers", "all"]
    return {
        **golden.small_cases(CNNS, n),
        "sanity": ["sanity", "--models", CNNS, "--n", str(n), "--layers", "all"],  # as "demo-all" gave when recorded
        "zoo-fgsm": ["sweep", *zoo],
        "zoo-pgd": ["sweep", *zoo, "--attack", "pgd"],
        "zoo-noise": ["sweep", *zoo, "--attack", "noise"],
        "ray": ["sweep", *zoo[:4], "--layers", "default", "--executor", "ray", "--workers", "2"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--save", type=Path)
    what.add_argument("--check", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        digests, _ = golden.record(Path(tmp), cases(args.n))
    found = {"versions": golden.versions(), "n": args.n, "digests": digests}
    if args.save:
        args.save.write_text(json.dumps(found, indent=1) + "\n")
        print(f"saved {sum(map(len, digests.values()))} digests of {len(digests)} cases to {args.save}")
        return 0
    before = json.loads(args.check.read_text())
    moved = [case for case in before["digests"] if before["digests"][case] != digests.get(case)]
    print(json.dumps(digests, indent=1))
    print(
        f"{len(before['digests']) - len(moved)} of {len(before['digests'])} cases bit-identical"
        + (f"; moved: {', '.join(moved)}" if moved else "")
    )
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
