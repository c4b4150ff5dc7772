"""``copybench run``: descriptors, retrieval and metrics for detectors on one dataset, one result file each.

A finished (detector, dataset fingerprint, settings) result is skipped on rerun; a detector that fails (missing
weights, a broken plugin, bad output) is reported and the others still run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .results import Result, read_result, result_path, weights_record, write_result

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path.home() / ".cache" / "copybench" / "descriptors"
DEFAULT_TOPK = 100
NO_DESCRIPTOR = "no descriptor for"  # how imported descriptor files report an id they lack


@dataclass(frozen=True)
class RunSettings:
    """How descriptors are compared and what is computed; everything that changes a result's numbers."""

    similarity: str = "cosine"
    chunks: int | None = None
    topk: int = DEFAULT_TOPK
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 32
    whitening: bool = False
    score_norm: bool = False
    norm_set: str | None = None
    n_boot: int = 1000
    seed: int = 0
    multiscale: tuple[float, ...] | None = None
    subset: str | None = None  # a named query subset (copybench.datasets.subsets), e.g. copydays 'strong'
    decode: str = "auto"  # the Extractor's decode strategy (copybench.decode); not in the result key

    def __post_init__(self) -> None:
        if self.similarity not in ("cosine", "split", "split_cross"):
            raise ValueError(f"unknown similarity {self.similarity!r}; choose cosine, split or split_cross")
        if (self.whitening or self.score_norm) and not self.norm_set:
            raise ValueError(
                "--whitening and --score-norm need --norm-set DIR: a separate folder of training images"
            )
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"--chunks must be a positive number of chunks, got {self.chunks}")
        if self.chunks is not None and self.similarity == "cosine":
            raise ValueError(
                f"--chunks {self.chunks} needs --similarity split or split_cross (cosine uses whole vectors)"
            )
        if self.multiscale and not all(x > 0 for x in self.multiscale):
            raise ValueError(
                f"--multiscale factors must be positive, got {','.join(f'{x:g}' for x in self.multiscale)}"
            )
        if self.topk < 1 or self.batch_size < 1:
            raise ValueError(
                f"--topk and --batch-size must be positive, got {self.topk} and {self.batch_size}"
            )

    def key_settings(self) -> dict:
        """Settings that enter the result key (and so the file name)."""
        keys = {
            "similarity": self.similarity,
            "chunks": self.chunks,
            "whitening": self.whitening,
            "score_norm": self.score_norm,
            "dtype": self.dtype,
        }
        if self.multiscale:  # only when set, so keys of single-scale results stay as they were
            keys["multiscale"] = list(self.multiscale)
        if self.topk != DEFAULT_TOPK:  # positives below top-k count as missed: another depth, other numbers
            keys["topk"] = self.topk
        if self.subset:  # other queries, other numbers; absent for the whole dataset, so older keys stay
            keys["subset"] = self.subset
        return keys


@dataclass
class RunOutcome:
    """What happened to one detector: done, skipped (already there) or failed (with the reason)."""

    detector: str
    status: str
    path: Path | None = None
    message: str = ""
    result: Result | None = field(default=None, repr=False)


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

    if engine is not None:  # e.g. copybench.distributed.RayEngine: the same search, sharded over references
        return engine.search_descriptors(settings, qd, rd, k)
    if settings.similarity == "cosine":
        return search(np.asarray(qd.vectors), np.asarray(rd.vectors), k, device=settings.device)
    cross = settings.similarity == "split_cross"
    q = qd.tokens if qd.tokens is not None else qd.vectors
    r = rd.tokens if rd.tokens is not None else rd.vectors
    chunks = None if qd.tokens is not None else (settings.chunks or 8)
    return search_split(np.asarray(q), np.asarray(r), k, cross=cross, chunks=chunks, device=settings.device)


def _normalize_with_norm_set(settings: RunSettings, extractor, qd, rd):
    """Whitening and/or score normalisation learned on a separate image folder (never on the test data)."""
    from .retrieval import fit_whitening, score_norm_offsets

    if not (settings.whitening or settings.score_norm):
        return qd, rd, None
    from .io import list_images

    paths = [str(p) for p in list_images(settings.norm_set)]
    if len(paths) < 16:
        raise ValueError(f"--norm-set {settings.norm_set}: needs at least 16 images, found {len(paths)}")
    nd = extractor.run(paths, label="norm set")
    train = np.asarray(nd.vectors)[nd.ok]
    if settings.whitening:
        white = fit_whitening(train)
        qd.vectors, rd.vectors, train = white(qd.vectors), white(rd.vectors), white(train)
    offsets = (
        score_norm_offsets(np.asarray(qd.vectors), train, device=settings.device)
        if settings.score_norm
        else None
    )
    return qd, rd, offsets


