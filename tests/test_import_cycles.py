"""No import cycles in copybench: every import counts, at module level, inside functions or under TYPE_CHECKING.

A lazy import inside a function breaks no cycle in the design, it only defers the failure to the call that runs
it; so the graph here holds every ``import``/``from ... import`` statement ``ast`` finds in a module. An edge
goes to the module named, or to the submodule when ``from package import submodule`` names one. Importing a
submodule also imports its parent packages, but that is not counted (a package ``__init__`` that re-exports
its submodules would otherwise cycle with each of them). ``importlib.import_module("...")`` with a string is
not an import statement and is not counted: the registry imports a built-in's factory module that way.

A cycle is a strongly connected component of more than one module. Fix one by moving what both sides need
into a lower module both can import (and re-exporting it where it was), never by hiding the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> import name, as pyproject.toml's [tool.setuptools] package-dir maps them
ROOTS = {"bench": "copybench", "detectors": "copybench.detectors", "datasets": "copybench.datasets"}


def package_modules(root: Path, roots: dict[str, str]) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under each folder of ``roots``."""
    modules = {}
    for folder, package in roots.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest dotted prefix that is a module of the package (None when none is)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            found |= {_known(f"{target}.{a.name}", modules) or _known(target, modules) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {_known(a.name, modules) for a in node.names}
    return found - {None, module}


def import_graph(root: Path, roots: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = package_modules(root, roots)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, each sorted, sorted by their first module."""
    reach = {name: _reachable(graph, name) for name in graph}
    components = {frozenset(w for w in reach[v] if v in reach[w]) for v in graph}
    return sorted(sorted(c) for c in components if len(c) > 1)


def describe(graph: dict[str, set[str]], cycle: list[str]) -> str:
    """One line per module of ``cycle``: the modules of the cycle it imports."""
    lines = [f"cycle of {len(cycle)} modules:"]
    lines += [f"    {m} -> {', '.join(sorted(graph[m] & set(cycle)))}" for m in cycle]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the finder
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_the_finder_counts_lazy_type_checking_and_relative_imports(tmp_path):
    """A cycle closed by a lazy import, one closed under TYPE_CHECKING, ``from . import sub`` and a two-level
    relative import are all found; a one-way chain and an importlib string are not cycles."""
    _write(
        tmp_path,
        {
            "core/__init__.py": "from . import a\n",
            "core/a.py": "from .b import f\n",
            "core/b.py": "def f():\n    from .a import g\n",  # a <-> b, lazily
            "core/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.d import X\n",
            "core/d.py": "import core.c\n",  # c <-> d, under TYPE_CHECKING
            "core/sub/__init__.py": "",
            "core/sub/e.py": "from .. import a\nimport importlib\nimportlib.import_module('core.sub.f')\n",
            "core/sub/f.py": "from ..sub import e\nimport os\n",  # f -> e -> a: one way
            "plug/g.py": "from core.sub.e import x\n",
        },
    )
    graph = import_graph(tmp_path, {"core": "core", "plug": "core.plug"})
    assert graph["core"] == {"core.a"}
    assert graph["core.sub.e"] == {
        "core.a"
    }  # `from .. import a` names the submodule; the string is no import
    assert graph["core.sub.f"] == {"core.sub.e"}
    assert graph["core.plug.g"] == {"core.sub.e"}
    assert cycles(graph) == [["core.a", "core.b"], ["core.c", "core.d"]]
    assert describe(graph, ["core.a", "core.b"]).splitlines()[1:] == [
        "    core.a -> core.b",
        "    core.b -> core.a",
    ]


def test_a_one_way_graph_has_no_cycle():
    graph = {"p.low": set(), "p.mid": {"p.low"}, "p.top": {"p.mid", "p.low"}, "p.self": {"p.low"}}
    assert cycles(graph) == []
    assert cycles({**graph, "p.low": {"p.top"}}) == [["p.low", "p.mid", "p.top"]]


# ------------------------------------------------------------------------------------------------ copybench
@pytest.mark.parametrize("package", ["copybench.detectors", "copybench.datasets", "copybench"])
def test_no_import_cycle(package):
    """No cycle touches ``package`` (``copybench``: the whole import root, its subpackages included)."""
    graph = import_graph(ROOT, ROOTS)
    inside = [c for c in cycles(graph) if any(m == package or m.startswith(package + ".") for m in c)]
    assert not inside, "\n".join(describe(graph, c) for c in inside)
