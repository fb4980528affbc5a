"""What a sweep is, as frozen dataclasses with a stable ``key()``: models × images × eps × layers × method.

Eps values accept fractions (``"4/255"``); the default grid is the usual L∞ budgets 1, 2, 4, 8, 16 /255 with 0 as
the control (the paper does not publish its values; see docs/method.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from gcdash.errors import GcdashError

DEFAULT_EPS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
MAX_EPS = 1.0  # an L∞ budget on [0, 1] pixels: above 1 every pixel can already reach any value
Params = tuple[tuple[str, Any], ...]


def parse_eps(text: str) -> tuple[float, ...]:
    """``"0,1/255,0.008"`` → sorted unique floats ≥ 0 (fractions allowed)."""
    values, typed = [], {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            values.append(float(Fraction(part)))
            typed.setdefault(values[-1], part)  # messages quote the value as the user wrote it
        except (ValueError, ZeroDivisionError):
            raise GcdashError(f"eps {part!r} is not a number (use e.g. 0.004 or 4/255)") from None
        except OverflowError:
            raise GcdashError(f"eps {part!r} is out of range: eps is at most {MAX_EPS:g} on [0, 1] pixels") from None
    if not values:
        raise GcdashError("give at least one eps value, e.g. --eps 4/255,8/255")
    bad = [v for v in values if v < 0]
    if bad:
        raise GcdashError(f"eps must be ≥ 0, got {typed[bad[0]]}")
    big = [v for v in values if v > MAX_EPS]
    if big:
        raise GcdashError(f"eps {typed[big[0]]} is above {MAX_EPS:g}: an L∞ budget on [0, 1] pixels cannot exceed 1")
    return tuple(sorted(set(values)))


def eps_text(eps: float) -> str:
    """The inverse of :func:`parse_eps` for display: 0 → "0", 8/255 → "8/255" (a whole number of 1/255 steps),
    anything else as a short float ("0.01")."""
    steps = eps * 255
    if eps == 0:
        return "0"
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:g}"


def _key(obj: object) -> str:
    text = json.dumps(asdict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model name, its weights (``"default"``, ``None``, ``"imagenet"`` or a file path) and build
    options passed to the model's builder (only those given)."""

    name: str
    weights: str | None = "default"
    options: Params = ()  # build options, e.g. (("class_names", "names.txt"), ("crop", False))


@dataclass(frozen=True)
class DataConfig:
    """An image source spec (``demo``, ``folder:PATH``), how many images, the subset seed, source options."""

    source: str = "demo"
    n: int | None = 200
    seed: int = 0
    options: Params = ()


@dataclass(frozen=True)
class CamConfig:
    """A CAM method name and its parameters (empty = the method's defaults)."""

    method: str = "gradcam"
    params: Params = ()


@dataclass(frozen=True)
class AttackConfig:
    """An attack name and its parameters (empty = its defaults); ``source`` among them crafts the perturbation
    on another registered model (a transfer attack)."""

    name: str = "fgsm"
    params: Params = ()

    @property
    def source(self) -> str | None:
        """The registered model the perturbation is crafted on, or None (the attacked model itself)."""
        return dict(self.params).get("source") or None

    def crafted_on(self, sources: tuple[str, ...] | list[str]) -> list[AttackConfig]:
        """This attack crafted on each of ``sources`` (``source=NAME``), for the transfer matrix: evaluated on every
        model, the source equal to the model is the white-box attack (the same cells)."""
        from gcdash import attacks

        if not attacks.get(self.name).uses_model:
            raise GcdashError(f"attack {self.name} ignores the model, so it has no transfer matrix; use fgsm or pgd")
        own = [(k, v) for k, v in self.params if k != "source"]
        return [AttackConfig(self.name, tuple(sorted([*own, ("source", name)]))) for name in sources]


@dataclass(frozen=True)
class CompareConfig:
    """A map comparison (``gcdash.metrics.dissimilarities()``) and its parameters."""

    name: str = "nissim"
    params: Params = ()


NISSIM = CompareConfig("nissim")


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides a sweep's numbers (device and batch size do not, up to float tolerance).
    ``comparisons`` always start with NISSIM, the paper's; others add a per-image column each."""

    models: tuple[ModelSpec, ...]
    data: DataConfig = field(default_factory=DataConfig)
    eps: tuple[float, ...] = DEFAULT_EPS
    layers: str | tuple[str, ...] = "default"
    cam: CamConfig = field(default_factory=CamConfig)
    target: str = "pred"
    attack: AttackConfig = field(default_factory=AttackConfig)
    comparisons: tuple[CompareConfig, ...] = (NISSIM,)
    faithfulness: bool = False  # deletion / insertion areas of every map (gcdash.metrics.faithfulness)
    precision: str = "fp32"  # of the model passes (gcdash.precision): fp32, bf16, fp16 (CUDA)
    stability: bool = False  # RIS, ROS and Max-Sensitivity of every pair (gcdash.metrics.stability)

    def __post_init__(self) -> None:
        from gcdash import precision

        names = [c.name for c in self.comparisons]
        if not names or names[0] != "nissim" or len(set(names)) != len(names):
            raise GcdashError(f"comparisons must start with nissim and name each once, got {names}")
        precision.get(self.precision)

    def key(self) -> str:
        """A stable 16-hex-digit digest of the configuration (``faithfulness`` and ``stability`` count only when on,
        ``precision`` only when not fp32, so the keys of sweeps made before they existed stay the same)."""
        fields = asdict(self)
        for flag in ("faithfulness", "stability"):
            if not fields[flag]:
                del fields[flag]
        if fields["precision"] == "fp32":
            del fields["precision"]
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    def source_column(self, model: str) -> str:
        """Who crafted the perturbation ``model`` is evaluated on: the transfer source, the model itself, or
        "none" (the noise control)."""
        from gcdash import attacks

        if not attacks.get(self.attack.name).uses_model:
            return "none"
        return self.attack.source or model

    def transfers(self) -> list[SweepConfig]:
        """The transfer matrix: this sweep with its attack crafted on each of its models in turn."""
        sources = [spec.name for spec in self.models]
        return [replace(self, attack=attack) for attack in self.attack.crafted_on(sources)]
