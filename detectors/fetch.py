"""The ``copybench weights`` commands: fetch the official weights of detectors by name or pattern, list every
detector's weights file.

How files are checked, pinned and downloaded is :mod:`copybench.detectors.weightfiles` (its names are re-exported
here, where they were first offered); hub names fetch through :mod:`copybench.detectors.hub`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from copybench.io import file_sha256

from .bars import hub_bars
from .hub import check_hub_name, is_hub_name
from .hub import fetch as fetch_hub
from .locate import find_weights
from .registry import (
    DetectorSpec,
    UnknownDetectorError,
    WeightsMissingError,
    get_entry,
    get_spec,
    list_detectors,
)
from .weightfiles import (
    CHUNK,
    LOCK_ENV,
    LOCK_VERSION,
    Expected,
    WeightsHashError,
    checkpoints_dir,
    download,
    expected_sha256,
    fetch_spec,
    is_url,
    lock_path,
    official_path,
    pin,
    read_lock,
    verify_file,
)

log = logging.getLogger(__name__)

__all__ = [  # the weightfiles names: this module offered them before they moved down
    "BASELINES", "CHUNK", "LOCK_ENV", "LOCK_VERSION", "Expected", "FetchOutcome", "WeightsFileRow",
    "WeightsHashError", "checkpoints_dir", "download", "expand_names", "expected_sha256", "fetch_spec",
    "fetch_weights", "hub_bars", "is_url", "list_weights", "lock_path", "official_path", "pin", "read_lock",
    "verify_file",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------ commands
# The ten pretrained baselines a new extractor is compared against: the extractors the replication paper's code
# loads (SSCD, DINO ViT-S/16, ViT-B/16, ViT-B/8 and ResNet-50, CLIP ViT-B/16, ViT-L/14 and RN50x16) plus the
# larger SSCD and Swin-B, named among the strongest. All download from their publishers' URLs.
BASELINES = (
    "sscd_disc_mixup",
    "sscd_disc_large",
    "dino_vits16",
    "dino_vitb16",
    "dino_vitb8",
    "dino_resnet50",
    "clip_vitb16.openai",
    "clip_vitl14.openai",
    "clip_rn50x16.openai",
    "swin_b.in1k",
)


@dataclass(frozen=True)
class FetchOutcome:
    """What ``fetch_weights`` did for one detector: fetched, present, skipped (nothing to fetch) or failed."""

    detector: str
    status: str
    path: str = ""
    sha256: str = ""
    message: str = ""
    runtime: bool = (
        False  # failed for the machine's reason (network, disk: exit 3), not the request's (exit 2)
    )


def expand_names(patterns: list[str]) -> list[str]:
    """Detector names from names, shell patterns and ``baselines`` (the ten baselines); unknown ones raise."""
    names: list[str] = []
    for item in patterns:
        if item == "baselines":
            names += BASELINES
        elif is_hub_name(item):
            check_hub_name(item)  # malformed: refused before anything is fetched or named after it
            names.append(item)  # resolved (and for hf-hub: / hf:, downloaded) by its library when fetched
        elif any(ch in item for ch in "*?[") and ":" not in item:
            found = list_detectors(item)
            if not found:
                raise UnknownDetectorError(f"detector pattern {item!r} matches nothing")
            names += found
        else:
            get_spec(item)
            names.append(item)
    return list(dict.fromkeys(names))


def fetch_weights(
    patterns: list[str], *, force: bool = False, progress: bool = True, on_error: str = "warn"
) -> list[FetchOutcome]:
    """Fetch the official weights of every matching detector (each file once).

    A failed file never stops the others. ``on_error``: ``"warn"`` (default) logs a warning naming the detector
    and the cause; ``"raise"`` raises the first failure's error; ``"return"`` only records it in the outcomes.
    """
    if on_error not in ("warn", "raise", "return"):
        raise ValueError(f"on_error must be warn, raise or return, got {on_error!r}")
    outcomes, done = [], {}
    for name in expand_names(patterns):
        spec = None if is_hub_name(name) else get_spec(name)
        if spec is not None and not is_url(spec.weights):
            why = "parameter-free" if spec.parameter_free else f"weights from {spec.weights}"
            outcomes.append(FetchOutcome(name, "skipped", message=f"nothing to download ({why})"))
            continue
        key = name if spec is None else spec.weights  # variants sharing one file fetch (or fail) once
        if key not in done:
            try:  # hub names fetch through their own library, into its cache
                done[key] = (
                    fetch_hub(name, progress=progress)
                    if spec is None
                    else fetch_spec(spec, force=force, progress=progress)
                )
            except (OSError, ValueError, KeyError, WeightsMissingError) as exc:
                done[key] = exc
        if isinstance(done[key], Exception):
            error = done[key]
            runtime = isinstance(error, OSError) and not isinstance(error, FileNotFoundError)
            outcomes.append(FetchOutcome(name, "failed", message=str(error), runtime=runtime))
            _speak_up(name, done[key], on_error)
            continue
        path, digest, note = done[key]
        status = "fetched" if note.startswith("downloaded") else "present"
        outcomes.append(FetchOutcome(name, status, str(path), digest, note))
    return outcomes


def _speak_up(name: str, error: Exception, on_error: str) -> None:
    if on_error == "raise":
        raise error
    if on_error == "warn":
        log.warning("weights for %s not fetched: %s", name, error)


@dataclass(frozen=True)
class WeightsFileRow:
    """One detector's weights file as ``copybench weights list`` shows it."""

    detector: str
    file: str
    status: str  # present, missing, package, modified (a packaged file failing its sha256), none
    size: int | None
    sha256: str
    check: str  # published, published prefix, pinned ..., unpinned, or ""
    source: str
    license: str


