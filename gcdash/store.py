"""The on-disk cache: content-addressed cells in one SQLite file under ``cache/`` (or ``$GCDASH_CACHE``).

- Keys are SHA-256 digests of everything a value depends on (see :func:`cell_key`), schema version included.
- Arrays are stored as ``.npy`` bytes with a CRC; they are read with ``allow_pickle=False`` — nothing is
  ever unpickled. Scalars carry a CRC of their key and their float64 bytes. An entry that does not check out is
  dropped and reported as a miss (recomputed). Non-finite values (NaN, inf) are refused: they never enter.
- A run's stored table (the Runs page's copy) carries a CRC of its key, config and bytes; a damaged one is refused
  with one line, not served.
- A cache that cannot be written (a read-only folder, ``read_only=True``) still serves reads; a write to it, a full
  disk or a path that is not a folder is one :class:`~gcdash.errors.GcdashError` naming the cache.
- Writes go in transactions (WAL journal), so a killed sweep leaves no entry that reads as valid, and several
  processes or threads can fill one cache at once; identical keys hold identical values, so ``INSERT OR
  REPLACE`` races are harmless.
- A database file that SQLite cannot read at all is moved aside (``*.corrupt-<time>``) and a fresh one started.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from gcdash.errors import GcdashError

SCHEMA_VERSION = 2  # 2: keys.py (per-variant keys, attack states, comparisons)
DB_NAME = "gcdash.sqlite"
_REPO_CACHE = Path(__file__).resolve().parent.parent / "cache"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS arrays (key TEXT PRIMARY KEY, kind TEXT, model TEXT, nbytes INTEGER, crc INTEGER,
                                   created REAL, blob BLOB);
CREATE TABLE IF NOT EXISTS scalars (key TEXT PRIMARY KEY, kind TEXT, model TEXT, value REAL, crc INTEGER);
CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, created REAL, config TEXT, n_rows INTEGER, nbytes INTEGER,
                                 blob BLOB, crc INTEGER);
"""
_CHUNK = 500  # keys per SELECT ... IN (...)
_PUT_ARRAY = "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?, ?)"
_PUT_SCALAR = "INSERT OR REPLACE INTO scalars VALUES (?, ?, ?, ?, ?)"


def default_root() -> Path:
    """``$GCDASH_CACHE`` if set, else the repository's ``cache/`` folder (or ``~/.cache/gcdash`` outside one)."""
    env = os.environ.get("GCDASH_CACHE")
    if env:
        return Path(env).expanduser()
    return _REPO_CACHE if _REPO_CACHE.is_dir() else Path.home() / ".cache" / "gcdash"


