"""A tiny name → object registry (the timm pattern): ``register``, ``get``, ``names``; unknown names fail with
the list of valid ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from gcdash.errors import GcdashError

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered mapping from a public name to an entry, with user-facing errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register ``entry`` under ``name``; a second registration of a name is an error unless ``replace``."""
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise GcdashError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
KIND_WORDS = {bool: "true or false (or yes/no, 1/0)", int: "an integer", float: "a number", str: "text"}


def parse_bool(value: Any, name: str = "value") -> bool:
    """``value`` as a bool: True/False themselves, or the words of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any
    case); anything else is refused, not read as False."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise GcdashError(f"{name} must be {KIND_WORDS[bool]}, got {str(value)!r}")


def typed_value(default: Any, value: Any, name: str = "value") -> Any:
    """``value`` as the type of ``default``: the one place parameters from text are typed (the CLI and every
    ``params()``); a value that is not of that type is refused with one line naming ``name``."""
    if isinstance(default, bool):
        return parse_bool(value, name)
    if not isinstance(default, int | float | str):
        return value
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        what = KIND_WORDS.get(type(default), f"a {type(default).__name__}")
        raise GcdashError(f"{name} must be {what}, got {str(value)!r}") from None


class Configurable:
    """A registry entry with named parameters: ``defaults``, :meth:`params` (unknown names refused, values typed
    like their defaults, then :meth:`check`-ed) and :meth:`key`, its part of a cache key."""

    kind: ClassVar[str] = "entry"
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    hints: ClassVar[dict[str, str]] = {}  # parameter → what it means, for the sidebar's help

    def params(self, **overrides: Any) -> dict[str, Any]:
        """The full parameter set: defaults updated with ``overrides``."""
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise GcdashError(
                f"{self.kind} {self.name} has no parameter {sorted(unknown)[0]!r}; it takes: {self.takes()}"
            )
        params = {
            k: typed_value(v, overrides[k], f"{self.kind} {self.name} {k}") if k in overrides else v
            for k, v in self.defaults.items()
        }
        self.check(params)
        return params

    def takes(self) -> list[str]:
        """The parameter names it accepts, for error messages."""
        return sorted(self.defaults)

    def check(self, params: dict[str, Any]) -> None:
        """Refuse parameter values that make no sense (a GcdashError naming the parameter); nothing by default."""
        return None

    def key(self, params: dict[str, Any]) -> list:
        """Its part of a cache key: the name and every parameter."""
        return [self.name, sorted(params.items())]
