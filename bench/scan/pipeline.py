"""Replication scan: which training images does a set of generated images replicate? (docs/PROTOCOLS.md)

For every generated image the scan finds its top-k training images under one detector, similarity and
protocol, and compares the top-1 similarities ("sim(gen,train)") with a baseline: each training image's
similarity to its nearest OTHER training image ("sim(train,train)"). A generation is *flagged* as a replication
when its top-1 similarity passes the threshold. A threshold is only ever applied on the scale it was set for:
the study's 0.5 (rule "> 0.5") comes with ``protocol="dcr"`` and cosine similarity; otherwise the threshold is
given (``threshold``, compared with the protocol's rule) or calibrated at 90% precision on a labelled dataset
with the same detector, similarity and protocol (rule ">=", the rule such a threshold is defined by). The
replication rate is the flagged fraction, with a 95% Wilson score interval.

Scale: descriptors come from :class:`copybench.extract.Extractor` (memory-mapped, cached, resumable) and both
sides are searched in row blocks sized in bytes, merging per-block top-k lists, so no generated x train matrix
is ever built and memory stays bounded for training sets of 100k images and more.

Outputs (``out``): ``summary.json`` (schema :data:`SCAN_SCHEMA_VERSION`), ``matches.csv``, ``histogram.png``,
``matches-NNN.jpg`` grids and a self-contained ``report.html`` (see :mod:`copybench.scan.report`).
The command's options and wrapper are in :mod:`copybench.scan.cli` (imported whenever the parser is built); this
module loads only when a scan runs, and torch, faiss and matplotlib load inside its functions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from copybench.evaluate import extract_lists
from copybench.options import SCAN_SIMILARITIES, renamed_keyword
from copybench.scan.search import (
    baseline_rows,
    distribution_stats,
    files_fingerprint,
    find_images,
    nearest_other,
    search_top_k,
    wilson_interval,
)
from copybench.settings import DEFAULT_CACHE

if TYPE_CHECKING:
    from copybench.protocols import Protocol

log = logging.getLogger(__name__)

SCAN_SCHEMA_VERSION = 1
SIMILARITIES = SCAN_SIMILARITIES
CALIBRATION_PRECISION = 0.9


# ---------------------------------------------------------------------------------------------- inputs


def _check_args(
    similarity: str,
    threshold: float | None,
    top_k: int,
    baseline_sample: int | None,
    out: Path,
    roots: dict[str, Path],
) -> None:
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    if threshold is not None and (not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0):
        raise ValueError(f"--threshold must lie in [-1, 1] (similarities are cosines), got {threshold!r}")
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    if baseline_sample is not None and baseline_sample < 1:
        raise ValueError(f"--baseline-sample must be at least 1, got {baseline_sample}")
    if out.exists() and not out.is_dir():  # checked now, not after the whole extraction
        raise ValueError(f"--out {out} exists and is not a folder")
    for role, root in roots.items():
        # outputs written inside an input folder would be scanned as images on the next run
        if out.resolve().is_relative_to(root.expanduser().resolve()):
            raise ValueError(
                f"--out {out} lies inside the --{role} folder {root}; choose a folder outside it"
            )


# ---------------------------------------------------------------------------------------------- statistics


# ---------------------------------------------------------------------------------------------- search


# ---------------------------------------------------------------------------------------------- calibration
def _descriptor_array(desc, similarity: str) -> np.ndarray:
    return desc.vectors if similarity == "cosine" else desc.tokens


def _require_positive_pairs(ds, dataset_dir: str | Path) -> None:
    """A threshold at 90 % precision needs true copies to measure precision on: refuse before extracting."""
    n_matched = sum(1 for p in ds.positives.values() if p)
    if n_matched == 0:
        raise ValueError(
            f"--calibrate {dataset_dir} has no positive pairs ({len(ds.references)} references, "
            f"{n_matched} of {len(ds.queries)} queries with a match): calibration needs a labelled "
            "copy dataset (copybench data build, or data import with queries and their references)"
        )


def calibrate_threshold(dataset_dir: str | Path, extractor, *, similarity: str, k: int, device: str) -> dict:
    """Similarity threshold at 90% precision on the pooled top-k predictions of a labelled copy dataset."""
    from copybench.datasets.dataset import load_dataset
    from copybench.metrics import recall_at_precision

    ds = load_dataset(dataset_dir)
    _require_positive_pairs(ds, dataset_dir)
    tokens = similarity != "cosine"
    rd = extractor.run(
        ds.references["path"].tolist(),
        tokens=tokens,
        fingerprint=ds.fingerprint,
        label="calibration references",
    )
    qd = extractor.run(
        ds.queries["path"].tolist(), tokens=tokens, fingerprint=ds.fingerprint, label="calibration queries"
    )
    q_rows, r_rows = np.flatnonzero(qd.ok), np.flatnonzero(rd.ok)
    if len(q_rows) == 0 or len(r_rows) == 0:
        raise ValueError(f"--calibrate {dataset_dir}: no readable queries or references")
    scores, idx = search_top_k(
        _descriptor_array(qd, similarity),
        q_rows,
        _descriptor_array(rd, similarity),
        r_rows,
        k,
        similarity=similarity,
        device=device,
    )
    ref_ids = np.asarray(ds.reference_ids + [""], dtype=object)  # -1 (padding) -> ""
    qids = np.asarray(ds.query_ids, dtype=object)[q_rows]
    hits = np.array([[r in ds.positives[q] for r in row] for q, row in zip(qids, ref_ids[idx])], dtype=bool)
    n_pos = np.array([len(ds.positives[q]) for q in qids], dtype=np.int64)
    recall, threshold = recall_at_precision(scores, hits, n_pos, precision=CALIBRATION_PRECISION)
    if not math.isfinite(threshold):
        raise ValueError(
            f"--calibrate {dataset_dir}: detector {extractor.detector.spec.name!r} never reaches "
            f"{CALIBRATION_PRECISION:.0%} precision there, so no threshold can be calibrated"
        )
    skipped = [
        {"path": d.paths[r], "error": e, "role": role}
        for d, role in ((rd, "calibration reference"), (qd, "calibration query"))
        for r, e in sorted(d.failed.items())
    ]
    return {
        "dataset": ds.name,
        "fingerprint": ds.fingerprint,
        "path": str(ds.root),
        "precision": CALIBRATION_PRECISION,
        "recall": recall,
        "threshold": threshold,
        "queries": len(q_rows),
        "positives": int(n_pos.sum()),
        "top_k": k,
        "skipped": skipped,
    }


# ---------------------------------------------------------------------------------------------- the scan
def _load_detector(
    detector: str,
    allow_random: bool,
    device: str,
    similarity: str,
    download: bool = False,
    weights_file: str | Path | None = None,
    protocol: str | Protocol = "native",
    progress: bool = True,
):
    from copybench.detectors import create_detector
    from copybench.detectors.load import resolve_entry
    from copybench.protocols import apply_protocol, check_detector, get_protocol

    p = get_protocol(protocol)
    if similarity not in p.similarities:
        raise ValueError(
            f"--protocol {p.name} defines similarity {' or '.join(p.similarities)}, not {similarity!r}"
        )
    # before loading weights; a hub repository not cached yet is fetched first with --download (its spec is read
    # from its files)
    check_detector(p, resolve_entry(detector, download, progress).spec, similarity)
    det = create_detector(
        detector,
        weights_file=weights_file,
        allow_random=allow_random,
        download=download,
        device=device,
        progress=progress,
    )
    if similarity == "split" and det.spec.output != "tokens":
        raise ValueError(
            f"--similarity split needs a detector with token output; {detector!r} outputs "
            "global descriptors (use --similarity cosine)"
        )
    return apply_protocol(det, p, similarity=similarity)


def _threshold_rule(protocol: str | Protocol, similarity: str, threshold: float | None, calibrate) -> dict:
    """The threshold's value, source and comparison rule; ProtocolError when none holds on this scale."""
    from copybench.protocols import ProtocolError, get_protocol

    p = get_protocol(protocol)
    if calibrate is not None:  # a calibrated threshold is the lowest score kept at 90% precision: ">="
        return {"value": threshold, "source": "calibrated", "rule": ">="}
    if threshold is not None:
        return {"value": threshold, "source": "given", "rule": p.scan_rule}
    if p.scan_threshold is not None and similarity == "cosine":
        return {"value": p.scan_threshold, "source": f"protocol {p.name}", "rule": p.scan_rule}
    why = (
        "split-product scores live on another scale than cosine (about 1/T of it)"
        if similarity != "cosine"
        else f"the study's 0.5 holds only under its own preprocessing (--protocol dcr), not under {p.name}"
    )
    raise ProtocolError(
        f"no threshold for this scan: {why}; pass --threshold T, --calibrate DATASET_DIR (a labelled copybench "
        "dataset, same detector) or, for cosine, --protocol dcr"
    )


