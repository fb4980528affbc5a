"""What the sidebar selects, and how it travels in the URL (pure Python: no streamlit here).

The selection's values are named by :data:`PARAMS` (plus the dynamic names ``p.<param>`` for the CAM method's
parameters and ``layers.<model>`` for custom layers); they live in session state (:mod:`gcdash.ui.values`) and in
the URL's query string, so a view can be shared as a link. :func:`url_to_state` reads a query string into values
(bad ones are dropped with a message); :func:`state_to_url` writes the values that differ from the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gcdash.config import (
    DEFAULT_EPS,
    NISSIM,
    AttackConfig,
    CamConfig,
    CompareConfig,
    DataConfig,
    ModelSpec,
    SweepConfig,
    eps_text,
    parse_eps,
)
from gcdash.registry import parse_bool

PARAM_PREFIX = "p."  # p.<name>: a parameter of the CAM method
ATTACK_PREFIX = "a."  # a.<name>: a parameter of the attack
LAYERS_PREFIX = "layers."  # layers.<model>: the custom layers of a model
WEIGHTS_PREFIX = "weights."  # weights.<model>: a checkpoint path for that model ("" = its default weights)
NAMES_PREFIX = "classnames."  # classnames.<model>: its class names (.txt, .json or an image folder)


def parse_eps_texts(texts: list[str] | tuple[str, ...]) -> tuple[float, ...]:
    """Widget eps labels → sorted floats (a GcdashError names a bad one)."""
    return parse_eps(",".join(texts))


@dataclass(frozen=True)
class Param:
    """One selection value: its session-state key (also its URL name) and default. The default's type decides
    how the value is written to and read from the URL (lists as repeated parameters)."""

    key: str
    default: Any

    def encode(self, value: Any) -> list[str] | None:
        """URL values for ``value``, or None when it equals the default (kept out of the URL)."""
        return encode_value(value, self.default)

    def decode(self, raw: list[str]) -> Any:
        """The widget value from URL values; ValueError when they do not fit."""
        return decode_value(raw, self.default)


def encode_value(value: Any, default: Any) -> list[str] | None:
    if value is None or value == default:
        return None
    if isinstance(default, list | tuple):
        return [str(v) for v in value] or [""]
    if isinstance(default, bool):
        return ["1" if value else "0"]
    return [str(value)]


def decode_value(raw: list[str], default: Any) -> Any:
    """Inverse of :func:`encode_value`; the last value wins for scalars (as in ``st.query_params``)."""
    if isinstance(default, list | tuple):
        return [v for v in raw if v != ""]
    text = raw[-1] if raw else ""
    if isinstance(default, bool):
        return parse_bool(text)  # the words every parameter takes; a GcdashError is a ValueError
    return type(default)(text) if default is not None else text


def value_text(value: Any) -> str:
    """A value as a link's reader says it: on/off, comma-separated lists, "none" for an empty one."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


DEFAULT_MODELS = ["demo-vgg", "demo-resnet"]
DEFAULT_EPS_TEXTS = [eps_text(e) for e in DEFAULT_EPS]

PARAMS: dict[str, Param] = {
    p.key: p
    for p in (
        Param("source", "demo"),
        Param("n", 24),
        Param("seed", 0),
        Param("split", "test"),
        Param("classes", []),
        Param("folder", ""),
        Param("listing", ""),
        Param("models", list(DEFAULT_MODELS)),
        Param("crop", True),
        Param("method", "gradcam"),
        Param("layers", "default"),
        Param("eps", list(DEFAULT_EPS_TEXTS)),
        Param("eps1", "8/255"),
        Param("attack", "fgsm"),
        Param("compare", []),
        Param("faith", False),
        Param("target", "pred"),
        Param("precision", "fp32"),
        # page-level values worth sharing: the gallery's model and enlarged image, the distribution plot kind
        Param("gmodel", ""),
        Param("image", ""),
        Param("plot", "violin"),
    )
}


