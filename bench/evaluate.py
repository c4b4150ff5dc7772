"""One detector on one dataset: extract (or read cached) descriptors, normalise them against a norm set where
asked, search, and score every metric with its confidence interval into a :class:`~copybench.results.Result`
and the raw top-k :class:`Predictions`. :mod:`copybench.run` writes them and loops over detectors."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .options import renamed_keyword
from .results import Result, weights_record
from .settings import RunSettings

log = logging.getLogger(__name__)
NO_DESCRIPTOR = "no descriptor for"  # how imported descriptor files report an id they lack
MIN_NORM_SET = 16  # fewer images cannot fit a whitening or a score-normalisation neighbourhood


@dataclass(frozen=True)
class Predictions:
    """Raw per-query top-k of one scored run: query ids (Q,), reference rows (Q, k; -1 = none), scores."""

    query_ids: np.ndarray
    idx: np.ndarray
    scores: np.ndarray


def _hits(dataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean hits (Q, k) and positives per query from retrieved reference indices (-1 = padding)."""
    column = {r: i for i, r in enumerate(dataset.reference_ids)}
    pos = [dataset.positives[q] for q in dataset.query_ids]
    n_ref = len(column) + 1  # one extra column so padding (-1 -> n_ref - 1) never matches a positive
    # each (query row, reference column) pair as one integer, so membership is one vectorised lookup
    pairs = np.array([row * n_ref + column[r] for row, p in enumerate(pos) for r in p], dtype=np.int64)
    keys = np.arange(idx.shape[0], dtype=np.int64)[:, None] * n_ref + np.where(idx >= 0, idx, n_ref - 1)
    hits = np.isin(keys, pairs)
    n_pos = np.array([len(p) for p in pos], dtype=np.int64)
    return hits, n_pos


