"""Option vocabularies and defaults that a library function and its CLI parser both name.

They live here, apart from the modules that use them (which import numpy, torch or pandas at the top), so that
building the CLI parser (``copybench --help``, every subcommand's ``--help``) imports nothing heavy: the parser
modules (``cli``, ``scan_cli``, ``study_cli``, ``throughput.cli``, ``weights``) import only this, ``io``,
``decode`` and ``protocols``. Each library module re-exports its names (``copybench.scan.SIMILARITIES`` ...).
"""

from __future__ import annotations

from pathlib import Path

from .io import cache_root

ENGINES = ("local", "ray")  # copybench.distributed
RAY_SHARD_ROWS = (
    1024  # descriptors per cache shard written by the Ray driver (the local Extractor's SHARD_IMAGES)
)
SCAN_SIMILARITIES = ("cosine", "split")  # copybench.scan
SAMPLERS = ("dpm", "ddim")  # copybench.study_train
PREDICTIONS = ("epsilon", "sample")  # copybench.study_train
STUDY_DETECTOR = "sscd_disc_mixup.onnx_int8"  # copybench.study's default scan detector


def default_descriptor_dir() -> Path:
    """The descriptor cache folder: ``descriptors/`` in the one cache root ($COPYBENCH_CACHE)."""
    return cache_root() / "descriptors"
