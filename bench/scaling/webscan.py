""":func:`scan_shards`: the replication scan when ``--train`` (and possibly ``--generated``) names shards.

The steps and outputs of :func:`copybench.scan.pipeline.scan` (same detector loading, threshold rule,
calibration, statistics, summary.json, matches.csv, grids and report); the descriptors go through the shard
store and the search is the resumable one (:mod:`.shardscan`). ``ann`` switches the generated-vs-training
search to a faiss IVF index (:mod:`.ann`), with its recall and the exact rate on a query sample in the summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copybench.scaling.shardextract import duplicate_keys, extract_shards
from copybench.scaling.shards import is_shard_spec, list_shards
from copybench.scaling.shardscan import (
    ShardSide,
    copy_samples,
    load_vectors,
    runner_for,
    store_for,
    train_baseline,
)
from copybench.scaling.shardsearch import search_store

log = logging.getLogger(__name__)


@dataclass
class _Gen:
    """The generated side: descriptors of the readable images, their names and paths, and what failed."""

    vectors: np.ndarray
    names: list[str]
    paths: list[str]
    found: int
    skipped: list[dict]


def scan_shards(generated, train, detector: str, *, out, ann=None, engine=None, **options) -> dict:
    """Scan ``generated`` (folder or shards) against ``train`` (shards); the options of ``scan``."""
    from copybench.scan.pipeline import _check_args, _extractor, _load_detector, _threshold_rule

    o = {"similarity": "cosine", "threshold": None, "top_k": 5, "device": "cpu", "batch_size": 32}
    o |= {"decode": "auto", "allow_random": False, "baseline_sample": 10000, "calibrate": None, "seed": 0}
    o |= {"download": False, "weights": None, "dtype": "fp32", "protocol": "native", "progress": True}
    o |= {"descriptor_dir": None} | options
    out = Path(out)
    if o["similarity"] != "cosine":
        raise ValueError(
            "shard inputs are scanned with --similarity cosine (split needs token shards: not yet)"
        )
    roots = {} if is_shard_spec(generated) else {"generated": Path(generated)}
    _check_args("cosine", o["threshold"], o["top_k"], o["baseline_sample"], out, roots)
    train_refs = list_shards(train)
    det = _load_detector(
        detector, o["allow_random"], o["device"], "cosine", o["download"], o["weights"], o["protocol"],
        o["progress"],
    )  # fmt: skip
    rule = _threshold_rule(o["protocol"], "cosine", o["threshold"], o["calibrate"])
    settings = {k: o[k] for k in ("similarity", "top_k", "device", "batch_size", "seed", "baseline_sample")}
    settings |= {"dtype": o["dtype"], "protocol": o["protocol"]}
    ext = _extractor(
        engine, det, settings, descriptor_dir=o["descriptor_dir"], progress=o["progress"], decode=o["decode"]
    )
    store = store_for(ext, o["descriptor_dir"], out)
    t0 = time.perf_counter()
    calibration = _calibrate(o, ext)
    t1 = time.perf_counter()
    train_side = ShardSide(
        train_refs, extract_shards(train_refs, store, runner_for(ext, engine), engine=engine)
    )
    gen = _generated(generated, ext, store, engine)
    t2 = time.perf_counter()
    found = _search(gen, train_side, store, settings, engine, ann, rule, calibration)
    timings = {"calibration_s": t1 - t0, "extract_s": t2 - t1, "search_s": time.perf_counter() - t2}
    return _finish(
        out, det, (generated, train), settings, gen, train_side, store, found, timings, rule, calibration
    )


def _calibrate(o: dict, ext) -> dict | None:
    from copybench.scan.pipeline import _calibration

    return _calibration(o["calibrate"], ext, "cosine", o["top_k"], o["device"])


def _generated(generated, ext, store, engine) -> _Gen:
    """Descriptors of the generated images: a folder through the extractor, or shards through the store."""
    from copybench.scan.search import files_fingerprint, find_images

    if is_shard_spec(generated):
        refs = list_shards(generated)
        side = ShardSide(refs, extract_shards(refs, store, runner_for(ext, engine), engine=engine))
        vecs, ids = load_vectors(store, side)
        names = side.names(store, ids)
        labels = [f"{Path(names[int(i)][0]).name}:{names[int(i)][1]}" for i in ids]
        paths = [f"{names[int(i)][0]}:{names[int(i)][1]}" for i in ids]
        return _Gen(vecs, labels, paths, side.x.rows + side.x.n_errors, side.skipped("generated"))
    root = Path(generated).expanduser().resolve()
    paths = find_images(root, "generated")
    d = ext.run(paths, fingerprint=files_fingerprint(paths), label="generated images")
    ok = np.flatnonzero(d.ok)
    skipped = [{"path": d.paths[r], "error": e, "role": "generated"} for r, e in sorted(d.failed.items())]
    kept = [paths[r] for r in ok]
    return _Gen(
        np.asarray(d.vectors)[ok], [str(Path(p).relative_to(root)) for p in kept], kept, len(paths), skipped
    )


@dataclass
class _Found:
    scores: np.ndarray
    ids: np.ndarray
    base: np.ndarray
    b_ids: np.ndarray
    search: dict
    ann: dict | None
    duplicates: tuple[int, list[str]]


def _search(
    gen: _Gen, train: ShardSide, store, settings: dict, engine, ann, rule: dict, calibration
) -> _Found:
    """Top-k over the store (exact and resumable, or ANN with its check), the baseline, duplicate keys."""
    if len(gen.vectors) == 0:
        raise ValueError("--generated: no readable image")
    if train.x.rows < 2:
        raise ValueError(f"--train: only {train.x.rows} readable image(s) in the shards; need at least 2")
    k, device = settings["top_k"], settings["device"]
    ann_info = None
    if ann is None:
        scores, ids, stats = search_store(gen.vectors, store, train.shards, k, engine=engine, device=device)
        search = {"kind": "exact", "pairs": stats.pairs, "computed": stats.computed, "reused": stats.reused}
    else:
        from copybench.scaling.ann import ann_scan

        thr = calibration["threshold"] if calibration else rule["value"]
        scores, ids, ann_info = ann_scan(gen.vectors, store, train.shards, k, ann, thr, rule["rule"], engine)
        search = {"kind": ann_info["index"]}
    b_ids, base, _ = train_baseline(
        store, train.shards, settings["baseline_sample"], settings["seed"], engine=engine, device=device
    )
    dups = duplicate_keys(store, [s["id"] for s in train.shards])
    return _Found(scores, ids, base, b_ids, search, ann_info, dups)


def _matches(out: Path, gen: _Gen, train: ShardSide, store, found: _Found) -> list[dict]:
    """One entry per generated image; training matches named SHARD:KEY, the grid rows' images copied out."""
    from copybench.scan.report import GRID_MAX_ROWS

    names = train.names(store, found.ids)
    shown = np.argsort(-found.scores[:, 0], kind="stable")[:GRID_MAX_ROWS]
    copied = copy_samples(out, {names[int(i)] for i in found.ids[shown].ravel() if i >= 0})
    table = []
    for g, (srow, irow) in enumerate(zip(found.scores, found.ids)):
        ms = []
        for s, i in zip(srow, irow):
            if i < 0:
                continue
            uri, key = names[int(i)]
            ms.append({"train": f"{Path(uri).name}:{key}", "train_path": copied.get((uri, key), f"{uri}:{key}"),
                       "shard": uri, "key": key, "similarity": float(s)})  # fmt: skip
        table.append({"generated": gen.names[g], "generated_path": gen.paths[g], "matches": ms})
    return table


