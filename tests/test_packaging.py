"""copybench as a library: compatible ranges in pyproject.toml (never exact pins), the tested set in
constraints.txt inside those ranges, optional libraries behind named extras with an error that names them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from copybench.cli import main
from copybench.extras import EXTRAS, MissingExtraError, require

tomllib = pytest.importorskip("tomllib")  # stdlib from Python 3.11
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exactly: {line}"
            pins[req.name.lower().replace("_", "-")] = Version(spec.version)
    return pins


def _requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for items in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in items if not r.startswith("copybench")]
    return reqs


def test_no_dependency_is_an_exact_pin():
    pinned = [str(r) for r in _requirements() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"state ranges in pyproject.toml, pin in constraints.txt: {pinned}"


def test_every_requirement_has_a_lower_bound():
    unbounded = [str(r) for r in _requirements() if not any(s.operator in (">=", ">") for s in r.specifier)]
    assert not unbounded


def test_the_tested_set_lies_inside_the_ranges():
    pins = _constraints()
    for req in _requirements():
        name = req.name.lower().replace("_", "-")
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
    core = {Requirement(r).name.lower().replace("_", "-") for r in PROJECT["dependencies"]}
    assert core <= set(pins), f"constraints.txt lacks {core - set(pins)}"


def test_an_older_numpy_is_admitted():
    """The finding that started this: `pip install copybench "numpy<2.4"` must be resolvable."""
    numpy = next(Requirement(r) for r in PROJECT["dependencies"] if r.startswith("numpy"))
    assert numpy.specifier.contains("2.3.5") and numpy.specifier.contains("2.0.2")


def test_optional_libraries_sit_in_extras_not_in_the_core():
    core = {Requirement(r).name.lower() for r in PROJECT["dependencies"]}
    for heavy in ("augly", "h5py", "open-clip-torch", "transformers", "diffusers", "ray"):
        assert heavy not in core
    extras = PROJECT["optional-dependencies"]
    for module, (extra, _) in EXTRAS.items():
        assert extra in extras, f"{module} names extra {extra!r}, which pyproject.toml lacks"


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed: import raises ModuleNotFoundError
    with pytest.raises(MissingExtraError, match=r"pip install 'copybench\[h5\]'"):
        require("h5py")


def test_a_missing_extra_through_the_cli_is_exit_2_naming_it(monkeypatch, tmp_path, tiny_dataset, capsys):
    monkeypatch.setitem(sys.modules, "h5py", None)
    (tmp_path / "q.h5").write_bytes(b"")
    code = main(
        ["score-h5", "--dataset", str(tiny_dataset), "--queries", str(tmp_path / "q.h5")]
        + ["--references", str(tmp_path / "q.h5"), "--name", "x", "--results", str(tmp_path / "r")]
    )
    assert code == 2
    assert "copybench[h5]" in capsys.readouterr().err


def test_an_unrelated_missing_module_is_not_blamed_on_an_extra():
    with pytest.raises(ModuleNotFoundError) as info:
        require("no_such_module_anywhere")
    assert not isinstance(info.value, MissingExtraError)
