"""The Ray executor on a local Ray with two workers: the same per-image table as the local executor, the driver the
only writer of the cache and the parts, a worker that dies mid-sweep retried by Ray, a worker's GcdashError one line,
and a cancelled sweep resumed from its finished batches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from gcdash import executors, plan, sweep
from gcdash.config import DataConfig, ModelSpec, SweepConfig
from gcdash.parts import Parts
from gcdash.store import Store

ray = pytest.importorskip("ray")  # in requirements-ray.txt, which the test command installs

CONFIG = SweepConfig(
    models=(ModelSpec("demo-resnet"), ModelSpec("demo-vgg")), data=DataConfig("demo", 20, 0), eps=(0.0, 8 / 255)
)


@pytest.fixture(scope="module")
def ray_stopped_after_module():
    yield
    ray.shutdown()


@pytest.fixture
def local_ray(ray_stopped_after_module):
    """A local Ray with 2 CPUs and no GPU, started by the test (once, kept for the module's later tests)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})  # fmt: skip
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the dying worker below, for the actors


@pytest.fixture
def no_ray(ray_stopped_after_module):
    """No Ray in this process: the sweep starts its own (these tests come first, so nothing is restarted)."""
    ray.shutdown()


CLI_RAY = ["sweep", "--models", "demo-resnet", "--n", "4", "--eps", "0,8/255", "--executor", "ray"]


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gcdash: error: ") and err.count("\n") == 1, err
    return err


def test_an_address_with_nothing_listening_is_refused_in_seconds(tmp_path, capsys, no_ray):
    import socket
    import time

    from gcdash.cli import main

    with socket.socket() as s:  # a free port on this machine, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main([*CLI_RAY, "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "o")])
    assert f"--ray-address 127.0.0.1:{port}: nothing answers" in _one_line(capsys, code)
    assert time.monotonic() - start < 60  # Ray's own retries ran past 150 s; the probe waits 3 s at most
    assert not ray.is_initialized()


def test_a_failure_mid_sweep_stops_the_ray_it_started(tmp_path, monkeypatch, no_ray):
    """An exception in the middle of a Ray sweep (here: while the batches run) stops the local Ray the sweep
    started, and gives SIGTERM back its handler; so do Ctrl-C and SIGTERM, which take the same ``finally``."""
    import signal

    from gcdash.cli import main

    handler = signal.getsignal(signal.SIGTERM)

    def broken(*args, **kwargs):
        assert ray.is_initialized() and signal.getsignal(signal.SIGTERM) is not handler  # SIGTERM now exits
        raise RuntimeError("a batch went wrong")

    monkeypatch.setattr(executors.ray, "_results", broken)
    with pytest.raises(RuntimeError, match="a batch went wrong"):
        main([*CLI_RAY, "--workers", "1", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert not ray.is_initialized()
    assert signal.getsignal(signal.SIGTERM) is handler


def test_sigterm_during_a_session_raises_system_exit():
    import os
    import signal

    with pytest.raises(SystemExit) as stop, executors.session._sigterm_exits():
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.value.code == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    "change, message",
    [
        (["--gpus-per-worker", "1"], "asks for 2 GPUs and the Ray cluster has 0 GPUs"),
        (["--workers", "1000"], "--workers 1000: the Ray cluster has 2 CPUs and each worker takes one"),
        (["--workers", "3", "--gpus-per-worker", "0"], "--workers 3: the Ray cluster has 2 CPUs"),
    ],
)
def test_a_pool_the_cluster_cannot_host_is_refused_before_any_actor(tmp_path, capsys, local_ray, change, message):
    from gcdash.cli import main

    code = main([*CLI_RAY, *change, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    assert message in _one_line(capsys, code)
    assert ray.is_initialized()  # a Ray the sweep did not start is left running


@pytest.mark.usefixtures("local_ray")
def test_two_workers_give_the_local_table_and_the_driver_writes_every_cell(tmp_path):
    samples = plan.load_samples(CONFIG)
    local = sweep.sweep(CONFIG, Store(tmp_path / "local"), batch_size=8)
    store, parts = Store(tmp_path / "ray"), Parts(tmp_path / "out")
    seen = []
    table, passes = executors.ray_sweep(
        CONFIG,
        store,
        samples,
        workers=2,
        batch_size=8,
        sink=lambda _, rows: parts.write(rows),
        progress=lambda d, t, w: seen.append((d, t)),
    )
    assert table.empty  # the rows went to the parts, and only there: the driver keeps none in memory
    pd.testing.assert_frame_equal(parts.read(), local.per_image)
    in_memory, _ = executors.ray_sweep(CONFIG, store, samples, workers=2, batch_size=8)
    pd.testing.assert_frame_equal(in_memory, local.per_image)
    assert passes == local.passes
    assert seen[-1] == (40, 40) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = sweep.sweep(CONFIG, store, batch_size=8)  # the workers' cells are in the driver's cache
    assert sum(again.passes.values()) == 0


class DyingWorker(executors.CellWorker):
    """Exits its process on a batch while the flag file exists (removing it first): a worker lost mid-sweep."""

    flag = ""  # set by the test; the class travels to the actors by value, this with it

    def run(self, model, samples):
        if self.flag and os.path.exists(self.flag):
            os.remove(self.flag)
            os._exit(1)
        return super().run(model, samples)


@pytest.mark.usefixtures("local_ray")
def test_a_worker_that_dies_mid_sweep_is_retried_and_the_result_is_the_same(tmp_path):
    flag = tmp_path / "die-once"
    flag.write_text("")
    DyingWorker.flag = str(flag)
    config = SweepConfig(models=(ModelSpec("demo-resnet"),), data=DataConfig("demo", 16, 0), eps=(0.0, 8 / 255))
    samples = plan.load_samples(config)
    table, _ = executors.ray_sweep(config, Store(tmp_path / "c"), samples, workers=2, batch_size=4, worker=DyingWorker)
    assert not flag.exists()  # a worker did die
    pd.testing.assert_frame_equal(table, sweep.sweep(config, Store(tmp_path / "l"), batch_size=4).per_image)


@pytest.mark.usefixtures("local_ray")
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


class RefusingWorker(executors.CellWorker):
    """Refuses its second batch with a GcdashError, as a bad input would."""

    def run(self, model, samples):
        if samples.ids[0] != self.samples.ids[0]:
            from gcdash.errors import GcdashError

            raise GcdashError("image 5 is not RGB")
        return super().run(model, samples)


@pytest.mark.usefixtures("local_ray")
def test_a_gcdash_error_in_a_worker_reaches_the_driver_as_itself(tmp_path):
    from gcdash.errors import GcdashError

    config = SweepConfig(models=(ModelSpec("demo-resnet"),), data=DataConfig("demo", 8, 0), eps=(0.0,))
    with pytest.raises(GcdashError) as err:
        executors.ray_sweep(
            config, Store(tmp_path / "c"), plan.load_samples(config), workers=1, batch_size=4,
            worker=RefusingWorker,
        )  # fmt: skip
    assert type(err.value) is GcdashError and str(err.value) == "image 5 is not RGB"


@pytest.mark.usefixtures("local_ray")
def test_a_cancel_between_batches_keeps_the_finished_ones_and_a_rerun_resumes_from_them(tmp_path):
    from gcdash.errors import Cancelled

    config = SweepConfig(models=(ModelSpec("demo-resnet"),), data=DataConfig("demo", 12, 0), eps=(0.0, 8 / 255))
    samples, store, seen = plan.load_samples(config), Store(tmp_path / "c"), []
    with pytest.raises(Cancelled, match="stopped with 2 of 3 batches left"):
        executors.ray_sweep(
            config, store, samples, workers=2, batch_size=4, progress=lambda d, t, w: seen.append(d),
            should_stop=lambda: bool(seen),
        )  # fmt: skip
    assert seen == [4]
    table, passes = executors.ray_sweep(config, store, samples, workers=2, batch_size=4)
    local = sweep.sweep(config, Store(tmp_path / "l"), batch_size=4)
    pd.testing.assert_frame_equal(table, local.per_image)
    assert 0 < passes["demo-resnet"] < local.passes["demo-resnet"]  # the first batch came from the cache


class AlwaysDyingWorker(executors.CellWorker):
    """Exits its process on every batch: Ray's restarts and retries run out."""

    def run(self, model, samples):
        os._exit(1)


@pytest.mark.usefixtures("local_ray")
def test_workers_that_keep_dying_stop_the_sweep_with_one_line(tmp_path):
    from gcdash.errors import GcdashError

    config = SweepConfig(models=(ModelSpec("demo-resnet"),), data=DataConfig("demo", 8, 0), eps=(0.0,))
    with pytest.raises(GcdashError) as err:
        executors.ray_sweep(
            config, Store(tmp_path / "c"), plan.load_samples(config), workers=1, batch_size=4,
            worker=AlwaysDyingWorker,
        )  # fmt: skip
    assert str(err.value).startswith("every Ray worker died (batch 1 of 2)") and "\n" not in str(err.value)
