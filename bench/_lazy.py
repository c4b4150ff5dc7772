"""Lazy package attributes: a feature package offers the names of its submodules (``from copybench.scan import
scan``) without importing them until one is used, so importing the package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def submodule_getattr(package: str, submodules: tuple[str, ...]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in the first of ``submodules`` defining it."""

    def __getattr__(name: str) -> Any:
        if not name.startswith("__"):
            for sub in submodules:
                module = importlib.import_module(f"{package}.{sub}")
                if hasattr(module, name):
                    return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
