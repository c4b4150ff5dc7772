"""Scale-out on Ray: ``--engine ray`` for ``copybench run`` and ``copybench scan``.

Extraction is a Ray Data pipeline: image files are read as bytes by parallel read tasks, batches stream to a
pool of detector actors (one GPU, or a slice of CPUs, each) that decode, preprocess and run the model exactly as
the local :class:`copybench.extract.Extractor` does (its own ``forward``), and the driver writes the descriptors
as they arrive into the local descriptor cache's shard store: the same shard format, the same key, the same
folder. Ray Data's streaming executor bounds the batches in flight (backpressure); a detector actor that dies is
restarted and the batches it held are retried (``MAX_RETRIES``), so a lost worker costs only its tasks, and a
driver killed mid-run leaves finished shards that the next run resumes from.

Search is sharded over references: each Ray task computes the exact top-k of all queries against one reference
shard with the single-process search function itself (faiss; on the GPU where one is assigned), and the driver
merges the partial lists in shard order with :func:`copybench.retrieval.merge_topk`. Exact top-k of a union is
the top-k of the per-shard top-k lists, so the result is the single-process one (same ids; scores equal up to
float summation order), and the result file is written by the same code under the same key.

Ray is imported only when an engine is created. Cache folders may also be URIs that pyarrow's filesystems
write (``s3://``, ``gs://``, ``hdfs://``, ``file://``): the shard store then works in a local staging folder and
mirrors every flushed shard and the final arrays to the URI, file for file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np

from copybench.retrieval import merge_topk
from copybench.scaling.extractor import RayExtractor
from copybench.scaling.records import (
    LOCAL_NODE_IP,
    MAX_RETRIES,
    SEARCH_SHARD_ROWS,
    SHARD_ROWS,
    BatchEvent,
    ExtractionReport,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # how long --address may stay silent before the run stops with a named error


# ---------------------------------------------------------------------------------------------- engine
class ClusterUnreachable(ValueError):
    """``--address`` names no Ray cluster that answers (a bad input: exit 2)."""


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout_s`` when nothing listens at HOST:PORT: Ray itself retries for minutes, logging."""
    import socket

    if address in ("auto", "local") or "://" in address:  # ray:// (client) and auto: Ray answers at once
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnreachable(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379) or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterUnreachable(
            f"--address {address}: no Ray cluster answers there ({why}); start one with `ray start --head` "
            "or leave --address out to start a local one"
        ) from exc


class RayEngine:
    """A connection to a Ray cluster (``address``; a new local one when None), used as a context manager."""

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        shard_rows: int = SHARD_ROWS,
        search_shard_rows: int = SEARCH_SHARD_ROWS,
        num_cpus: int | None = None,
        progress: bool = True,
        on_batch: Callable[[BatchEvent], None] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if shard_rows < 1 or search_shard_rows < 1 or cpus_per_worker <= 0:
            raise ValueError("shard sizes and the CPU share per worker must be positive")
        self.address, self.workers, self.cpus_per_worker = address, workers, cpus_per_worker
        self.shard_rows, self.search_shard_rows = shard_rows, search_shard_rows
        self.num_cpus, self.progress, self.on_batch = num_cpus, progress, on_batch
        self.reports: list[ExtractionReport] = []
        self._started_here = False

    def __enter__(self) -> RayEngine:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Join the cluster at ``address``, or start a local one; a session already open is reused."""
        import ray

        if ray.is_initialized():
            _quiet_ray_data()
            return
        if self.address:
            check_address(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as exc:  # "auto" with no cluster on this machine, a GCS that went away
                raise ClusterUnreachable(f"--address {self.address}: {exc}") from exc
        else:
            ray.init(
                num_cpus=self.num_cpus,
                _node_ip_address=LOCAL_NODE_IP,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        self._started_here = True
        _quiet_ray_data()

    def close(self) -> None:
        """Disconnect (and stop the local cluster) when this engine opened the session."""
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
        self._started_here = False

    def extractor(self, detector, **options) -> RayExtractor:
        """A drop-in for :class:`copybench.extract.Extractor` (same options) that runs on the cluster."""
        self.connect()
        return RayExtractor(self, detector, **options)

    def n_workers(self, device: str) -> int:
        """Detector actors: ``workers``, else one per GPU (CUDA) or per ``cpus_per_worker`` CPUs but one."""
        import ray

        if self.workers is not None:
            return self.workers
        res = ray.cluster_resources()
        if device.startswith("cuda"):
            return max(1, int(res.get("GPU", 0)))
        # one CPU stays free for the read tasks and the driver: actors holding every CPU would starve the reads
        return max(1, int((res.get("CPU", 1) - 1) // self.cpus_per_worker))

    # ------------------------------------------------------------------------------------------ search
    def search_descriptors(self, settings, qd, rd, k: int):
        """``copybench run``'s search (cosine or split, as ``settings`` say) sharded over reference rows."""
        q = qd.tokens if qd.tokens is not None else qd.vectors
        r = rd.tokens if rd.tokens is not None else rd.vectors
        fn = partial(_run_search, settings, qd.tokens is not None)
        return self.sharded_topk(fn, np.asarray(q), r, k, device=settings.device, label="search")

    def search_top_k(self, q_arr, q_rows, r_arr, r_rows, k: int, *, similarity="cosine", device="cpu"):
        """:func:`copybench.scan.search_top_k` with the training rows sharded over Ray tasks."""
        from copybench.scan.search import _gather

        q = _gather(q_arr, np.asarray(q_rows, dtype=np.int64))
        r_rows = np.asarray(r_rows, dtype=np.int64)
        fn = partial(_scan_search, similarity, device)
        return self.sharded_topk(
            fn, q, _RowView(r_arr, r_rows), k, device=device, label="search", rows=r_rows
        )

    def sharded_topk(self, fn, q, r, k: int, *, device: str, label: str, rows=None):
        """Exact top-k of ``q`` against ``r``: one Ray task per reference shard, merged in shard order."""
        import ray

        self.connect()
        n = len(r)
        best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(q), k), -1, dtype=np.int64)
        if n == 0 or len(q) == 0:
            return best_s, best_i
        task = ray.remote(_search_shard).options(
            num_gpus=1 if str(device).startswith("cuda") else 0, num_cpus=1, max_retries=MAX_RETRIES
        )
        q_ref, starts = ray.put(q), list(range(0, n, self.search_shard_rows))
        window = 2 * self.n_workers(
            device
        )  # shards in flight: bounds the reference bytes in the object store
        pending = []
        from copybench.progress import progress_bar

        with progress_bar(f"{label}: reference shards", len(starts), self.progress) as bar:
            for start in starts:
                block = np.ascontiguousarray(r[start : start + self.search_shard_rows])
                pending.append(task.remote(fn, q_ref, block, start, k))
                if len(pending) >= window:
                    best_s, best_i = merge_topk(best_s, best_i, *ray.get(pending.pop(0)), k)
                    bar.advance()
            for ref in pending:  # in submission order: earlier shards win exact ties, as in one process
                best_s, best_i = merge_topk(best_s, best_i, *ray.get(ref), k)
                bar.advance()
        if rows is not None:
            best_i = np.where(best_i >= 0, rows[np.clip(best_i, 0, None)], -1)
        return best_s, best_i


