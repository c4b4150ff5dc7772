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
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .options import RAY_SHARD_ROWS
from .retrieval import merge_topk

log = logging.getLogger(__name__)

# A cluster this process starts itself binds to loopback: its traffic never leaves the machine.
LOCAL_NODE_IP = "127.0.0.1"
MAX_RETRIES = 3  # restarts of a dead detector actor, and retries of a task lost with its worker
SHARD_ROWS = RAY_SHARD_ROWS  # descriptors per cache shard written by the driver
SEARCH_SHARD_ROWS = 262_144  # references per search task (the local search's block)
READ_CPUS = 0.25  # CPU share of one byte-reading task: I/O bound, so several run beside each actor


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class WorkerStats:
    """One detector actor's share of an extraction: images done and seconds spent decoding and running."""

    worker: str  # node address and process id of the actor
    images: int
    busy_s: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.busy_s if self.busy_s > 0 else float("nan")


@dataclass(frozen=True)
class ExtractionReport:
    """Images/s per worker and in total for one extraction (one image list, one detector)."""

    detector: str
    label: str
    images: int  # computed in this call
    cached: int  # found in the cache (finished shards of an earlier run)
    wall_s: float
    workers: tuple[WorkerStats, ...] = ()

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass(frozen=True)
class BatchEvent:
    """Passed to ``on_batch`` after each batch the driver stores (progress hooks, fault-injection tests)."""

    label: str
    done: int
    total: int
    worker: str
    pid: int


# ---------------------------------------------------------------------------------------------- engine
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
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
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
        from .scan import _gather

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
        from .progress import progress_bar

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
        from .scan import _gather

        return _gather(self.arr, self.rows[sl])


def _search_shard(fn, q: np.ndarray, block: np.ndarray, start: int, k: int):
    """One search task: top-k of all queries in one reference shard, indices made global."""
    s, i = fn(q, block, k)
    return s, np.where(i >= 0, i + start, -1)


def _run_search(settings, tokens: bool, q: np.ndarray, r: np.ndarray, k: int):
    from .cache import Descriptors
    from .run import _search

    def desc(a):
        return Descriptors([""] * len(a), a, a if tokens else None)

    return _search(settings, desc(q), desc(r), k)


def _scan_search(similarity: str, device: str, q: np.ndarray, r: np.ndarray, k: int):
    from .scan import search_top_k

    return search_top_k(q, np.arange(len(q)), r, np.arange(len(r)), k, similarity=similarity, device=device)


