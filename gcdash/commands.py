"""The commands that look things up or look after gcdash's own files: ``models``, ``methods``, ``attacks`` (the
registries, in columns), ``verify`` (a sweep's folder against its manifest), ``cache`` and ``train-demo``. The
commands that compute (``sweep``, ``evaluate``, ``sanity``) and the parser are in :mod:`gcdash.cli`."""

from __future__ import annotations

import argparse

from gcdash.errors import GcdashError


def list_models(args: argparse.Namespace) -> int:
    from gcdash import models
    from gcdash.models import library

    for name in models.names():
        e = models.entry(name)
        print(f"{name:16s} {e.family:8s} {e.description}")
    if args.all or args.search:
        found = [n for n in library.available() if not args.search or args.search.lower() in n.lower()]
        print(f"\n{len(found)} library classifiers can be named{f' matching {args.search!r}' if args.search else ''}:")
        print("\n".join(found))
    else:
        print(f"\n{library.NAMING}\n(python -m gcdash models --all lists every library name; --search TEXT filters)")
    return 0


def models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also list every torchvision and timm classifier by name")
    p.add_argument("--search", default="", help="only the library names that contain TEXT")


def _columns(rows: list[tuple[str, ...]]) -> None:
    """Print rows as left-aligned columns sized to their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip())


def list_attacks(args: argparse.Namespace) -> int:
    from gcdash import attacks

    rows = [("attack", "name", "parameters", "cost")]
    for name in attacks.names():
        a = attacks.get(name)
        shown = [f"{k}={a.shown_defaults.get(k, v)}" for k, v in a.defaults.items()]
        params = ", ".join([*shown, *(["source=MODEL"] if a.uses_model else [])])
        rows.append((name, a.label, params or "-", a.cost()))
    _columns(rows)
    return 0


def list_methods(args: argparse.Namespace) -> int:
    from gcdash import cams

    rows = [("method", "name", "parameters", "cost")]
    for name in cams.names():
        m = cams.get(name)
        rows.append(
            (name, m.label, ", ".join(f"{k}={v}" for k, v in m.defaults.items()) or "-", m.cost.replace("`", ""))
        )
    _columns(rows)
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """One line OK, or one line per problem and exit 1: the parts missing, extra or changed, their row counts, the
    CSVs beside them and whether ``summary.csv`` counts the rows the table has."""
    from gcdash import manifest

    if not args.dir.is_dir():
        raise GcdashError(f"{args.dir} is not a folder; give the folder a sweep wrote (its --out)")
    problems = manifest.verify(args.dir)
    for line in problems:
        print(f"{args.dir}: {line}")
    if problems:
        return 1
    doc = manifest.load(args.dir)
    print(f"{args.dir}: OK ({doc['rows']} rows in {len(doc['parts'])} part(s), {', '.join(doc['files'])} as written)")
    return 0


def cache_command(args: argparse.Namespace) -> int:
    from gcdash.store import Store

    store = Store(args.cache)
    if args.action == "clear":
        store.clear()
        print(f"cleared {store.path}")
        return 0
    print(f"{store.path}: {store.size_bytes() / 1e6:.1f} MB")
    rows = [(r["model"], r["kind"], str(r["entries"]), f"{r['nbytes'] / 1e6:.2f} MB") for r in store.usage()]
    if rows:
        _columns([("model", "kind", "entries", "size"), *rows])  # model names whole, however long
    return 0


def train_demo_arguments(p: argparse.ArgumentParser) -> None:
    from gcdash import train

    train.add_arguments(p)


def train_demo(args: argparse.Namespace) -> int:
    from gcdash import train

    return train.main(args)
