"""Result files: schema v1, one JSON per (detector, dataset fingerprint, settings), beside raw predictions.

Every result, accuracy or throughput, is one typed record, :class:`Result`; it is the only thing that writes
or reads a result file. A result's path is derived from its key, so an interrupted run resumes and finished
work is skipped. JSON is written atomically with sorted keys, NaN/inf as null and floats at full precision
(printed figures then equal the original code's; rounding only happens for display). Files of an unknown
schema version or with unknown fields are refused, never guessed, and so is an accuracy result whose key does
not follow from its settings, detector and dataset, or whose predictions file is not the one it recorded
(``predictions_sha256``). Schema v1 fields are documented in docs/results.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
# settings that enter an accuracy result's key (copybench.settings.RunSettings.key_settings) besides topk
KEY_SETTINGS = (
    "similarity",
    "chunks",
    "whitening",
    "score_norm",
    "dtype",
    "protocol",
    "multiscale",
    "subset",
    "norm_set_sha256",
)
KINDS = ("accuracy", "throughput", "scale")  # scale: memory at size (copybench.throughput.scale)


class ResultError(ValueError):
    """A result file is unreadable or of an unknown schema (message names the file)."""


@dataclass(frozen=True)
class Result:
    """One result file's content: an accuracy result (metrics of one detector on one dataset with one set of
    settings) or a throughput result (speed measurements of one detector on one machine).

    ``key`` is what the regression gate matches on; ``source`` is the file the record was read from (never
    written into the file). Nested sections stay plain JSON mappings, documented in docs/results.md.
    """

    kind: str
    key: dict[str, Any]
    detector: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)  # per-level scores of a sweep (copybench.levels)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    predictions_file: str | None = None
    predictions_sha256: str | None = None  # of the predictions CSV's content (gzip headers vary per write)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    schema_version: int = SCHEMA_VERSION
    source: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ResultError(f"unknown result kind {self.kind!r} (expected one of {', '.join(KINDS)})")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """The file's content (``source`` left out, empty optional sections dropped)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        optional = (
            "dataset",
            "predictions_file",
            "predictions_sha256",
            "note",
            "measurements",
            "groups",
            "robustness",
            "skipped",
            "timings",
        )
        return {k: v for k, v in data.items() if not (k in optional and v in (None, [], {}))}

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, floats at full precision, NaN/inf as null."""
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str | Path | None = None) -> Result:
        """A record from parsed JSON; refuses another schema version and fields this version does not know."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ResultError(f"{where}a result file holds a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultError(
                f"{where}unknown result schema version {version!r} (this copybench reads {SCHEMA_VERSION})"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ResultError(f"{where}unknown result field(s) {', '.join(unknown)} in schema {version}")
        missing = [k for k in ("kind", "key", "detector") if k not in data]
        if missing:
            raise ResultError(f"{where}result lacks {', '.join(missing)}")
        if data.get("kind") == "accuracy" and isinstance(data["key"], dict):
            # results written before protocols existed were all computed under the native protocol
            data = {
                **data,
                "key": {"protocol": "native", **data["key"]},
                "settings": {"protocol": "native", **(data.get("settings") or {})},
            }
        try:
            record = cls(**data, source=Path(source) if source else None)
        except ResultError as exc:
            raise ResultError(f"{where}{exc}") from None
        problems = record.key_problems()
        if problems:
            raise ResultError(f"{where}its key does not follow from its content: {'; '.join(problems)}")
        return record

    @classmethod
    def from_json(cls, text: str, source: str | Path | None = None) -> Result:
        """Parse a result file's text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultError(f"{source or 'result'}: not JSON ({exc})") from exc
        return cls.from_dict(data, source)

    def replace(self, **changes: Any) -> Result:
        """A copy with some fields changed (records are frozen)."""
        return dataclasses.replace(self, **changes)

    def key_problems(self) -> list[str]:
        """How the key differs from what its detector, dataset and settings give (empty when it does not):
        a hand-edited key would otherwise be trusted by ``check`` and every table."""
        if self.kind != "accuracy":
            return []
        key, problems = self.key, []
        # a section the record does not hold is not checked (hand-made records; every written result holds all)
        expected = {"detector": self.detector["name"]} if "name" in self.detector else {}
        if "weights_sha256" in key:  # keys written before it was keyed lack it: the detector section has it
            expected["weights_sha256"] = _weights_sha256(self)
        if "fingerprint" in (self.dataset or {}):
            expected["dataset_fingerprint"] = self.dataset["fingerprint"]
        expected.update({f: self.settings[f] for f in KEY_SETTINGS if f in self.settings})
        for name, want in expected.items():
            if name in key and key[name] != want or name not in key and want not in (None, False):
                problems.append(f"key.{name} is {key.get(name)!r}, its content says {want!r}")
        depth = self.settings.get("topk")
        if key.get("topk") is not None and isinstance(depth, int) and depth > key["topk"]:
            problems.append(f"key.topk is {key['topk']}, but settings.topk (the depth used) is {depth}")
        return problems

    # ------------------------------------------------------------------ common questions
    @property
    def detector_name(self) -> str:
        return self.detector["name"]

    @property
    def weights_status(self) -> str:
        """real, random, none (parameter-free) or external (descriptors computed elsewhere)."""
        return (self.detector.get("weights") or {}).get("status", "")

    @property
    def is_random(self) -> bool:
        """Whether the detector ran with randomly initialised weights (every output must say so)."""
        return self.weights_status == "random"

    @property
    def dataset_name(self) -> str | None:
        return (self.dataset or {}).get("name")

    @property
    def fingerprint(self) -> str | None:
        return (self.dataset or {}).get("fingerprint")

    @property
    def dataset_root(self) -> Path | None:
        """The dataset's folder: ``dataset.path`` as written (relative to the result file's folder; results
        written before paths were made portable hold an absolute path, also accepted)."""
        recorded = (self.dataset or {}).get("path")
        if not recorded:
            return None
        if Path(recorded).is_absolute() or self.source is None:
            return Path(recorded)
        return (self.source.parent / recorded).resolve()

    def skipped_files(self, role: str) -> set[str]:
        """Absolute paths of the skipped images of ``role`` (query or reference), as the dataset lists them."""
        root = self.dataset_root
        paths = (s["path"] for s in self.skipped if s.get("role") == role)
        return {p if Path(p).is_absolute() or root is None else str(root / p) for p in paths}

    @property
    def predictions_path(self) -> Path | None:
        """The raw predictions file beside the result file (None when not read from a file)."""
        if self.source is None or not self.predictions_file:
            return None
        return self.source.parent / self.predictions_file


def _weights_sha256(result: Result) -> str | None:
    return (result.detector.get("weights") or {}).get("sha256")


def _clean(value):
    """JSON-ready: NaN/inf -> None, numpy scalars and arrays -> python; floats keep full precision (JSON
    round-trips a Python float exactly, and rounding moved printed figures off the original code's)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(result: dict) -> str:
    """Canonical JSON text of a result."""
    return json.dumps(_clean(result), sort_keys=True, indent=1, allow_nan=False) + "\n"


def safe_name(text: str) -> str:
    """A file-name-safe rendering of a detector or dataset name. A long one keeps its first 100 characters and
    the start of its sha256, so the file name (with its suffixes and lock prefix) stays under the filesystem's
    255-byte limit and two long names never share a file."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"
    if len(name) <= 120:
        return name
    return f"{name[:100]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def settings_suffix(settings: dict) -> str:
    """Non-default retrieval settings, encoded in the file name so each setting gets its own result."""
    parts = []
    if settings.get("similarity", "cosine") != "cosine":
        parts.append(settings["similarity"] + (f"{settings['chunks']}" if settings.get("chunks") else ""))
    if settings.get("whitening"):
        parts.append("whiten")
    if settings.get("score_norm"):
        parts.append("scorenorm")
    if settings.get("norm_set_sha256"):  # results of two norm sets side by side, never one over the other
        parts.append("norm" + settings["norm_set_sha256"][:12])
    if settings.get("dtype", "fp32") != "fp32":
        parts.append(settings["dtype"])
    if settings.get("multiscale"):
        parts.append("ms" + "-".join(f"{x:g}" for x in settings["multiscale"]))
    if settings.get("topk"):
        parts.append(f"top{settings['topk']}")
    if settings.get("subset"):  # a query subset scores other queries: its own file beside the whole set's
        parts.append("subset-" + safe_name(settings["subset"]))
    if settings.get("protocol", "native") != "native":
        parts.append(settings["protocol"])
    return "".join("__" + p for p in parts)


def result_path(
    results_dir: str | Path, detector: str, dataset_name: str, fingerprint: str, settings: dict
) -> Path:
    """results_dir/<dataset>-<fingerprint[:12]>/<detector><settings>.json"""
    folder = Path(results_dir) / f"{safe_name(dataset_name)}-{fingerprint[:12]}"
    return folder / f"{safe_name(detector)}{settings_suffix(settings)}.json"


def weights_record(weights) -> dict[str, Any]:
    """A detector's weights provenance as published in result files: status, source and sha256. A local file
    is named by its file name only (with its sha256 it identifies the weights; an absolute path would publish
    the machine's layout and tell nothing to anyone else)."""
    source = weights.source or ""
    if source and Path(source).is_absolute():
        source = Path(source).name
    return {"status": weights.status, "source": source, "sha256": weights.sha256}


def portable(result: Result, path: str | Path) -> Result:
    """The record as written to ``path``: no absolute path of this machine where a relative one will do.

    ``dataset.path`` becomes relative to the result file's folder (a results folder and its dataset moved or
    copied together keep working); skipped images inside the dataset become relative to its folder. A dataset
    that shares no folder with the results but the filesystem root keeps its absolute path: no relative path
    would be any more portable. The fingerprint, not the path, identifies the dataset (key, check, resume)."""
    from copybench.io import portable_path

    recorded = (result.dataset or {}).get("path")
    if not recorded or not Path(recorded).is_absolute():
        return result
    relative = portable_path(recorded, Path(path).parent)
    if Path(relative).is_absolute():
        return result
    root = Path(recorded).resolve()
    skipped = [_relative_to_root(s, root) for s in result.skipped]
    return result.replace(dataset={**result.dataset, "path": relative}, skipped=skipped)


def _relative_to_root(skip: dict, root: Path) -> dict:
    path = Path(skip.get("path", ""))
    if not path.is_absolute() or not path.is_relative_to(root):
        return skip  # outside the dataset (an imported distractor folder): named as it was found
    relative = path.relative_to(root).as_posix()
    error = str(skip.get("error", "")).replace(str(path), relative)  # decoders quote the path they read
    return {**skip, "path": relative, **({"error": error} if "error" in skip else {})}


def write_result(path: str | Path, result: Result) -> Result:
    """Atomically write a result file, with portable paths (:func:`portable`); returns the record as a reader
    will see it (rounded, JSON types), with ``source`` set to the file."""
    from copybench.io import atomic_write_text

    text = portable(result, path).to_json()
    atomic_write_text(path, text)
    return Result.from_json(text, Path(path))


def read_result(path: str | Path) -> Result:
    """Read and validate one result file; refused when its predictions file is there but is not the one it
    recorded (a missing predictions file is left to ``copybench verify``: a result alone still reads)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultError(f"{path}: cannot read result file ({exc})") from exc
    result = Result.from_json(text, path)
    preds = result.predictions_path
    if result.predictions_sha256 and preds is not None and preds.is_file():
        found = predictions_sha256(preds)
        if found != result.predictions_sha256:
            raise ResultError(
                f"{path}: its predictions file {preds.name} is not the one it was computed with (sha256 "
                f"{found[:12]}, recorded {result.predictions_sha256[:12]}); rerun it with --force"
            )
    return result


def predictions_sha256(path: str | Path) -> str:
    """sha256 of a predictions file's CSV content (decompressed: the gzip header holds a time stamp)."""
    import gzip
    import hashlib
    import zlib

    h = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise ResultError(f"{path}: unreadable predictions file ({exc})") from exc
    return h.hexdigest()


def load_result_dataset(result: Result):
    """The dataset ``result`` was computed on (found through ``dataset.path``), checked by its fingerprint."""
    from copybench.datasets.dataset import DATASET_FILE, load_dataset

    root, where = result.dataset_root, result.source or "result"
    if root is None:
        raise ValueError(f"{where}: the result records no dataset folder")
    if not (root / DATASET_FILE).is_file():
        recorded = result.dataset["path"]
        relative = "" if Path(recorded).is_absolute() else " (relative to the result file's folder)"
        raise FileNotFoundError(
            f"{where}: its dataset {result.dataset_name} ({(result.fingerprint or '')[:12]}) is not at {root}, "
            f"recorded as {recorded!r}{relative}; move a results folder together with its dataset"
        )
    dataset = load_dataset(root)
    if dataset.fingerprint != result.fingerprint:
        raise ValueError(f"{where}: dataset at {dataset.root} changed since the result was computed")
    return dataset


def iter_result_files(root: str | Path) -> list[Path]:
    """All result JSON files under a folder (or the file itself), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ResultError(f"no such results file or folder: {root}")
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))


def read_results(root: str | Path, *, strict: bool = False) -> tuple[list[Result], list[str]]:
    """Results under ``root`` and the errors of files that could not be read (raised instead when strict)."""
    results, errors = [], []
    for path in iter_result_files(root):
        try:
            results.append(read_result(path))
        except ResultError as exc:
            if strict:
                raise
            errors.append(str(exc))
    return results, errors