def _quiet_ray_data() -> None:
    """Ray Data draws its own progress bars on stdout; copybench draws one bar on stderr instead."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


# ---------------------------------------------------------------------------------------------- extraction
class RayExtractor:
    """Runs one detector over image lists on a Ray cluster; same ``run`` contract as the local Extractor."""

    def __init__(
        self,
        engine: RayEngine,
        detector,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        progress: bool = True,
        scales: tuple[float, ...] | None = None,
        num_workers: int | None = None,
        decode: str = "auto",
        draft: bool = True,
        raw: bool = False,
    ) -> None:
        from .extract import Extractor

        # the local Extractor validates the options and defines what a descriptor is; actors build their own
        local = Extractor(detector, dtype=dtype, batch_size=batch_size, num_workers=0, scales=scales, raw=raw)
        self.engine, self.detector, self.device, self.dtype = engine, detector, str(device), dtype
        self.batch_size, self.progress, self.scales = batch_size, progress, local.scales
        self.cache_dir, self.decode, self.draft, self.raw = cache_dir, decode, draft, raw
        self.decode_key = expected_decode_key(
            decode, self.device, draft and local.draft and bool(local.preprocess.min_decode_side)
        )

    def run(
        self, paths: list[str], *, tokens: bool = False, fingerprint: str | None = None, label: str = "images"
    ):
        """Descriptors for ``paths``: finished shards from the cache, the rest computed on the cluster."""
        return self.run_many([(paths, fingerprint, label)], tokens=tokens)[0]

    def run_many(self, jobs: list[tuple[list[str], str | None, str]], *, tokens: bool = False) -> list:
        """Descriptors for several (paths, fingerprint, label) lists through ONE actor pool (one model load)."""
        from contextlib import ExitStack

        from .extract import descriptor_key

        start = time.perf_counter()
        with ExitStack() as stack:
            stores = []
            for paths, fingerprint, _ in jobs:
                key = descriptor_key(
                    self, paths, tokens=tokens, fingerprint=fingerprint, decode=self.decode_key
                )
                stores.append(stack.enter_context(open_store(self.cache_dir, key, len(paths))))
            todo = [[] if s.complete() else s.missing_rows() for s in stores]
            stats = self._extract([j[0] for j in jobs], todo, stores, tokens, " + ".join(j[2] for j in jobs))
            results = [
                s.load(paths) if s.complete() else s.finalize(paths, self.detector.spec.dims, tokens)
                for s, (paths, _, _) in zip(stores, jobs)
            ]
        wall = time.perf_counter() - start
        n_todo, n_all = sum(map(len, todo)), sum(len(j[0]) for j in jobs)
        for res, rows in zip(results, todo):
            res.seconds = wall * len(rows) / n_todo if n_todo else 0.0
        label = " + ".join(j[2] for j in jobs)
        self.engine.reports.append(
            ExtractionReport(self.detector.spec.name, label, n_todo, n_all - n_todo, wall, stats)
        )
        return results

    def _dataset(self, paths: list[list[str]], todo: list[list[int]], tokens: bool):
        """Ray Data pipeline: (job, row, path) -> bytes (read tasks) -> descriptors (detector actor pool)."""
        import ray

        workers = self.engine.n_workers(self.device)
        items = [{"job": j, "row": r, "path": paths[j][r]} for j, rows in enumerate(todo) for r in rows]
        # several blocks per actor, so every actor gets work and a lost one costs a small block
        n_blocks = max(1, min(-(-len(items) // self.batch_size), 8 * workers))
        ds = ray.data.from_items(items, override_num_blocks=n_blocks)
        ds = ds.map_batches(_read_bytes, batch_size=self.batch_size, batch_format="numpy", num_cpus=READ_CPUS)
        gpu = self.device.startswith("cuda")
        with (
            warnings.catch_warnings()
        ):  # Ray 2.60 deprecates remote args here but has no other way to bound them
            warnings.simplefilter("ignore", DeprecationWarning)
            return ds.map_batches(
                _DetectorActor,
                fn_constructor_kwargs={
                    "load": detector_load_args(self.detector),
                    "options": self._options(tokens),
                },
                batch_size=self.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_gpus=1 if gpu else None,
                num_cpus=None if gpu else self.engine.cpus_per_worker,
                # a dead actor is restarted and the batches it held retried, a bounded number of times, so a
                # detector that crashes on every batch fails the run instead of looping
                max_restarts=MAX_RETRIES,
                max_task_retries=MAX_RETRIES,
            )

    def _options(self, tokens: bool) -> dict:
        return {
            "device": "cuda" if self.device.startswith("cuda") else "cpu",
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "scales": self.scales,
            "tokens": tokens,
            "threads": max(1, int(self.engine.cpus_per_worker)),
            "decode": self.decode,
            "draft": self.draft,
            "decode_key": self.decode_key,
            "raw": self.raw,
        }

    def _extract(self, paths, todo, stores, tokens: bool, label: str) -> tuple[WorkerStats, ...]:
        """Stream the pipeline's batches into the jobs' shard stores; per-worker images and busy seconds."""
        from .progress import progress_bar

        total = sum(map(len, todo))
        images: dict[str, int] = {}
        busy: dict[str, float] = {}
        if not total:
            return ()
        try:
            with progress_bar(f"{self.detector.spec.name}: {label} (ray)", total, self.progress) as bar:
                done = 0
                for batch in self._dataset(paths, todo, tokens).iter_batches(
                    batch_size=None, batch_format="numpy", prefetch_batches=2
                ):
                    for j, store in enumerate(stores):
                        _store_batch(store, _select(batch, batch["job"] == j), tokens, self.engine.shard_rows)
                    worker, n = str(batch["worker"][0]), len(batch["row"])
                    images[worker] = images.get(worker, 0) + n
                    busy[worker] = busy.get(worker, 0.0) + float(batch["busy_s"].sum())
                    done += n
                    bar.advance(n)
                    if self.engine.on_batch is not None:
                        self.engine.on_batch(BatchEvent(label, done, total, worker, int(batch["pid"][0])))
        except KeyboardInterrupt:
            for store in stores:
                store.flush()  # Ctrl-C keeps the rows already done: a rerun resumes after them
            raise
        for store in stores:
            store.flush()
        return tuple(WorkerStats(w, images[w], busy[w]) for w in sorted(images))


def expected_decode_key(decode: str, device: str, draft: bool) -> str:  # draft: reduced-size decoding applies
    """The cache key's decode part that the local Extractor would use on ``device`` (``auto``: nvjpeg on CUDA);
    each actor checks its own against it, so descriptors are never keyed under another decoder."""
    from .decode import DECODES, pillow_decode_key

    cuda = device.startswith("cuda")
    if decode not in DECODES:
        raise ValueError(f"unknown decode {decode!r}; choose one of {', '.join(DECODES)}")
    if decode == "nvimgcodec" and not cuda:
        raise ValueError("decode 'nvimgcodec' needs a CUDA device")
    if decode == "auto":
        decode = "device" if cuda else "workers"
    if decode == "workers":
        return pillow_decode_key(draft)
    return decode


def _select(batch: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in batch.items()}


def _store_batch(store, batch: dict, tokens: bool, shard_rows: int) -> None:
    """Failures and descriptors of one streamed batch into a shard store, flushing every ``shard_rows``."""
    rows, errors = batch["row"], batch["error"]
    ok = errors == ""
    for row, err in zip(rows[~ok], errors[~ok]):
        log.warning("skipped %s", err)
        store.add_failure(int(row), str(err))
    if ok.any():
        store.add(
            [int(r) for r in rows[ok]],
            np.asarray(batch["vector"][ok], dtype=np.float32),
            np.asarray(batch["tokens"][ok], dtype=np.float16) if tokens else None,
        )
    if len(store.rows) >= shard_rows:
        store.flush()


def detector_load_args(detector) -> dict:
    """How an actor builds the same detector: its name, weights file and (random weights) the driver's state."""
    import ray

    from copybench.detectors.registry import get_entry

    spec = detector.spec
    factory = get_entry(spec.name).factory if _registered(spec.name) else None
    module = getattr(factory, "__module__", "") if factory is not None else ""
    name = spec.name if module.startswith("copybench") or factory is None else f"{module}:{factory.__name__}"
    w = detector.weights
    state = None
    if w.status == "random":  # random init differs per process: every actor gets the driver's weights
        state = ray.put({k: v.cpu() for k, v in detector.state_dict().items()})
    return {
        "name": name,
        "weights_file": w.source if w.status == "real" else None,
        "allow_random": w.status == "random",
        "sha256": w.sha256,
        "state": state,
        "spec": spec,  # a protocol's preprocessing lives in the spec (copybench.protocols.apply_protocol)
    }


