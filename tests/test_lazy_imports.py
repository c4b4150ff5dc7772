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


def test_scan_and_study_library_modules_still_offer_their_names():
    """The CLI halves live in each feature's cli module; the library modules keep the names users import."""
    from copybench import options, run, scaling, scan, study
    from copybench.study import train

    assert scan.SIMILARITIES == options.SCAN_SIMILARITIES == ("cosine", "split")
    assert study.DEFAULT_DETECTOR == options.STUDY_DETECTOR
    assert (train.SAMPLERS, train.PREDICTIONS) == (options.SAMPLERS, options.PREDICTIONS)
    assert scaling.SHARD_ROWS == options.RAY_SHARD_ROWS
    assert run.DEFAULT_CACHE == options.default_descriptor_dir()


def test_import_detectors_and_read_the_registry_import_no_heavy_library():
    # specs, metadata (parameters included) and weights status of every built-in come from the torch-free catalog
    code = (
        "import copybench.detectors as d\n"
        "rows = d.describe_detectors()\n"
        "assert len(rows) > 30 and all(r['params'] is not None for r in rows)\n"
        "assert d.get_spec('sscd_disc_mixup').dims == 512 and d.detector_meta('dino_vits16').params"
    )
    assert _heavy_after(code) == []


# Building the parser is all `--help` does: not even numpy or pandas (0.1-0.3 s between them) may load for it.
PARSER_HEAVY = (*HEAVY, "numpy", "pandas")
_HELP_PROBE = """
import argparse, contextlib, io, json, sys
from copybench.cli import build_parser, main

HEAVY = {heavy!r}
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)

def commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield prefix + (name,)
                yield from commands(child, prefix + (name,))

parser = build_parser()
report = {{"build_parser": loaded(), "commands": [], "heavy": {{}}}}
for argv in [(), *commands(parser)]:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([*argv, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, (argv, exc.code)
    assert "usage: copybench" in out.getvalue(), argv
    report["commands"].append(" ".join(argv))
    if loaded():
        report["heavy"][" ".join(argv) or "--help"] = loaded()
        break
print(json.dumps(report))
"""


def test_help_of_every_command_imports_no_numpy_torch_or_pandas():
    """`copybench --help` and `copybench CMD [SUB] --help` for every (sub)command the parser has: the first
    one after which numpy, pandas, torch or another heavy library is loaded is named."""
    probe = _HELP_PROBE.format(heavy=PARSER_HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["build_parser"] == []
    assert report["heavy"] == {}
    for command in (
        "",
        "run",
        "scan",
        "study data-size",
        "study demo",
        "throughput",
        "weights fetch",
        "data build",
    ):
        assert command in report["commands"], command


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
