"""``copybench run``: descriptors, retrieval and metrics for detectors on one dataset, one result file each.

A finished (detector, dataset fingerprint, settings) result is skipped on rerun; a detector that fails (missing
weights, a broken plugin, bad output) is reported and the others still run. The settings live in
:mod:`copybench.settings`, the evaluation of one detector in :mod:`copybench.evaluate`; this module loops over
detectors and writes result files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from copybench.io import atomic_output, file_lock

from .evaluate import (
    NO_DESCRIPTOR,
    Predictions,
    check_norm_set,
    evaluate_detector,
    extract_lists,
    family_groups,
    score_descriptors,
)
from .options import renamed_keyword
from .results import Result, predictions_sha256, read_result, result_path, write_result
from .settings import DEFAULT_CACHE, DEFAULT_TOPK, RunSettings

log = logging.getLogger(__name__)

# names that lived here before the run was split into settings / evaluate / run (users import them from here)
__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_TOPK",
    "NO_DESCRIPTOR",
    "Predictions",
    "RunFailedError",
    "RunOutcome",
    "RunSettings",
    "evaluate_detector",
    "extract_lists",
    "family_groups",
    "predictions_path",
    "run_benchmark",
    "save_result",
    "score_descriptors",
    "write_predictions",
]


ON_ERROR = ("warn", "raise", "return")


@dataclass
class RunOutcome:
    """What happened to one detector: done, skipped (already there) or failed (with the reason)."""

    detector: str
    status: str
    path: Path | None = None
    message: str = ""
    result: Result | None = field(default=None, repr=False)
    runtime: bool = False  # failed for a runtime reason (disk, crash: exit 3), not bad input (exit 2)


class RunFailedError(RuntimeError):
    """A detector failed under ``run_benchmark(on_error="raise")``; ``outcome`` says which and why."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(f"detector {outcome.detector} failed: {outcome.message}")
        self.outcome = outcome


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
    on_error: str = "warn",
) -> list[RunOutcome]:
    """Run every detector on ``dataset``; each writes its result file.

    A detector that fails (missing weights, a broken plugin, bad output) never loses the others' results.
    ``on_error``: ``"warn"`` (default) logs a warning naming the detector and the cause and goes on;
    ``"raise"`` raises :class:`RunFailedError` at the first failure (results written before it are kept);
    ``"return"`` only records it in the returned outcomes (the CLI prints them itself). Check
    ``[o for o in outcomes if o.status == "failed"]`` either way.
    """
    from copybench.detectors import create_detector

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    dataset = _checked_before_work(dataset, detectors, settings)

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
                    (weights or {}).get(name),
                )
            )
        _speak_up(outcomes[-1], on_error)
    return outcomes


def _speak_up(outcome: RunOutcome, on_error: str) -> None:
    """A failure said out loud: a library caller sees it without inspecting the outcomes."""
    if outcome.status != "failed" or on_error == "return":
        return
    if on_error == "raise":
        raise RunFailedError(outcome)
    log.warning("detector %s failed: %s", outcome.detector, outcome.message)


def _scored_dataset(dataset, settings: RunSettings):
    """The dataset as scored: its named query subset where asked; ValueError when it has no query at all."""
    if settings.subset and dataset.meta.get("subset") != settings.subset:
        from copybench.datasets.subsets import select_subset

        dataset = select_subset(dataset, settings.subset)
    if not dataset.query_ids:
        raise ValueError(
            f"dataset {dataset.name!r} at {dataset.root} has no queries, so nothing to score "
            "(a `data import folder` index holds references only)"
        )
    return dataset


def _checked_before_work(dataset, detectors: list[str], settings: RunSettings):
    """The dataset as scored, once every refusal that needs no model has been made: no query, a detector the
    protocol cannot run faithfully, a norm set too small or overlapping the dataset."""
    dataset = _scored_dataset(dataset, settings)
    _refuse_unfaithful(detectors, settings)
    check_norm_set(dataset, settings)
    return dataset


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
        check_detector(settings.protocol_spec, spec, settings.similarity)


def _run_one(
    name,
    path,
    dataset,
    settings,
    skip_existing,
    descriptor_dir,
    progress,
    make_detector,
    engine=None,
    weights_file=None,
) -> RunOutcome:
    """One detector: skipped when its result is there, else computed and saved; any failure is its outcome."""
    if skip_existing and path.is_file():
        try:
            existing = read_result(path)
        except ValueError as exc:
            log.warning("recomputing %s: %s", path, exc)
        else:
            if not _same_weights(existing, weights_file):
                log.warning("recomputing %s: it was computed with other weights", path)
            elif _same_key_settings(existing, settings, len(dataset.reference_ids)):
                return RunOutcome(name, "skipped", path, "already computed", existing)
            else:
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


def _same_weights(result: Result, weights_file: str | None) -> bool:
    """Whether an explicit ``--weights`` file is the one a stored result was computed with (by sha256); a
    detector's own weights are verified when it loads (copybench.detectors)."""
    from .io import file_sha256

    if not weights_file or not Path(weights_file).is_file():
        return True  # a missing file fails when the detector loads, with its own message
    recorded = result.key.get("weights_sha256") or (result.detector.get("weights") or {}).get("sha256")
    return recorded == file_sha256(weights_file)


def _cache_location(descriptor_dir: str | Path | None):
    """A folder, or a URI (``s3://...``) kept as text for the distributed engine's pyarrow filesystems."""
    if not descriptor_dir:
        return None
    return str(descriptor_dir) if "://" in str(descriptor_dir) else Path(descriptor_dir)


def _same_key_settings(result: Result, settings: RunSettings, n_references: int) -> bool:
    """Whether a stored result was computed with these settings (a file name alone can be ambiguous); the
    weights hash is compared by :func:`_same_weights`, as only loading the detector tells it."""
    ignored = ("detector", "dataset_fingerprint", "weights_sha256")
    key = {k: v for k, v in result.key.items() if k not in ignored}
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
        recorded = result.replace(
            predictions_file=written.name, predictions_sha256=predictions_sha256(written)
        )
        write_result(path, recorded)
    except BaseException:
        if not had_old:
            written.unlink(missing_ok=True)
        raise
    return read_result(path)
