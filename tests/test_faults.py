"""Nothing silently wrong: one test per finding of the fault campaign (issue "nothing silently wrong"), then a
bounded fault-injection run (kill -9 mid-sweep, flipped bytes, a full store) whose final tables must equal an
uninterrupted run's, or stop with one clear line and nothing wrong stored."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny
import torch
from PIL import Image

from gcdash import data, results
from gcdash.cli import main
from gcdash.config import NISSIM, CompareConfig
from gcdash.engine import ModelEngine
from gcdash.errors import GcdashError
from gcdash.store import Store

EPS = [0.0, 4 / 255, 8 / 255]
BASE = ["sweep", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--eps", "0,4/255,8/255", "--batch-size", "4"]


def _cells(store: Store) -> int:
    conn = sqlite3.connect(store.path)
    try:
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("arrays", "scalars"))
    finally:
        conn.close()


def _one_line_error(capsys, code: int, *expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for text in expected:
        assert text in err
    return err


# 1 -- NaN weights: refused naming the model, nothing stored ------------------------------------------------------
def test_nan_weights_are_refused_naming_the_model_and_nothing_is_stored(tiny_handle, tiny_samples, store):
    with torch.no_grad():
        tiny_handle.net.backbone.block1[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(GcdashError, match=r"model tiny-cnn gave non-finite logits \(NaN or inf\) for 4 of 4"):
        ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS)
    assert _cells(store) == 0


def test_the_store_refuses_non_finite_values(store):
    with pytest.raises(ValueError, match="non-finite"):
        store.put_scalars({"k": float("nan")}, "comparison")
    with pytest.raises(ValueError, match="non-finite"):
        store.put_arrays({"k": np.array([1.0, np.inf])}, "map")


# 2 -- a damaged stored scalar is a miss, recomputed from the maps -------------------------------------------------
def test_a_damaged_scalar_is_recomputed_not_served(tiny_handle, tiny_samples, store):
    first = ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    conn = store._conn()
    with conn:
        conn.execute("DELETE FROM arrays WHERE kind = 'rows'")  # the finished batches' rows: read cell by cell
        conn.execute("UPDATE scalars SET value = value + 0.0625 WHERE rowid % 3 = 0")  # a flipped exponent bit's worth
        conn.execute("UPDATE scalars SET value = NULL WHERE rowid % 7 = 0")  # what SQLite makes of a stored NaN
    engine = ModelEngine(tiny_handle, store, batch_size=4)
    again = engine.table(tiny_samples, EPS, "all")
    pd.testing.assert_frame_equal(again, first)
    assert engine.passes == 0  # the maps were intact: only the comparisons were recomputed


# 3 -- impossible counts are refused before anything is allocated --------------------------------------------------
def test_an_impossible_count_is_refused_at_once(tmp_path, capsys):
    with pytest.raises(GcdashError, match="more than the 100,000 images"):
        data.load("demo", n=10**9)
    with pytest.raises(GcdashError, match="per_class"):
        data.load("demo", per_class=10**9)
    code = main(["sweep", "--models", "tiny-cnn", "--n", "1000000000", "--out", str(tmp_path / "o")])
    _one_line_error(capsys, code, "more than the 100,000 images")


# 4 -- more classes in the data than in the model: labels by name, the others unlabelled and said so -------------
def _folder(root: Path, classes: int | list[str], per_class: int = 2, broken: int = 0) -> Path:
    rng = np.random.default_rng(0)
    names = [f"class{c}" for c in range(classes)] if isinstance(classes, int) else classes
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    for i in range(broken):
        (root / names[0] / f"broken{i}.png").write_bytes(b"\x89PNG not really")
    return root


def test_more_class_folders_than_model_classes_are_matched_by_name_before_any_pass(tmp_path, capsys):
    names = ["oval", *reversed(tiny.CLASSES), "hexagon"]  # 7 folders: the model's 5 in another order, and 2 more
    root = _folder(tmp_path / "seven", classes=names)
    out = tmp_path / "o"
    args = [*BASE[:3], "--data", f"folder:{root}", "--n", "14", "--out", str(out), "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 of the data's 7 classes are not classes of tiny-cnn (hexagon, oval)" in err
    table = pd.read_parquet(out / "per_image.parquet")
    folder = table["image_id"].str.split("/").str[0]
    expected = folder.map(lambda f: tiny.CLASSES.index(f) if f in tiny.CLASSES else -1)
    assert (table["label"] == expected).all()  # by name, not by the folder's position


# 5 -- output and cache paths are checked before work; a read-only cache serves reads; a full store is one line -----
def test_out_at_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    cache = tmp_path / "c"
    code = main([*BASE, "--out", str(tmp_path / "taken"), "--cache", str(cache)])
    _one_line_error(capsys, code, "is a file; give a folder")
    assert not (cache / "gcdash.sqlite").exists() or _cells(Store(cache)) == 0


def test_cache_at_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "cachefile").write_text("a file")
    code = main([*BASE, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "cachefile")])
    _one_line_error(capsys, code, "is a file, not a folder")
    code = main([*BASE, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "cachefile" / "below")])
    _one_line_error(capsys, code, "cannot be used")


def test_a_read_only_cache_serves_every_result_it_holds(tiny_handle, tiny_samples, tmp_path):
    store = Store(tmp_path / "c")
    first = ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS)
    store.close()
    read_only = Store(tmp_path / "c", read_only=True)
    for batch_size in (4, 3):  # the batches' kept rows, then other batches made from the cells it holds
        engine = ModelEngine(tiny_handle, read_only, batch_size=batch_size)
        pd.testing.assert_frame_equal(engine.table(tiny_samples, EPS), first)
        assert engine.passes == 0
    with pytest.raises(GcdashError, match="is read-only"):
        ModelEngine(tiny_handle, read_only, batch_size=4).table(tiny_samples, [16 / 255])


def test_a_folder_without_write_permission_is_opened_read_only(tiny_handle, tiny_samples, tmp_path, monkeypatch):
    writer = Store(tmp_path / "c")
    writer.put_scalars({"k": 1.0}, "test")
    writer.close()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    store = Store(tmp_path / "c")
    assert store.read_only and store.get_scalars(["k"]) == {"k": 1.0}


def test_a_full_store_is_one_line_and_keeps_what_it_had(tiny_handle, tiny_samples, tmp_path):
    store = Store(tmp_path / "c")
    store.check()
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages + 3}")  # a disk with room for a few pages only
    with pytest.raises(GcdashError, match="is on a full disk"):
        ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    assert store._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# 6 -- skipped files and short loads are said, with reasons ---------------------------------------------------------
def test_skipped_files_are_listed_with_their_reasons(tmp_path, capsys, monkeypatch):
    root = _folder(tmp_path / "five", classes=list(tiny.CLASSES), per_class=2, broken=2)
    args = [
        *BASE[:3],
        "--data",
        f"folder:{root}",
        "--n",
        "64",
        "--out",
        str(tmp_path / "o"),
        "--cache",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipped 2 files: 2 not a readable image" in err  # counted by reason; every file in skipped.txt
    assert "skipped  circle/broken0.png: not a readable PNG" in (tmp_path / "o" / "skipped.txt").read_text()
    assert "asked for 64 images, the source gave 10" in err


def test_a_permission_denied_file_says_so():
    from gcdash.data.uploads import decode_image

    class Locked:
        def read(self, *a):
            raise PermissionError(13, "Permission denied")

        def seek(self, *a):
            raise PermissionError(13, "Permission denied")

    with pytest.raises(GcdashError, match=r"locked\.png: permission denied"):
        decode_image(Locked(), "locked.png", ("PNG",))


# 9 -- float TIFFs: [0, 1] is scaled, NaN refused --------------------------------------------------------------------
def test_float_tiffs_are_scaled_or_refused(tmp_path):
    root = tmp_path / "tiffs"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.full((16, 16), 0.5, np.float32), mode="F").save(root / "a" / "half.tif")
    Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F").save(root / "a" / "nan.tif")
    samples = data.load(f"folder:{root}")
    assert len(samples) == 1 and samples.images[0].mean() == 128  # 0.5 of the range, not near-black
    assert "nan.tif: float pixels include 256 NaN or infinite values" in samples.meta["skipped"][0]


# 10 -- CLI arguments that used to give tracebacks: among tests/test_cli.py's bad arguments (one line, exit 2)


# 12 -- dead layers: an all-zero map is flagged and kept out of MOD ------------------------------------------------
def test_an_all_zero_map_is_flagged_not_counted_as_the_same_explanation(tiny_handle, tiny_samples, store):
    with torch.no_grad():
        conv = tiny_handle.net.backbone.block2[0]
        conv.weight.zero_()
        conv.bias.fill_(-1.0)  # block2's ReLU output is zero everywhere: a dead layer
    tiny_handle.digest = ""
    tiny_handle.__post_init__()
    from dataclasses import replace

    from gcdash.metrics.faithfulness import Faithfulness

    engine = ModelEngine(
        tiny_handle, store, batch_size=4, comparisons=(NISSIM, CompareConfig("topk")), faithfulness=Faithfulness(4)
    )
    masked = replace(tiny_samples, masks=[np.ones(i.shape[:2], bool) for i in tiny_samples.images])
    table = engine.table(masked, EPS, ["block2"]).assign(model="m", method="gradcam", attack="fgsm", source="m")
    assert table["zero_clean"].all() and table["zero_adv"].all()
    scores = ["ssim", "nissim", "topk", "del_clean", "del_adv", "ins_clean", "ins_adv", "hit_clean", "mass_adv"]
    assert table[scores].isna().all().all()  # no map: no dissimilarity, no curve, no place on the object
    summary = results.summary(table)
    assert (summary["zero_rate"] == 1.0).all() and summary[["mod", "del_adv", "hit_clean"]].isna().all().all()
    again = ModelEngine(tiny_handle, store, batch_size=4, comparisons=(NISSIM, CompareConfig("topk")),
                        faithfulness=Faithfulness(4)).table(masked, EPS, ["block2"])  # fmt: skip
    assert again[scores].isna().all().all()  # stored as "no score", read back as NaN


# -- fault injection: kill -9, flipped bytes, a full store ----------------------------------------------------------
SWEEP = ["sweep", "--models", "tiny-cnn", "--data", "tiny", "--n", "48", "--eps", "0,2/255,4/255,8/255", "--layers",
         "all", "--batch-size", "4", "--dissimilarity", "spearman"]  # fmt: skip


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(tiny.cli_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc``, reading its pipes as it goes (a full pipe would block the child); its code and stderr."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def _rows(cache: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{cache / 'gcdash.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM arrays").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "per_image.parquet")


@pytest.mark.timeout(900)  # a hang guard, not a speed claim: 8 CLI processes, ~45 s on a quiet 2-core CPU
def test_fault_injection_ends_equal_to_an_uninterrupted_run_or_in_one_line(tmp_path):
    reference = tmp_path / "ref"
    code, err = _finish(_cli([*SWEEP, "--out", str(reference), "--cache", str(tmp_path / "ref-cache")]))
    assert code == 0, err
    expected = _table(reference)

    cache = tmp_path / "killed"
    for at_rows in (20, 150, 400):  # kill -9 after this many stored arrays (the sweep writes ~1000)
        proc = _cli([*SWEEP, "--out", str(tmp_path / "never"), "--cache", str(cache)])
        deadline = time.monotonic() + 60
        while _rows(cache) < at_rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        _finish(proc, 60)
    code, err = _finish(_cli([*SWEEP, "--out", str(tmp_path / "resumed"), "--cache", str(cache)]))
    assert code == 0, err
    pd.testing.assert_frame_equal(_table(tmp_path / "resumed"), expected)

    # Flipped bytes in copies of the uninterrupted run's store: its layout is the same on every run (the killed
    # store's depends on where the kills landed), so the same bits are flipped each time and the test cannot flake.
    rng = random.Random(0)
    for trial in range(3):
        copy = tmp_path / f"flipped{trial}"
        shutil.copytree(tmp_path / "ref-cache", copy)
        db = copy / "gcdash.sqlite"
        blob = bytearray(db.read_bytes())
        for _ in range(20):
            blob[rng.randrange(len(blob) // 8, len(blob))] ^= 1 << rng.randrange(8)
        db.write_bytes(bytes(blob))
        code, err = _finish(_cli([*SWEEP, "--out", str(tmp_path / f"out{trial}"), "--cache", str(copy)]))
        if code == 0:
            pd.testing.assert_frame_equal(_table(tmp_path / f"out{trial}"), expected)
        else:
            assert code == 2 and "Traceback" not in err and err.strip().count("\n") <= 2, err


def test_a_sweep_stopped_by_a_full_store_resumes_to_the_same_tables(tiny_handle, tiny_samples, tmp_path):
    expected = ModelEngine(tiny_handle, Store(tmp_path / "ref"), batch_size=4).table(tiny_samples, EPS, "all")
    store = Store(tmp_path / "small")
    store.check()
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages + 12}")
    with pytest.raises(GcdashError, match="full disk"):
        ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    store._conn().execute("PRAGMA max_page_count = 1073741823")  # space freed
    again = ModelEngine(tiny_handle, store, batch_size=4).table(tiny_samples, EPS, "all")
    pd.testing.assert_frame_equal(again, expected)