class _RowView:
    """Rows ``rows`` of a (memory-mapped) array, sliced lazily so one shard at a time is read."""

    def __init__(self, arr, rows: np.ndarray) -> None:
        self.arr, self.rows = arr, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, sl: slice) -> np.ndarray:
        from copybench.scan.search import _gather

        return _gather(self.arr, self.rows[sl])


def _search_shard(fn, q: np.ndarray, block: np.ndarray, start: int, k: int):
    """One search task: top-k of all queries in one reference shard, indices made global."""
    s, i = fn(q, block, k)
    return s, np.where(i >= 0, i + start, -1)


def _run_search(settings, tokens: bool, q: np.ndarray, r: np.ndarray, k: int):
    from copybench.cache import Descriptors
    from copybench.evaluate import _search

    def desc(a):
        return Descriptors([""] * len(a), a, a if tokens else None)

    return _search(settings, desc(q), desc(r), k)


def _scan_search(similarity: str, device: str, q: np.ndarray, r: np.ndarray, k: int):
    from copybench.scan.search import search_top_k

    return search_top_k(q, np.arange(len(q)), r, np.arange(len(r)), k, similarity=similarity, device=device)


def _quiet_ray_data() -> None:
    """Ray Data draws its own progress bars on stdout; copybench draws one bar on stderr instead."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


@contextmanager
def engine_from_args(args) -> Iterator[RayEngine | None]:
    """The engine the CLI options ask for (None = local); with ray, prints the images/s summary at the end."""
    if getattr(args, "engine", "local") != "ray":
        if getattr(args, "address", None) or getattr(args, "workers", None):
            raise ValueError("--address and --workers need --engine ray")
        yield None
        return
    _require_ray()
    engine = RayEngine(
        args.address, workers=args.workers, shard_rows=args.shard_rows, progress=not args.quiet
    )
    with engine:
        try:
            yield engine
        finally:
            if engine.reports and not args.quiet:
                print_reports(engine.reports)


def _require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise ValueError("--engine ray needs Ray: pip install 'copybench[ray]' (ray[data] and pyarrow)")


def print_reports(reports: list[ExtractionReport], console=None) -> None:
    """Images/s per worker and in total for each extraction, as a rich table on stderr."""
    from rich.table import Table

    from copybench.progress import console as make_console

    console = console or make_console(stderr=True)
    table = Table(
        title="extraction on Ray: images/s per worker over its busy seconds, in total over wall seconds"
    )
    for col in ("detector", "images", "worker", "images done", "seconds", "images/s"):
        table.add_column(col, justify="right" if col not in ("detector", "images", "worker") else "left")
    for rep in reports:
        what = f"{rep.label} ({rep.images} computed, {rep.cached} cached)"
        for w in rep.workers:
            table.add_row(
                rep.detector, what, w.worker, str(w.images), f"{w.busy_s:.1f}", f"{w.images_per_s:.1f}"
            )
        table.add_row(
            rep.detector,
            what,
            "[b]total[/b]",
            str(rep.images),
            f"{rep.wall_s:.1f}",
            f"{rep.images_per_s:.1f}",
        )
    console.print(table)
