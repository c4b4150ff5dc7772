"""copybench: a benchmark harness for image copy detection and training-data replication scans.

Importing ``copybench`` is cheap: heavy libraries (torch, faiss, kornia, timm, pandas) load only when used.
The Python API in three calls::

    from copybench import build_dataset, load_results, run_benchmark

``build_dataset`` and ``run_benchmark`` are re-exported lazily from ``copybench.datasets`` and
``copybench.run``; :func:`load_results` returns every result under a folder as a tidy pandas DataFrame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from . import _moved
from ._version import __version__

_moved.install()  # old module paths (copybench.report.table, copybench.scan.cli, ...) still import
__all__ = ["__version__", "build_dataset", "load_results", "run_benchmark"]


def load_results(root: str | Path, *, kind: str = "accuracy", strict: bool = True) -> pd.DataFrame:
    """Every result file under ``root`` as a tidy DataFrame, one row per (result, group).

    ``group`` is ``all`` (overall), a recipe family or ``family/tier``; metric columns are identifiers
    (``micro_ap``, ``recall_at_1``) and confidence intervals two columns (``micro_ap_ci_low``/``_high``).
    ``kind="throughput"`` gives one row per speed measurement instead. See :mod:`copybench.report.tidy`.
    """
    from copybench.report.tidy import load_results as _load

    return _load(root, kind=kind, strict=strict)


def __getattr__(name: str) -> Any:
    # lazy re-exports: importing copybench must not import torch
    if name == "build_dataset":
        from copybench.datasets import build_dataset

        return build_dataset
    if name == "run_benchmark":
        from .run import run_benchmark

        return run_benchmark
    raise AttributeError(f"module 'copybench' has no attribute {name!r}")
