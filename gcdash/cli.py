"""Command line: ``python -m gcdash sweep | sanity | models | methods | attacks | train-demo | cache | verify``.

Bad input exits 2 with one line naming the problem and the valid choices; an interrupted sweep exits 130 and
keeps every finished cell in the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from gcdash.commands import (
    cache_command,
    list_attacks,
    list_methods,
    list_models,
    models_arguments,
    train_demo,
    train_demo_arguments,
    verify_command,
)
from gcdash.errors import Cancelled, GcdashError
from gcdash.registry import typed_value

Command = Callable[[argparse.Namespace], int]


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", required=True, help="comma-separated model names, or a family group: demo-all")
    p.add_argument("--weights", help="checkpoint PATH (or 'random') for the model(s), or name=PATH,name2=PATH")
    p.add_argument("--class-names", help="class names of a checkpoint: .txt (one per line), .json, or image folder")
    p.add_argument("--no-crop", action="store_true", help="resize without centre crop (pre-aligned face crops)")
    p.add_argument("--data", default="demo", help="image source: demo | folder:PATH | list:FILE.csv (default: demo)")
    p.add_argument("--n", type=int, default=200, help="number of images (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset (default: 0)")
    p.add_argument("--classes", help="comma-separated class names to keep")
    p.add_argument("--per-class", type=int, help="images per class (folder source)")
    p.add_argument("--masks", help="folder of object masks parallel to the image folder, for localisation")
    p.add_argument("--split", help="demo split: train | val | test (default: test)")
    p.add_argument("--eps", default="0,1/255,2/255,4/255,8/255,16/255", help="comma-separated eps, fractions ok")
    p.add_argument("--layers", default="default", help="default | all | comma-separated layer names")
    p.add_argument("--method", default="gradcam", help="CAM method (see: python -m gcdash methods)")
    p.add_argument("--cam-param", action="append", default=[], metavar="NAME=VALUE", help="CAM method parameter")
    p.add_argument("--target", default="pred", help="pred | clean-pred | label (default: pred, the paper's)")
    p.add_argument("--attack", default="fgsm", help="attack (see: python -m gcdash attacks; default: fgsm)")
    p.add_argument(
        "--attack-param", action="append", default=[], metavar="NAME=VALUE",
        help="attack parameter, repeatable; source=MODEL crafts the perturbation on another model (transfer)",
    )  # fmt: skip
    p.add_argument(
        "--dissimilarity", default="nissim",
        help="comma-separated map comparisons: nissim (always), spearman, topk, lens-topk (default: nissim)",
    )  # fmt: skip
    p.add_argument(
        "--dissimilarity-param", action="append", default=[], metavar="NAME.PARAM=VALUE",
        help="a comparison's parameter, e.g. topk.share=0.05 or nissim.gaussian=true",
    )  # fmt: skip
    p.add_argument("--gaussian-ssim", action="store_true", help="Gaussian SSIM window (σ 1.5) instead of 7×7")
    p.add_argument(
        "--faithfulness", action="store_true",
        help="deletion and insertion areas of every map (Petsiuk et al. 2018): 34 forward passes per map",
    )  # fmt: skip
    p.add_argument(
        "--stability", action="store_true",
        help="RIS, ROS (Agarwal et al. 2022) and Max-Sensitivity (Yeh et al. 2019) of every pair: no extra pass",
    )  # fmt: skip
    p.add_argument(
        "--transfer", action="store_true",
        help="craft the attack on each of --models and evaluate it on every one: also writes transfer.csv",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="output folder for the tables")
    p.add_argument("--device", help="cpu | cuda (default: cuda when present, else cpu)")
    p.add_argument(
        "--precision", default="fp32",
        help="arithmetic of the model passes: fp32 (exact, the default); bf16 (autocast; faster where the CPU or "
        "GPU has bf16 units, MOD within the README's measured bound); fp16 (CUDA only)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--executor", default="local", choices=["local", "ray"], help="where batches run (default: local)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each with its own copy of the models")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor asks for (default 0)")
    p.add_argument("--ray-address", help="an existing Ray cluster (ray://HOST:10001 or auto); default: a local one")
    p.add_argument(
        "--keep-maps", default="all", choices=["all", "gallery", "none"],
        help="raw maps kept in the cache: all; gallery (the default layer's); none. Scalars are always kept; a map "
        "not kept is recomputed when looked at (default: all)",
    )  # fmt: skip
    p.add_argument("--cache", type=Path, help="cache folder (default: $GCDASH_CACHE or ./cache)")


def _is_path(text: str) -> bool:
    """Whether ``--weights`` text is one checkpoint path, not ``name=PATH`` pairs: it exists, or a '/' comes before
    any '=' (a model name has no '/': ``/x/a=b.pt`` is a path, ``demo-vgg=/x/a.pt`` a pair)."""
    return "=" not in text or "/" in text.partition("=")[0] or Path(text).expanduser().exists()


def _weights(text: str | None, model_names: list[str]) -> dict[str, str]:
    if not text:
        return {}
    if _is_path(text):
        return dict.fromkeys(model_names, text)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if "=" not in p]
    if bad:
        raise GcdashError(f"--weights {bad[0]!r}: give one checkpoint for all models, or name=PATH pairs for each")
    pairs = dict(p.split("=", 1) for p in parts)
    unknown = set(pairs) - set(model_names)
    if unknown:
        raise GcdashError(f"--weights names {sorted(unknown)[0]!r}, which is not among --models")
    return pairs


def _typed_params(flag: str, owner: str, defaults: dict, items: Sequence[str], extra: Sequence[str] = ()) -> tuple:
    """``NAME=VALUE`` items → sorted (name, value) pairs typed like ``defaults`` (``extra`` names stay strings)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or (name not in defaults and name not in extra):
            choices = sorted([*defaults, *extra])
            raise GcdashError(f"{flag} {item!r}: {owner} takes NAME=VALUE with NAME in {choices}")
        params[name] = typed_value(defaults.get(name, ""), value, f"{flag} {name}")
    return tuple(sorted(params.items()))


