"""The Ray executor on a local Ray with two workers: the same per-image table as the local executor, the driver the
only writer of the cache and the parts, and a worker that dies mid-sweep retried."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from gcdash import executors, pipeline
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.store import Store

ray = pytest.importorskip("ray")  # in requirements-ray.txt, which the test command installs

CONFIG = SweepConfig(
    models=(ModelSpec("demo-resnet"), ModelSpec("demo-vgg")), data=DataConfig("demo", 20, 0), eps=(0.0, 8 / 255)
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})  # fmt: skip
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the dying worker below, for the actors
    yield
    ray.shutdown()


def test_two_workers_give_the_local_table_and_the_driver_writes_every_cell(tmp_path):
    samples = pipeline.load_samples(CONFIG)
    local = pipeline.sweep(CONFIG, Store(tmp_path / "local"), batch_size=8)
    store, parts = Store(tmp_path / "ray"), pipeline.Parts(tmp_path / "out")
    seen = []
    table, passes = executors.ray_sweep(
        CONFIG, store, samples, workers=2, batch_size=8, parts=parts, progress=lambda d, t, w: seen.append((d, t))
    )
    assert table.empty  # the rows went to the parts, and only there: the driver keeps none in memory
    pd.testing.assert_frame_equal(parts.read(), local.per_image)
    in_memory, _ = executors.ray_sweep(CONFIG, store, samples, workers=2, batch_size=8)
    pd.testing.assert_frame_equal(in_memory, local.per_image)
    assert passes == local.passes
    assert seen[-1] == (40, 40) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = pipeline.sweep(CONFIG, store, batch_size=8)  # the workers' cells are in the driver's cache
    assert sum(again.passes.values()) == 0


class DyingWorker(executors.CellWorker):
    """Exits its process on a batch while the flag file exists (removing it first): a worker lost mid-sweep."""

    flag = ""  # set by the test; the class travels to the actors by value, this with it

    def run(self, model, samples):
        if self.flag and os.path.exists(self.flag):
            os.remove(self.flag)
            os._exit(1)
        return super().run(model, samples)


def test_a_worker_that_dies_mid_sweep_is_retried_and_the_result_is_the_same(tmp_path):
    flag = tmp_path / "die-once"
    flag.write_text("")
    DyingWorker.flag = str(flag)
    config = SweepConfig(models=(ModelSpec("demo-resnet"),), data=DataConfig("demo", 16, 0), eps=(0.0, 8 / 255))
    samples = pipeline.load_samples(config)
    table, _ = executors.ray_sweep(config, Store(tmp_path / "c"), samples, workers=2, batch_size=4, worker=DyingWorker)
    assert not flag.exists()  # a worker did die
    pd.testing.assert_frame_equal(table, pipeline.sweep(config, Store(tmp_path / "l"), batch_size=4).per_image)


def test_the_cli_runs_a_sweep_on_ray_and_writes_the_same_tables(tmp_path, capsys):
    from gcdash.cli import main

    args = ["sweep", "--models", "demo-resnet", "--n", "8", "--eps", "0,8/255", "--batch-size", "4"]
    assert main([*args, "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "r"),
                 "--cache", str(tmp_path / "c1")]) == 0  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "l"), "--cache", str(tmp_path / "c2")]) == 0
    for name in ("summary.csv", "vid.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r" / name), pd.read_csv(tmp_path / "l" / name))
    ray_rows = pd.read_parquet(tmp_path / "r" / "per_image.parquet")
    local_rows = pd.read_parquet(tmp_path / "l" / "per_image.parquet")
    pd.testing.assert_frame_equal(ray_rows, local_rows)
