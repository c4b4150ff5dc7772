"""`copybench verify` recomputes every stored metric from the stored predictions and the dataset's ground truth;
`table` and `check` run the cheap form (overall point metrics) by default, so a hand-edited number is never shown
or gated as if computed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.run import RunSettings, run_benchmark
from copybench.verify import verify_results


@pytest.fixture(scope="module")
def computed(tiny_dataset_module, tmp_path_factory) -> Path:
    res = tmp_path_factory.mktemp("verify") / "res"
    run_benchmark(
        load_dataset(tiny_dataset_module),
        ["pixel_gray_8", "pixel_rgb_16"],
        RunSettings(n_boot=30),
        results=res,
        descriptor_dir=None,
        progress=False,
    )
    return res


def _edit(res: Path, detector: str, change) -> Path:
    path = next(res.rglob(f"{detector}.json"))
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _cli(*args) -> int:
    return main(["-q", *map(str, args)])


def test_untouched_results_verify_in_full(computed, capsys):
    checks = verify_results(computed)
    assert len(checks) == 2 and all(c.ok for c in checks)
    assert _cli("verify", computed) == 0
    assert "2 result(s): 2 agree with their predictions, 0 disagree" in capsys.readouterr().out
    assert _cli("table", computed) == 0 and _cli("check", "--baseline", computed, "--results", computed) == 0


def test_a_hand_edited_metric_is_named_by_verify_table_and_check(computed, tmp_path, capsys):
    res = shutil.copytree(computed, tmp_path / "res")
    edited = _edit(res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap=0.99))
    capsys.readouterr()
    assert _cli("verify", res) == 1
    out = capsys.readouterr().out
    assert f"DISAGREES {edited}" in out and "metrics.micro_ap is 0.99, its predictions give" in out
    assert _cli("table", res, "--format", "md") == 2  # shown, marked, named: never as if computed
    captured = capsys.readouterr()
    assert "[does not match its predictions]" in captured.out and str(edited) in captured.err
    assert _cli("check", "--baseline", computed, "--results", res) == 2
    err = capsys.readouterr().err
    assert str(edited) in err and "metrics.micro_ap" in err
    # the documented way around it, e.g. to test the gate itself on a planted value
    assert _cli("check", "--baseline", computed, "--results", res, "--no-verify") == 0  # 0.99 "improved"
    assert _cli("table", res, "--no-verify") == 0


def test_an_edited_group_or_interval_is_caught_by_the_full_verify(computed, tmp_path, capsys):
    res = shutil.copytree(computed, tmp_path / "res")
    edited = _edit(res, "pixel_rgb_16", lambda d: d["groups"]["crop"].update(map=0.123))
    _edit(res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap_ci=[0.0, 1.0]))
    assert _cli("verify", res) == 1
    out = capsys.readouterr().out
    assert str(edited) in out and "groups.crop.map is 0.123" in out and "micro_ap_ci is [0.0, 1.0]" in out
    assert "2 disagree" in out


def test_a_baseline_moved_without_its_dataset_is_verified_against_the_results_copy(
    computed, tmp_path, capsys
):
    base = shutil.copytree(computed, tmp_path / "far" / "away" / "base")  # its relative dataset path breaks
    edited = _edit(base, "pixel_gray_8", lambda d: d["metrics"].update(map=0.2))
    capsys.readouterr()
    assert _cli("check", "--baseline", base, "--results", computed) == 2
    assert str(edited) in capsys.readouterr().err
    assert _cli("verify", base) == 2  # cannot find the dataset: bad input, named
    assert "not verified: its dataset tiny (" in " ".join(capsys.readouterr().err.split())
    dataset = (
        load_dataset(
            json.loads(edited.read_text())["dataset"]["path"],
        )
        if False
        else None
    )
    assert dataset is None


def test_missing_predictions_cannot_be_verified(computed, tmp_path, capsys, caplog):
    res = shutil.copytree(computed, tmp_path / "res")
    for preds in res.rglob("*.predictions.csv.gz"):
        preds.unlink()
    assert _cli("verify", res) == 2
    assert "predictions file" in " ".join(capsys.readouterr().err.split())
    assert _cli("table", res) == 0  # warned about on stderr, the numbers themselves are not contradicted
    assert "not verified" in caplog.text


def test_publish_leaves_out_a_result_its_predictions_contradict(computed, tmp_path):
    from copybench.report.site.build import publish

    res = shutil.copytree(computed, tmp_path / "res")
    _edit(res, "pixel_gray_8", lambda d: d["metrics"].update(micro_ap=0.99))
    report = publish([res], tmp_path / "site", examples=False)
    reasons = dict(report.excluded)
    [reason] = [v for k, v in reasons.items() if "pixel_gray_8" in k]
    assert "not what its predictions give" in reason and "metrics.micro_ap is 0.99" in reason
    report = publish([res], tmp_path / "site2", examples=False, verify=False)
    assert not any("pixel_gray_8" in label for label, _ in report.excluded)
