"""The study's experiment, replication against training-set size (``copybench study``).

:mod:`.subsets` draws the nested training subsets and their pixels; :mod:`.train` trains and samples the small
DDPMs; :mod:`.experiment` runs :func:`data_size_study`; :mod:`.report` writes its figures and page;
:mod:`.demo` the CPU-sized demo; :mod:`.cli` the commands. ``from copybench.study import data_size_study``
keeps working: names load from the submodules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("experiment", "subsets")


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        for sub in _SUBMODULES:
            module = importlib.import_module(f"{__name__}.{sub}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
