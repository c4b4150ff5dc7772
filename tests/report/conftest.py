"""Fixtures of the site tests: a tiny dataset scored by two parameter-free detectors, one result re-labelled as
random weights (scoring above every real row, as random rows can), and throughput results of two devices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from copybench.results import Result, write_result

DEVICES = {"Device A": {"pixel_gray_16": 400.0, "pixel_rgb_32": 900.0}, "Device B": {"pixel_gray_16": 50.0}}


@pytest.fixture(scope="module")
def site_results(tiny_dataset_module, tmp_path_factory) -> Path:
    """The module's result folders (tests must not modify them): see :func:`make_results`."""
    return make_results(tmp_path_factory.mktemp("site"), tiny_dataset_module)


@pytest.fixture
def bad_results(site_results, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of the result folders with bad files added, and what each bad file's listed reason says."""
    results = tmp_path / "results"
    shutil.copytree(site_results, results)
    return results, add_bad_files(results)


def make_results(root: Path, dataset_root: Path) -> Path:
    """root/results/{acc,speed}: accuracy results with predictions, and throughput results of two devices."""
    from copybench.datasets.dataset import load_dataset
    from copybench.run import RunSettings, run_benchmark

    dataset = load_dataset(dataset_root)
    acc = root / "results" / "acc"
    done = run_benchmark(dataset, ["pixel_gray_16", "pixel_rgb_32"], RunSettings(n_boot=20), results=acc,
                         descriptor_dir=None, progress=False)  # fmt: skip
    gray = done[0].result
    # a copy scoring above both real rows, recorded as random weights: it must never be ranked above them
    random = gray.replace(
        key={**gray.key, "detector": "fake_random"},
        detector={**gray.detector, "name": "fake_random", "weights": {"status": "random", "sha256": None}},
        metrics={**gray.metrics, "micro_ap": 0.999, "micro_ap_ci": [0.99, 1.0]},
        predictions_file=None,
    )
    write_result(done[0].path.with_name("fake_random.json"), random)
    speed = root / "results" / "speed"
    for device, rates in DEVICES.items():
        for name, rate in rates.items():
            write_result(speed / device.replace(" ", "-") / f"{name}.json", _throughput(name, device, rate))
    return root / "results"


def _throughput(name: str, device: str, rate: float) -> Result:
    m = {"batch_size": 8, "dtype": "fp32", "e2e_ips": rate, "e2e_ips_iqr": [rate * 0.9, rate * 1.1],
         "model_ips": rate * 2, "model_ips_iqr": [rate * 1.9, rate * 2.1]}  # fmt: skip
    return Result(
        kind="throughput",
        key={"detector": name, "device_name": device, "dtype": "fp32", "batch_size": 8},
        detector={"name": name, "weights": {"status": "none", "source": "", "sha256": None}},
        environment={"device_name": device, "copybench": "0.1.0", "git_commit": "abc123"},
        settings={"images": "synthetic JPEGs"},
        measurements=[m],
    )


def add_bad_files(results: Path) -> dict[str, str]:
    """Bad inputs beside the good ones; returns file label -> a word its listed reason must hold."""
    acc = next((results / "acc").iterdir())
    good = json.loads((acc / "pixel_gray_16.json").read_text())
    bad = results / "bad"
    bad.mkdir()
    (bad / "broken.json").write_text("{not json")
    (bad / "v2.json").write_text(json.dumps({**good, "schema_version": 2}))
    (bad / "mixed.json").write_text(json.dumps({**good, "settings": {**good["settings"], "protocol": "isc"}}))
    shutil.copy(acc / "pixel_rgb_32.json", bad / "same.json")  # identical copy: the first one stays
    changed = json.loads((acc / "pixel_gray_16.json").read_text())
    changed["metrics"]["micro_ap"] = 0.5
    (bad / "conflict.json").write_text(json.dumps(changed))
    labels = {
        "bad/broken.json": "unreadable",
        "bad/v2.json": "schema version 2",
        "bad/mixed.json": "protocol",
        "bad/same.json": "duplicate of",
        "bad/conflict.json": "conflicting",
        f"acc/{acc.name}/pixel_gray_16.json": "conflicting",
    }
    return {f"{results.name}/{label}": word for label, word in labels.items()}
