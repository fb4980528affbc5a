"""Everything resolved before the first model pass: the device, the output folder, the samples, the model handles
(one loader, :func:`load_handle`, for every caller: CLI, pages, Ray workers, transfer sources), the labels aligned
to each model, and the cost in model passes (one formula, :func:`cost`). :func:`make` puts them in a :class:`Plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gcdash import data, models
from gcdash.config import AttackConfig, CamConfig, ModelSpec, SweepConfig
from gcdash.data import Samples
from gcdash.errors import GcdashError
from gcdash.models.handle import ModelHandle


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GcdashError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise GcdashError(f"unknown device {device!r}; choose from: cpu, cuda")
    try:
        torch.device(device)  # ``cpu:abc`` is refused here, not by a traceback at the first pass
    except RuntimeError:
        raise GcdashError(f"--device {device!r} is not a device; write cpu, cuda or cuda:N") from None
    return device


def check_out_dir(out_dir: str | Path) -> Path:
    """Make sure the tables can be written to ``out_dir`` (created if needed) before any work: one clear line if
    it is a file or cannot be written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GcdashError(f"--out {out} is a file; give a folder for the tables")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".gcdash-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise GcdashError(f"--out {out} cannot be written: {err.strerror or err}") from None
    return out


def load_samples(config: SweepConfig) -> Samples:
    return data.load(config.data.source, n=config.data.n, seed=config.data.seed, **dict(config.data.options))


def load_handle(spec: ModelSpec | str, device: str) -> ModelHandle:
    """The one way a model is loaded, for every caller (the CLI, the pages, Ray workers, transfer sources): the
    model a :class:`~gcdash.config.ModelSpec` names (a bare name: its default weights), on ``device``."""
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    return models.load(spec.name, weights=spec.weights, **dict(spec.options)).to(device)


def load_handles(
    config: SweepConfig, device: str, loaded: Mapping[str, ModelHandle] | None = None
) -> dict[str, ModelHandle]:
    """Each model of ``config`` on ``device`` (taken from ``loaded`` where it is there, else loaded), its layer
    selection checked and, for a transfer attack, that its source fits it (errors before any work). A source among
    the models is used with their weights; another one is loaded with its default weights and returned too."""
    from gcdash import precision as precisions
    from gcdash.engine.attack import checked_source

    handles = dict(loaded or {})
    for spec in config.models:
        handle = (handles.get(spec.name) or load_handle(spec, device)).to(device)
        handle.resolve_layers(config.layers)
        precisions.get(config.precision).check(device, f"model {spec.name}")  # refused before any work
        handles[spec.name] = handle
    source = config.attack.source
    if source:
        if source not in handles:
            handles[source] = load_handle(source, device)
        for spec in config.models:
            checked_source(handles[spec.name], handles[source])
    return handles


def check_labels(handle: ModelHandle, samples: Samples) -> None:
    """Labels must name classes the model has: a label past its last class has no logit to attack or explain."""
    known = samples.labels[samples.labels >= 0]
    n_classes = len(handle.class_names)
    if known.size and int(known.max()) >= n_classes:
        names = getattr(samples, "class_names", None) or []
        where = f" ({len(names)}: {', '.join(map(str, names[:8]))}{'…' if len(names) > 8 else ''})" if names else ""
        raise GcdashError(
            f"the images carry labels up to {int(known.max())}{where} but model {handle.name} has {n_classes} "
            f"classes: keep classes it knows (--classes) or give its class names (--class-names)"
        )


def model_samples(handle: ModelHandle, samples: Samples, name: str | None = None) -> Samples:
    """``samples`` labelled for ``handle``: the one labelling rule (:func:`gcdash.data.align_labels`: a class
    name maps to the model's class of that name, a class it lacks is unlabelled, -1), then checked. Every table,
    the CLI's and the pages' (gallery included), is computed from samples passed through here."""
    aligned, _ = data.align_labels(samples, handle.class_names, name or handle.name)
    check_labels(handle, aligned)
    return aligned


