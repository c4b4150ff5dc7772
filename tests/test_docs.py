"""The manual: docs/ builds as an mkdocs site with no warning (every link and anchor resolves), the README's links
into it resolve (mkdocs does not build the README), the README stays a short front door whose Quickstart CI
runs, and the CLI reference has a section for every command listing every option."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_mkdocs_build_strict_has_no_warning(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's end-of-life banner is not a build warning
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
    done = subprocess.run(
        [*args, "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, check=False
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    assert (tmp_path / "site" / "img" / "accuracy_speed_cpu.png").stat().st_size > 0  # the symlinked figure


def _anchors(path: Path) -> set[str]:
    """The heading ids mkdocs gives a page (same toc extension and slugify), so an anchor checks as it builds."""
    import markdown

    md = markdown.Markdown(extensions=["toc", "tables", "attr_list", "pymdownx.superfences"])
    return set(re.findall(r'id="([^"]+)"', md.convert(path.read_text(encoding="utf-8"))))


def _readme_links() -> list[str]:
    prose = re.sub(r"```.*?```", "", README, flags=re.DOTALL)  # links in code blocks are not links
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", prose) if not re.match(r"[a-z]+:", t)]


def test_every_readme_link_resolves_to_a_file_and_heading():
    links = _readme_links()
    assert len([t for t in links if t.startswith("docs/")]) >= 12  # the parser found the links into docs
    for target in links:
        file, _, anchor = target.partition("#")
        path = ROOT / file if file else ROOT / "README.md"
        assert path.exists(), f"README links to {target}: {path} does not exist"
        if anchor:
            assert anchor in _anchors(path), f"README links to {target}: {file} has no heading #{anchor}"


def test_readme_is_a_short_front_door_with_ci_quickstart_first():
    assert len(README.splitlines()) < 250
    quickstart = README[README.index("## Quickstart") :]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.DOTALL).group(1).splitlines()
    # .ci/run runs the second line of this block as CI's test command
    assert block == [
        "bash .ci/setup.sh && .venv/bin/copybench demo",
        "bash .ci/setup.sh && .venv/bin/python -m pytest",
    ]


def _commands(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def test_cli_reference_has_every_command_and_option():
    from copybench.cli import build_parser

    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### `(copybench[^`]*)`\n(.*?)(?=^### |\Z)", page, re.DOTALL | re.MULTILINE))
    commands = dict(_commands(build_parser(), "copybench"))
    assert sorted(sections) == sorted(commands)  # one section per command, none for a removed one
    for name, parser in commands.items():
        for action in parser._actions:
            for option in action.option_strings:  # whole options: --n-boot is not documented by --n-boots
                found = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", sections[name])
                assert found, f"docs/cli.md: `{name}` does not document {option}"


# repository paths the docs name that do not exist, and why
ABSENT_PATHS = {"results/study-gpu/": "the GPU study's results, which the docs say await a lent accelerator"}


def test_every_repository_path_the_docs_name_exists():
    """A module or test that moved leaves no stale path behind (placeholders such as bench/<feature>/ aside)."""
    texts = [README] + [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    named = {
        p for t in texts for p in re.findall(r"`((?:tests|bench|detectors|datasets|results|\.ci)/[^` ]*)`", t)
    }
    assert len(named) > 20  # the pattern found them
    for path in sorted(named - set(ABSENT_PATHS)):
        if "<" not in path:
            assert list(ROOT.glob(path.rstrip("/"))), f"the docs name {path}, which does not exist"
    assert not [p for p in ABSENT_PATHS if (ROOT / p).exists()]  # no stale exemption