def _skipped(desc, role: str) -> list[dict]:
    return [{"path": desc.paths[r], "error": e, "role": role} for r, e in sorted(desc.failed.items())]


def _ok_rows(desc, role: str, minimum: int) -> np.ndarray:
    rows = np.flatnonzero(desc.ok)
    if len(rows) < minimum:
        raise ValueError(
            f"--{role}: only {len(rows)} readable image(s) of {len(desc.paths)}; need at least {minimum}"
        )
    return rows


def _detector_info(det) -> dict:
    from copybench.results import weights_record

    return {
        "name": det.spec.name,
        "spec": det.spec.to_dict(),
        "weights": weights_record(det.weights),
        "meta": det.meta.to_dict(),  # parameters, license, paper, release, weights hash
    }


def _rate(top1: np.ndarray, threshold: float, rule: str) -> dict:
    from copybench.protocols import flagged as passes

    flagged = int(passes(top1, threshold, rule).sum())
    lo, hi = wilson_interval(flagged, len(top1))
    return {
        "value": flagged / len(top1),
        "ci95": [lo, hi],
        "flagged": flagged,
        "n": len(top1),
        "method": "Wilson score interval, 95%",
        "rule": f"top-1 similarity {rule} threshold",
    }


def _match_table(gen, train, g_rows, scores, idx, roots) -> list[dict]:
    """One entry per scanned generated image: relative paths, top-k matches (padding dropped)."""
    rel = lambda p, root: str(Path(p).relative_to(root))
    table = []
    for g, srow, irow in zip(g_rows, scores, idx):
        keep = irow >= 0
        table.append(
            {
                "generated": rel(gen.paths[g], roots[0]),
                "generated_path": gen.paths[g],
                "matches": [
                    {
                        "train": rel(train.paths[t], roots[1]),
                        "train_path": train.paths[t],
                        "similarity": float(s),
                    }
                    for t, s in zip(irow[keep], srow[keep])
                ],
            }
        )
    return table