def _registered(name: str) -> bool:
    from copybench.detectors.registry import UnknownDetectorError, get_entry

    try:
        get_entry(name)
    except UnknownDetectorError:
        return False
    return True


def _read_bytes(batch: dict) -> dict:
    """A read task: each file's bytes, or an error naming it (pyarrow filesystems for URIs)."""
    data, errors = [], []
    for path in batch["path"]:
        try:
            data.append(_read_file(str(path)))
            errors.append("")
        except OSError as exc:
            data.append(b"")
            errors.append(f"{path}: cannot read ({exc})")  # as copybench.decode's byte readers say
    return {
        "job": batch["job"],
        "row": batch["row"],
        "path": batch["path"],
        "data": np.array(data, dtype=object),
        "read_error": np.array(errors, dtype=object),
    }


def _read_file(path: str) -> bytes:
    if "://" in path:
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_input_file(inner) as f:
            return f.readall()
    with open(path, "rb") as f:
        return f.read()


class _DetectorActor:
    """One detector on one GPU or CPU slice: decodes a batch of file bytes with the local Extractor's decode
    strategy (Pillow with reduced-size JPEG decoding, or nvjpeg on the GPU) and returns its descriptors."""

    def __init__(self, load: dict, options: dict) -> None:
        import socket

        import torch

        from .decode import make_decoder
        from .extract import Extractor

        torch.set_num_threads(options["threads"])
        det = _build_detector(load, options["device"])
        opts = {k: options[k] for k in ("device", "dtype", "batch_size", "scales", "decode", "draft", "raw")}
        self.ext = Extractor(det, num_workers=0, progress=False, **opts)
        if self.ext._decode_key() != options["decode_key"]:
            raise RuntimeError(
                f"decode strategy {self.ext._decode_key()!r} on {socket.gethostname()} differs from the "
                f"{options['decode_key']!r} the driver keyed the cache with; pass --decode explicitly"
            )
        self.feeder = make_decoder(
            self.ext.decode,
            self.ext.preprocess,
            device=self.ext.device,
            batch_size=self.ext.batch_size,
            num_workers=0,
            draft=self.ext.draft,
        )
        self.tokens = options["tokens"]
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        t0 = time.perf_counter()
        n = len(batch["row"])
        decoded = self._decode(batch)
        errors = np.array([""] * n, dtype=object)
        for j, err in decoded.failures:
            errors[j] = err
        vectors, tokens = self._forward(decoded, n)
        out = {
            "job": batch["job"],
            "row": batch["row"],
            "vector": vectors,
            "error": errors,
            "worker": np.array([self.worker] * n, dtype=object),
            "pid": np.full(n, os.getpid(), dtype=np.int64),
            "busy_s": np.full(n, (time.perf_counter() - t0) / max(n, 1)),
        }
        if self.tokens:
            out["tokens"] = tokens
        return out

    def _decode(self, batch: dict):
        """A :class:`copybench.decode.Batch` indexed by position in ``batch``, decoded as the local run does."""
        from .decode import Batch, decode_on_cpu, stack_groups

        paths = [str(p) for p in batch["path"]]
        # a file the read task could not read is decoded from its path here, so its error reads as locally
        datas = [d if not e else None for d, e in zip(batch["data"], batch["read_error"])]
        if self.ext.decode == "workers":
            done = [
                decode_on_cpu(p, self.ext.preprocess, self.feeder.min_side, d) for p, d in zip(paths, datas)
            ]
            ok = [(j, img) for j, (img, err) in enumerate(done) if err is None]
            bad = tuple((j, err) for j, (_, err) in enumerate(done) if err is not None)
            return Batch(stack_groups(ok), bad, len(paths))
        self.feeder.paths = paths  # its CPU fallback (PNG, CMYK, corrupt JPEG) decodes from the path
        items = [
            (j, d, None) if d else (j, None, e or f"{p}: empty file (0 bytes)")
            for j, (p, d, e) in enumerate(zip(paths, batch["data"], batch["read_error"]))
        ]
        return self.feeder._decode_batch(items, None)

    def _forward(self, decoded, n: int):
        """Descriptors (n, D) and tokens (n, T, D) of the decoded groups; rows that failed stay zero."""
        vectors = np.zeros((n, self.ext.detector.spec.dims), dtype=np.float32)
        tokens = None
        for idx, x in decoded.groups:
            glob, toks = self.ext.forward(x)
            vectors[list(idx)] = glob.cpu().numpy()
            if self.tokens:
                t = toks.cpu().half().numpy()
                if tokens is None:
                    tokens = np.zeros((n, *t.shape[1:]), dtype=np.float16)
                tokens[list(idx)] = t
        if self.tokens and tokens is None:
            tokens = np.zeros((n, 1, vectors.shape[1]), dtype=np.float16)
        return vectors, tokens


