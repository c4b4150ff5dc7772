"""The layout is the architecture (docs/ARCHITECTURE.md): feature packages, no import cycles, no module over 500
lines, and every module path of the previous layout still importing (deprecated) as the very same module."""

from __future__ import annotations

import ast
import importlib
import warnings
from collections import defaultdict
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


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Imports under ``if TYPE_CHECKING:`` never run: annotations only, no dependency at run time."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(x) for stmt in node.body for x in ast.walk(stmt)}
    return skip


def _targets(name: str, path: Path, node: ast.AST, mods: dict[str, Path]) -> list[str]:
    """The copybench modules one import statement loads (a name imported from a package may be a module)."""
    if isinstance(node, ast.Import):
        wanted = [a.name for a in node.names]
    else:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[: len(base) - node.level + 1] if node.level else []
        module = ".".join(base + ([node.module] if node.module else []))
        wanted = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
    found = []
    for target in wanted:
        while target not in mods and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in mods and target != name:
            found.append(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import of a copybench module by another, at module level or inside a function."""
    mods, graph = _modules(), defaultdict(set)
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                graph[name].update(_targets(name, path, node, mods))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (a lower module imports a higher one): " + "; ".join(
        " <-> ".join(c) for c in found
    )


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
