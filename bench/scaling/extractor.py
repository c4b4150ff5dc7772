"""Extraction on Ray: :class:`RayExtractor` streams image bytes to detector actors and stores their descriptors
in the local shard store (same format and key as the local :class:`copybench.extract.Extractor`).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from copybench.scaling.actor import _DetectorActor, _read_bytes, detector_load_args
from copybench.scaling.records import MAX_RETRIES, READ_CPUS, BatchEvent, ExtractionReport, WorkerStats
from copybench.scaling.store import open_store

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- extraction
class RayExtractor:
    """Runs one detector over image lists on a Ray cluster; same ``run`` contract as the local Extractor."""

    def __init__(
        self,
        engine,  # the copybench.scaling.engine.RayEngine it runs on (not imported: engine imports this)
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
        from copybench.extract import Extractor

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

        from copybench.extract import descriptor_key

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
        from copybench.progress import progress_bar

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
    from copybench.decode import DECODES, pillow_decode_key

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