def list_weights(pattern: str = "*") -> list[WeightsFileRow]:
    """Every registered detector's weights file: where it is, its size, its sha256 and what checks it."""
    if is_hub_name(pattern):  # one hub model: its cached weights file, as the library would load it
        return [_hub_row(pattern)]
    rows = []
    for name in list_detectors(pattern):
        spec = get_spec(name)
        path = None if spec.parameter_free or spec.random_only else find_weights(spec)
        rows.append(_row(spec, path))
    return rows


def _hub_row(name: str) -> WeightsFileRow:
    entry = get_entry(name)
    spec, path = entry.spec, entry.locate()
    digest = file_sha256(path) if path else ""
    pinned = read_lock().get(f"{name}/{path.name}") if path else None
    check = f"pinned {pinned['pinned']} in {lock_path()}" if pinned else "unpinned (pinned on first use)"
    if entry.revision:
        check += f"; revision {entry.revision}"
    status = "present" if path else "missing"
    size = path.stat().st_size if path else None
    return WeightsFileRow(
        name, path.name if path else "", status, size, digest, check, spec.weights, spec.license
    )


def _row(spec: DetectorSpec, path: Path | None) -> WeightsFileRow:
    size = path.stat().st_size if path else None
    if spec.parameter_free or spec.random_only:
        status, file = "none", ""
    elif is_url(spec.weights):
        status, file = ("present" if path else "missing"), spec.weights.rsplit("/", 1)[-1]
    else:
        status, file = ("package" if path else "missing"), (path.name if path else spec.weights)
    sha, check = "", ""
    if is_url(spec.weights):
        want = expected_sha256(spec.weights, spec.sha256)
        sha, check = (want.sha256, want.origin) if want else ("", "unpinned")
    elif path is not None:
        sha = file_sha256(path)
        check = "package file" if not spec.sha256 else "package file, sha256 matches (published)"
        if spec.sha256 and sha != spec.sha256:
            status, check = (
                "modified",
                f"package file, sha256 differs from the published {spec.sha256}: refused",
            )
    return WeightsFileRow(
        spec.name, file, status, size, sha, check, spec.weights or "parameter-free", spec.license
    )
