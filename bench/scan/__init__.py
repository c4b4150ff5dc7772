"""Replication scan: generated images against a training set (``copybench scan``).

:mod:`.search` holds the exact top-k search, the train-vs-train baseline and the statistics; :mod:`.pipeline`
the scan itself (:func:`scan`); :mod:`.report` its match grids, histograms and HTML report; :mod:`.cli` the
command. ``from copybench.scan import scan`` keeps working: names load from the submodules on first use, so
importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("pipeline", "search")


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for sub in _SUBMODULES:
            module = importlib.import_module(f"{__name__}.{sub}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
