"""The layout is the architecture (docs/ARCHITECTURE.md): feature packages, no module over 500 lines, commands
registered by their features, and every module path of the previous layout still importing (deprecated) as the
very same module. Import cycles: tests/test_import_cycles.py."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"bench": "copybench", "detectors": "copybench.detectors", "datasets": "copybench.datasets"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in TREES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([package, *parts])] = path
    return mods


def test_no_module_over_500_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}, "split these modules: one job per module"


def test_cli_only_assembles_feature_commands():
    """Each feature registers its own commands; cli.py holds no command of its own."""
    from copybench import cli

    source = (ROOT / "bench" / "cli.py").read_text(encoding="utf-8")
    assert "def cmd_" not in source and "add_parser(" not in source
    assert {module for module, _ in cli.COMMANDS} >= {
        "copybench.commands",
        "copybench.datasets.cli",
        "copybench.report.cli",
        "copybench.scan.cli",
        "copybench.study.cli",
        "copybench.throughput.cli",
    }


@pytest.mark.parametrize(
    "old",
    sorted(importlib.import_module("copybench._moved").MOVED),
)
def test_old_module_paths_still_import_as_the_same_module(old):
    from copybench._moved import MOVED

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert any(
        issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught
    ) or (
        old in __import__("sys").modules  # imported earlier in this session: the warning was given then
    )


def test_package_names_of_the_old_modules_still_resolve():
    """``copybench.scan``, ``copybench.study`` and ``copybench.scaling`` were modules; as packages they still
    offer the names users imported from them."""
    from copybench import scaling, scan, study

    assert callable(scan.scan) and callable(scan.search_top_k) and callable(scan.wilson_interval)
    assert callable(study.data_size_study) and callable(study.parse_sizes)
    assert callable(scaling.plan_scan) and scaling.RayEngine.__name__ == "RayEngine"
    with pytest.raises(AttributeError):
        scan.no_such_name  # noqa: B018
