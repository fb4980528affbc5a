"""A Ray session a sweep can trust: the pool checked before Ray is touched, an address probed with a deadline, the
cluster's resources checked before any actor is made, and a Ray started here stopped on every exit path."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gcdash.errors import GcdashError

CONNECT_TIMEOUT_S = 3.0  # how long a --ray-address may take to accept a connection before it is refused


def check_pool(workers: int, gpus_per_worker: float) -> None:
    """The pool's own numbers, before Ray is touched: at least one worker, a finite GPU share ≥ 0 each."""
    if workers < 1:
        raise GcdashError(f"--workers must be ≥ 1, got {workers}")
    if not 0 <= gpus_per_worker < float("inf"):
        raise GcdashError(f"--gpus-per-worker must be ≥ 0 (0: CPU workers), got {gpus_per_worker:g}")


def probe_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) where nothing accepts a TCP connection within ``timeout``:
    ``ray.init`` retries such an address for minutes. The connect runs in a daemon thread joined with a deadline,
    because name resolution ignores socket timeouts. ``auto`` (and no address) is left to Ray, which fails fast."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise GcdashError(f"--ray-address {address!r}: write HOST:PORT, ray://HOST:10001 or auto")
    failed: list[str] = ["no answer"]

    def connect() -> None:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            failed.clear()
        except OSError as err:
            failed[:] = [err.strerror or type(err).__name__]

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if failed:
        raise GcdashError(
            f"--ray-address {address}: nothing answers at {host}:{port} within {timeout:g} s ({failed[0]}); "
            "start the cluster (ray start --head) or check the address"
        )


def check_resources(ray: Any, workers: int, gpus_per_worker: float) -> None:
    """Refuse a pool the cluster cannot host (its actors would wait for ever): one CPU per worker, and
    ``gpus_per_worker`` GPUs each. Checked against the cluster's totals before any actor is made."""
    have = ray.cluster_resources()
    cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
    if workers > cpus:
        raise GcdashError(
            f"--workers {workers}: the Ray cluster has {cpus:g} CPUs and each worker takes one; "
            f"use --workers {max(int(cpus), 1)} or fewer, or a larger cluster (--ray-address)"
        )
    if workers * gpus_per_worker > gpus:
        raise GcdashError(
            f"--workers {workers} × --gpus-per-worker {gpus_per_worker:g} asks for {workers * gpus_per_worker:g} "
            f"GPUs and the Ray cluster has {gpus:g} GPUs; use --gpus-per-worker 0 for CPU workers, or fewer workers"
        )


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GcdashError("--executor ray needs Ray: pip install -r requirements-ray.txt") from None
    return ray


def _start_ray(ray: Any, address: str | None) -> None:
    """Connect to ``address``, or start a local Ray sized by this machine (not by the number of workers)."""
    probe_address(address)
    root = str(Path(__file__).resolve().parent.parent)  # workers import gcdash from this checkout
    try:
        ray.init(
            address=address or None, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
            runtime_env={"env_vars": {"PYTHONPATH": root}},
        )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        where = f"at {address}" if address else "on this machine"
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise GcdashError(f"could not start or reach Ray {where}: {first}") from None


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While open (in the main thread), SIGTERM raises SystemExit, so ``finally`` blocks run; then restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0) -> Iterator[Any]:
    """The ``ray`` module, connected: to the Ray this process already runs (left running), or to one started here
    (local, or ``address``) and shut down on every exit path: a return, an exception, Ctrl-C, or SIGTERM (made a
    SystemExit while the session is open). SIGKILL cannot be caught: a driver killed with it leaves a local Ray's
    processes running (``ray stop`` ends them). The pool of ``workers`` is checked against the cluster first."""
    check_pool(workers, gpus_per_worker)
    ray = _import_ray()
    if ray.is_initialized():
        check_resources(ray, workers, gpus_per_worker)
        yield ray
        return
    with _sigterm_exits():
        try:
            _start_ray(ray, address)
            check_resources(ray, workers, gpus_per_worker)
            yield ray
        finally:
            ray.shutdown()
