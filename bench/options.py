"""Option vocabularies and defaults that a library function and its CLI parser both name.

They live here, apart from the modules that use them (which import numpy, torch or pandas at the top), so that
building the CLI parser (``copybench --help``, every subcommand's ``--help``) imports nothing heavy: the parser
modules (``cli``, ``scan_cli``, ``study_cli``, ``throughput.cli``, ``weights``) import only this, ``io``,
``decode`` and ``protocols``. Each library module re-exports its names (``copybench.scan.SIMILARITIES`` ...).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from .io import cache_root

ENGINES = ("local", "ray")  # copybench.scaling
RAY_SHARD_ROWS = (
    1024  # descriptors per cache shard written by the Ray driver (the local Extractor's SHARD_IMAGES)
)
SCAN_SIMILARITIES = ("cosine", "split")  # copybench.scan
SAMPLERS = ("dpm", "ddim")  # copybench.study.train
PREDICTIONS = ("epsilon", "sample")  # copybench.study.train
P = ParamSpec("P")
R = TypeVar("R")

STUDY_DETECTOR = "sscd_disc_mixup.onnx_int8"  # copybench.study's default scan detector


def default_descriptor_dir() -> Path:
    """The descriptor cache folder: ``descriptors/`` in the one cache root ($COPYBENCH_CACHE)."""
    return cache_root() / "descriptors"


def renamed_keyword(**renames: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept each old keyword name (``cache_dir=``) for its new one (``descriptor_dir=``), with a
    DeprecationWarning naming both, as the CLI accepts an old flag. Giving both names is a TypeError."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {new}= and {old}=, its deprecated old name")
                warnings.warn(
                    f"{fn.__name__}(): {old}= is deprecated; use {new}= (same meaning)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner

    return wrap
