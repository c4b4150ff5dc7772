"""The published default leaderboard (results/default) is what the code computes today, byte for byte: every
result file round-trips through the typed record unchanged, and the embedded default dataset rebuilt from its
seed, run with the parameter-free baselines, gives the same fingerprint, keys, file names, metrics and
predictions as the committed files (only the machine, the commit and the timings may differ)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.results import Result, predictions_sha256, read_result

DEFAULT = Path(__file__).resolve().parents[1] / "results" / "default"
RESULT_FILES = sorted(DEFAULT.glob("*/*.json"))
# what a rerun on another machine, commit or folder changes; everything else must be identical
VOLATILE = {("environment",), ("timings",), ("dataset", "path")}
PARAMETER_FREE = ("color_hist_512", "phash_64", "pixel_gray_16")


def _strip(data, path=()):
    if isinstance(data, dict):
        return {k: _strip(v, (*path, k)) for k, v in data.items() if (*path, k) not in VOLATILE}
    return data


def test_results_default_is_not_empty():
    names = {p.stem for p in RESULT_FILES}
    assert set(PARAMETER_FREE) <= names and len(RESULT_FILES) >= 7


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.stem)
def test_every_default_result_round_trips_byte_for_byte(path):
    text = path.read_text(encoding="utf-8")
    assert Result.from_json(text, source=path).to_json() == text
    assert read_result(path).key == json.loads(text)["key"]


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> Path:
    """default-s, seed 0, rebuilt and run with the parameter-free baselines (about 30 s on 2 cores)."""
    tmp = tmp_path_factory.mktemp("default_rerun")
    assert main(["-q", "data", "build", "default-s", "--out", str(tmp / "data"), "--seed", "0"]) == 0
    code = main(
        ["-q", "run", "--dataset", str(tmp / "data"), "--detectors", ",".join(PARAMETER_FREE)]
        + ["--results", str(tmp / "results"), "--no-cache"]
    )
    assert code == 0
    return tmp / "results"


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_rebuilt_default_run_reproduces_the_committed_result(rerun, name):
    committed = next(p for p in RESULT_FILES if p.stem == name)
    fresh = (
        rerun / committed.parent.name / committed.name
    )  # same dataset fingerprint, same key, same file name
    assert fresh.is_file(), f"no {committed.parent.name}/{committed.name}: fingerprint or key changed"
    new, old = _strip(json.loads(fresh.read_text())), _strip(json.loads(committed.read_text()))
    if "predictions_sha256" not in old:  # committed before results recorded it: the content is compared below
        new.pop("predictions_sha256")
    # metrics are stored at full precision; committed files may predate that (6 digits): numbers to 1e-6,
    # everything else identical
    flat_new, flat_old = _flat(new), _flat(old)
    assert flat_new.keys() == flat_old.keys()
    for where, value in flat_old.items():
        assert flat_new[where] == (pytest.approx(value, abs=1e-6) if _number(value) else value), where
    preds = committed.with_name(f"{name}.predictions.csv.gz")
    new_preds = fresh.with_name(preds.name)
    assert gzip.decompress(new_preds.read_bytes()) == gzip.decompress(preds.read_bytes())
    if "predictions_sha256" in old:
        assert old["predictions_sha256"] == predictions_sha256(preds)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flat(data, path=()) -> dict:
    """Every leaf of a JSON document by its path."""
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, (*path, key)).items()}
    if isinstance(data, list):
        return {k: v for i, value in enumerate(data) for k, v in _flat(value, (*path, i)).items()}
    return {path: data}


def test_every_committed_result_agrees_with_its_predictions(rerun):
    """`copybench verify`: every number of every committed result (groups and CIs too, learned detectors
    included) is what its committed predictions give on the rebuilt dataset."""
    from copybench.verify import verify_results

    checks = verify_results(DEFAULT, dataset=rerun.parent / "data")
    assert len(checks) == len(RESULT_FILES)
    assert [(c.path.name, c.disagreements, c.unverified) for c in checks if not c.ok] == []