def _build_detector(load: dict, device: str):
    """The driver's detector, rebuilt here: same weights file (checked by sha256) or the driver's random weights."""
    import socket

    from copybench.detectors import create_detector

    det = create_detector(
        load["name"], weights_file=load["weights_file"], allow_random=load["allow_random"], device=device
    )
    if load["state"] is not None:
        import ray

        det.load_state_dict(ray.get(load["state"]))
    if (
        det.spec.library != load["spec"].library
    ):  # a hub model: another version builds other pixels/descriptors
        raise RuntimeError(
            f"detector {load['name']!r}: {socket.gethostname()} has {det.spec.library}, the driver "
            f"{load['spec'].library}; install the driver's version on every worker"
        )
    if det.spec != load["spec"]:  # as apply_protocol does: same model and weights, the driver's spec
        import copy

        det = copy.copy(det)
        det.spec = load["spec"]
    if det.weights.sha256 != load["sha256"]:
        raise RuntimeError(
            f"detector {load['name']!r}: the weights on {socket.gethostname()} ({det.weights.source}) "
            f"differ from the driver's (sha256 {det.weights.sha256} != {load['sha256']})"
        )
    return det


# ---------------------------------------------------------------------------------------------- cache folders
def is_uri(cache_dir: str | Path | None) -> bool:
    """A cache location written through pyarrow's filesystems (``s3://``, ``gs://``, ``file://``...)."""
    return cache_dir is not None and "://" in str(cache_dir)