def family_groups(dataset, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean query masks per recipe family and per family/tier (distractors form their own group)."""
    q = dataset.queries.loc[keep]
    groups: dict[str, np.ndarray] = {}
    fam = q["family"].astype(str).to_numpy()
    tier = q["tier"].astype(str).to_numpy()
    for f in sorted(set(fam) - {""}):
        groups[f] = fam == f
        for t in sorted(set(tier[fam == f]) - {""}):
            groups[f"{f}/{t}"] = (fam == f) & (tier == t)
    return groups


def _search(settings: RunSettings, qd, rd, k: int, engine=None):
    from .retrieval import search, search_split

    if (
        engine is not None
    ):  # e.g. copybench.scaling.engine.RayEngine: the same search, sharded over references
        return engine.search_descriptors(settings, qd, rd, k)
    if settings.similarity == "cosine":
        return search(np.asarray(qd.vectors), np.asarray(rd.vectors), k, device=settings.device)
    cross = settings.similarity == "split_cross"
    q = qd.tokens if qd.tokens is not None else qd.vectors
    r = rd.tokens if rd.tokens is not None else rd.vectors
    chunks = None if qd.tokens is not None else (settings.chunks or 8)
    return search_split(np.asarray(q), np.asarray(r), k, cross=cross, chunks=chunks, device=settings.device)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _whitener(protocol, train: np.ndarray):
    from .retrieval import fit_whitening, fit_whitening_dino

    if protocol.whitening == "dino":
        return fit_whitening_dino(train)
    # SSCD's PCAW<d> keeps every dimension; native keeps what a small norm set can span
    return fit_whitening(train, full_rank=not protocol.native)


def _norm_set(settings: RunSettings, extractor, tokens: bool):
    paths = list(settings.norm_set_files)  # the files its fingerprint (in the result key) was hashed from
    if len(paths) < MIN_NORM_SET:
        raise ValueError(
            f"--norm-set {settings.norm_set}: needs at least {MIN_NORM_SET} images, found {len(paths)}"
        )
    return extractor.run(paths, tokens=tokens, label="norm set")


def check_norm_set(dataset, settings: RunSettings) -> None:
    """ValueError, before any work, for a norm set too small or sharing an image (by sha256) with the dataset:
    whitening or score normalisation learned on the evaluated images inflates every metric, and none of the
    protocols' originals (native, isc, dcr, dino) learns them there."""
    files = settings.norm_set_files
    if not files:
        return
    if len(files) < MIN_NORM_SET:
        raise ValueError(
            f"--norm-set {settings.norm_set}: needs at least {MIN_NORM_SET} images, found {len(files)}"
        )
    evaluated = _dataset_digests(dataset)
    shared = [(path, evaluated[digest]) for path, digest in files.items() if digest in evaluated]
    if shared:
        path, same = shared[0]
        raise ValueError(
            f"--norm-set {settings.norm_set}: {len(shared)} of its {len(files)} images are also in dataset "
            f"{dataset.name!r} (e.g. {path} is {same}); whitening and score normalisation are learned on "
            "images kept apart from the evaluated queries and references"
        )


def _dataset_digests(dataset) -> dict[str, str]:
    """sha256 -> path of every image of the dataset: from files.csv, hashed here for images it lacks."""
    import pandas as pd

    from .io import file_sha256

    images_root = (dataset.root / dataset.meta.get("images_root", ".")).resolve()
    known: dict[str, str] = {}
    listing = dataset.root / "files.csv"
    if listing.is_file():
        table = pd.read_csv(listing, dtype={"path": str, "sha256": str}, keep_default_na=False)
        known = {str((images_root / p).resolve()): d for p, d in zip(table["path"], table["sha256"]) if d}
    digests = {}
    for path in [*dataset.references["path"], *dataset.queries["path"]]:
        path = str(Path(path).resolve())
        digest = known.get(path) or (file_sha256(path) if Path(path).is_file() else None)
        if digest:
            digests[digest] = path
    return digests


def _offsets(settings: RunSettings, protocol, qd, nd) -> np.ndarray:
    """Score-normalisation offsets, measured with the run's own similarity (so on its scale)."""
    from .retrieval import score_norm_offsets

    sn = protocol.score_norm
    ok = nd.ok
    if settings.similarity == "cosine":
        q, train, split = np.asarray(qd.vectors), np.asarray(nd.vectors)[ok], None
    else:
        tokens = qd.tokens is not None
        q = np.asarray(qd.tokens if tokens else qd.vectors)
        train = np.asarray(nd.tokens if tokens else nd.vectors)[ok]
        split = {
            "cross": settings.similarity == "split_cross",
            "chunks": None if tokens else settings.chunks or 8,
        }
    return score_norm_offsets(
        q, train, beta=sn.beta, first=sn.first, last=sn.last, device=settings.device, split=split
    )


def _normalize_with_norm_set(settings: RunSettings, extractor, qd, rd, tokens: bool = False):
    """Whitening and/or score normalisation learned on a separate image folder (never on the test data).

    Raw descriptors (a protocol whose whitening needs them) are L2-normalised here, after whitening.
    """
    protocol = settings.protocol_spec
    nd = _norm_set(settings, extractor, tokens) if settings.whitening or settings.score_norm else None
    if settings.whitening:
        white = _whitener(protocol, np.asarray(nd.vectors)[nd.ok])
        qd.vectors, rd.vectors, nd.vectors = white(qd.vectors), white(rd.vectors), white(nd.vectors)
    elif extractor.raw:
        qd.vectors, rd.vectors = _l2(qd.vectors), _l2(rd.vectors)
        if nd is not None:
            nd.vectors = _l2(nd.vectors)
    offsets = _offsets(settings, protocol, qd, nd) if settings.score_norm else None
    return qd, rd, offsets


def extract_lists(extractor, jobs: list[tuple[list[str], str | None, str]], *, tokens: bool) -> list:
    """Descriptors of several (paths, fingerprint, label) lists, in order; in one pass when the extractor can
    (the Ray engine's actor pool then loads the model once for all lists)."""
    if hasattr(extractor, "run_many"):
        return extractor.run_many(jobs, tokens=tokens)
    return [extractor.run(p, tokens=tokens, fingerprint=f, label=label) for p, f, label in jobs]


@renamed_keyword(cache_dir="descriptor_dir")
def evaluate_detector(
    detector,
    dataset,
    settings: RunSettings,
    *,
    descriptor_dir: Path | str | None,
    progress: bool = True,
    engine=None,
) -> tuple[Result, Predictions]:
    """Extract, search and score one loaded detector on one dataset; returns the result (not written).

    ``engine``: None runs in this process; a :class:`copybench.scaling.engine.RayEngine` runs extraction and
    search on a Ray cluster with the same results.
    """
    from .protocols import apply_protocol

    protocol = settings.protocol_spec
    if protocol.query_originals:  # before any extraction: SSCD's Copydays script needs a Copydays import
        from .copydays import check_dataset

        check_dataset(protocol.name, dataset)
    detector = apply_protocol(detector, protocol, similarity=settings.similarity)
    tokens = settings.similarity != "cosine" and detector.spec.output == "tokens"
    ext = _dataset_extractor(detector, settings, protocol, descriptor_dir, progress, engine)
    t0 = time.perf_counter()
    rd, qd = extract_lists(
        ext,
        [
            (dataset.references["path"].tolist(), dataset.fingerprint, "references"),
            (dataset.queries["path"].tolist(), dataset.fingerprint, "queries"),
        ],
        tokens=tokens,
    )
    t1 = time.perf_counter()
    qd, rd, offsets = _normalize_with_norm_set(settings, ext, qd, rd, tokens)
    result, preds = score_descriptors(
        dataset,
        qd,
        rd,
        settings,
        offsets=offsets,
        detector_name=detector.spec.name,
        spec=detector.spec.to_dict(),
        weights=weights_record(detector.weights),
        engine=engine,
    )
    timings = {**result.timings, "extract_s": t1 - t0, "extract_computed_s": rd.seconds + qd.seconds}
    meta = (
        detector.meta.to_dict()
    )  # parameters, license, paper, release, weights hash: read beside the metrics
    return result.replace(timings=timings, detector={**result.detector, "meta": meta}), preds


def _dataset_extractor(detector, settings: RunSettings, protocol, descriptor_dir, progress: bool, engine):
    """The extractor for a run: this process's or the Ray engine's, decoding as the protocol requires."""
    from .extract import Extractor

    return (Extractor if engine is None else engine.extractor)(
        detector,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        cache_dir=descriptor_dir,
        progress=progress,
        scales=settings.multiscale,
        raw=protocol.raw_features,
        # the originals decode every file fully with Pillow: no GPU decoder, no reduced-size JPEG draft
        decode=settings.decode if protocol.native else "workers",
        draft=protocol.native,
    )


def score_descriptors(
    dataset,
    qd,
    rd,
    settings: RunSettings,
    *,
    detector_name: str,
    spec: dict | None,
    weights: dict,
    offsets: np.ndarray | None = None,
    engine=None,
) -> tuple[Result, Predictions]:
    """Search and metrics for descriptors already computed (by a detector, or imported from ISC HDF5 files)."""
    from .env import environment
    from .levels import sweep_levels
    from .metrics import evaluate

    t1 = time.perf_counter()
    keep = qd.ok
    scores, idx, k = _search_decoded(settings, qd, rd, offsets, engine)
    t2 = time.perf_counter()
    hits, n_pos = _hits(dataset, idx)
    groups = family_groups(dataset, np.ones(len(keep), dtype=bool))
    metrics = evaluate(scores, hits, n_pos, groups=groups, n_boot=settings.n_boot, seed=settings.seed)
    originals = _copydays_metrics(settings, dataset, rd, engine, (scores, hits), metrics)
    # {} unless the dataset is a sweep: other results stay byte for byte the same
    levels = sweep_levels(dataset, scores, hits, n_pos, keep, n_boot=settings.n_boot, seed=settings.seed,
                          protocol=settings.protocol)  # fmt: skip
    t3 = time.perf_counter()
    skipped = _skipped(rd, qd, metrics["overall"])
    result = Result(
        kind="accuracy",
        key={
            "detector": detector_name,
            "dataset_fingerprint": dataset.fingerprint,
            **settings.key_settings(),
            # other weights, other numbers; absent for parameter-free detectors, so their keys stay
            **({"weights_sha256": weights["sha256"]} if weights.get("sha256") else {}),
        },
        detector={"name": detector_name, "spec": spec, "weights": weights},
        dataset=_dataset_record(dataset),
        settings={
            **settings.key_settings(),
            "topk": k,
            "chunks": _chunks_used(settings, qd),
            "batch_size": settings.batch_size,
            "device": settings.device,
            "norm_set": settings.norm_set,
            "n_boot": settings.n_boot,
        },
        metrics=metrics["overall"],
        groups=metrics["groups"],
        robustness=levels,
        skipped=skipped,
        environment=environment(settings.device, settings.dtype),
        timings={"search_s": t2 - t1, "metrics_s": t3 - t2},
    )
    preds = Predictions(np.asarray(dataset.query_ids)[keep], idx[keep], scores[keep])
    return (result, preds) if originals is None else _with_originals(result, preds, originals)


def _with_originals(result: Result, preds: Predictions, originals: Predictions) -> tuple[Result, Predictions]:
    """The originals' rankings stored after the queries' (ids ``original:<reference id>``), so SSCD's overall
    µAP can be recomputed from the predictions file; their number recorded in the settings."""
    both = Predictions(
        np.concatenate([preds.query_ids, originals.query_ids]),
        np.concatenate([preds.idx, originals.idx]),
        np.concatenate([preds.scores, originals.scores]),
    )
    return result.replace(settings={**result.settings, "original_queries": len(originals.query_ids)}), both


def _copydays_metrics(settings: RunSettings, dataset, rd, engine, queries, metrics) -> Predictions | None:
    """SSCD's Copydays figures (:mod:`copybench.copydays`), added to ``metrics``: the originals query the
    references too; their rankings are returned. None (nothing added) under other protocols."""
    if not settings.protocol_spec.query_originals:
        return None
    from .copydays import ORIGINALS_PREFIX, check_dataset, overall_uap

    rows = check_dataset(settings.protocol, dataset)
    originals = _subset(rd, np.isin(np.arange(len(rd.paths)), rows) & rd.ok)
    o_scores, o_idx, _ = _search_decoded(settings, originals, rd, None, engine)
    own = rows[np.isin(rows, np.flatnonzero(rd.ok))]
    o_hits = o_idx == own[:, None]  # an original's one positive is itself
    strong = metrics["groups"].get("strong", {}).get("map")
    uap = _finite_or_none(overall_uap(*queries, o_scores, o_hits))
    metrics["overall"].update({"strong_map": strong, "overall_uap": uap})
    ids = np.array([ORIGINALS_PREFIX + dataset.reference_ids[r] for r in own], dtype=object)
    return Predictions(ids, o_idx, o_scores)


def _chunks_used(settings: RunSettings, qd) -> int | None:
    """The chunks the split product ran on: tokens per image, or the global descriptor's cut (None: cosine)."""
    if settings.similarity == "cosine":
        return None
    return int(qd.tokens.shape[1]) if qd.tokens is not None else settings.chunks or 8


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no NaN


def _dataset_record(dataset) -> dict:
    return {
        "name": dataset.name,
        "fingerprint": dataset.fingerprint,
        "recipe": dataset.meta.get("recipe"),
        "counts": dataset.counts(),
        "path": str(dataset.root),
    }


def _search_decoded(
    settings: RunSettings, qd, rd, offsets, engine=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-k over the references that decoded, for every query: (scores, reference rows, k)."""
    rd_ok, keep = rd.ok, qd.ok
    if not rd_ok.any():  # else an IndexError deep in the search: say why nothing can be searched
        first = min(rd.failed, default=None)
        cause = f" (first: {rd.failed[first]})" if first is not None else ""
        raise ValueError(
            f"none of the {len(rd_ok)} references could be read{cause}: nothing to search against"
        )
    k = settings.depth(int(rd_ok.sum()))
    scores, idx = _search(settings, _subset(qd, keep), _subset(rd, rd_ok), k, engine)
    ref_rows = np.flatnonzero(rd_ok)
    idx = np.where(idx >= 0, ref_rows[np.clip(idx, 0, None)], -1)
    if offsets is not None:
        scores = scores - offsets[keep][:, None]
    # a query that is missing or did not decode retrieved nothing: it stays in every metric as a miss (an
    # empty ranking), never dropped, which would raise the scores of whoever loses the hard queries
    scores, idx = _with_empty_rows(scores, idx, keep)
    return scores, idx, k


def _with_empty_rows(scores: np.ndarray, idx: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) arrays over every query: rows of queries not in ``keep`` hold padding (-inf, -1)."""
    full_scores = np.full((len(keep), scores.shape[1]), -np.inf, dtype=np.float32)
    full_idx = np.full((len(keep), idx.shape[1]), -1, dtype=np.int64)
    full_scores[keep], full_idx[keep] = scores, idx
    return full_scores, full_idx


def _skipped(rd, qd, overall: dict) -> list[dict]:
    """Images left out, by role; counts of missing and undecodable queries go into ``overall``."""
    skipped = [_skip(rd.paths[r], e, "reference") for r, e in sorted(rd.failed.items())]
    skipped += [_skip(qd.paths[r], e, "query") for r, e in sorted(qd.failed.items())]
    for kind in ("missing", "undecodable"):
        overall[f"n_queries_{kind}"] = sum(1 for s in skipped if s["role"] == "query" and s["kind"] == kind)
    return skipped


def _skip(path: str, error: str, role: str) -> dict:
    """A skipped image: ``kind`` missing (no file, or no imported descriptor) or undecodable."""
    import os

    missing = not os.path.exists(path) or NO_DESCRIPTOR in error
    return {"path": path, "error": error, "role": role, "kind": "missing" if missing else "undecodable"}


def _subset(desc, mask: np.ndarray):
    """Rows of ``desc`` that decoded; the (possibly memory-mapped) arrays themselves when all did."""
    from .extract import Descriptors

    if mask.all():
        return desc
    toks = None if desc.tokens is None else np.asarray(desc.tokens)[mask]
    return Descriptors([p for p, m in zip(desc.paths, mask) if m], np.asarray(desc.vectors)[mask], toks)
