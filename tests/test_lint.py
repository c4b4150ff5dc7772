"""Ruff is enforced, not only configured: lint rules (E501 included) and formatting of the whole Python tree.

Fix a failure with: .venv/bin/ruff format bench datasets detectors tests && .venv/bin/ruff check --fix bench
datasets detectors tests
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ["bench", "datasets", "detectors", "tests"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *TREE], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module", autouse=True)
def _has_ruff():
    if subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, check=False
    ).returncode:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")


def test_ruff_check_passes():
    done = _ruff("check", "--no-fix", "--output-format", "concise")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_check_passes():
    done = _ruff("format", "--check")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_long_lines_are_checked():
    """E501 is selected (ruff's defaults leave it out, which is how 416 long lines went unnoticed)."""
    long_line = "X = '" + "x" * 130 + "'\n"
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-fix", "--stdin-filename", "tests/probe.py", "-"],
        cwd=ROOT,
        input=long_line,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "E501" in done.stdout