@contextmanager
def open_store(cache_dir: str | Path | None, key: str, n: int) -> Iterator:
    """The descriptor cache's shard store for ``key``: in memory, in a folder, or staged and mirrored to a URI."""
    from .cache import ShardStore

    if not is_uri(cache_dir):
        with ShardStore(Path(cache_dir) / key if cache_dir is not None else None, n, key) as store:
            yield store
        return
    mirror = _Mirror(f"{str(cache_dir).rstrip('/')}/{key}", key)
    with ShardStore(mirror.pull(), n, key) as store:
        mirror.watch(store)
        try:
            yield store
        finally:
            mirror.push()


class _Mirror:
    """A local staging folder kept file-for-file equal to a folder on a pyarrow filesystem."""

    def __init__(self, uri: str, key: str) -> None:
        import tempfile

        import pyarrow.fs

        self.fs, self.remote = pyarrow.fs.FileSystem.from_uri(uri)
        self.local = Path(tempfile.gettempdir()) / "copybench-staging" / key
        self.pushed: set[str] = set()

    def _remote_files(self) -> dict[str, int]:
        import pyarrow.fs

        self.fs.create_dir(self.remote, recursive=True)
        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.remote))
        return {Path(i.path).name: i.size for i in infos if i.type == pyarrow.fs.FileType.File}

    def pull(self) -> Path:
        """Make the staging folder a copy of the remote one (finished shards, or the final arrays)."""
        self.local.mkdir(parents=True, exist_ok=True)
        remote = {n: s for n, s in self._remote_files().items() if not n.startswith(".")}
        for p in self.local.iterdir():
            if not p.name.startswith(".") and (p.name not in remote or p.stat().st_size != remote[p.name]):
                p.unlink()
        for name in remote:
            target = self.local / name
            if not target.exists():
                with self.fs.open_input_stream(f"{self.remote}/{name}") as src:
                    target.write_bytes(src.readall())
        self.pushed = set(remote)
        return self.local

    def watch(self, store) -> None:
        """Push after every shard the store flushes, so a killed run leaves its finished shards remotely."""
        flush = store.flush

        def flush_and_push() -> None:
            flush()
            self.push()

        store.flush = flush_and_push

    def push(self) -> None:
        """Upload new files (write then move, so readers never see half a file), delete the ones gone locally."""
        local = {p.name for p in self.local.iterdir() if p.is_file() and not p.name.startswith(".")}
        for name in sorted(local - self.pushed):
            tmp = f"{self.remote}/.{name}.part"
            with self.fs.open_output_stream(tmp) as dst:
                dst.write((self.local / name).read_bytes())
            self.fs.move(tmp, f"{self.remote}/{name}")
        for name in sorted(self.pushed - local):
            self.fs.delete_file(f"{self.remote}/{name}")
        self.pushed = local


# ---------------------------------------------------------------------------------------------- CLI helpers
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

    from .progress import console as make_console

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
