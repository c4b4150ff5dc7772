"""What a command imports decides how long it takes before anything happens: the commands that only read
result files or list detectors, recipes and protocols must not import torch (1.7-2.9 s), and neither must
``import copybench`` or ``import copybench.detectors``.

Each case runs in a fresh interpreter and checks ``sys.modules`` after the real work (not a timing, which
would be flaky, and not just ``import copybench``, which was always fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "timm", "kornia", "faiss", "open_clip", "onnxruntime", "matplotlib")
RESULTS = Path(__file__).resolve().parents[1] / "results" / "default"


def _heavy_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli(*args: str) -> str:
    return f"from copybench.cli import main\nrc = main({list(args)!r})\nassert rc == 0, rc"


def test_import_copybench_and_its_api_names_import_no_heavy_library():
    assert _heavy_after("import copybench, copybench.cli; copybench.cli.build_parser()") == []


def test_import_detectors_and_read_the_registry_import_no_heavy_library():
    # specs, metadata (parameters included) and weights status of every built-in come from the torch-free catalog
    code = (
        "import copybench.detectors as d\n"
        "rows = d.describe_detectors()\n"
        "assert len(rows) > 30 and all(r['params'] is not None for r in rows)\n"
        "assert d.get_spec('sscd_disc_mixup').dims == 512 and d.detector_meta('dino_vits16').params"
    )
    assert _heavy_after(code) == []


def test_help_imports_no_heavy_library():
    code = "from copybench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0"
    assert _heavy_after(code) == []


@pytest.mark.skipif(not any(RESULTS.rglob("*.json")), reason="no published results to read")
@pytest.mark.parametrize(
    "args",
    [
        ("-q", "table", str(RESULTS), "--format", "csv", "--out", "/dev/null"),
        ("-q", "table", str(RESULTS), "--format", "md", "--out", "/dev/null"),
        ("-q", "check", "--baseline", str(RESULTS), "--results", str(RESULTS)),
        ("list", "recipes"),
    ],
    ids=["table-csv", "table-md", "check", "list-recipes"],
)
def test_reading_commands_never_import_torch(args):
    assert _heavy_after(_cli(*args)) == []


@pytest.mark.parametrize(
    "args",
    [("list", "detectors"), ("list", "detectors", "sscd_*"), ("list", "protocols"), ("list", "subsets")],
    ids=["list-detectors", "list-detectors-pattern", "list-protocols", "list-subsets"],
)
def test_listing_commands_never_import_torch(args):
    assert _heavy_after(_cli(*args)) == []


def test_load_results_imports_no_torch():
    assert _heavy_after(f"import copybench; copybench.load_results({str(RESULTS)!r})") == []
