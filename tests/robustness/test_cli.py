"""End to end on a tiny sweep: data build, run (per-level scores in the result file), `copybench robustness`
(tables, JSON, CSV, PNG) and the robustness gate of `copybench check`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.robustness.profile import normalised_auc


def cli(*args) -> int:
    return main(["--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rb")
    assert cli("data", "build", "sweep-crop-xs", "--out", root / "ds", "--n-queries", 5, "--levels", 3) == 0
    assert cli("run", "--dataset", root / "ds", "--detectors", "pixel_gray_16,phash_64",
               "--results", root / "res", "--n-boot", 50) == 0  # fmt: skip
    return root


def _files(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in (root / "res").glob("*/*.json")}


def test_run_writes_every_level(swept) -> None:
    data = json.loads(_files(swept)["phash_64"].read_text())
    levels = data["robustness"]["axes"]["crop"]["levels"]
    assert [lv["severity"] for lv in levels] == [1.0, 0.525, 0.05]
    assert all(lv["n_queries"] == 5 and lv["n_with_match"] == 4 for lv in levels)
    assert levels[0]["recall@1"] == 1.0  # kept area 1.0: the reference itself, resized
    assert data["robustness"]["protocol"] == "native" and data["robustness"]["n_boot"] == 50
    assert data["groups"]["sweep_crop"]["n_queries"] == 15


def test_robustness_command_outputs(swept, capsys) -> None:
    assert cli("robustness", swept / "res", "--out", swept / "rep") == 0
    out = " ".join(capsys.readouterr().out.split())  # titles wrap at the console's width
    assert "mean normalised AUC of R@1" in out and "breaking point" in out and "relative to phash_64" in out
    assert (swept / "rep" / "robustness.csv").is_file() and list((swept / "rep").glob("*.png"))
    assert cli("robustness", swept / "res", "--format", "json", "--metric", "micro_ap") == 0
    (prof,) = json.loads(capsys.readouterr().out)
    stored = json.loads(_files(swept)["pixel_gray_16"].read_text())["robustness"]["axes"]["crop"]["levels"]
    independent = normalised_auc([lv["position"] for lv in stored], [lv["micro_ap"] for lv in stored])
    assert prof["summary"]["pixel_gray_16"] == pytest.approx(independent)
    assert cli("robustness", swept / "res", "--format", "csv") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 2 * 3  # header + 2 detectors x 3 levels


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--baseline", "sscd"],
            "baseline detector 'sscd' has no sweep result; detectors: phash_64, pixel_gray_16",
        ),
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
    ],
)
def test_robustness_bad_input(swept, capsys, args, needle) -> None:
    assert cli("robustness", swept / "res", *args) == 2
    assert needle in capsys.readouterr().err


def test_robustness_without_sweep_results(tiny_dataset, tmp_path, capsys) -> None:
    res = tmp_path / "res"
    assert (
        cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_16", "--results", res, "--n-boot", 0)
        == 0
    )
    assert "robustness" not in json.loads(next(res.glob("*/*.json")).read_text())  # not a sweep: no section
    assert cli("robustness", res) == 2
    assert "no result with per-level scores" in capsys.readouterr().err
    assert cli("check", "--baseline", res, "--results", res, "--robustness-tolerance", 0.05) == 2
    assert "no sweep result" in capsys.readouterr().err


def _degrade(path: Path) -> None:
    data = json.loads(path.read_text())
    for lv in data["robustness"]["axes"]["crop"]["levels"][1:]:
        lv["recall@1"] = 0.0  # every level past the mildest now misses: the crop AUC drops
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def test_check_gates_on_auc_drop(swept, tmp_path, capsys) -> None:
    new = tmp_path / "new"
    shutil.copytree(swept / "res", new)
    assert cli("check", "--baseline", swept / "res", "--results", new, "--robustness-tolerance", 0.05) == 0
    capsys.readouterr()
    _degrade(next(new.glob("*/pixel_gray_16.json")))
    assert cli("check", "--baseline", swept / "res", "--results", new, "--robustness-tolerance", 0.05) == 1
    out = capsys.readouterr().out
    assert "auc:crop" in out and "dropped" in out and "FAILED" in out
    assert cli("check", "--baseline", swept / "res", "--results", new, "--robustness-tolerance", 1.0) == 0
    assert cli("check", "--baseline", swept / "res", "--results", new) == 0  # without the option: not gated
    next(new.glob("*/phash_64.json")).unlink()
    assert cli("check", "--baseline", swept / "res", "--results", new, "--robustness-tolerance", 1.0) == 1