def cell_key(*parts: object) -> str:
    """SHA-256 over the canonical JSON of ``parts`` and the schema version."""
    text = json.dumps([SCHEMA_VERSION, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def encode(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def scalar_crc(key: str, value: float) -> int:
    """CRC-32 of a scalar's key and its float64 bytes: a flipped bit in either is a mismatch."""
    return zlib.crc32(key.encode() + struct.pack("<d", value))


def run_crc(key: str, config: str, blob: bytes) -> int:
    """CRC-32 of a run's key, config text and stored table: a flipped bit in any is a mismatch."""
    return zlib.crc32(blob, zlib.crc32(f"{key}\n{config}\n".encode()))


def check_finite(kind: str, values: Iterable[float | np.ndarray]) -> None:
    """The last guard: a NaN or an infinity is never stored (the engine refuses them earlier, naming the model)."""
    for value in values:
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ValueError(f"refusing to store a non-finite {kind}")


# SQLite's words for a cache it cannot write, and what they mean for a person
_WRITE_ERRORS = {
    "readonly": "is read-only",
    "unable to open": "cannot be opened (is it a folder you may write to?)",
    "disk is full": "is on a full disk",
    "disk i/o": "hit a disk error",
}


_OPENING = threading.Lock()


def _retry_locked(step, seconds: float = 60.0) -> object:
    """Run ``step``, retrying while SQLite says the database is locked: switching a fresh file to WAL and creating
    the schema need a moment's exclusive lock, which another process opening the same cache may hold, and those
    calls fail at once instead of waiting for the busy timeout."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return step()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store:
    """A cache rooted at ``root`` (created on first use). Thread-safe: one SQLite connection per thread.
    ``read_only`` (or a folder this process may not write) opens it for reads only."""

    def __init__(self, root: str | Path | None = None, read_only: bool = False) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.path = self.root / DB_NAME
        self._read_only = read_only
        self._local = threading.local()

    @property
    def read_only(self) -> bool:
        """True when the cache serves reads only (asked for, or a folder or file this process cannot write)."""
        if self._read_only:
            return True
        if self.path.exists():
            return not (os.access(self.path, os.W_OK) and os.access(self.root, os.W_OK))
        return self.root.is_dir() and not os.access(self.root, os.W_OK)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold this thread's writes of arrays and scalars and make them in one transaction when the block ends
        (one commit per batch of cells, not one per kind of value); reads in the block see them. What was held is
        written even when the block fails, so finished work is never lost. Nested blocks join the outer one."""
        if getattr(self._local, "held", None) is not None:
            yield
            return
        self._local.held = {"arrays": {}, "scalars": {}}
        try:
            yield
        finally:
            held, self._local.held = self._local.held, None
            self._write_many(
                [
                    (_PUT_ARRAY, [row for row, _ in held["arrays"].values()]),
                    (_PUT_SCALAR, list(held["scalars"].values())),
                ]
            )

    def _held(self, kind: str) -> dict | None:
        held = getattr(self._local, "held", None)
        return None if held is None else held[kind]

    def check(self) -> None:
        """Open the cache now, so that a bad location is one clear error before any work."""
        self._run(lambda conn: conn.execute("SELECT 1").fetchall())

    # -- connection ---------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_read_only() if self.read_only else self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.root.exists() and not self.root.is_dir():
            raise GcdashError(f"cache {self.root} is a file, not a folder; give a folder with --cache or $GCDASH_CACHE")
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60.0)
        with _OPENING:  # threads of this process set up a fresh file one at a time
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            _retry_locked(lambda: _migrate(conn))
            _retry_locked(lambda: conn.executescript(_SCHEMA))
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise GcdashError(f"cache {self.root} is read-only and holds no cache yet; give a writable --cache")
        # with a write-ahead log beside it, read through it (mode=ro); a checkpointed file cannot change (immutable)
        wal = Path(f"{self.path}-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True, timeout=60.0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _quarantine(self) -> None:
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(f"{src}.corrupt-{stamp}"))

    def _run(self, fn):
        """Run ``fn(conn)``; a corrupt database is moved aside and ``fn`` retried on a fresh one; a cache that
        cannot be written is one clear error."""
        try:
            try:
                return fn(self._conn())
            except sqlite3.DatabaseError as err:
                if isinstance(err, sqlite3.OperationalError) and "malformed" not in str(err):
                    raise
                if self.read_only:
                    raise GcdashError(f"cache {self.path} is damaged and read-only; give another --cache") from None
                self._quarantine()
                return fn(self._conn())
        except sqlite3.OperationalError as err:
            raise self._explain(err) from None
        except OSError as err:
            raise GcdashError(f"cache {self.root} cannot be used: {err.strerror or err}") from None

    def _explain(self, err: sqlite3.OperationalError) -> Exception:
        text = str(err).lower()
        for words, meaning in _WRITE_ERRORS.items():
            if words in text:
                return GcdashError(
                    f"cache {self.path} {meaning}: nothing half-written was kept; free space or give another --cache"
                )
        return err

    # -- arrays -------------------------------------------------------------------------------------------
    def get_arrays(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored arrays among ``keys``; missing and damaged entries are simply absent (damaged ones are
        deleted, so the next write replaces them)."""
        held = self._held("arrays") or {}
        found = {k: held[k][1] for k in keys if k in held}
        rows = self._select("SELECT key, crc, blob FROM arrays WHERE key IN ({})", [k for k in keys if k not in found])
        damaged = []
        for key, crc, blob in rows:
            try:
                if zlib.crc32(blob) != crc:
                    raise ValueError("crc mismatch")
                found[key] = decode(blob)
            except (ValueError, OSError, EOFError):
                damaged.append(key)
        if damaged and not self.read_only:
            self._run(lambda c: self._delete(c, "arrays", damaged))
        return found

    def put_arrays(self, items: Mapping[str, np.ndarray], kind: str, model: str = "") -> None:
        check_finite(kind, items.values())
        now = time.time()
        held = self._held("arrays")
        rows = []
        for key, array in items.items():
            blob = encode(array)
            rows.append((key, kind, model, len(blob), zlib.crc32(blob), now, blob))
            if held is not None:
                held[key] = (rows[-1], array)
        if held is None:
            self._write(_PUT_ARRAY, rows)

    # -- scalars ------------------------------------------------------------------------------------------
    def get_scalars(self, keys: Sequence[str]) -> dict[str, float]:
        """The stored scalars among ``keys``; a value whose CRC does not match (or is NULL) is deleted, a miss."""
        held = self._held("scalars") or {}
        found, damaged = {k: held[k][3] for k in keys if k in held}, []
        query = "SELECT key, value, crc FROM scalars WHERE key IN ({})"
        for key, value, crc in self._select(query, [k for k in keys if k not in found]):
            if isinstance(value, float) and scalar_crc(key, value) == crc:
                found[key] = value
            else:
                damaged.append(key)
        if damaged and not self.read_only:
            self._run(lambda c: self._delete(c, "scalars", damaged))
        return found

    def put_scalars(self, items: Mapping[str, float], kind: str, model: str = "") -> None:
        check_finite(kind, items.values())
        rows = [(k, kind, model, float(v), scalar_crc(k, float(v))) for k, v in items.items()]
        held = self._held("scalars")
        if held is None:
            self._write(_PUT_SCALAR, rows)
        else:
            held.update((row[0], row) for row in rows)

    # -- runs ---------------------------------------------------------------------------------------------
    def put_run(self, key: str, config: Mapping, table_bytes: bytes, n_rows: int, nbytes: int) -> None:
        text = json.dumps(config, sort_keys=True)
        row = (key, time.time(), text, n_rows, nbytes, table_bytes, run_crc(key, text, table_bytes))
        self._write("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", [row])

    def get_run(self, key: str) -> tuple[dict, bytes] | None:
        """A run's config and stored table (None if unknown), checked against their CRC: a damaged one is one
        clear error (re-sweeping the run rebuilds it from the cached cells, with no model pass)."""
        try:
            rows = self._select("SELECT config, blob, crc FROM runs WHERE key IN ({})", [key])
        except sqlite3.OperationalError as err:  # a read-only cache from before run tables had a CRC
            if "no such column" not in str(err):
                raise
            rows = [(c, b, None) for c, b in self._select("SELECT config, blob FROM runs WHERE key IN ({})", [key])]
        if not rows:
            return None
        text, blob, crc = rows[0]
        if crc is None or run_crc(key, text, blob) != crc:
            why = "was stored without a checksum" if crc is None else "is damaged (its checksum does not match)"
            raise GcdashError(f"run {key[:12]}'s stored table in {self.path} {why}; sweep it again to rebuild it")
        return json.loads(text), blob

    def runs(self) -> list[dict]:
        """Saved runs, newest first: key, created, config (dict), n_rows, nbytes (cell bytes they use)."""
        query = "SELECT key, created, config, n_rows, nbytes FROM runs ORDER BY created DESC"
        rows = self._run(lambda c: c.execute(query).fetchall())
        return [dict(key=k, created=t, config=json.loads(cfg), n_rows=n, nbytes=b) for k, t, cfg, n, b in rows]

    # -- housekeeping -------------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        files = [Path(str(self.path) + s) for s in ("", "-wal", "-shm")]
        return sum(f.stat().st_size for f in files if f.exists())

    def usage(self) -> list[dict]:
        """Bytes and entries per (model digest, kind), for the Runs page."""
        query = "SELECT model, kind, COUNT(*), SUM(nbytes) FROM arrays GROUP BY model, kind"
        rows = self._run(lambda c: c.execute(query).fetchall())
        return [dict(model=m, kind=k, entries=n, nbytes=b or 0) for m, k, n, b in rows]

    def clear(self) -> None:
        """Delete every entry (the file stays, emptied and compacted)."""

        def wipe(conn: sqlite3.Connection) -> None:
            with conn:
                for table in ("arrays", "scalars", "runs"):
                    conn.execute(f"DELETE FROM {table}")
            conn.execute("VACUUM")

        self._run(wipe)

    # -- internals ----------------------------------------------------------------------------------------
    def _select(self, query: str, keys: Sequence[str]) -> list[tuple]:
        keys = list(keys)

        def fetch(conn: sqlite3.Connection) -> list[tuple]:
            rows: list[tuple] = []
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows += conn.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
            return rows

        return self._run(fetch) if keys else []

    def _write(self, statement: str, rows: Iterable[tuple]) -> None:
        self._write_many([(statement, list(rows))])

    def _write_many(self, writes: Sequence[tuple[str, list[tuple]]]) -> None:
        """Several (statement, rows) in one transaction: all rows or none."""
        writes = [(statement, rows) for statement, rows in writes if rows]
        if not writes:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                for statement, rows in writes:
                    conn.executemany(statement, rows)

        self._run(write)

    @staticmethod
    def _delete(conn: sqlite3.Connection, table: str, keys: Sequence[str]) -> None:
        with conn:
            conn.executemany(f"DELETE FROM {table} WHERE key = ?", [(k,) for k in keys])


def _migrate(conn: sqlite3.Connection) -> None:
    """Caches written before scalars had a CRC: their scalars (keys of an older schema) are dropped. Before run
    tables had one: the column is added (those runs are refused until swept again)."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(scalars)")]
    if columns and "crc" not in columns:
        with conn:
            conn.execute("DROP TABLE scalars")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    if columns and "crc" not in columns:
        with conn:
            conn.execute("ALTER TABLE runs ADD COLUMN crc INTEGER")
