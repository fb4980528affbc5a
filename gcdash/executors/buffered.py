"""What a Ray worker writes, kept until the driver stores it: the driver stays the only writer of the cache."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from gcdash.errors import GcdashError
from gcdash.store import Store


class BufferedStore:
    """The store interface the engine uses (``get_arrays``, ``put_arrays``, ``get_scalars``, ``put_scalars``):
    reads go to the buffer, then to ``base`` (a read-only cache, or None); writes stay in the buffer until
    :meth:`drain` hands them over."""

    read_only = False

    def __init__(self, base: Store | None) -> None:
        self.base = base
        self.arrays: dict[str, tuple[np.ndarray, str, str]] = {}
        self.scalars: dict[str, tuple[float, str, str]] = {}

    def _base(self, method: str, keys: Sequence[str]) -> dict:
        if self.base is None:
            return {}
        try:
            return getattr(self.base, method)(keys)
        except (GcdashError, OSError):
            self.base = None  # an unreadable cache: compute instead, as an empty one would
            return {}

    def get_arrays(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found = {k: self.arrays[k][0] for k in keys if k in self.arrays}
        rest = [k for k in keys if k not in found]
        return {**found, **(self._base("get_arrays", rest) if rest else {})}

    def get_scalars(self, keys: Sequence[str]) -> dict[str, float]:
        found = {k: self.scalars[k][0] for k in keys if k in self.scalars}
        rest = [k for k in keys if k not in found]
        return {**found, **(self._base("get_scalars", rest) if rest else {})}

    def put_arrays(self, items: Mapping[str, np.ndarray], kind: str, model: str = "") -> None:
        self.arrays.update({k: (np.asarray(v), kind, model) for k, v in items.items()})

    def put_scalars(self, items: Mapping[str, float], kind: str, model: str = "") -> None:
        self.scalars.update({k: (float(v), kind, model) for k, v in items.items()})

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Every write already waits in the buffer for :meth:`drain` (the store's one-transaction block)."""
        yield

    def drain(self) -> tuple[dict, dict]:
        """Everything written since the last drain, emptied from the buffer."""
        out = (self.arrays, self.scalars)
        self.arrays, self.scalars = {}, {}
        return out


def store_writes(store: Store, arrays: Mapping[str, tuple], scalars: Mapping[str, tuple]) -> None:
    """Write a worker's buffered entries into ``store`` in one transaction, grouped by (kind, model) as the engine
    wrote them."""
    with store.deferred():
        for items, put in ((arrays, store.put_arrays), (scalars, store.put_scalars)):
            groups: dict[tuple[str, str], dict] = {}
            for key, (value, kind, model) in items.items():
                groups.setdefault((kind, model), {})[key] = value
            for (kind, model), values in groups.items():
                put(values, kind, model)


def _read_only(cache: str | None) -> Store | None:
    if cache is None or not Path(cache).is_dir():
        return None
    try:
        return Store(cache, read_only=True)
    except GcdashError:
        return None
