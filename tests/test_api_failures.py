"""The Python API speaks up: a failed detector or weights file is a warning naming it and its cause (default),
an exception with on_error="raise", and silent only when the caller asks (on_error="return", as the CLI does,
which prints every outcome itself)."""

from __future__ import annotations

import logging

import pytest

from copybench.datasets import load_dataset
from copybench.detectors import fetch_weights
from copybench.run import RunFailedError, RunSettings, run_benchmark

GOOD, BAD = "pixel_gray_8", "no_such_pkg_xyz:factory"  # a plugin module that cannot import


def _run(tiny_dataset, tmp_path, **kw):
    return run_benchmark(
        load_dataset(tiny_dataset), [BAD, GOOD], RunSettings(n_boot=0), results=tmp_path / "r",
        descriptor_dir=None, progress=False, **kw,
    )  # fmt: skip


def test_run_benchmark_warns_by_default_naming_detector_and_cause(tiny_dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="copybench.run"):
        outcomes = _run(tiny_dataset, tmp_path)
    assert [o.status for o in outcomes] == ["failed", "done"]  # the good one still ran
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert BAD in warning.getMessage() and "no_such_pkg_xyz" in warning.getMessage()


def test_run_benchmark_raises_on_request_keeping_what_was_written(tiny_dataset, tmp_path):
    with pytest.raises(RunFailedError, match="no_such_pkg_xyz") as info:
        run_benchmark(
            load_dataset(tiny_dataset), [GOOD, BAD], RunSettings(n_boot=0), results=tmp_path / "r",
            descriptor_dir=None, progress=False, on_error="raise",
        )  # fmt: skip
    assert info.value.outcome.detector == BAD
    assert list((tmp_path / "r").rglob(f"{GOOD}.json"))  # computed before the failure: kept


def test_run_benchmark_returns_quietly_when_asked(tiny_dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        outcomes = _run(tiny_dataset, tmp_path, on_error="return")
    assert outcomes[0].status == "failed" and not [r for r in caplog.records if "failed" in r.getMessage()]


def test_run_benchmark_refuses_an_unknown_on_error(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        _run(tiny_dataset, tmp_path, on_error="ignore")


def test_fetch_weights_offline_warns_and_raises_on_request(monkeypatch, caplog):
    from copybench.detectors import fetch

    def offline(spec, **kw):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(fetch, "fetch_spec", offline)
    with caplog.at_level(logging.WARNING, logger="copybench.detectors.fetch"):
        [out] = fetch_weights(["sscd_disc_mixup"], progress=False)
    assert out.status == "failed" and any("sscd_disc_mixup" in r.getMessage() for r in caplog.records)
    with pytest.raises(OSError, match="unreachable"):
        fetch_weights(["sscd_disc_mixup"], progress=False, on_error="raise")


def test_a_run_leaves_no_lock_file_behind(tiny_dataset, tmp_path):
    run_benchmark(
        load_dataset(tiny_dataset), [GOOD], RunSettings(n_boot=0), results=tmp_path / "r",
        descriptor_dir=tmp_path / "cache", progress=False,
    )  # fmt: skip
    assert list((tmp_path / "r").rglob(f"{GOOD}.json"))
    assert not [p for p in tmp_path.rglob("*.lock")]


def test_the_lock_is_exclusive_and_survives_removal_by_the_previous_holder(tmp_path):
    """Two threads take turns on one lock path; the file is gone after both, and neither ran inside the other."""
    import threading
    import time

    from copybench.io import file_lock

    inside, overlaps = [], []

    def work():
        with file_lock(tmp_path / ".x.lock"):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps and not (tmp_path / ".x.lock").exists()


def test_a_network_failure_is_exit_3_for_weights_fetch_as_for_run_download(monkeypatch, capsys):
    """The same failure, the same code: `weights fetch` and `run --download` both say 3 (the machine's
    network), never 2 (a request the user got wrong)."""
    from copybench.cli import main
    from copybench.detectors import fetch

    def offline(spec, **kw):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(fetch, "fetch_spec", offline)
    assert main(["-q", "weights", "fetch", "sscd_disc_mixup"]) == 3
    assert "network unreachable" in capsys.readouterr().err
