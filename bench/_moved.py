"""Old module paths of copybench 0.1 that moved into feature packages: still importable, deprecated.

``import copybench.table`` gives the very module ``copybench.report.table`` (one module object, so state and
monkeypatching are shared) with a :class:`DeprecationWarning` naming the new path. Removed in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "copybench.distributed": "copybench.scaling",
    "copybench.html": "copybench.report.html",
    "copybench.interop": "copybench.report.interop",
    "copybench.plots": "copybench.report.plots",
    "copybench.published": "copybench.report.published",
    "copybench.scan_cli": "copybench.scan.cli",
    "copybench.scan_report": "copybench.scan.report",
    "copybench.speed_plot": "copybench.report.speed_plot",
    "copybench.study_cli": "copybench.study.cli",
    "copybench.study_demo": "copybench.study.demo",
    "copybench.study_report": "copybench.study.report",
    "copybench.study_train": "copybench.study.train",
    "copybench.table": "copybench.report.table",
    "copybench.tidy": "copybench.report.tidy",
    "copybench.weights": "copybench.detectors.cli",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands back the module at its new path."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        """The module was executed at its new path."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