def _cam_params(method: str, items: Sequence[str]) -> tuple:
    from gcdash import cams

    return _typed_params("--cam-param", method, cams.get(method).defaults, items)


def _attack(args: argparse.Namespace):
    from gcdash import attacks, models
    from gcdash.config import AttackConfig

    attack = attacks.get(args.attack)
    extra = [attacks.SOURCE] if attack.uses_model else []
    params = _typed_params("--attack-param", args.attack, attack.defaults, args.attack_param, extra)
    attack.params(**dict(params))  # checks the values
    source = dict(params).get(attacks.SOURCE)
    if source is not None:
        models.entry(source)
    return AttackConfig(args.attack, params)


def _comparisons(args: argparse.Namespace) -> tuple:
    from gcdash import metrics
    from gcdash.config import CompareConfig

    names = list(dict.fromkeys(["nissim", *(n.strip() for n in args.dissimilarity.split(",") if n.strip())]))
    per: dict[str, list[str]] = {name: [] for name in names}
    for item in args.dissimilarity_param:
        owner, dot, rest = item.partition(".")
        if not dot or owner not in per:
            raise GcdashError(f"--dissimilarity-param {item!r}: write NAME.PARAM=VALUE with NAME in {names}")
        per[owner].append(rest)
    if args.gaussian_ssim:
        per["nissim"].append("gaussian=true")
    configs = []
    for name in names:
        comparison = metrics.comparison(name)
        params = _typed_params("--dissimilarity-param", name, comparison.defaults, per[name])
        comparison.params(**dict(params))
        configs.append(CompareConfig(name, params))
    return tuple(configs)


def build_config(args: argparse.Namespace):
    """Turn sweep arguments into a :class:`~gcdash.config.SweepConfig`, checking names on the way."""
    from gcdash import models, targets
    from gcdash.config import CamConfig, DataConfig, ModelSpec, SweepConfig, parse_eps

    names = models.expand(args.models)  # before the CAM library is imported: a bad name is refused in seconds
    weights = _weights(args.weights, names)
    parse_eps(args.eps)
    from gcdash import cams

    cams.get(args.method)
    targets.TARGETS.get(args.target)
    if args.n is not None and args.n < 1:
        raise GcdashError(f"--n must be ≥ 1, got {args.n}")
    if args.seed < 0:
        raise GcdashError(f"--seed must be ≥ 0, got {args.seed}")
    if args.batch_size < 1:
        raise GcdashError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    options = {
        k: v
        for k, v in (
            ("classes", tuple(c.strip() for c in args.classes.split(",")) if args.classes else None),
            ("per_class", args.per_class),
            ("split", args.split),
            ("masks", args.masks),
        )
        if v is not None
    }
    layers = args.layers if args.layers in ("default", "all") else tuple(args.layers.split(","))
    model_options = tuple(
        (k, v)
        for k, v in (("class_names", args.class_names), ("crop", False if args.no_crop else None))
        if v is not None
    )
    return SweepConfig(
        models=tuple(ModelSpec(n, weights.get(n, "default"), model_options) for n in names),
        data=DataConfig(args.data, args.n, args.seed, tuple(sorted(options.items()))),
        eps=parse_eps(args.eps),
        layers=layers,
        cam=CamConfig(args.method, _cam_params(args.method, args.cam_param)),
        target=args.target,
        attack=_attack(args),
        comparisons=_comparisons(args),
        faithfulness=bool(getattr(args, "faithfulness", False)),
        stability=bool(getattr(args, "stability", False)),
        precision=getattr(args, "precision", "fp32"),
    )