def _finish(out, det, inputs, settings, gen, train, store, found: _Found, timings, rule, calibration) -> dict:
    from copybench.env import environment
    from copybench.scan.pipeline import SCAN_SCHEMA_VERSION, _detector_info, _statistics
    from copybench.scan.report import write_outputs

    n_base, n_train = len(found.b_ids), train.x.rows
    dup_n, dup_msgs = found.duplicates
    summary = {
        "schema_version": SCAN_SCHEMA_VERSION,
        "kind": "replication_scan",
        "detector": _detector_info(det),
        "random_weights": det.weights.status == "random",
        "inputs": {"generated": str(inputs[0]), "train": str(inputs[1])},
        "settings": settings,
        "counts": {
            "generated_found": gen.found,
            "generated_scanned": len(gen.vectors),
            "train_found": train.x.rows + train.x.n_errors,
            "train_indexed": n_train,
        },
        "shards": _shard_block(train, store, dup_n, dup_msgs),
        "search": found.search,
        "baseline": {"n": n_base, "of": n_train, "sampled": n_base < n_train, "seed": settings["seed"]},
        "timings": timings,
        **_statistics(found.scores[:, 0], found.base, rule, calibration),
        "skipped": train.skipped("train") + gen.skipped + (calibration or {}).get("skipped", []),
        "environment": environment(settings["device"], settings["dtype"]),
    }
    if found.ann is not None:
        summary["ann"] = found.ann
    matches = _matches(out, gen, train, store, found)
    return write_outputs(out, summary, matches, found.scores[:, 0], found.base)


def changed_since_listed(refs) -> list[str]:
    """Shards whose size or mtime moved while the scan ran (their descriptors describe the bytes read then;
    the next run re-hashes them and recomputes only those that really changed)."""
    from copybench.scaling.shards import ShardError, stat_shard

    moved = []
    for ref in refs:
        try:
            now = stat_shard(ref)
        except ShardError as exc:
            moved.append(f"{ref.uri}: {exc}")
            continue
        if (now.size, now.mtime_ns) != (ref.size, ref.mtime_ns):
            moved.append(f"{ref.uri}: changed during the scan (size {ref.size} -> {now.size})")
    for m in moved:
        log.warning("%s", m)
    return moved


def _shard_block(train: ShardSide, store, dup_n: int, dup_msgs: list[str]) -> dict:
    from copybench.scaling.shards import fingerprint

    return {
        "n": len(train.shards),
        "fingerprint": fingerprint(train.refs, {s["uri"]: s["sha256"] for s in train.shards}),
        "store": f"{store.root}/{store.key}",
        "computed": train.x.computed,
        "reused": train.x.reused,
        "changed": train.x.changed,
        "changed_during_scan": changed_since_listed(train.refs),
        "problems": train.x.n_errors,
        "duplicate_keys": dup_n,
        "duplicates": dup_msgs,
        "descriptor_bytes": sum(s["bytes"] for s in train.shards),
        "input_bytes": sum(r.size for r in train.refs),
    }