def check_inputs(config: SweepConfig, samples: Samples, handles: Mapping[str, ModelHandle]) -> list[str]:
    """Everything about the inputs that can be checked before any model pass; returns lines for people (classes
    of the data that a model does not have)."""
    notes = []
    for spec in config.models:
        aligned, note = data.align_labels(samples, handles[spec.name].class_names, spec.name)
        check_labels(handles[spec.name], aligned)
        notes += [note] if note else []
    return notes


@dataclass(frozen=True)
class Cost:
    """Model passes per image of one model on a cold cache: the CAM method's passes for each explained input (the
    clean image and one per eps > 0; None: one per channel of each layer), the attack's own passes
    (``Attack.passes``: FGSM 1, PGD steps × eps, noise 0) and, with faithfulness, its forward passes per map
    (Petsiuk et al. 2018) for each of ``maps`` (inputs × layers). ``shared``: 1 where the attack's gradient rides
    on the clean CAM pass's forward (FGSM with a one-pass gradient method: a second backward pass, no pass of its
    own, so ``attack`` is 0)."""

    inputs: int
    cam_per_input: int | None
    attack: int
    maps: int = 0
    faithfulness_per_map: int = 0
    shared: int = 0

    @property
    def one_pass_per_input(self) -> int:
        """Passes per image counting one CAM pass per input (Grad-CAM's) and the attack's."""
        return self.inputs + self.attack


def cost(
    eps: tuple[float, ...], attack: AttackConfig, cam: CamConfig, n_layers: int = 0, precision: str = "fp32"
) -> Cost:
    """The one pass-count formula (:class:`Cost`), read by the CLI, the Runs page's estimate and the pages' slow
    confirmation; ``n_layers`` > 0 counts faithfulness over that many layers' maps. The attack rides on the clean
    pass unless it is crafted elsewhere: on another model, or at another precision (the ``-cam`` precisions)."""
    from gcdash import attacks, cams
    from gcdash import precision as precisions
    from gcdash.metrics.faithfulness import Faithfulness

    n_eps = sum(e > 0 for e in eps)
    method, crafted = cams.get(cam.method), attacks.get(attack.name)
    inputs = 1 + n_eps
    elsewhere = bool(attack.source) or precisions.get(precision).attack is not None
    shared = int(n_eps > 0 and crafted.gradient_state and not elsewhere and method.shares_forward)
    return Cost(
        inputs=inputs,
        cam_per_input=method.passes(method.params(**dict(cam.params))),
        attack=0 if shared else crafted.passes(n_eps, crafted.params(**dict(attack.params))),
        maps=inputs * n_layers,
        faithfulness_per_map=Faithfulness().passes if n_layers else 0,
        shared=shared,
    )


@dataclass
class Plan:
    """A sweep resolved before its first pass: the config, the device, the samples, each model's handle (and a
    transfer source's), lines for people about the inputs, and the cost per image of each model."""

    config: SweepConfig
    device: str
    samples: Samples
    handles: dict[str, ModelHandle]
    notes: list[str] = field(default_factory=list)
    cost: Cost | None = None


def make(
    config: SweepConfig,
    device: str | None = None,
    *,
    samples: Samples | None = None,
    handles: Mapping[str, ModelHandle] | None = None,
) -> Plan:
    """Resolve ``config``: the device (checked), the samples (``samples`` skips loading), the handles (those in
    ``handles`` are used, the rest loaded), the labels checked against every model, and the cost."""
    device = resolve_device(device)
    samples = samples if samples is not None else load_samples(config)
    loaded = load_handles(config, device, handles)
    notes = check_inputs(config, samples, loaded)
    n_layers = len(loaded[config.models[0].name].resolve_layers(config.layers)) if config.faithfulness else 0
    costs = cost(config.eps, config.attack, config.cam, n_layers, config.precision)
    return Plan(config, device, samples, loaded, notes, costs)
