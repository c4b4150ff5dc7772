"""Scale-out: the Ray engine (``--engine ray`` for ``run`` and ``scan``) and the scaling plan.

:mod:`.engine` starts or joins a Ray cluster and runs sharded search; :mod:`.extractor` streams images to
detector actors (:mod:`.actor`) and stores their descriptors (:mod:`.store`); :mod:`.plan` models a scan's
time on N devices from measured rates (``python -m copybench.scaling``). ``from copybench.scaling import
plan_scan`` keeps working: names load from the submodules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("plan", "engine", "extractor", "actor", "store", "records")


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for sub in _SUBMODULES:
            module = importlib.import_module(f"{__name__}.{sub}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