def extract_lists(extractor, jobs: list[tuple[list[str], str | None, str]], *, tokens: bool) -> list:
    """Descriptors of several (paths, fingerprint, label) lists, in order; in one pass when the extractor can
    (the Ray engine's actor pool then loads the model once for all lists)."""
    if hasattr(extractor, "run_many"):
        return extractor.run_many(jobs, tokens=tokens)
    return [extractor.run(p, tokens=tokens, fingerprint=f, label=label) for p, f, label in jobs]


def evaluate_detector(
    detector,
    dataset,
    settings: RunSettings,
    *,
    cache_dir: Path | None,
    progress: bool = True,
    engine=None,
) -> tuple[Result, Predictions]:
    """Extract, search and score one loaded detector on one dataset; returns the result (not written).

    ``engine``: None runs in this process; a :class:`copybench.distributed.RayEngine` runs extraction and
    search on a Ray cluster with the same results.
    """
    from .extract import Extractor

    tokens = settings.similarity != "cosine" and detector.spec.output == "tokens"
    ext = (Extractor if engine is None else engine.extractor)(
        detector,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        cache_dir=cache_dir,
        progress=progress,
        scales=settings.multiscale,
        decode=settings.decode,
    )
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
    qd, rd, offsets = _normalize_with_norm_set(settings, ext, qd, rd)
    weights = weights_record(detector.weights)
    result, preds = score_descriptors(
        dataset,
        qd,
        rd,
        settings,
        offsets=offsets,
        detector_name=detector.spec.name,
        spec=detector.spec.to_dict(),
        weights=weights,
        engine=engine,
    )
    timings = {**result.timings, "extract_s": t1 - t0, "extract_computed_s": rd.seconds + qd.seconds}
    return result.replace(timings=timings), preds


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
    from .metrics import evaluate

    t1 = time.perf_counter()
    rd_ok, keep = rd.ok, qd.ok
    k = min(settings.topk, int(rd_ok.sum())) or 1
    scores, idx = _search(settings, _subset(qd, keep), _subset(rd, rd_ok), k, engine)
    ref_rows = np.flatnonzero(rd_ok)
    idx = np.where(idx >= 0, ref_rows[np.clip(idx, 0, None)], -1)
    if offsets is not None:
        scores = scores - offsets[keep][:, None]
    # a query that is missing or did not decode retrieved nothing: it stays in every metric as a miss (an
    # empty ranking), never dropped, which would raise the scores of whoever loses the hard queries
    scores, idx = _with_empty_rows(scores, idx, keep)
    t2 = time.perf_counter()
    hits, n_pos = _hits(dataset, idx)
    all_queries = np.ones(len(keep), dtype=bool)
    metrics = evaluate(
        scores,
        hits,
        n_pos,
        groups=family_groups(dataset, all_queries),
        n_boot=settings.n_boot,
        seed=settings.seed,
    )
    t3 = time.perf_counter()
    skipped = [_skip(rd.paths[r], e, "reference") for r, e in sorted(rd.failed.items())]
    skipped += [_skip(qd.paths[r], e, "query") for r, e in sorted(qd.failed.items())]
    for kind in ("missing", "undecodable"):
        metrics["overall"][f"n_queries_{kind}"] = sum(
            1 for s in skipped if s["role"] == "query" and s["kind"] == kind
        )
    result = Result(
        kind="accuracy",
        key={
            "detector": detector_name,
            "dataset_fingerprint": dataset.fingerprint,
            **settings.key_settings(),
        },
        detector={"name": detector_name, "spec": spec, "weights": weights},
        dataset={
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "recipe": dataset.meta.get("recipe"),
            "counts": dataset.counts(),
            "path": str(dataset.root),
        },
        settings={
            **settings.key_settings(),
            "topk": k,
            "batch_size": settings.batch_size,
            "device": settings.device,
            "norm_set": settings.norm_set,
            "n_boot": settings.n_boot,
        },
        metrics=metrics["overall"],
        groups=metrics["groups"],
        skipped=skipped,
        environment=environment(settings.device, settings.dtype),
        timings={"search_s": t2 - t1, "metrics_s": t3 - t2},
    )
    return result, Predictions(np.asarray(dataset.query_ids)[keep], idx[keep], scores[keep])


