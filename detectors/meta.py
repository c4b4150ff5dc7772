"""Detector metadata in the spirit of mteb's ModelMeta: what a leaderboard row needs to be read correctly.

Declared on the spec: license, paper, weights source and published sha256, release date (month the model was
first published) and the URL it is read from. Parameters: a built-in's are stored in its catalog entry
(``builtin.py``; a test counts the architecture's and compares), so listing builds nothing and imports no torch;
a plugin's or hub model's are counted on the meta device from its own architecture (no memory, no weights;
cached per library versions in ``$COPYBENCH_CACHE/detector_params.json``). The weights hash: published sha256,
the lock file's pin, or the hub revision. Metadata never enters the descriptor cache key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from copybench.io import file_sha256

from .hub import is_hub_name
from .locate import find_weights, weights_status
from .params import (  # noqa: F401  (re-exported: this module's names before they moved down)
    PARAMS_CACHE_ENV,
    _cache_key,
    _cache_path,
    cached_parameters,
    count_parameters,
    entry_parameters,
)
from .registry import WeightsMissingError, get_entry, list_detectors
from .weightfiles import expected_sha256, is_url, read_lock


@dataclass(frozen=True)
class DetectorMeta:
    """One detector's metadata (``copybench list detectors``, result files, tables)."""

    name: str
    params: int | None  # parameters of the architecture (a quantised export counts its float twin's)
    dims: int
    input_size: int
    output: str
    license: str
    paper: str
    source: str  # where the weights come from
    weights_hash: str  # published or pinned sha256, or hub revision; "" when unknown
    release_date: str  # YYYY-MM of first publication; "" when unknown
    origin: str
    release_source: str = ""  # the URL the release date is read from (the paper's arXiv page, a release note)

    def to_dict(self) -> dict:
        return asdict(self)


def weights_hash(entry) -> str:
    """The published sha256, else the lock file's pin, else the hub revision; "" when nothing pins the weights."""
    spec = entry.spec
    if is_url(spec.weights):
        want = expected_sha256(spec.weights, spec.sha256)
        return want.sha256 if want else ""
    if spec.sha256:
        return spec.sha256
    if spec.weights.startswith("package:"):  # a pip package's file: its own sha256
        path = find_weights(spec)
        return file_sha256(path) if path else ""
    if getattr(entry, "locate", None) is not None:  # a hub model: its cached file's pin in the weights lock
        path = entry.locate()
        pinned = read_lock().get(f"{spec.name}/{path.name}") if path else None
        if pinned:
            return pinned["sha256"]
    revision = getattr(entry, "revision", "")
    return f"revision {revision}" if revision else ""


def detector_meta(name: str) -> DetectorMeta:
    """The metadata of a registered detector or hub name."""
    return entry_meta(get_entry(name))


def entry_meta(entry, weights_sha256: str | None = None) -> DetectorMeta:
    """Metadata of a registry entry; ``weights_sha256``: the hash of the file a built detector actually loaded."""
    spec = entry.spec
    return DetectorMeta(
        name=spec.name,
        params=entry_parameters(entry),
        dims=spec.dims,
        input_size=spec.input_size,
        output=spec.output,
        license=spec.license,
        paper=spec.paper,
        source=spec.weights or "parameter-free",
        weights_hash=weights_sha256 or weights_hash(entry),
        release_date=spec.release_date,
        origin=entry.origin,
        release_source=spec.release_source,
    )


def describe_detectors(pattern: str = "*") -> list[dict]:
    """One row per registered detector matching ``pattern`` (or the hub model a hub name names): what
    ``copybench list detectors`` shows.

    ``weights`` is the status (real, missing, random, random-only, none); ``source`` where real weights come
    from; ``params``, ``paper``, ``release_date``, ``weights_hash``: the detector's metadata (``DetectorMeta``).
    """
    rows = []
    # a hub name (never enumerated) describes that one model, resolved from the caches offline
    for name in [pattern] if is_hub_name(pattern) else list_detectors(pattern):
        try:
            entry = get_entry(name)
        except WeightsMissingError as exc:  # an hf-hub: / hf: repository not cached: listed as missing
            rows.append(_uncached_row(name, exc))
            continue
        spec = entry.spec
        meta = entry_meta(entry)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "dims": spec.dims,
                "output": spec.output,
                "input_size": spec.input_size,
                "resize": spec.resize,
                "resize_size": spec.resize_size,
                "interpolation": spec.interpolation,
                "weights": weights_status(name),
                "source": spec.weights or "none (parameter-free)",
                "license": spec.license,
                "origin": entry.origin,
                "params": meta.params,
                "paper": spec.paper,
                "release_date": spec.release_date,
                "release_source": spec.release_source,
                "weights_hash": meta.weights_hash,
            }
        )
    return rows


def _uncached_row(name: str, error: Exception) -> dict:
    """The row of a hub repository that is not cached (what it is cannot be read offline): status missing."""
    unknown = dict.fromkeys(("dims", "input_size", "resize_size", "params"))
    text = dict.fromkeys(
        ("family", "output", "resize", "interpolation", "license", "paper", "release_date"), ""
    )
    return {
        "name": name,
        **text,
        **unknown,
        "weights": "missing",
        "source": f"https://huggingface.co/{name.partition(':')[2].partition('@')[0]}",
        "origin": "hub",
        "release_source": "",
        "weights_hash": "",
        "error": str(error),
    }
