"""The data-size study: subsets, the pipeline end to end (tiny UNet, 8 px, a few steps), resume after a kill,
keyed stages, --generated-by, and the report's rates recounted from the stored samples by an independent path."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from copybench.cli import main
from copybench.study.experiment import data_size_study
from copybench.study.report import build_report, read_study, top1_similarities
from copybench.study.subsets import nested_subsets, parse_sizes

DETECTOR = "pixel_gray_8"  # parameter-free and fast; zero-mean thumbnails, so unrelated images score near 0
TINY = {
    "steps": 6,
    "resolution": 8,
    "model": "tiny",
    "batch_size": 4,
    "samples": 5,
    "sampling_steps": 3,
    "detector": DETECTOR,
    "threshold": 0.2,  # low, so that some generations of an untrained model are flagged and some are not
    "checkpoint_every": 2,
    "descriptor_dir": None,
    "progress": False,
}


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _train_folder(root: Path, n: int = 12) -> Path:
    """``n`` distinct images of random 4x4 colour blocks, in two subfolders (recursive listing)."""
    rng = np.random.default_rng(7)
    for i in range(n):
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(np.kron(blocks, np.ones((5, 5, 1), dtype=np.uint8)))
        (root / f"part{i % 2}").mkdir(parents=True, exist_ok=True)
        img.save(root / f"part{i % 2}" / f"img{i:02d}.png")
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny UNets are faster on one thread, and on a shared CPU two threads can stall each other many-fold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def study(tmp_path_factory, one_thread):
    base = tmp_path_factory.mktemp("study")
    train = _train_folder(base / "train")
    record = data_size_study(train, "4,12", base / "out", **TINY)
    return base, train, record


# ---------------------------------------------------------------------------------------------- subsets
def test_sizes_and_nested_subsets():
    assert parse_sizes("3000, 300,30000,300") == (300, 3000, 30000)
    for bad in ("", "1", "a,b"):
        with pytest.raises(ValueError):
            parse_sizes(bad)
    subsets = nested_subsets(100, (5, 20, 100), seed=3)
    assert set(subsets[5]) <= set(subsets[20]) <= set(subsets[100]) == set(range(100))
    assert [len(v) for v in subsets.values()] == [5, 20, 100]
    assert np.array_equal(nested_subsets(100, (5,), seed=3)[5], subsets[5])  # same seed, same subset
    assert not np.array_equal(nested_subsets(100, (20,), seed=4)[20], subsets[20])
    with pytest.raises(ValueError, match="holds only 100"):
        nested_subsets(100, (101,), seed=0)


def test_train_settings_refuse_what_cannot_run():
    from copybench.study.train import TrainSettings

    assert TrainSettings(resolution=16, model="small").key("s")["subset"] == "s"
    for bad in ({"model": "huge"}, {"resolution": 10, "model": "small"}, {"prediction": "v"}, {"lr": 0}):
        with pytest.raises(ValueError):
            TrainSettings(**bad)


# ---------------------------------------------------------------------------------------------- end to end
def test_pipeline_end_to_end(study):
    base, _, record = study
    out = base / "out"
    on_disk = read_study(out)
    assert on_disk["key_hash"] == record["key_hash"] and on_disk["kind"] == "data_size_study"
    assert [e["size"] for e in on_disk["sizes"]] == [4, 12]
    small = (out / "subsets" / "size-4.txt").read_text().split()
    large = (out / "subsets" / "size-12.txt").read_text().split()
    assert len(small) == 4 and set(small) <= set(large) and len(large) == 12
    for entry in on_disk["sizes"]:
        size_dir = out / f"size-{entry['size']}"
        assert entry["train"]["steps"] == 6 and entry["train"]["resumed_from"] == 0
        assert len((size_dir / "loss.csv").read_text().splitlines()) == 1 + 6
        assert (size_dir / "model" / "diffusion_pytorch_model.safetensors").exists()
        samples = sorted((size_dir / "samples").glob("*.png"))
        assert len(samples) == 5 and Image.open(samples[0]).size == (8, 8)
        assert entry["scans"]["own"]["train_indexed"] == entry["size"]
        assert entry["scans"]["full"]["train_indexed"] == 12
        assert entry["scans"]["own"]["n"] == 5
    for name in ("rate_vs_size.png", "histograms.png", "loss.png", "rates.csv"):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert (
        page.count("data:image/png;base64,") >= 3
        and page.count("data:image/jpeg;base64,") == 2
        and "Wilson" in page
    )
    rows = _csv_rows(out / "rates.csv")
    assert [int(r["size"]) for r in rows] == [4, 12]
    assert all(r["detector"] == DETECTOR for r in rows)
    # published as is: folders relative to the study folder, no absolute path of this machine
    text = (out / "study.json").read_text()
    assert str(base) not in text and str(base.resolve()) not in text
    assert on_disk["out"] == "." and on_disk["inputs"]["train"] == "../train"
    assert [e["generated"] for e in on_disk["sizes"]] == ["size-4/samples", "size-12/samples"]


def test_rates_recomputed_from_stored_samples(study):
    """Descriptors of the stored sample PNGs and training files, brute-force cosine in numpy: same top-1 and rates."""
    import torch

    from copybench.detectors import create_detector
    from copybench.preprocess import Preprocess, pil_to_tensor, read_image

    base, train, record = study
    out = base / "out"
    det = create_detector(DETECTOR)
    prep = Preprocess(det.spec)

    def embed(paths):
        x = torch.stack([prep(pil_to_tensor(read_image(p))) for p in paths])
        with torch.no_grad():
            v = det(x).numpy().astype(np.float64)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    rows = build_report(out)
    thr = record["threshold"]["value"]
    for entry, row in zip(record["sizes"], rows):
        gen = embed(sorted((out / f"size-{entry['size']}" / "samples").glob("*.png")))
        subset = (out / "subsets" / f"size-{entry['size']}.txt").read_text().split()
        for name, files in (("own", [train / r for r in subset]), ("full", sorted(train.rglob("*.png")))):
            top1 = (gen @ embed(files).T).max(axis=1)
            stored = top1_similarities(out / f"size-{entry['size']}" / f"scan-{name}" / "matches.csv")
            assert np.allclose(np.sort(top1), np.sort(stored), atol=1e-5)
            flagged = int(((top1 > thr) if record["threshold"]["rule"] == ">" else (top1 >= thr)).sum())
            assert row[name]["flagged"] == entry["scans"][name]["flagged"] == flagged
            assert entry["scans"][name]["rate"] == pytest.approx(flagged / len(top1), abs=1e-6)
    table = _csv_rows(out / "rates.csv")
    assert [float(r["rate_own"]) for r in table] == pytest.approx([r["own"]["rate"] for r in rows], abs=1e-6)


def test_report_refuses_outputs_that_disagree(study, tmp_path):
    base, _, _ = study
    copy = tmp_path / "out"
    shutil.copytree(base / "out", copy, symlinks=True)
    path = copy / "size-4" / "scan-own" / "matches.csv"
    rows = _csv_rows(path)
    thr = read_study(copy)["threshold"]["value"]
    for r in rows:  # move every top-1 across the threshold
        if r["rank"] == "1":
            r["similarity"] = str(thr - 0.5 if float(r["similarity"]) >= thr else thr + 0.01)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["generated", "rank", "train", "similarity"])
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match="do not belong together"):
        build_report(copy)


# ---------------------------------------------------------------------------------------------- keyed stages
def test_rerun_reuses_finished_work_and_refuses_other_settings(study):
    base, train, _ = study
    out = base / "out"
    sample = out / "size-4" / "samples" / "sample-00000.png"
    before = sample.stat().st_mtime_ns
    again = data_size_study(train, "4,12", out, **TINY)
    assert [e["train"]["resumed_from"] for e in again["sizes"]] == [6, 6]  # nothing retrained
    assert sample.stat().st_mtime_ns == before  # samples of the same key are not regenerated
    with pytest.raises(ValueError, match="other training settings"):
        data_size_study(train, "4,12", out, **{**TINY, "lr": 5e-4})


def test_generated_by_scans_outside_samples(study, tmp_path):
    base, train, record = study
    gen = tmp_path / "gen"
    for entry in record["sizes"]:
        shutil.copytree(base / "out" / f"size-{entry['size']}" / "samples", gen / str(entry["size"]))
    other = data_size_study(train, "4,12", tmp_path / "out", generated_by=gen, **TINY)
    assert other["key"]["generator"] == {"kind": "generated-by", "path": "../gen"}
    assert [e["generated"] for e in other["sizes"]] == ["../gen/4", "../gen/12"]
    assert "train" not in other["sizes"][0]
    for a, b in zip(record["sizes"], other["sizes"]):
        assert a["scans"]["own"]["flagged"] == b["scans"]["own"]["flagged"]
        assert a["scans"]["full"]["top1_mean"] == pytest.approx(b["scans"]["full"]["top1_mean"])
    assert not (tmp_path / "out" / "size-4" / "model").exists()


def test_cli_errors_exit_2(tmp_path, capsys):
    train = _train_folder(tmp_path / "train", n=6)
    assert main(["study", "data-size", "--train", str(tmp_path / "nope"), "--sizes", "4", "--out", "o"]) == 2
    assert (
        main(["study", "data-size", "--train", str(train), "--sizes", "4,60", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "holds only 6" in capsys.readouterr().err
    code = main(
        ["study", "data-size", "--train", str(train), "--sizes", "4", "--out", str(tmp_path / "o2")]
        + ["--generated-by", str(tmp_path / "gen")]
    )
    assert code == 2 and "DIR/<size>/" in capsys.readouterr().err
    code = main(["study", "data-size", "--train", str(train), "--sizes", "4", "--out", str(train / "x")])
    assert code == 2
    code = main(
        ["study", "data-size", "--train", str(train), "--sizes", "4", "--out", str(tmp_path / "o3")]
        + ["--threshold", "none"]  # native protocol defines no threshold: refused before any training
    )
    assert (
        code == 2 and "no threshold" in capsys.readouterr().err and not (tmp_path / "o3" / "size-4").exists()
    )


# ---------------------------------------------------------------------------------------------- resume
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """kill -9 a study mid-training; the rerun resumes from the checkpoint and ends with the same weights."""
    from safetensors.torch import load_file

    train = _train_folder(tmp_path / "train", n=6)
    killed = tmp_path / "killed"
    args = ["--train", str(train), "--sizes", "4", "--out", str(killed), "--steps", "100000"]
    args += ["--resolution", "8", "--model", "tiny", "--batch-size", "4", "--checkpoint-every", "3"]
    args += ["--detector", DETECTOR, "--no-cache"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "copybench.cli", "-q", "study", "data-size", *args], env=env
    )
    meta = killed / "size-4" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text())["step"] >= 6:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    import torch

    # the step of the checkpoint on disk: a kill between the file and its record leaves the record one behind
    # (the staged record, checkpoint.json.new, holds the file's)
    step = torch.load(killed / "size-4" / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert step >= 6 and not (killed / "study.json").exists()
    kwargs = {**TINY, "steps": step + 3, "samples": 2, "threshold": 0.5}
    resumed = data_size_study(train, "4", killed, **kwargs)
    assert resumed["sizes"][0]["train"]["resumed_from"] == step
    fresh = data_size_study(train, "4", tmp_path / "fresh", **kwargs)
    assert fresh["sizes"][0]["train"]["resumed_from"] == 0
    w = "size-4/model/diffusion_pytorch_model.safetensors"
    a, b = load_file(killed / w), load_file(tmp_path / "fresh" / w)
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in a)
    losses = lambda d: [float(r["loss"]) for r in _csv_rows(d / "size-4" / "loss.csv")]
    assert len(losses(killed)) == step + 3
    assert np.allclose(losses(killed), losses(tmp_path / "fresh"), rtol=1e-4)


# ---------------------------------------------------------------------------------------------- refused early
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"threshold": 1.5}, "must lie in"),
        ({"detector": "pixel_gray_8", "protocol": "dcr", "threshold": None}, "pixel_gray_8"),
        ({"top_k": 0}, "at least 1"),
    ],
)
def test_scan_options_are_refused_before_any_training(tmp_path, monkeypatch, bad, message):
    """The scan options are checked before a single training step (the study would train every size first)."""
    from copybench.study import experiment

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(experiment, "_train_sizes", no_training)
    train = _train_folder(tmp_path / "train", n=6)
    with pytest.raises(ValueError, match=message):
        data_size_study(train, "4", tmp_path / "out", **{**TINY, **bad})


def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path):
    """Flipped bytes in checkpoint.pt are never resumed from; the record written with it holds its sha256."""
    import torch

    from copybench.study.train import CHECKPOINT, key_hash, load_checkpoint, save_checkpoint

    key = {"subset": "s", "resolution": 8}
    state = {"step": 3, "key_hash": key_hash(key), "w": torch.arange(1000, dtype=torch.float32)}
    save_checkpoint(tmp_path, state, key)
    assert load_checkpoint(tmp_path, key)["step"] == 3
    data = bytearray((tmp_path / CHECKPOINT).read_bytes())
    data[-200] ^= 0xFF  # inside the tensor bytes: torch.load would read different weights without a word
    (tmp_path / CHECKPOINT).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{CHECKPOINT}.*sha256"):
        load_checkpoint(tmp_path, key)


def test_a_kill_between_the_checkpoint_and_its_record_still_resumes(tmp_path):
    """The staged record covers the moment after the new file replaced the old one and before its record did."""
    import os

    import torch

    from copybench.study.train import CHECKPOINT, CHECKPOINT_META, key_hash, load_checkpoint, save_checkpoint

    key = {"subset": "s"}
    save_checkpoint(tmp_path, {"step": 2, "key_hash": key_hash(key), "w": torch.zeros(4)}, key)
    old_record = (tmp_path / CHECKPOINT_META).read_text()
    save_checkpoint(tmp_path, {"step": 4, "key_hash": key_hash(key), "w": torch.ones(4)}, key)
    new_record = (tmp_path / CHECKPOINT_META).read_text()
    # replay the kill: the new file in place, its record only staged, the old record still committed
    (tmp_path / f"{CHECKPOINT_META}.new").write_text(new_record)
    (tmp_path / CHECKPOINT_META).write_text(old_record)
    assert load_checkpoint(tmp_path, key)["step"] == 4
    os.remove(tmp_path / f"{CHECKPOINT_META}.new")
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(tmp_path, key)
    assert (tmp_path / CHECKPOINT).exists()
