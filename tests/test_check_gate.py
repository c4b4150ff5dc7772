"""The regression gate refuses what it cannot compare honestly: non-finite, out-of-range, non-numeric or unknown
metric values (in a result or the baseline), a non-finite tolerance, results of another protocol or other
weights; its summary counts what failed; a missing row says what it looked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.run import RunSettings, run_benchmark


@pytest.fixture(scope="module")
def gate_results(tiny_dataset_module, tmp_path_factory) -> Path:
    res = tmp_path_factory.mktemp("gate") / "res"
    run_benchmark(
        load_dataset(tiny_dataset_module),
        ["pixel_gray_8", "pixel_rgb_16"],
        RunSettings(n_boot=0),
        results=res,
        descriptor_dir=None,
        progress=False,
    )
    return res


def _copy(res: Path, to: Path) -> Path:
    shutil.copytree(res, to)
    return to


def _edit(folder: Path, detector: str, change) -> Path:
    path = next(folder.rglob(f"{detector}.json"))
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN and Infinity as a hand edit would
    return path


def _check(base: Path, res: Path, *extra: str) -> int:
    return main(["-q", "check", "--baseline", str(base), "--results", str(res), *extra])


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-0.1"])
def test_a_non_finite_or_negative_tolerance_is_refused(gate_results, tolerance, capsys):
    assert _check(gate_results, gate_results, "--tolerance", tolerance) == 2
    assert "--tolerance must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        ("high", "not a number"),
        (1.5, "outside [0, 1]"),
    ],
)
@pytest.mark.parametrize("side", ["baseline", "results"])
def test_invalid_metric_values_are_refused_naming_file_and_field(
    gate_results, tmp_path, value, why, side, capsys
):
    base, res = _copy(gate_results, tmp_path / "base"), _copy(gate_results, tmp_path / "res")
    edited = _edit(
        base if side == "baseline" else res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap=value)
    )
    capsys.readouterr()
    assert _check(base, res, "--no-verify") == 2  # was exit 0 (NaN), "improved" (inf) or exit 3 (str)
    err = capsys.readouterr().err
    assert str(edited) in err and "metrics.micro_ap" in err and why in err


def test_an_unknown_metric_key_is_reported(gate_results, tmp_path, capsys):
    res = _copy(gate_results, tmp_path / "res")
    edited = _edit(res, "pixel_rgb_16", lambda d: d["groups"]["crop"].update(micro_AP=0.5))
    assert _check(gate_results, res, "--no-verify") == 2
    err = capsys.readouterr().err
    assert str(edited) in err and "groups.crop.micro_AP: unknown metric" in err


def test_the_summary_counts_the_failed_comparisons(gate_results, tmp_path, capsys):
    res = _copy(gate_results, tmp_path / "res")
    _edit(res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap=d["metrics"]["micro_ap"] - 0.2))
    capsys.readouterr()
    assert _check(gate_results, res, "--no-verify") == 1
    assert "FAILED: 1 of 8 comparisons (1 dropped, 0 missing)" in capsys.readouterr().out
    assert _check(gate_results, gate_results, "--no-verify") == 0
    assert "passed: 8 comparisons over 2 results (0 improved)" in capsys.readouterr().out


def test_a_missing_row_names_the_protocol_it_looked_for(gate_results, tmp_path, capsys):
    res = _copy(gate_results, tmp_path / "res")
    for path in res.rglob("pixel_rgb_16*"):
        path.unlink()
    capsys.readouterr()
    assert _check(gate_results, res, "--no-verify") == 1
    out = capsys.readouterr().out
    assert "FAILED: 4 of 8 comparisons (0 dropped, 4 missing)" in out
    assert "no result under protocol native" in out


def test_results_of_another_protocol_say_there_is_no_baseline_under_it(gate_results, tmp_path, capsys):
    res = _copy(gate_results, tmp_path / "res")

    def to_dcr(data: dict) -> None:
        data["key"]["protocol"] = data["settings"]["protocol"] = "dcr"

    for name in ("pixel_gray_8", "pixel_rgb_16"):
        _edit(res, name, to_dcr)
    capsys.readouterr()
    assert _check(gate_results, res, "--no-verify") == 2
    captured = capsys.readouterr()
    assert "no baseline under protocol dcr (the baseline" in captured.err and "holds native)" in captured.err
    assert "missing" not in captured.out


def test_results_of_other_weights_are_compared_only_when_asked(gate_results, tmp_path, capsys):
    res = _copy(gate_results, tmp_path / "res")

    def other_weights(data: dict) -> None:
        data["key"]["weights_sha256"] = data["detector"]["weights"]["sha256"] = "ab" * 32

    edited = _edit(res, "pixel_gray_8", other_weights)
    capsys.readouterr()
    assert _check(gate_results, res, "--no-verify") == 2
    err = capsys.readouterr().err
    assert "weights changed" in err and "abababababab" in err and str(edited) in err
    assert "--allow-weights-change" in err
    assert _check(gate_results, res, "--no-verify", "--allow-weights-change") == 0


@pytest.mark.parametrize("value", [float("nan"), "high", -0.5])
def test_table_flags_an_invalid_metric_value_naming_file_and_field(gate_results, tmp_path, value, capsys):
    res = _copy(gate_results, tmp_path / "res")
    edited = _edit(res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap=value))
    capsys.readouterr()
    assert main(["-q", "table", str(res), "--format", "md"]) == 2  # was exit 0 with an empty cell or "nan"
    captured = capsys.readouterr()
    assert "pixel_gray_8 [invalid: metrics.micro_ap]" in captured.out  # shown, marked
    assert "pixel_rgb_16 |" in captured.out  # the other rows are still there
    err = " ".join(captured.err.split())
    assert str(edited) in err and "metrics.micro_ap =" in err


@pytest.mark.weights
def test_the_weights_sha256_is_in_the_key_of_a_detector_with_weights(tiny_dataset_module, tmp_path):
    from copybench.detectors import weights_status

    if weights_status("sscd_distilled.onnx") != "real":
        pytest.skip("offline weights package not installed (run .ci/setup.sh)")
    outcomes = run_benchmark(
        load_dataset(tiny_dataset_module),
        ["sscd_distilled.onnx", "pixel_gray_8"],
        RunSettings(n_boot=0),
        results=tmp_path / "res",
        descriptor_dir=None,
        progress=False,
    )
    learned, pixel = (o.result for o in outcomes)
    sha = learned.detector["weights"]["sha256"]
    assert len(sha) == 64 and learned.key["weights_sha256"] == sha
    assert "weights_sha256" not in pixel.key  # parameter-free: keys as before


def test_a_rerun_with_another_weights_file_is_not_skipped(tmp_path):
    """The skip test of `run`: a stored result names the sha256 of the weights it was computed with; an explicit
    --weights file with other bytes is other weights (recomputed), the same bytes are the same weights."""
    import hashlib

    from copybench.results import Result
    from copybench.run import _same_weights

    used, other = tmp_path / "used.pth", tmp_path / "other.pth"
    used.write_bytes(b"weights one")
    other.write_bytes(b"weights two")
    sha = hashlib.sha256(b"weights one").hexdigest()
    stored = Result(
        kind="accuracy",
        key={"detector": "d", "weights_sha256": sha},
        detector={"name": "d", "weights": {"status": "real", "source": "used.pth", "sha256": sha}},
    )
    assert _same_weights(stored, str(used)) and not _same_weights(stored, str(other))
    assert _same_weights(stored, None)  # no explicit file: the detector verifies its own when it loads
    older = stored.replace(key={"detector": "d"})  # written before the key held it: read from detector
    assert not _same_weights(older, str(other))
