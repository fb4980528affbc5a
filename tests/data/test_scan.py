"""Walking an image folder: every file left out is said with its reason, unreadable folders are skips (not
tracebacks), a wrong root is one line within seconds, and file names that are not UTF-8 give valid text ids."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gcdash import data
from gcdash.data.scan import scan_folder
from gcdash.errors import GcdashError


def _image(path: Path, shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 10, 3), shade, np.uint8)).save(path)
    return path


@pytest.fixture
def messy(tmp_path):
    """Two classes with, beside their images, every kind of file a scan used to drop without a word."""
    root = tmp_path / "messy"
    for name in ("cat", "dog"):
        for i in range(2):
            _image(root / name / f"{i}.png", 40 * i + 10)
    for i in range(3):
        Image.new("RGB", (4, 4)).save(root / "cat" / f"anim{i}.gif")
    (root / "dog" / "gone.png").symlink_to(root / "nowhere.png")
    (root / "dog" / "gone2.jpg").symlink_to(root / "nowhere.jpg")
    (root / "dog" / "loop.png").symlink_to(root / "dog" / "loop.png")
    _image(root / "stray.png")
    return root


def test_every_skipped_file_is_counted_by_reason_and_listed(messy, tmp_path):
    samples = data.load(f"folder:{messy}")
    assert sorted(samples.ids) == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]
    assert data.shortfall(samples, None) == [
        "skipped 7 files: 1 beside the class folders, 3 not an image (.gif), 2 dangling symlinks, 1 symlink loop"
    ]
    listed = data.write_skip_list(samples, tmp_path / "out" / "skipped.txt").read_text().splitlines()
    assert len(listed) == 7 and "skipped  dog/loop.png: symlink loop (it points back to itself)" in listed
    assert "skipped  dog/gone2.jpg: dangling symlink (its target does not exist)" in listed
    cats = data.load(f"folder:{messy}", classes="cat")  # what is skipped in the other classes is not this load's
    assert data.shortfall(cats, None) == ["skipped 4 files: 1 beside the class folders, 3 not an image (.gif)"]
    flat = data.load(f"folder:{messy / 'cat'}")  # no class folders here: its files are the images
    assert data.write_skip_list(flat, tmp_path / "out" / "skipped.txt") is not None
    for gif in (messy / "cat").glob("*.gif"):
        gif.unlink()
    assert data.write_skip_list(data.load(f"folder:{messy / 'cat'}"), tmp_path / "out" / "skipped.txt") is None
    assert not (tmp_path / "out" / "skipped.txt").exists()  # nothing to list: no stale list left behind


def test_an_unreadable_sub_folder_is_a_skip_not_a_traceback(messy, monkeypatch):
    """Tests run as root (chmod 000 does not stop reads): the denial is simulated for one folder."""
    (messy / "dog" / "locked").mkdir()
    _image(messy / "dog" / "locked" / "secret.png")
    real = os.scandir

    def scandir(path):
        if Path(path) == messy / "dog" / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    samples = data.load(f"folder:{messy}")
    assert "dog/locked: permission denied (folder)" in samples.meta["skipped"]
    assert "1 permission denied" in data.shortfall(samples, None)[0] and len(samples) == 4


def test_a_symlink_into_an_unreadable_folder_is_a_skip(messy, tmp_path, monkeypatch):
    (tmp_path / "private").mkdir()
    (messy / "bird").symlink_to(tmp_path / "private")  # a class folder that is a symlink into it
    (messy / "cat" / "peek.png").symlink_to(tmp_path / "private" / "x.png")
    real = os.stat

    def stat(path, *args, **kwargs):
        inside = str(path).startswith(str(tmp_path / "private"))
        if inside or Path(path) in (messy / "bird", messy / "cat" / "peek.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    scan = scan_folder(messy)
    assert scan.classes == ["cat", "dog"]
    assert ("bird", "permission denied", "permission denied") in scan.skipped
    assert ("cat/peek.png", "permission denied", "permission denied") in scan.skipped


def test_an_unreadable_root_is_one_line(tmp_path, monkeypatch):
    _image(tmp_path / "root" / "a" / "x.png")
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if Path(p) == tmp_path / "root" else real(p))  # fmt: skip
    with pytest.raises(GcdashError, match=r"image folder .*root cannot be read \(Permission denied\)"):
        data.load(f"folder:{tmp_path / 'root'}")


def test_proc_is_one_line_within_seconds():
    start = time.monotonic()
    with pytest.raises(GcdashError) as caught:
        data.load("folder:/proc", n=4)
    assert time.monotonic() - start < 20
    assert "\n" not in str(caught.value) and "/proc" in str(caught.value)


def test_the_walk_is_bounded(tmp_path, monkeypatch):
    import gcdash.data.scan as scan

    for i in range(30):
        (tmp_path / "junk" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "junk" / "a" / f"{i}.txt").write_text("x")
    monkeypatch.setattr(scan, "FIRST_IMAGE_WITHIN", 10)
    with pytest.raises(GcdashError, match=r"no image among the first 10 entries under .*junk"):
        data.load(f"folder:{tmp_path / 'junk'}")
    _image(tmp_path / "junk" / "a" / "00.png")
    monkeypatch.setattr(scan, "MAX_ENTRIES", 20)
    with pytest.raises(GcdashError, match="holds over 20 entries"):
        data.load(f"folder:{tmp_path / 'junk'}")


def test_a_file_name_that_is_not_utf8_gives_a_valid_text_id(tmp_path):
    root = tmp_path / "names"
    _image(root / "cat" / "plain.png")
    os.mkdir(os.path.join(os.fsencode(root), b"d\xf6g"))
    named = {os.path.join(os.fsencode(root), b"cat", b"caf\xe9.png"): 200, os.path.join(os.fsencode(root), b"d\xf6g",
             b"x.png"): 30}  # Latin-1 bytes: not UTF-8  # fmt: skip
    for name, shade in named.items():
        with open(name, "wb") as file:
            Image.fromarray(np.full((12, 10, 3), shade, np.uint8)).save(file, "PNG")
    samples = data.load(f"folder:{root}")
    assert samples.ids == ["cat/caf\\xe9.png", "cat/plain.png", "d\\xf6g/x.png"]
    assert samples.class_names == ["cat", "d\\xf6g"]
    assert samples.images[0][0, 0, 0] == 200 and samples.images[2][0, 0, 0] == 30  # opened by their real paths
    for text in samples.ids + samples.class_names:
        text.encode("utf-8")  # no surrogates left
    pd.DataFrame({"image_id": samples.ids}).to_parquet(tmp_path / "ids.parquet")  # what used to crash the sweep
