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


def _typed(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` (a bool from text: "1", "true", "yes" are True)."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return type(default)(value) if isinstance(default, int | float | str) else value


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
        try:
            params = {k: _typed(v, overrides[k]) if k in overrides else v for k, v in self.defaults.items()}
        except (TypeError, ValueError) as err:
            raise GcdashError(f"{self.kind} {self.name}: a parameter has the wrong type ({err})") from None
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
