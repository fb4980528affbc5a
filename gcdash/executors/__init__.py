"""Where a sweep's batches run: in this process (``local``, :func:`gcdash.sweep.sweep`) or spread over a Ray
cluster (``ray``, :func:`gcdash.executors.ray.ray_sweep`).

The Ray executor shards each model's images into batches and maps them with Ray Data (``map_batches`` over an actor
pool, in batch order) onto actors each holding its own copy of the models on its own device; Ray restarts a dead
actor and retries its batch. A worker runs exactly the local path (:func:`gcdash.tables.model_table` on
its batch), reading cells from the cache read-only and keeping what it computes in a :class:`BufferedStore`; the
driver, the only writer, stores what each batch computed, hands its rows to the sweep's sink and reports progress.
So the per-image results equal the local executor's, and a killed sweep resumes from every finished batch.

The workers read the cache folder: on one host (``ray.init()``) that is the same folder; on a cluster put it on a
filesystem every node mounts (``--cache /shared/...``). A worker that cannot read it recomputes what it does not
find: the numbers are the same, only the work is not saved.
"""

from gcdash.executors.buffered import BufferedStore, store_writes
from gcdash.executors.ray import CellWorker, ray_sweep, shard_ranges
from gcdash.executors.session import check_pool, check_resources, probe_address, ray_session

__all__ = [
    "BufferedStore", "CellWorker", "check_pool", "check_resources", "probe_address", "ray_session", "ray_sweep",
    "shard_ranges", "store_writes",
]  # fmt: skip