def _say_shortfall(samples, n: int | None, out: Path) -> None:
    """Print what the load skipped or decided for files, counted by reason; every file goes to OUT/skipped.txt."""
    from gcdash import data

    for line in data.shortfall(samples, n):
        print(f"gcdash: warning: {line}", file=sys.stderr)
    listed = data.write_skip_list(samples, out / "skipped.txt")
    if listed:
        print(f"gcdash: warning: every such file, with its reason, is listed in {listed}", file=sys.stderr)


def run_sweep(args: argparse.Namespace) -> int:
    config = build_config(args)
    from gcdash import manifest, plan

    # Ray, when asked for, is started and checked before any image or model is loaded; then --out is this sweep's
    # (the lock passes to its Parts, which give it back when the tables are written)
    with _executor(args), manifest.FolderLock(plan.check_out_dir(args.out)):
        return _run_sweep(args, config)


def _executor(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """One Ray session for every run of a ``--executor ray`` sweep (a local Ray it starts is stopped on every exit
    path, SIGTERM included); nothing for the local executor. The pool's numbers are checked either way."""
    from gcdash import executors

    executors.check_pool(args.workers, args.gpus_per_worker)
    if args.executor != "ray":
        return contextlib.nullcontext()
    return executors.ray_session(args.ray_address, args.workers, args.gpus_per_worker)


def _run_sweep(args: argparse.Namespace, config) -> int:
    from gcdash import plan, sweep
    from gcdash.parts import Parts
    from gcdash.store import Store

    store = Store(args.cache)  # --out was checked (and locked) by run_sweep
    store.check()
    ready = plan.make(config, args.device)  # fails fast on a bad device, weights, layer names or labels
    _say_shortfall(ready.samples, config.data.n, args.out)
    for line in ready.notes:
        print(f"gcdash: warning: {line}", file=sys.stderr)
    if config.precision != "fp32":
        from gcdash import precision

        chosen = precision.get(config.precision)
        print(f"gcdash: precision {chosen.name}: {chosen.label}; fp32 gives the exact numbers (the bound is measured "
              "in the README, 'Precision')", file=sys.stderr)  # fmt: skip
    transfer = getattr(args, "transfer", False)
    pool = sweep.RayPool(args.workers, args.gpus_per_worker, args.ray_address) if args.executor == "ray" else None
    progress, bar = _bar(len(ready.samples) * len(config.models) * (len(config.models) if transfer else 1))
    parts = Parts(args.out)  # rows reach the disk batch by batch; --out is locked till the end
    try:
        result = sweep.sweep(
            config, store, device=args.device, batch_size=args.batch_size, keep_maps=args.keep_maps, parts=parts,
            progress=progress, ray=pool, transfer=transfer, plan=ready,
        )  # fmt: skip
        result.write(args.out, per_image=False, parts=parts)  # the summary and, last, the manifest
        if transfer:
            _write_transfer(result.summary(), args.out)
    finally:
        bar.close()
        parts.close()
    table = _printed_table(result.summary())
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    print(f"\nwrote {args.out}/per_image.parquet, summary.csv, vid.csv ({result.n_rows} rows)")
    return 0


def _bar(total: int | None, desc: str = "sweep"):
    """A tqdm bar over ``total`` images on stderr (None: the total the progress reports) and the
    :data:`~gcdash.progress.Progress` that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc=desc, file=sys.stderr)

    def progress(done: int, reported: int, what: str) -> None:
        if total is None and bar.total != reported:
            bar.total = reported
        bar.set_postfix_str(what)
        bar.update(done - bar.n)

    return progress, bar


def _printed_table(summary):
    """The MOD/VID table with each extra comparison's MOD per eps (``mod_<name>@eps``) beside the MODs."""
    from gcdash import metrics, results
    from gcdash.config import eps_text

    table = results.mod_vid_table(summary)
    positive = summary[summary["eps"] > 0] if (summary["eps"] > 0).any() else summary
    for column in (f"mod_{name}" for name in metrics.dissimilarities() if f"mod_{name}" in summary.columns):
        wide = positive.pivot_table(index=results.GROUP, columns="eps", values=column, sort=False, dropna=False)
        wide.columns = [f"{column}@{eps_text(e)}" for e in wide.columns]
        table = table.merge(wide.reset_index(), on=results.GROUP, how="left")
    vids = [c for c in table.columns if c.startswith("vid")]
    return table[[c for c in table.columns if c not in vids] + vids]


def _write_transfer(summary, out: Path) -> None:
    """``transfer.csv`` (source, model, eps, accuracy, flip rate, MOD) and the MOD matrix of each eps > 0, printed."""
    from gcdash import manifest, results
    from gcdash.config import eps_text

    columns = ["source", "model", "layer", "eps", "n", "acc_clean", "acc_adv", "flip_rate", "mod"]
    try:
        summary[summary["eps"] > 0][columns].to_csv(out / "transfer.csv", index=False)
        manifest.add(out, "transfer.csv")
    except OSError as err:
        raise manifest.out_error(out, err) from None
    for eps in sorted(e for e in summary["eps"].unique() if e > 0):
        for value, what in (("acc_adv", "adversarial top-1"), ("mod", "MOD")):
            matrix = results.transfer_matrix(summary, eps, value)
            print(f"\n{what} at eps {eps_text(eps)}: rows crafted on, columns evaluated on (diagonal: white-box)")
            print(matrix.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    _sweep_arguments(p)
    p.add_argument(
        "--attacks", default="pgd,apgd-ce,apgd-dlr",
        help="attacks to take the per-image worst case over, each at its defaults (default: pgd,apgd-ce,apgd-dlr)",
    )  # fmt: skip
    p.set_defaults(eps="8/255")


def run_evaluate(args: argparse.Namespace) -> int:
    """Robust accuracy under each attack and the per-image worst case, with MOD under the strongest attack: print
    it and write ``evaluation.csv``."""
    from gcdash import attacks, evaluate, plan
    from gcdash.config import AttackConfig
    from gcdash.store import Store

    config = build_config(args)
    runs = [AttackConfig(name.strip()) for name in args.attacks.split(",") if name.strip()]
    for attack in runs:
        attacks.get(attack.name)  # an unknown name: one line listing the valid ones
    out = plan.check_out_dir(args.out)
    store = Store(args.cache)
    store.check()
    progress, bar = _bar(None, "evaluate")
    with bar:
        table = evaluate.evaluate(config, store, runs, device=args.device, batch_size=args.batch_size,
                                  progress=progress)  # fmt: skip
    table.to_csv(out / "evaluation.csv", index=False)
    for attack in runs:
        print(f"{attack.name}: {evaluate.budget(attack)}")
    print(evaluate.printed(table).to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    print(f"\nwrote {out}/evaluation.csv ({len(table)} rows)")
    return 0


def _fragility_arguments(p: argparse.ArgumentParser) -> None:
    _sweep_arguments(p)
    from gcdash.fragility import DEFAULT_ATTACKS

    names = ",".join(a.name for a in DEFAULT_ATTACKS)
    p.add_argument("--attacks", default=names, help=f"attacks to compare, each at its defaults (default: {names})")
    p.set_defaults(eps="8/255")


def run_fragility(args: argparse.Namespace) -> int:
    """MOD with the prediction kept under each attack, beside the noise control and the random-weights floor, with
    RIS/ROS/Max-Sensitivity and a sentence per model: print them and write ``fragility.csv``."""
    from gcdash import fragility, plan
    from gcdash.config import AttackConfig
    from gcdash.store import Store

    config = build_config(args)
    runs = [AttackConfig(name.strip()) for name in args.attacks.split(",") if name.strip()]
    fragility.check(config, runs)  # before the floors
    out = plan.check_out_dir(args.out)
    store = Store(args.cache)
    store.check()
    floors = fragility.floors_of(fragility.model_floors(config, args.device, args.batch_size))
    progress, bar = _bar(None, "fragility")
    with bar:
        table = fragility.fragility(config, store, runs, floors, device=args.device, batch_size=args.batch_size,
                                    progress=progress)  # fmt: skip
    table.to_csv(out / "fragility.csv", index=False)
    print(fragility.printed(table).to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a"))
    for model, sentence in fragility.sentences(table).items():
        print(f"\n{model}: {sentence}")
    print(f"\nwrote {out}/fragility.csv ({len(table)} rows)")
    return 0


def _sanity_arguments(p: argparse.ArgumentParser) -> None:
    _sweep_arguments(p)
    p.set_defaults(layers="all", eps="0")


def run_sanity(args: argparse.Namespace) -> int:
    """The sanity floor (Adebayo et al. 2018): write ``sanity.csv`` with the NISSIM between each layer's clean map
    and the map of the same model randomised in cascade from the top."""
    config = build_config(args)
    import pandas as pd

    from gcdash import data, plan, sanity

    device = plan.resolve_device(args.device)
    plan.check_out_dir(args.out)
    samples = plan.load_samples(config)
    _say_shortfall(samples, config.data.n, args.out)
    handles = plan.load_handles(config, device)
    tables = []
    for spec in config.models:
        handle = handles[spec.name].at_precision(config.precision)
        aligned, _ = data.align_labels(samples, handle.class_names, spec.name)
        print(f"{spec.name}: {len(sanity.groups(handle))} cascade steps × {len(aligned)} images", file=sys.stderr)
        tables.append(sanity.cascade(
            handle, aligned, config.layers, config.cam.method, batch_size=args.batch_size,
            params=dict(config.cam.params),
        ))  # fmt: skip
    table = pd.concat(tables, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "sanity.csv", index=False)
    last = table.groupby("model", sort=False)["randomised"].transform("last")
    floor = table[table["randomised"] == last][["model", "layer", "n", "nissim", "zero_rate"]]
    print("NISSIM of each layer's map to the fully randomised model's (the floor of unrelated maps):")
    print(floor.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    print(f"\nwrote {args.out}/sanity.csv ({len(table)} rows)")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "sweep": (
        "attack, explain and compare: write per_image.parquet, summary.csv, vid.csv",
        _sweep_arguments,
        run_sweep,
    ),
    "sanity": (
        "the sanity floor: NISSIM to the maps of the model randomised in cascade (Adebayo et al.): write sanity.csv",
        _sanity_arguments,
        run_sanity,
    ),
    "models": (
        "list the models, and how to name any torchvision, timm or own-code model",
        models_arguments,
        list_models,
    ),
    "evaluate": (
        "robust accuracy under PGD, APGD-CE and APGD-DLR, the per-image worst case, and MOD under the strongest",
        _evaluate_arguments,
        run_evaluate,
    ),
    "fragility": (
        "MOD with the prediction kept (explanation attacks) beside FGSM, PGD, noise and the floor; RIS/ROS",
        _fragility_arguments,
        run_fragility,
    ),
    "methods": ("list the CAM methods, their parameters and cost", lambda p: None, list_methods),
    "attacks": ("list the attacks, their parameters and cost", lambda p: None, list_attacks),
    "train-demo": ("retrain the shipped demo models (fixed seeds)", train_demo_arguments, train_demo),
    "cache": (
        "show or clear the cache",
        lambda p: (p.add_argument("action", choices=["info", "clear"]), p.add_argument("--cache", type=Path)),
        cache_command,
    ),
    "verify": (
        "check a sweep's --out folder against its manifest: parts, their rows and checksums, summary.csv",
        lambda p: p.add_argument("dir", type=Path, help="the folder a sweep wrote (--out)"),
        verify_command,
    ),
}


def _trust_own_models(args: argparse.Namespace) -> None:
    """The ``py:`` models on the command line are the operator's: trusted to run (see gcdash.models.own)."""
    from gcdash.models import own

    params = getattr(args, "attack_param", None) or []
    named = [*str(getattr(args, "models", "") or "").split(","), *(p.partition("=")[2] for p in params)]
    for item in named:
        name = item.strip()
        if own.is_own_name(name):
            own.trust(name)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, ``gcdash: error: … (see PROG --help)`` and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gcdash: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="python -m gcdash", description=__doc__.splitlines()[0].replace("``", ""))
    sub = top.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        _trust_own_models(args)
        return COMMANDS[args.command][2](args)
    except GcdashError as err:
        print(f"gcdash: error: {err}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("gcdash: interrupted; every finished cell is kept in the cache", file=sys.stderr)
        return 130
