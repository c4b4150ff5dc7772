"""Typed result records and tidy exports: JSON round trip, schema refusal, load_results, CSV and Parquet."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest

import copybench
from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.results import Result, ResultError, read_result, write_result
from copybench.run import RunSettings, run_benchmark


def _record(**changes) -> Result:
    base = Result(
        kind="accuracy",
        key={"detector": "d", "dataset_fingerprint": "f" * 64, "similarity": "cosine"},
        detector={"name": "d", "weights": {"status": "random", "source": "", "sha256": None}},
        dataset={"name": "tiny", "fingerprint": "f" * 64},
        metrics={"micro_ap": 0.25, "map": float("nan"), "micro_ap_ci": [0.125, 0.5], "recall@1": 1 / 3},
        groups={"crop": {"micro_ap": 0.5}, "crop/light": {"micro_ap": 0.75}},
    )
    return base.replace(**changes)


def test_record_round_trips_through_json(tmp_path):
    record = _record()
    written = write_result(tmp_path / "r.json", record)
    assert written.source == tmp_path / "r.json" and record.source is None
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema_version"] == 1 and "source" not in data and "_path" not in data
    assert data["metrics"]["map"] is None  # NaN written as null
    assert data["metrics"]["recall@1"] == 1 / 3  # full precision: printed figures equal the original code's
    back = read_result(tmp_path / "r.json")
    assert back.source == tmp_path / "r.json"
    assert back.metrics["micro_ap_ci"] == [0.125, 0.5] and back.is_random and back.detector_name == "d"
    assert Result.from_json(record.to_json()) == back  # source does not take part in equality
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.kind = "throughput"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 99}, "unknown result schema version 99"),
        ({"schema_version": None}, "unknown result schema version None"),
        ({"_path": "/x"}, "unknown result field"),
        ({"kind": "speed"}, "unknown result kind 'speed'"),
    ],
)
def test_unknown_versions_fields_and_kinds_are_refused(tmp_path, change, message):
    data = {**json.loads(_record().to_json()), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=message) as info:
        read_result(path)
    assert str(path) in str(info.value)


def test_missing_key_and_not_json_are_refused(tmp_path):
    data = json.loads(_record().to_json())
    del data["key"]
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(ResultError, match="lacks key"):
        read_result(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ResultError, match="not JSON"):
        read_result(tmp_path / "b.json")


@pytest.fixture(scope="module")
def run_results(tiny_dataset_module, tmp_path_factory):
    root, data = tmp_path_factory.mktemp("tidy"), tiny_dataset_module
    run_benchmark(
        load_dataset(data),
        ["pixel_gray_8", "pixel_rgb_16"],
        RunSettings(n_boot=20),
        results=root / "res",
        descriptor_dir=None,
        progress=False,
    )
    return data, root / "res"


def test_load_results_is_tidy_and_matches_the_predictions(run_results):
    data, res = run_results
    frame = copybench.load_results(res)
    assert set(frame["detector"]) == {"pixel_gray_8", "pixel_rgb_16"}
    groups = read_result(next(res.rglob("pixel_gray_8.json"))).groups
    assert set(frame["group"]) == {"all", *groups} and {"crop", "crop/light"} <= set(groups)
    for column in ("micro_ap", "recall_at_1", "micro_ap_ci_low", "micro_ap_ci_high", "n_queries"):
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert not any("@" in c or "µ" in c for c in frame.columns)
    overall = frame[(frame["group"] == "all") & (frame["detector"] == "pixel_gray_8")].iloc[0]
    result = read_result(res / overall["result_file"])
    assert overall["micro_ap"] == result.metrics["micro_ap"]
    assert [overall["micro_ap_ci_low"], overall["micro_ap_ci_high"]] == result.metrics["micro_ap_ci"]
    # independent recall@1: rank-0 reference of each query with a match, straight from the predictions file
    preds = pd.read_csv(result.predictions_path, dtype=str)
    top1 = dict(zip(preds[preds["rank"] == "0"]["query_id"], preds[preds["rank"] == "0"]["reference_id"]))
    truth = load_dataset(data).positives
    with_match = [q for q, pos in truth.items() if pos]
    expected = sum(top1.get(q) in truth[q] for q in with_match) / len(with_match)
    assert math.isclose(overall["recall_at_1"], expected, abs_tol=1e-6)
    light = frame[(frame["group"] == "crop/light") & (frame["detector"] == "pixel_gray_8")].iloc[0]
    assert light["family"] == "crop" and light["tier"] == "light"
    assert light["n_queries"] == result.groups["crop/light"]["n_queries"]


def test_tidy_csv_and_parquet_exports(run_results, tmp_path, capsys):
    _, res = run_results
    frame = copybench.load_results(res)
    assert main(["-q", "table", str(res), "--format", "parquet", "--out", str(tmp_path / "r.parquet")]) == 0
    back = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    capsys.readouterr()
    assert main(["-q", "table", str(res), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split(",")
    assert header[:7] == ["dataset", "detector", "weights", "random_weights", "group", "family", "tier"]
    assert "micro_ap_ci_low" in header and "recall_at_1" in header
    assert len(text.splitlines()) == len(frame) + 1
    assert main(["-q", "table", str(res), "--format", "parquet"]) == 2  # binary output needs --out


def test_tidy_rows_carry_the_release_month_with_its_source(run_results, tmp_path):
    """detector_release_source sits beside detector_release_date in the frame and in both exports."""
    from copybench.report.tidy import export_results
    from copybench.results import write_result

    _, res = run_results
    fresh = copybench.load_results(res)
    cols = list(fresh.columns)
    assert cols.index("detector_release_source") == cols.index("detector_release_date") + 1
    assert set(fresh["detector_release_source"]) == {""}  # pixel detectors: no paper, so no release month
    result = read_result(next(res.rglob("pixel_gray_8.json")))
    meta = {
        **result.detector["meta"],
        "release_date": "2022-02",
        "release_source": "https://arxiv.org/abs/2202.10261",
    }
    write_result(tmp_path / "dated" / "a.json", result.replace(detector={**result.detector, "meta": meta}))
    older = {k: v for k, v in meta.items() if k != "release_source"}  # written before the field existed
    write_result(tmp_path / "dated" / "b.json", result.replace(detector={**result.detector, "meta": older}))
    frame = copybench.load_results(tmp_path / "dated")
    by_file = frame[frame["group"] == "all"].set_index("result_file")
    assert by_file.loc["a.json", ["detector_release_date", "detector_release_source"]].tolist() == [
        "2022-02",
        "https://arxiv.org/abs/2202.10261",
    ]
    assert by_file.loc["b.json", "detector_release_date"] == "2022-02"
    assert pd.isna(by_file.loc["b.json", "detector_release_source"])
    for fmt in ("csv", "parquet"):
        back = export_results(tmp_path / "dated", tmp_path / f"t.{fmt}")
        back = pd.read_csv(back) if fmt == "csv" else pd.read_parquet(back)
        assert "https://arxiv.org/abs/2202.10261" in set(back["detector_release_source"]), fmt


def test_load_results_names_a_broken_file(tmp_path):
    bad = tmp_path / "copy"
    bad.mkdir()
    (bad / "broken.json").write_text('{"schema_version": 7}')
    with pytest.raises(ResultError, match="broken.json"):
        copybench.load_results(bad)
    assert copybench.load_results(bad, strict=False).empty


def test_published_files_hold_no_hostname_and_no_absolute_weights_path(tiny_dataset_module, tmp_path):
    import platform

    from copybench.detectors import WeightsInfo, weights_status
    from copybench.results import weights_record

    local = WeightsInfo("real", "/home/someone/models/sscd.onnx", "ab" * 32)
    assert weights_record(local) == {"status": "real", "source": "sscd.onnx", "sha256": "ab" * 32}
    name = "sscd_distilled.onnx" if weights_status("sscd_distilled.onnx") == "real" else "pixel_gray_8"
    out = run_benchmark(
        load_dataset(tiny_dataset_module),
        [name],
        RunSettings(n_boot=10),
        results=tmp_path,
        descriptor_dir=None,
        progress=False,
    )
    text = out[0].path.read_text()
    data = json.loads(text)
    assert "hostname" not in data["environment"] and f'"{platform.node()}"' not in text
    source = data["detector"]["weights"]["source"]
    assert not source.startswith("/") and "site-packages" not in text
    if name != "pixel_gray_8":
        assert source == "sscd_distilled.onnx" and len(data["detector"]["weights"]["sha256"]) == 64


def test_check_against_another_dataset_says_the_fingerprint_differs(run_results, tmp_path, capsys):
    _, res = run_results
    other = tmp_path / "other"
    for path in res.rglob("*.json"):
        data = json.loads(path.read_text())
        data["key"]["dataset_fingerprint"] = data["dataset"]["fingerprint"] = "0" * 64
        (other / path.relative_to(res)).parent.mkdir(parents=True, exist_ok=True)
        (other / path.relative_to(res)).write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["-q", "check", "--baseline", str(res), "--results", str(other)]) == 2
    captured = capsys.readouterr()
    assert "dataset fingerprint differs" in captured.err and "000000000000" in captured.err
    assert "missing" not in captured.out + captured.err
    assert main(["-q", "check", "--baseline", str(res), "--results", str(res)]) == 0
