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

from copybench.io import atomic_output, file_lock

from .options import default_descriptor_dir, renamed_keyword
from .results import Result, read_result, result_path, weights_record, write_result

log = logging.getLogger(__name__)
DEFAULT_CACHE = default_descriptor_dir()  # $COPYBENCH_CACHE/descriptors, read when copybench starts
DEFAULT_TOPK = 100
NO_DESCRIPTOR = "no descriptor for"  # how imported descriptor files report an id they lack


@dataclass(frozen=True)
class RunSettings:
    """How descriptors are compared and what is computed; everything that changes a result's numbers."""

    similarity: str = "cosine"
    chunks: int | None = None
    topk: int | None = None  # None: the protocol's depth (native: DEFAULT_TOPK)
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
    protocol: str = "native"  # a name in copybench.protocols.PROTOCOLS (docs/PROTOCOLS.md)

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
        if self.n_boot < 0:
            raise ValueError(
                f"--n-boot must be >= 0 bootstrap samples (0: no confidence intervals), got {self.n_boot}"
            )
        if (self.topk is not None and self.topk < 1) or self.batch_size < 1:
            raise ValueError(
                f"--topk and --batch-size must be positive, got {self.topk} and {self.batch_size}"
            )
        self._check_protocol()

    def _check_protocol(self) -> None:
        from .protocols import ProtocolError, check_settings, get_protocol

        p = get_protocol(self.protocol)
        check_settings(p, self)
        if self.topk is not None and p.topk is not None:
            depth = "the full ranking" if p.topk == 0 else f"top {p.topk}"
            raise ProtocolError(f"--protocol {p.name} fixes the prediction depth ({depth}); drop --topk")
        if not p.native and self.decode not in ("auto", "workers"):
            raise ProtocolError(
                f"--protocol {p.name} decodes every image fully with Pillow, as the original; drop --decode"
            )
        if self.whitening and self.similarity != "cosine":
            raise ProtocolError(
                "--whitening is defined for global descriptors only (no original whitens split descriptors); "
                "use --similarity cosine, or --score-norm, which is defined on the split scale"
            )

    def depth(self, n_references: int) -> int:
        """Ranking depth kept per query: the protocol's, else --topk (default 100), at most the references."""
        from .protocols import topk_for

        k = topk_for(self.protocol, self.topk or DEFAULT_TOPK, n_references)
        return min(k, n_references) or 1

    def key_settings(self) -> dict:
        """Settings that enter the result key (and so the file name)."""
        keys = {
            "similarity": self.similarity,
            "chunks": self.chunks,
            "whitening": self.whitening,
            "score_norm": self.score_norm,
            "dtype": self.dtype,
            "protocol": self.protocol,
        }
        if self.multiscale:  # only when set, so keys of single-scale results stay as they were
            keys["multiscale"] = list(self.multiscale)
        if self.topk not in (None, DEFAULT_TOPK):  # positives below top-k count as missed: other numbers
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
    runtime: bool = False  # failed for a runtime reason (disk, crash: exit 3), not bad input (exit 2)


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
    from .io import list_images

    paths = [str(p) for p in list_images(settings.norm_set)]
    if len(paths) < 16:
        raise ValueError(f"--norm-set {settings.norm_set}: needs at least 16 images, found {len(paths)}")
    return extractor.run(paths, tokens=tokens, label="norm set")


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
    from .protocols import get_protocol

    protocol = get_protocol(settings.protocol)
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

    ``engine``: None runs in this process; a :class:`copybench.distributed.RayEngine` runs extraction and
    search on a Ray cluster with the same results.
    """
    from .protocols import apply_protocol, get_protocol

    protocol = get_protocol(settings.protocol)
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
    from .metrics import evaluate

    t1 = time.perf_counter()
    keep = qd.ok
    scores, idx, k = _search_decoded(settings, qd, rd, offsets, engine)
    t2 = time.perf_counter()
    hits, n_pos = _hits(dataset, idx)
    groups = family_groups(dataset, np.ones(len(keep), dtype=bool))
    metrics = evaluate(scores, hits, n_pos, groups=groups, n_boot=settings.n_boot, seed=settings.seed)
    t3 = time.perf_counter()
    skipped = _skipped(rd, qd, metrics["overall"])
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


def _search_decoded(
    settings: RunSettings, qd, rd, offsets, engine=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-k over the references that decoded, for every query: (scores, reference rows, k)."""
    rd_ok, keep = rd.ok, qd.ok
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
            "score": scores.ravel(),  # full precision: rounding creates ties that change micro-AP
        }
    )
    table = table[table["reference_id"] != ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # unique temp name: concurrent runs never write into one file
        table.to_csv(tmp, index=False, compression="gzip")
    return path


def predictions_path(result_file: Path) -> Path:
    return result_file.with_suffix(".predictions.csv.gz")


@renamed_keyword(cache_dir="descriptor_dir")
def run_benchmark(
    dataset,
    detectors: list[str],
    settings: RunSettings,
    *,
    results: str | Path,
    descriptor_dir: str | Path | None = DEFAULT_CACHE,
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
    _refuse_unfaithful(detectors, settings)

    def make_detector(name: str):
        return create_detector(
            name,
            weights_file=(weights or {}).get(name),
            allow_random=allow_random,
            download=download,
            device=settings.device,
            progress=progress,
        )

    outcomes = []
    for name in detectors:
        path = result_path(results, name, dataset.name, dataset.fingerprint, settings.key_settings())
        # two runs on one results folder take turns per result: the second then finds it computed
        with file_lock(path.with_name(f".{path.name}.lock"), waiting=f"another run is computing {path}"):
            outcomes.append(
                _run_one(
                    name,
                    path,
                    dataset,
                    settings,
                    skip_existing,
                    descriptor_dir,
                    progress,
                    make_detector,
                    engine,
                )
            )
    return outcomes


def _refuse_unfaithful(detectors: list[str], settings: RunSettings) -> None:
    """ProtocolError, before any work, for a detector the protocol cannot run faithfully (known from its spec)."""
    from copybench.detectors import get_spec

    from .protocols import check_detector

    for name in detectors:
        try:
            spec = get_spec(name)
        except Exception as exc:  # noqa: BLE001 - an unknown or broken detector fails on its own, as before
            log.debug("protocol check skipped for %s: %s", name, exc)
            continue
        check_detector(settings.protocol, spec, settings.similarity)


def _run_one(
    name, path, dataset, settings, skip_existing, descriptor_dir, progress, make_detector, engine=None
) -> RunOutcome:
    """One detector: skipped when its result is there, else computed and saved; any failure is its outcome."""
    if skip_existing and path.is_file():
        try:
            existing = read_result(path)
        except ValueError as exc:
            log.warning("recomputing %s: %s", path, exc)
        else:
            if _same_key_settings(existing, settings, len(dataset.reference_ids)):
                return RunOutcome(name, "skipped", path, "already computed", existing)
            log.warning("recomputing %s: it was computed with other settings (%s)", path, existing.key)
    try:
        det = make_detector(name)
        result, preds = evaluate_detector(
            det,
            dataset,
            settings,
            descriptor_dir=_cache_location(descriptor_dir),
            progress=progress,
            engine=engine,
        )
    except Exception as exc:  # one broken detector must not lose the others' results
        log.debug("detector %s failed", name, exc_info=True)
        return RunOutcome(name, "failed", None, f"{type(exc).__name__}: {exc}", runtime=_is_runtime(exc))
    try:
        return RunOutcome(name, "done", path, "", save_result(path, dataset, result, preds))
    except OSError as exc:  # disk full, permissions: this result is lost, nothing half-written stays
        log.debug("writing %s failed", path, exc_info=True)
        return RunOutcome(name, "failed", None, f"cannot write {path}: {exc.strerror or exc}", runtime=True)


def _is_runtime(exc: Exception) -> bool:
    """A failure of the machine or the code (exit 3), not of what the user asked for (exit 2)."""
    from copybench.detectors import UnknownDetectorError, WeightsMissingError

    bad_input = (ValueError, LookupError, UnknownDetectorError, WeightsMissingError, FileNotFoundError)
    return not isinstance(exc, bad_input)


def _cache_location(descriptor_dir: str | Path | None):
    """A folder, or a URI (``s3://...``) kept as text for the distributed engine's pyarrow filesystems."""
    if not descriptor_dir:
        return None
    return str(descriptor_dir) if "://" in str(descriptor_dir) else Path(descriptor_dir)


def _same_key_settings(result: Result, settings: RunSettings, n_references: int) -> bool:
    """Whether a stored result was computed with these settings (a file name alone can be ambiguous)."""
    key = {k: v for k, v in result.key.items() if k not in ("detector", "dataset_fingerprint")}
    n_ok = n_references - sum(1 for s in result.skipped if s.get("role") == "reference")
    depth = result.settings.get("topk")  # the ranking depth used; older keys did not record --topk
    same_boot = result.settings.get("n_boot") == settings.n_boot  # the CIs depend on it
    return key == settings.key_settings() and depth == settings.depth(n_ok) and same_boot


def save_result(path: Path, dataset, result: Result, preds: Predictions) -> Result:
    """Write raw predictions, then the result file that names them (so a result never lacks its predictions);
    when the result cannot be written its new predictions file is removed too (no orphan)."""
    pred_file = predictions_path(path)
    had_old = pred_file.is_file()
    written = write_predictions(pred_file, dataset, preds.query_ids, preds.idx, preds.scores)
    try:
        write_result(path, result.replace(predictions_file=written.name))
    except BaseException:
        if not had_old:
            written.unlink(missing_ok=True)
        raise
    return read_result(path)
