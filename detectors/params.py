"""A detector's parameter count, without weights or memory: its architecture built on PyTorch's meta device.

A built-in's count is stored in its catalog entry (``builtin.py``); a plugin's or hub model's is counted here and
cached per spec, factory code and library versions in ``$COPYBENCH_META_CACHE`` (default
``$COPYBENCH_CACHE/detector_params.json``). Below :mod:`copybench.detectors.locate` and
:mod:`copybench.detectors.meta`, which re-exports these names; torch loads only when a count is computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .codehash import code_digest

log = logging.getLogger(__name__)

PARAMS_CACHE_ENV = "COPYBENCH_META_CACHE"


def count_parameters(factory) -> int | None:
    """Parameters of ``factory(None)`` built on the meta device; None when the factory cannot build there."""
    import torch

    try:
        with torch.device("meta"):
            model = factory(None)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception as exc:  # noqa: BLE001  (a plugin's factory may not build on meta: report unknown)
        log.debug("cannot count parameters on the meta device: %s", exc)
        return None


def _cache_path() -> Path:
    """``$COPYBENCH_META_CACHE``, else ``detector_params.json`` in the one cache root (``copybench.io.cache_root``)."""
    from copybench.io import cache_root

    env = os.environ.get(PARAMS_CACHE_ENV)
    return Path(env).expanduser() if env else cache_root() / "detector_params.json"


def _cache_key(entry) -> str:
    """Spec, factory code and library versions: a parameter count is reused only for the same architecture."""
    from importlib.metadata import PackageNotFoundError, version

    # the factory's code hash, as load.plugin_code_digest gives it (None for built-ins)
    parts = [json.dumps(entry.spec.to_dict(), sort_keys=True), str(code_digest(entry.factory))]
    for package in (
        "torch",
        "torchvision",
        "timm",
        "open_clip_torch",
        "transformers",
    ):  # without importing them
        try:
            parts.append(version(package))
        except PackageNotFoundError:
            parts.append("-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def cached_parameters(entry) -> int | None:
    """``count_parameters`` for a registry entry, remembered on disk (building 40 models takes seconds)."""
    from copybench.io import atomic_write_text

    path, key = _cache_path(), _cache_key(entry)
    try:
        cache = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}  # a damaged cache is recomputed, never trusted
    if key in cache and (cache[key] is None or isinstance(cache[key], int)):
        return cache[key]
    cache[key] = count_parameters(entry.factory)
    try:
        atomic_write_text(path, json.dumps(cache, sort_keys=True))
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)
    return cache[key]


def entry_parameters(entry) -> int | None:
    """A built-in's stored parameter count, else the count of its architecture built on the meta device."""
    stored = getattr(entry, "params", None)
    if stored is None and getattr(entry, "_factory", True) is None:
        return None  # a declared plugin not built yet: counting would import its framework (unknown)
    return stored if stored is not None else cached_parameters(entry)
