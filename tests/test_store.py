"""The cache store: round trips, damaged entries become misses, a corrupt file is moved aside, no pickle."""

import pickle
import sqlite3
import zlib

import numpy as np
import pytest

from gcdash.errors import GcdashError
from gcdash.store import Store, cell_key, decode


def test_arrays_and_scalars_round_trip(store):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.put_arrays({"k1": a, "k2": a.astype(np.int8)}, "map", "m")
    got = store.get_arrays(["k1", "k2", "missing"])
    assert set(got) == {"k1", "k2"}
    np.testing.assert_array_equal(got["k1"], a)
    assert got["k2"].dtype == np.int8
    store.put_scalars({"s": 0.25}, "ssim", "m")
    assert store.get_scalars(["s", "t"]) == {"s": 0.25}


def test_many_keys_are_fetched_in_chunks(store):
    items = {f"k{i}": float(i) for i in range(1234)}
    store.put_scalars(items, "ssim")
    assert store.get_scalars(list(items)) == items


def test_cell_key_is_stable_and_sensitive():
    assert cell_key("map", "abc", 1, [0.1]) == cell_key("map", "abc", 1, [0.1])
    assert cell_key("map", "abc", 1, [0.1]) != cell_key("map", "abc", 2, [0.1])


def test_damaged_entry_is_a_miss_and_is_dropped(store):
    store.put_arrays({"k": np.ones(100, np.float32)}, "map")
    conn = store._conn()
    blob = conn.execute("SELECT blob FROM arrays WHERE key='k'").fetchone()[0]
    with conn:
        conn.execute("UPDATE arrays SET blob=? WHERE key='k'", (blob[: len(blob) // 2],))
    assert store.get_arrays(["k"]) == {}
    assert conn.execute("SELECT COUNT(*) FROM arrays").fetchone()[0] == 0


def test_a_truncated_database_file_is_moved_aside(tmp_path):
    s = Store(tmp_path)
    s.put_arrays({f"k{i}": np.random.default_rng(i).random(2000) for i in range(50)}, "map")
    s.close()
    data = s.path.read_bytes()
    s.path.write_bytes(data[: len(data) // 3])
    for extra in ("-wal", "-shm"):
        (tmp_path / f"gcdash.sqlite{extra}").unlink(missing_ok=True)
    fresh = Store(tmp_path)
    assert fresh.get_arrays(["k1"]) == {}  # a miss, not a crash
    fresh.put_arrays({"k1": np.zeros(3)}, "map")
    assert "k1" in fresh.get_arrays(["k1"])
    assert list(tmp_path.glob("gcdash.sqlite.corrupt-*"))


def test_nothing_is_unpickled(store):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    payload = pickle.dumps(np.array([Boom()], dtype=object))
    with pytest.raises(ValueError):
        decode(payload)
    conn = store._conn()
    with conn:
        conn.execute("INSERT INTO arrays VALUES ('p', 'map', '', 1, ?, 0, ?)", (zlib.crc32(payload), payload))
    assert store.get_arrays(["p"]) == {}
    with pytest.raises(ValueError):
        store.put_arrays({"o": np.array([object()], dtype=object)}, "map")


def test_usage_and_clear(store):
    store.put_arrays({"a": np.zeros(1000, np.float32)}, "map", "model1")
    store.put_scalars({"s": 1.0}, "ssim", "model1")
    store.put_run("r", {"x": 1}, b"table", 1, 5)
    usage = store.usage()
    assert usage[0]["model"] == "model1" and usage[0]["nbytes"] > 4000
    assert store.runs()[0]["config"] == {"x": 1}
    store.clear()
    assert store.get_arrays(["a"]) == {} and store.get_scalars(["s"]) == {} and store.runs() == []


def test_deferred_writes_are_seen_inside_land_together_and_survive_a_failure(tmp_path):
    store, other = Store(tmp_path), Store(tmp_path)  # two connections to one cache
    with store.deferred():
        store.put_arrays({"a": np.arange(3.0)}, "map")
        store.put_scalars({"s": 0.5}, "comparison")
        np.testing.assert_array_equal(store.get_arrays(["a", "b"])["a"], np.arange(3.0))
        assert store.get_scalars(["s"]) == {"s": 0.5}
        assert other.get_arrays(["a"]) == {} and other.get_scalars(["s"]) == {}  # nothing committed yet
    assert set(other.get_arrays(["a"])) == {"a"} and other.get_scalars(["s"]) == {"s": 0.5}

    with pytest.raises(RuntimeError), store.deferred():
        store.put_scalars({"t": 0.25}, "comparison")
        raise RuntimeError("a batch fails after some of its cells were made")
    assert other.get_scalars(["t"]) == {"t": 0.25}  # finished work is kept


def _flip_run(store, column: str, at: int) -> None:
    conn = store._conn()
    value = conn.execute(f"SELECT {column} FROM runs WHERE key='r'").fetchone()[0]
    data = bytearray(value if isinstance(value, bytes) else value.encode())
    data[at] ^= 0x04
    with conn:
        conn.execute(f"UPDATE runs SET {column}=? WHERE key='r'", (bytes(data) if column == "blob" else data.decode(),))


@pytest.mark.parametrize("column, at", [("blob", i) for i in (0, 3, 17, 40, 77, 99)] + [("config", 2), ("config", 9)])
def test_a_run_table_with_a_flipped_byte_is_refused_in_one_line(store, column, at):
    store.put_run("r", {"models": ["m"]}, bytes(range(100)), 1, 100)
    assert store.get_run("r") == ({"models": ["m"]}, bytes(range(100)))
    _flip_run(store, column, at)
    with pytest.raises(GcdashError) as err:
        store.get_run("r")
    assert "is damaged (its checksum does not match); sweep it again" in str(err.value)
    assert "\n" not in str(err.value)
    store.put_run("r", {"models": ["m"]}, bytes(range(100)), 1, 100)  # sweeping it again replaces it
    assert store.get_run("r")[1] == bytes(range(100))


def test_run_tables_stored_before_checksums_are_refused_not_served(tmp_path):
    conn = sqlite3.connect(tmp_path / "gcdash.sqlite")
    conn.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, created REAL, config TEXT, n_rows INTEGER, "
                 "nbytes INTEGER, blob BLOB)")  # fmt: skip
    with conn:
        conn.execute("INSERT INTO runs VALUES ('r', 0, '{}', 1, 5, x'0102030405')")
    conn.close()
    store = Store(tmp_path)
    assert store.runs()[0]["key"] == "r"  # still listed
    with pytest.raises(GcdashError, match="was stored without a checksum; sweep it again"):
        store.get_run("r")