def url_to_state(query: Mapping[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    """Query parameters (name → values) → (widget values by key, problems). Unknown names are ignored; a value
    that cannot be read is reported and left out (its widget keeps the default)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in query.items():
        if key in PARAMS:
            try:
                values[key] = PARAMS[key].decode(list(raw))
            except ValueError:
                default = value_text(PARAMS[key].default)
                problems.append(f"link parameter {key}={raw[-1] if raw else ''!r} is not valid; using {default}")
        elif key.startswith(LAYERS_PREFIX):
            values[key] = decode_value(list(raw), [])
        elif key.startswith((WEIGHTS_PREFIX, NAMES_PREFIX)):
            values[key] = raw[-1] if raw else ""
        elif key.startswith((PARAM_PREFIX, ATTACK_PREFIX)):
            values[key] = raw[-1] if raw else ""  # typed by the sidebar, which knows the method's defaults
    return values, problems


def state_to_url(values: Mapping[str, Any], dynamic_defaults: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Widget values → the query parameters that differ from their defaults. ``dynamic_defaults`` gives the
    defaults of the dynamic keys on show (method parameters, custom layers); other dynamic keys are left out."""
    out: dict[str, list[str]] = {}
    defaults = {**{k: p.default for k, p in PARAMS.items()}, **(dynamic_defaults or {})}
    for key, default in defaults.items():
        if key in values:
            encoded = encode_value(values[key], default)
            if encoded is not None:
                out[key] = encoded
    return out


@dataclass(frozen=True)
class Selection:
    """The sidebar's choice, as the pages use it: data, models, method, layers, eps set and gallery eps, target."""

    data: DataConfig = field(default_factory=lambda: DataConfig("demo", 24, 0, (("split", "test"),)))
    models: tuple[str, ...] = tuple(DEFAULT_MODELS)
    method: str = "gradcam"
    params: tuple[tuple[str, Any], ...] = ()
    layer_mode: str = "default"  # default | all | custom
    custom_layers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    eps: tuple[float, ...] = DEFAULT_EPS
    gallery_eps: float = 8 / 255
    target: str = "pred"
    device: str = "cpu"
    model_specs: tuple[tuple[str, ModelSpec], ...] = ()  # per model: weights and build options, where chosen
    attack: AttackConfig = field(default_factory=AttackConfig)
    comparisons: tuple[str, ...] = ()  # computed beside NISSIM
    faithfulness: bool = False  # deletion / insertion areas of every map
    precision: str = "fp32"  # of the model passes (gcdash.precision)

    def spec(self, model: str) -> ModelSpec:
        """How ``model`` is loaded: its checkpoint and build options from the sidebar, else its defaults."""
        return dict(self.model_specs).get(model) or ModelSpec(model)

    def layers_for(self, model: str) -> str | tuple[str, ...]:
        """The layer selection of ``model``: "default", "all" or its custom names ("default" if none)."""
        if self.layer_mode != "custom":
            return self.layer_mode
        return dict(self.custom_layers).get(model) or "default"

    def method_params(self, method: str) -> tuple[tuple[str, Any], ...]:
        """The sidebar's parameters when ``method`` is the sidebar's method, else none (its defaults)."""
        return self.params if method == self.method else ()

    def config(
        self,
        model: str,
        *,
        layers: str | tuple[str, ...] | None = None,
        method: str | None = None,
        eps: tuple[float, ...] | None = None,
        attack: AttackConfig | None = None,
    ) -> SweepConfig:
        """The one-model sweep config behind a page's table (overrides: layers, method, eps, attack)."""
        method = method or self.method
        return SweepConfig(
            models=(self.spec(model),),
            data=self.data,
            eps=self.eps if eps is None else tuple(eps),
            layers=self.layers_for(model) if layers is None else layers,
            cam=CamConfig(method, self.method_params(method)),
            target=self.target,
            attack=attack or self.attack,
            comparisons=(NISSIM, *(CompareConfig(name) for name in self.comparisons)),
            faithfulness=self.faithfulness,
            precision=self.precision,
        )

    def sweep_configs(self, models: tuple[str, ...] | None = None) -> list[SweepConfig]:
        """What the Runs page sweeps: one config for all ``models`` (default: the selected ones), or one per model
        when layers are picked per model (a config has one layer choice for all its models)."""
        names = tuple(models or self.models)
        if self.layer_mode == "custom":
            return [self.config(name) for name in names]
        return [replace(self.config(names[0]), models=tuple(self.spec(name) for name in names))]

    def _attack_params(self) -> str:
        return f" ({', '.join(f'{k}={v}' for k, v in self.attack.params)})" if self.attack.params else ""

    def describe(self) -> str:
        """One line for captions and reports."""
        eps = ", ".join(eps_text(e) for e in self.eps)
        n = "all" if self.data.n is None else self.data.n
        return (
            f"{n} images from {self.data.source} · models {', '.join(self.models)} · {self.method} · "
            f"attack {self.attack.name}{self._attack_params()} · "
            f"layers {self.layer_mode} · eps {eps} · target {self.target} · {self.device}"
        )