@renamed_keyword(cache_dir="descriptor_dir")
def scan(
    generated: str | Path,
    train: str | Path,
    detector: str,
    *,
    similarity: str = "cosine",
    threshold: float | None = None,
    top_k: int = 5,
    out: str | Path,
    device: str = "cpu",
    batch_size: int = 32,
    decode: str = "auto",
    allow_random: bool = False,
    baseline_sample: int | None = 10000,
    calibrate: str | Path | None = None,
    descriptor_dir: str | Path | None = DEFAULT_CACHE,
    progress: bool = True,
    seed: int = 0,
    download: bool = False,
    weights: str | Path | None = None,
    dtype: str = "fp32",
    protocol: str = "native",
    engine=None,
) -> dict:
    """Scan ``generated`` for replications of ``train``; writes the outputs into ``out`` and returns the summary.

    ``engine``: None runs in this process; a :class:`copybench.scaling.engine.RayEngine` extracts and searches the
    training set on a Ray cluster with the same results.
    """
    from copybench.protocols import get_protocol
    from copybench.scan.report import write_outputs

    out, roots = Path(out), (Path(generated).expanduser().resolve(), Path(train).expanduser().resolve())
    _check_args(
        similarity, threshold, top_k, baseline_sample, out, {"generated": roots[0], "train": roots[1]}
    )
    gen_paths, train_paths = find_images(generated, "generated"), find_images(train, "train")
    if protocol != "native" and dtype != "fp32":
        raise ValueError(f"--protocol {protocol} runs the models in fp32, as the original; drop --dtype")
    p = get_protocol(protocol)  # resolved once; every step below reads this object
    det = _load_detector(detector, allow_random, device, similarity, download, weights, p, progress)
    rule = _threshold_rule(p, similarity, threshold, calibrate)
    settings = {"similarity": similarity, "top_k": top_k, "device": device, "batch_size": batch_size}
    settings |= {"seed": seed, "baseline_sample": baseline_sample, "dtype": dtype, "protocol": protocol}
    ext = _extractor(engine, det, settings, descriptor_dir=descriptor_dir, progress=progress, decode=decode)
    t0 = time.perf_counter()
    calibration = _calibration(calibrate, ext, similarity, top_k, device)
    t1 = time.perf_counter()
    train_d, gen_d = _extract_inputs(ext, train_paths, gen_paths, similarity)
    t2 = time.perf_counter()
    found = _search_inputs(train_d, gen_d, settings, engine)
    timings = {"calibration_s": t1 - t0, "extract_s": t2 - t1, "search_s": time.perf_counter() - t2}
    summary = _summary(det, roots, settings, (gen_d, train_d), found, timings, rule, calibration)
    matches = _match_table(gen_d, train_d, found.g_rows, found.scores, found.idx, roots)
    return write_outputs(out, summary, matches, found.scores[:, 0], found.base)


def _extractor(engine, det, settings: dict, *, descriptor_dir, progress: bool, decode: str):
    """The extractor: this process's, or the Ray engine's (same results)."""
    from copybench.extract import Extractor

    make = Extractor if engine is None else engine.extractor
    return make(
        det,
        device=settings["device"],
        dtype=settings["dtype"],
        batch_size=settings["batch_size"],
        cache_dir=descriptor_dir,
        progress=progress,
        decode=decode,
    )


