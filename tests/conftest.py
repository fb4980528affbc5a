"""Shared fixtures: tiny seeded models and data (no weights on disk, nothing downloaded), a fresh store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# One BLAS/torch thread per test process: tiny models run ~50× slower with thread contention on 2 shared cores,
# and Eigen-CAM's SVD can stall on OpenBLAS threads. Set before numpy/torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402

torch.set_num_threads(1)
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
    """No test writes to the repository's cache/ or touches the network."""
    monkeypatch.setenv("GCDASH_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setenv("GCDASH_OFFLINE", "1")  # tests never reach for weights over the network


@pytest.fixture(scope="module")
def flush_denormals():
    """Randomly initialised deep nets drift into subnormal floats, which the CPU computes many times slower;
    flushing them to zero changes no assertion and is switched off again after the module."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
