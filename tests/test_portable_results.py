"""Result files hold no absolute path of the machine that wrote them: the dataset is named by its fingerprint
and a path relative to the result file's folder, skipped images relative to the dataset. A results folder moved
together with its dataset still plots, exports, checks and resumes; published results written before (absolute
paths) still load."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from copybench.datasets.dataset import load_dataset
from copybench.results import Result, load_result_dataset, portable, read_results
from copybench.run import RunSettings, run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _run(dataset: Path, results: Path):
    return run_benchmark(
        load_dataset(dataset),
        ["pixel_gray_8"],
        RunSettings(n_boot=10),
        results=results,
        descriptor_dir=None,
        progress=False,
    )


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_a_runs_result_files_hold_no_absolute_path(tiny_dataset_corrupt, tmp_path):
    (outcome,) = _run(tiny_dataset_corrupt, tmp_path / "results")
    assert outcome.status == "done", outcome.message
    files = sorted(p for p in (tmp_path / "results").rglob("*") if p.is_file())
    assert {p.suffix for p in files} <= {".json", ".gz", ".lock"} and len(files) >= 2
    for path in files:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        for machine in {str(tmp_path), str(tmp_path.resolve()), str(Path.home())}:
            assert machine not in text, (path.name, machine)
    data = json.loads(outcome.path.read_text())
    assert [s for s in _strings(data) if Path(s).is_absolute()] == []
    assert data["dataset"]["path"] == "../../tiny_bad"  # results/<dataset>-<fp>/x.json -> tmp/tiny_bad
    assert [s["path"] for s in data["skipped"]] == ["queries/BAD.png"]
    result = outcome.result
    assert result.dataset_root == tiny_dataset_corrupt.resolve()
    assert result.skipped_files("query") == {str(tiny_dataset_corrupt.resolve() / "queries" / "BAD.png")}
    assert result.skipped_files("reference") == set()


def test_results_moved_with_their_dataset_still_plot_export_check_and_resume(tiny_dataset_corrupt, tmp_path):
    from copybench.check import compare
    from copybench.report.interop import export_isc
    from copybench.report.plots import predictions_arrays
    from copybench.report.render import render_table

    _run(tiny_dataset_corrupt, tmp_path / "results")
    moved = tmp_path / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    shutil.move(tmp_path / "results", moved / "results")
    shutil.move(tiny_dataset_corrupt, moved / "tiny_bad")
    (result,), errors = read_results(moved / "results")
    assert errors == [] and result.dataset_root == (moved / "tiny_bad").resolve()
    scores, _, n_pos = predictions_arrays(result)  # ground truth found through the relative path
    assert scores.shape[0] == len(load_dataset(moved / "tiny_bad").query_ids) - 1  # BAD.png left out
    assert int(n_pos.sum()) == 8
    export_isc(result.source, tmp_path / "isc")
    assert (tmp_path / "isc" / "ground_truth.csv").read_text().count("\n") > 1
    assert {c.status for c in compare(moved / "results", moved / "results")} == {"ok"}
    assert "pixel_gray_8" in render_table(moved / "results", fmt="md")
    (again,) = _run(moved / "tiny_bad", moved / "results")  # resume: the same key, found, not recomputed
    assert again.status == "skipped" and again.path == result.source


def test_a_result_separated_from_its_dataset_says_where_it_looked(tiny_dataset, tmp_path):
    _run(tiny_dataset, tmp_path / "results")
    (tmp_path / "a").mkdir()
    shutil.move(tmp_path / "results", tmp_path / "a" / "alone")
    (result,), _ = read_results(tmp_path / "a" / "alone")
    with pytest.raises(FileNotFoundError) as info:
        load_result_dataset(result)
    assert "'../../tiny'" in str(info.value) and result.dataset_name in str(info.value)
    assert str(tmp_path / "a" / "tiny") in str(info.value)  # where it looked


def test_a_dataset_sharing_only_the_filesystem_root_keeps_its_absolute_path():
    result = Result(
        kind="accuracy",
        key={"detector": "x"},
        detector={"name": "x"},
        dataset={"name": "d", "fingerprint": "f", "path": "/mnt-copybench-none/data"},
        skipped=[{"path": "/mnt-copybench-none/data/q/a.png", "role": "query"}],
    )
    kept = portable(result, "/home-copybench-none/results/d-f/x.json")
    assert kept.dataset["path"] == "/mnt-copybench-none/data" and kept.skipped == result.skipped
    near = portable(result, "/mnt-copybench-none/results/d-f/x.json")
    assert near.dataset["path"] == "../../data" and near.skipped[0]["path"] == "q/a.png"


def test_published_default_results_load_with_absolute_or_relative_dataset_paths():

    results, errors = read_results(ROOT / "results" / "default", strict=True)
    accuracy = [r for r in results if r.kind == "accuracy"]
    assert errors == [] and accuracy
    for r in accuracy:
        recorded = Path(r.dataset["path"])
        assert r.dataset_root == (
            recorded if recorded.is_absolute() else (r.source.parent / recorded).resolve()
        )
        assert r.fingerprint and r.dataset_name
    assert {
        c.status
        for c in __import__("copybench.check").check.compare(
            ROOT / "results" / "default", ROOT / "results" / "default"
        )
    } == {"ok"}


def test_published_result_files_name_no_folder_of_the_machine_that_wrote_them():
    """Every JSON under results/ (leaderboard, study demos, throughput) holds no absolute path."""
    offenders = []
    for path in sorted((ROOT / "results").rglob("*.json")):
        data = json.loads(path.read_text())
        offenders += [f"{path.relative_to(ROOT)}: {s}" for s in _strings(data) if _machine_path(s)]
    assert offenders == []


def _machine_path(text: str) -> bool:
    return Path(text).is_absolute() and text.split("/")[1] in {"work", "tmp", "home", "root", "Users", "mnt"}


def test_throughput_settings_publish_an_absolute_image_folder_by_its_name_only():
    from copybench.throughput.records import _published_folder

    assert _published_folder("/tmp/tmp.5YrfYnfuxF/img") == "img"
    assert _published_folder(Path("photos/large")) == "photos/large"
