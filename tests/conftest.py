"""Shared fixtures: tiny seeded models and data (no weights on disk, nothing downloaded), a fresh store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402

torch.set_num_threads(2)
tiny.register_tiny()
tiny.register_tiny_source()


@pytest.fixture
def tiny_handle():
    return tiny.tiny_handle()


@pytest.fixture
def tiny_samples():
    return tiny.tiny_samples(8)


@pytest.fixture
def store(tmp_path):
    from gcdash.store import Store

    s = Store(tmp_path / "cache")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test writes to the repository's cache/."""
    monkeypatch.setenv("GCDASH_CACHE", str(tmp_path / "default-cache"))