def _calibration(calibrate, ext, similarity: str, top_k: int, device: str) -> dict | None:
    """Calibrated before the training set is extracted: cheaper, and fails fast when 90% is out of reach."""
    if calibrate is None:
        return None
    calibration = calibrate_threshold(calibrate, ext, similarity=similarity, k=top_k, device=device)
    log.info("calibrated threshold %.4f on %s", calibration["threshold"], calibration["dataset"])
    return calibration


def _extract_inputs(ext, train_paths: list[str], gen_paths: list[str], similarity: str) -> list:
    """Descriptors of the training and the generated images, cached under each file list's fingerprint."""
    return extract_lists(
        ext,
        [
            (train_paths, files_fingerprint(train_paths), "training images"),
            (gen_paths, files_fingerprint(gen_paths), "generated images"),
        ],
        tokens=similarity != "cosine",
    )


@dataclass(frozen=True)
class _Found:
    """What the search found: readable rows, each generated image's top-k matches, and the baseline."""

    t_rows: np.ndarray  # readable training rows
    g_rows: np.ndarray  # readable generated rows
    scores: np.ndarray  # (len(g_rows), k) top-k similarities
    idx: np.ndarray  # (len(g_rows), k) training rows, -1 padding
    b_rows: np.ndarray  # training rows in the baseline sample
    base: np.ndarray  # their similarity to the nearest other training image


def _search_inputs(train_d, gen_d, settings: dict, engine) -> _Found:
    """Top-k training matches of each generated image, and the train-vs-train nearest-other baseline."""
    similarity, device, seed = settings["similarity"], settings["device"], settings["seed"]
    search = search_top_k if engine is None else engine.search_top_k
    t_rows, g_rows = _ok_rows(train_d, "train", 2), _ok_rows(gen_d, "generated", 1)
    t_arr, g_arr = _descriptor_array(train_d, similarity), _descriptor_array(gen_d, similarity)
    scores, idx = search(
        g_arr, g_rows, t_arr, t_rows, settings["top_k"], similarity=similarity, device=device
    )
    b_rows = baseline_rows(t_rows, settings["baseline_sample"], seed)
    log.info("baseline: %d of %d training images (seed %d)", len(b_rows), len(t_rows), seed)
    base = nearest_other(t_arr, b_rows, t_rows, similarity=similarity, device=device, search=search)
    return _Found(t_rows, g_rows, scores, idx, b_rows, base)


def _summary(
    det, roots, settings: dict, descs, found: _Found, timings: dict, rule: dict, calibration: dict | None
) -> dict:
    """summary.json's content (schema SCAN_SCHEMA_VERSION)."""
    from copybench.env import environment

    gen_d, train_d = descs
    n_base, n_train = len(found.b_rows), len(found.t_rows)
    return {
        "schema_version": SCAN_SCHEMA_VERSION,
        "kind": "replication_scan",
        "detector": _detector_info(det),
        "random_weights": det.weights.status == "random",
        "inputs": {"generated": str(roots[0]), "train": str(roots[1])},
        "settings": settings,
        "counts": {
            "generated_found": len(gen_d.paths),
            "generated_scanned": len(found.g_rows),
            "train_found": len(train_d.paths),
            "train_indexed": n_train,
        },
        "baseline": {"n": n_base, "of": n_train, "sampled": n_base < n_train, "seed": settings["seed"]},
        "timings": timings,
        **_statistics(found.scores[:, 0], found.base, rule, calibration),
        "skipped": _skipped(train_d, "train")
        + _skipped(gen_d, "generated")
        + (calibration or {}).get("skipped", []),
        "environment": environment(settings["device"], settings["dtype"]),
    }


def _statistics(top1: np.ndarray, base: np.ndarray, threshold: dict, calibration: dict | None) -> dict:
    """Threshold provenance, replication rate with its CI, and both similarity distributions."""
    thr = calibration["threshold"] if calibration else threshold["value"]
    return {
        "threshold": {
            "value": thr,
            "source": threshold["source"],
            "given": threshold["value"],
            "rule": threshold["rule"],
            "calibration": calibration,
        },
        "replication_rate": _rate(top1, thr, threshold["rule"]),
        "similarity_stats": {"gen_train": distribution_stats(top1), "train_train": distribution_stats(base)},
    }


def read_summary(path: str | Path) -> dict:
    """Read a scan's summary.json, refusing unknown schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    data = json.loads(path.read_text())
    if data.get("kind") != "replication_scan" or data.get("schema_version") != SCAN_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: not a replication scan summary of schema {SCAN_SCHEMA_VERSION} "
            f"(kind {data.get('kind')!r}, schema {data.get('schema_version')!r})"
        )
    return data
