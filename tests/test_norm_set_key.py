"""The norm set shapes whitened and score-normalised numbers, so its fingerprint (its images' sha256) is in the
result key, the file name and the table; a norm set sharing an image with the evaluated dataset is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.results import read_result
from copybench.run import RunSettings, run_benchmark


def _norm_set(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 64)).save(folder / f"{i}.png")
    return folder


def _run(data: Path, res: Path, norm: Path):
    settings = RunSettings(score_norm=True, norm_set=str(norm), n_boot=0)
    return run_benchmark(
        load_dataset(data), ["pixel_gray_8"], settings, results=res, descriptor_dir=None, progress=False
    )[0]


def test_another_norm_set_is_another_result_never_skipped(tiny_dataset, tmp_path):
    a, b = _norm_set(tmp_path / "a", 20, 1), _norm_set(tmp_path / "b", 20, 2)
    first = _run(tiny_dataset, tmp_path / "res", a)
    second = _run(tiny_dataset, tmp_path / "res", b)
    assert first.status == second.status == "done"  # was "skipped, already computed" with A's numbers
    assert first.path != second.path and first.path.is_file() and second.path.is_file()
    key_a, key_b = first.result.key["norm_set_sha256"], second.result.key["norm_set_sha256"]
    assert key_a != key_b and len(key_a) == 64
    assert key_a[:12] in first.path.name and key_b[:12] in second.path.name
    # the same images under other names are the same norm set: content, not names, shapes the numbers
    renamed = tmp_path / "a_renamed"
    renamed.mkdir()
    for i, f in enumerate(sorted(a.iterdir())):
        shutil.copy(f, renamed / f"x{i}.png")
    assert _run(tiny_dataset, tmp_path / "res", renamed).status == "skipped"
    fresh = _run(tiny_dataset, tmp_path / "fresh", b)
    assert fresh.result.metrics["micro_ap"] == second.result.metrics["micro_ap"]


def test_a_too_small_norm_set_is_refused_even_beside_a_finished_result(tiny_dataset, tmp_path):
    _run(tiny_dataset, tmp_path / "res", _norm_set(tmp_path / "a", 20, 1))
    small = _norm_set(tmp_path / "small", 5, 3)
    with pytest.raises(ValueError, match="needs at least 16 images, found 5"):
        _run(tiny_dataset, tmp_path / "res", small)


def test_a_norm_set_overlapping_the_dataset_is_refused_naming_both_files(tiny_dataset, tmp_path, capsys):
    norm = _norm_set(tmp_path / "norm", 20, 1)
    shutil.copy(tiny_dataset / "references" / "R003.png", norm / "copy.png")
    args = ["-q", "run", "--dataset", str(tiny_dataset), "--detectors", "pixel_gray_8", "--no-cache"]
    args += ["--results", str(tmp_path / "res"), "--norm-set", str(norm), "--score-norm"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "copy.png" in err and "R003.png" in err and "also in dataset" in err
    assert not list((tmp_path / "res").rglob("*.json"))
    # the dataset itself as its norm set: refused the same way
    args[args.index(str(norm))] = str(tiny_dataset)
    assert main(args) == 2
    assert "also in dataset" in capsys.readouterr().err


def test_the_table_names_the_norm_set(tiny_dataset, tmp_path, capsys):
    done = _run(tiny_dataset, tmp_path / "res", _norm_set(tmp_path / "a", 20, 1))
    capsys.readouterr()
    assert main(["table", str(tmp_path / "res"), "--format", "md"]) == 0
    assert f"norm {done.result.key['norm_set_sha256'][:8]}" in capsys.readouterr().out
    assert read_result(done.path).settings["norm_set_sha256"] == done.result.key["norm_set_sha256"]
