"""Result files: schema v1, one JSON per (detector, dataset fingerprint, settings), beside raw predictions.

A result's path is derived from its key, so an interrupted run resumes and finished work is skipped. JSON is
written atomically with sorted keys, NaN/inf as null and floats rounded to 6 digits. Files of an unknown schema
version are refused, never guessed. Schema v1 fields are documented in README.md ("Result files").
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

SCHEMA_VERSION = 1
KINDS = ("accuracy", "throughput")


class ResultError(ValueError):
    """A result file is unreadable or of an unknown schema (message names the file)."""


def _clean(value):
    """JSON-ready: floats rounded to 6 digits, NaN/inf -> None, numpy scalars and arrays -> python."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(result: dict) -> str:
    """Canonical JSON text of a result."""
    return json.dumps(_clean(result), sort_keys=True, indent=1, allow_nan=False) + "\n"


def safe_name(text: str) -> str:
    """A file-name-safe rendering of a detector or dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


def settings_suffix(settings: dict) -> str:
    """Non-default retrieval settings, encoded in the file name so each setting gets its own result."""
    parts = []
    if settings.get("similarity", "cosine") != "cosine":
        parts.append(settings["similarity"] + (f"{settings['chunks']}" if settings.get("chunks") else ""))
    if settings.get("whitening"):
        parts.append("whiten")
    if settings.get("score_norm"):
        parts.append("scorenorm")
    if settings.get("dtype", "fp32") != "fp32":
        parts.append(settings["dtype"])
    if settings.get("multiscale"):
        parts.append("ms" + "-".join(f"{x:g}" for x in settings["multiscale"]))
    if settings.get("topk"):
        parts.append(f"top{settings['topk']}")
    if settings.get("protocol", "native") != "native":
        parts.append(settings["protocol"])
    return "".join("__" + p for p in parts)


def result_path(
    results_dir: str | Path, detector: str, dataset_name: str, fingerprint: str, settings: dict
) -> Path:
    """results_dir/<dataset>-<fingerprint[:12]>/<detector><settings>.json"""
    folder = Path(results_dir) / f"{safe_name(dataset_name)}-{fingerprint[:12]}"
    return folder / f"{safe_name(detector)}{settings_suffix(settings)}.json"


def write_result(path: str | Path, result: dict) -> Path:
    """Atomically write a result (schema version stamped)."""
    from copybench.io import atomic_write_text

    result = {"schema_version": SCHEMA_VERSION, **result}
    atomic_write_text(path, dumps(result))
    return Path(path)


def read_result(path: str | Path) -> dict:
    """Read and validate one result file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultError(f"{path}: cannot read result file ({exc})") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultError(
            f"{path}: unknown result schema version {version!r} (this copybench reads {SCHEMA_VERSION})"
        )
    if data.get("kind") not in KINDS:
        raise ResultError(f"{path}: unknown result kind {data.get('kind')!r}")
    if data["kind"] == "accuracy" and isinstance(data.get("key"), dict):
        # results written before protocols existed were all computed under the native protocol
        data["key"].setdefault("protocol", "native")
        data.setdefault("settings", {}).setdefault("protocol", "native")
    data["_path"] = str(path)
    return data


def iter_result_files(root: str | Path) -> list[Path]:
    """All result JSON files under a folder (or the file itself), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ResultError(f"no such results file or folder: {root}")
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))


def load_results(root: str | Path, *, strict: bool = False) -> tuple[list[dict], list[str]]:
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


def is_random(result: dict) -> bool:
    """Whether a result was computed with randomly initialised weights."""
    return result.get("detector", {}).get("weights", {}).get("status") == "random"