def _with_empty_rows(scores: np.ndarray, idx: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) arrays over every query: rows of queries not in ``keep`` hold padding (-inf, -1)."""
    full_scores = np.full((len(keep), scores.shape[1]), -np.inf, dtype=np.float32)
    full_idx = np.full((len(keep), idx.shape[1]), -1, dtype=np.int64)
    full_scores[keep], full_idx[keep] = scores, idx
    return full_scores, full_idx


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


def write_predictions(
    path: Path, dataset, query_ids: np.ndarray, idx: np.ndarray, scores: np.ndarray
) -> Path:
    """Raw per-query top-k as CSV (query_id, rank, reference_id, score), gzip, so metrics can be recomputed."""
    import pandas as pd

    ref_ids = np.asarray(dataset.reference_ids + [""], dtype=object)
    q_rep = np.repeat(query_ids, idx.shape[1])
    rank = np.tile(np.arange(idx.shape[1]), len(query_ids))
    table = pd.DataFrame(
        {
            "query_id": q_rep,
            "rank": rank,
            "reference_id": ref_ids[idx].ravel(),
            "score": scores.ravel().round(6),
        }
    )
    table = table[table["reference_id"] != ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    table.to_csv(tmp, index=False, compression="gzip")
    tmp.replace(path)
    return path


def predictions_path(result_file: Path) -> Path:
    return result_file.with_suffix(".predictions.csv.gz")


def run_benchmark(
    dataset,
    detectors: list[str],
    settings: RunSettings,
    *,
    results: str | Path,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    allow_random: bool = False,
    weights: dict[str, str] | None = None,
    skip_existing: bool = True,
    progress: bool = True,
    download: bool = False,
    engine=None,
) -> list[RunOutcome]:
    """Run every detector on ``dataset``; each writes its result file; failures are reported, not fatal."""
    from copybench.detectors import create_detector

    if settings.subset and dataset.meta.get("subset") != settings.subset:
        from copybench.datasets.subsets import select_subset

        dataset = select_subset(dataset, settings.subset)
    if not dataset.query_ids:
        raise ValueError(
            f"dataset {dataset.name!r} at {dataset.root} has no queries, so nothing to score "
            "(a `data import folder` index holds references only)"
        )
    outcomes = []
    for name in detectors:
        path = result_path(results, name, dataset.name, dataset.fingerprint, settings.key_settings())
        if skip_existing and path.is_file():
            try:
                existing = read_result(path)
            except ValueError as exc:
                log.warning("recomputing %s: %s", path, exc)
            else:
                if _same_key_settings(existing, settings, len(dataset.reference_ids)):
                    outcomes.append(RunOutcome(name, "skipped", path, "already computed", existing))
                    continue
                log.warning("recomputing %s: it was computed with other settings (%s)", path, existing.key)
        try:
            det = create_detector(
                name,
                weights_file=(weights or {}).get(name),
                allow_random=allow_random,
                download=download,
                device=settings.device,
            )
            result, preds = evaluate_detector(
                det,
                dataset,
                settings,
                cache_dir=_cache_location(cache_dir),
                progress=progress,
                engine=engine,
            )
        except Exception as exc:  # one broken detector must not lose the others' results
            log.debug("detector %s failed", name, exc_info=True)
            outcomes.append(RunOutcome(name, "failed", None, f"{type(exc).__name__}: {exc}"))
            continue
        outcomes.append(RunOutcome(name, "done", path, "", save_result(path, dataset, result, preds)))
    return outcomes


def _cache_location(cache_dir: str | Path | None):
    """A folder, or a URI (``s3://...``) kept as text for the distributed engine's pyarrow filesystems."""
    if not cache_dir:
        return None
    return str(cache_dir) if "://" in str(cache_dir) else Path(cache_dir)


def _same_key_settings(result: Result, settings: RunSettings, n_references: int) -> bool:
    """Whether a stored result was computed with these settings (a file name alone can be ambiguous)."""
    key = {k: v for k, v in result.key.items() if k not in ("detector", "dataset_fingerprint")}
    n_ok = n_references - sum(1 for s in result.skipped if s.get("role") == "reference")
    depth = result.settings.get("topk")  # the ranking depth used; older keys did not record --topk
    same_boot = result.settings.get("n_boot") == settings.n_boot  # the CIs depend on it
    return key == settings.key_settings() and depth == (min(settings.topk, n_ok) or 1) and same_boot


def save_result(path: Path, dataset, result: Result, preds: Predictions) -> Result:
    """Write raw predictions, then the result file that names them (so a result never lacks its predictions)."""
    written = write_predictions(predictions_path(path), dataset, preds.query_ids, preds.idx, preds.scores)
    write_result(path, result.replace(predictions_file=written.name))
    return read_result(path)
