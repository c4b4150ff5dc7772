"""Integrity: nothing cached, imported or written may be silently wrong, lost or mislabelled (issue 13).

Each test here holds one hole of the hostile-input pass: a corrupt/foreign cache, an edited manifest, a missing
query, a concurrent writer, an ambiguous import. The heavier process-level faults live in test_faults.py.
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import copybench.cache
import copybench.results
from copybench.cache import CacheWriteError
from copybench.datasets.dataset import load_dataset
from copybench.extract import Extractor


def _extractor(cache: Path | None, forward=None):
    from copybench.detectors import create_detector

    det = create_detector("pixel_rgb_8")
    if forward is not None:
        det.model.forward = forward(det.model.forward)
    return Extractor(det, batch_size=2, num_workers=0, cache_dir=cache, progress=False)


def _paths(tiny_dataset) -> list[str]:
    return load_dataset(tiny_dataset).queries["path"].tolist()


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    return entry


def _interrupted_shards(cache: Path, paths: list[str], monkeypatch) -> Path:
    """Leave shards (no final arrays) in the cache, as a run killed mid-way does."""
    monkeypatch.setattr(copybench.cache, "SHARD_SECONDS", 0.0)  # every batch is its own shard

    def stop_on_third(forward):
        calls = []

        def f(x):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return forward(x)

        return f

    with pytest.raises(KeyboardInterrupt):
        _extractor(cache, stop_on_third).run(paths)
    entry = _entry(cache)
    assert len(list(entry.glob("shard-*.npz"))) == 2
    return entry


@pytest.fixture
def clean_vectors(tiny_dataset):
    return np.asarray(_extractor(None).run(_paths(tiny_dataset)).vectors)


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "garbage"])
def test_damaged_final_vectors_are_named_discarded_and_recomputed(
    damage, tiny_dataset, tmp_path, clean_vectors, caplog
):
    cache, paths = tmp_path / "cache", _paths(tiny_dataset)
    _extractor(cache).run(paths)
    vec = _entry(cache) / "vectors.npy"
    data = vec.read_bytes()
    if damage == "zeroed":  # same size, header intact: a silently wrong descriptor set before the fix
        vec.write_bytes(data[:128] + b"\0" * (len(data) - 128))
    elif damage == "truncated":
        vec.write_bytes(data[: len(data) // 2])
    else:
        (_entry(cache) / "done.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="copybench.cache"):
        again = _extractor(cache).run(paths)
    np.testing.assert_allclose(np.asarray(again.vectors), clean_vectors, atol=1e-6)
    assert again.seconds > 0  # recomputed, not read back
    named = [r.getMessage() for r in caplog.records if "discarding" in r.getMessage()]
    assert len(named) == 1 and str(_entry(cache)) in named[0]


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "foreign", "bitflip"])
def test_damaged_or_foreign_shards_are_named_discarded_and_recomputed(
    damage, tiny_dataset, tmp_path, clean_vectors, caplog, monkeypatch
):
    cache, paths = tmp_path / "cache", _paths(tiny_dataset)
    entry = _interrupted_shards(cache, paths, monkeypatch)
    shard = min(entry.glob("shard-*.npz"))
    data = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed":
        shard.write_bytes(b"\0" * len(data))
    elif damage == "bitflip":  # inside the stored vectors, past the zip headers: the zip itself still reads
        arrays = dict(np.load(shard))
        arrays["vectors"] = arrays["vectors"] + 0.25
        with open(shard, "wb") as f:
            np.savez(f, **arrays)
    else:  # a shard of another extraction (another detector's cache entry) copied in
        other = tmp_path / "other"
        _interrupted_shards(other, paths[::-1], monkeypatch)
        shutil.copy(min(_entry(other).glob("shard-*.npz")), entry / "shard-0-foreign.npz")
    monkeypatch.setattr(copybench.cache, "SHARD_SECONDS", 1e9)
    with caplog.at_level(logging.WARNING, logger="copybench.cache"):
        again = _extractor(cache).run(paths)
    np.testing.assert_allclose(np.asarray(again.vectors), clean_vectors, atol=1e-6)
    named = [r.getMessage() for r in caplog.records if "discarding" in r.getMessage()]
    assert len(named) == 1 and ".npz" in named[0] and str(entry) in named[0]


def test_full_disk_on_final_arrays_is_a_named_error_not_sigbus(tiny_dataset, tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(copybench.cache.os, "posix_fallocate", no_space)
    cache = tmp_path / "cache"
    with pytest.raises(CacheWriteError, match=r"vectors\.npy: disk full"):
        _extractor(cache).run(_paths(tiny_dataset))
    assert not list(_entry(cache).glob("*.npy")) and not (_entry(cache) / "done.json").exists()
    monkeypatch.undo()
    assert _extractor(cache).run(_paths(tiny_dataset)).seconds >= 0  # the next run with room just works


def test_full_disk_on_a_shard_leaves_no_temp_file(tiny_dataset, tmp_path, monkeypatch):
    real_savez = np.savez

    def full(f, **arrays):
        real_savez(f, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(copybench.cache.np, "savez", full)
    monkeypatch.setattr(copybench.cache, "SHARD_SECONDS", 0.0)
    cache = tmp_path / "cache"
    with pytest.raises(CacheWriteError, match=r"shard-.*\.npz: disk full"):
        _extractor(cache).run(_paths(tiny_dataset))
    assert [p.name for p in _entry(cache).iterdir() if p.name != ".lock"] == []


# --- dataset fingerprint: recomputed from what a run reads ---------------------------------------------------


def _cli(*args) -> int:
    from copybench.cli import main

    return main(["--quiet", *map(str, args)])


def _edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "edit",
    [
        ("queries.csv", "Q000,queries/Q000.png,R000", "Q000,queries/Q000.png,R001"),  # a reference id
        ("queries.csv", "queries/Q001.png", "queries/Q002.png"),  # a path
        ("references.csv", "R003,references/R003.png", "R003,references/R004.png"),
    ],
)
def test_edited_manifest_is_refused_naming_the_file(edit, tiny_dataset, tmp_path, capsys):
    res = tmp_path / "res"
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--results", res,
                "--no-cache", "--n-boot", "0") == 0  # fmt: skip
    name, old, new = edit
    _edit_csv(tiny_dataset / name, old, new)
    capsys.readouterr()
    code = _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--results", res,
                "--no-cache", "--n-boot", "0")  # fmt: skip
    out = capsys.readouterr()
    assert code == 2  # was 0: "skipped, already computed" under the old fingerprint
    assert f"{tiny_dataset / name}: changed after the dataset was written" in out.out + out.err


def test_replaced_image_is_refused_and_verify_finds_silent_bit_rot(tiny_dataset, capsys):
    from copybench.datasets import DatasetError

    target = tiny_dataset / "queries" / "Q000.png"
    shutil.copy(tiny_dataset / "references" / "R000.png", target)  # replaced: exact copy of the original
    with pytest.raises(DatasetError, match=r"Q000\.png: content changed"):
        load_dataset(tiny_dataset)
    assert _cli("data", "verify", tiny_dataset) == 1


def test_verify_hashes_content_even_when_size_and_mtime_are_unchanged(tiny_dataset, capsys):
    import os

    assert _cli("data", "verify", tiny_dataset) == 0
    target = tiny_dataset / "references" / "R002.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # one flipped bit of storage rot: same size, mtime put back
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    load_dataset(tiny_dataset)  # the cheap stat check cannot see it...
    capsys.readouterr()
    assert _cli("data", "verify", tiny_dataset) == 1  # ...the content hash does
    assert "R002.png: content changed" in capsys.readouterr().out


def test_copied_dataset_with_new_mtimes_still_loads(tiny_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy, copy_function=shutil.copy)  # new mtimes, same bytes
    assert load_dataset(copy).fingerprint == load_dataset(tiny_dataset).fingerprint


@pytest.mark.parametrize("bad", ["../../../../../etc/passwd", "/etc/passwd", "queries/../../outside.png"])
def test_manifest_path_outside_the_dataset_is_refused(bad, tiny_dataset, tmp_path):
    from copybench.datasets import DatasetError
    from copybench.datasets.dataset import write_dataset_index

    root = tiny_dataset
    ds = load_dataset(root)
    queries = ds.queries.assign(path=[str(Path(p).relative_to(root)) for p in ds.queries["path"]])
    refs = ds.references.assign(path=[str(Path(p).relative_to(root)) for p in ds.references["path"]])
    queries.loc[0, "path"] = bad  # a manifest written by someone else: integrity records made for it
    (tmp_path / "outside.png").write_bytes((root / "queries" / "Q000.png").read_bytes())
    meta = {k: v for k, v in ds.meta.items() if k not in ("schema", "integrity")}
    write_dataset_index(root, meta, refs, queries)
    with pytest.raises(DatasetError, match="points outside the dataset folder"):
        load_dataset(root)


def test_scan_cache_key_follows_a_replaced_file(tmp_path):
    import os

    from copybench.cache import cache_key
    from copybench.detectors import create_detector

    det = create_detector("pixel_gray_8")
    img = tmp_path / "a.png"
    img.write_bytes(b"one")
    before = cache_key(det, [str(img)], dtype="fp32", tokens=False)
    img.write_bytes(b"other")
    os.utime(img, ns=(1, 1))
    assert cache_key(det, [str(img)], dtype="fp32", tokens=False) != before


# --- missing and undecodable queries are misses everywhere ---------------------------------------------------


def _micro_ap_from_export(pred_csv: Path, gt_csv: Path) -> float:
    """ISC micro-AP written out from the definition (pessimistic ties), independent of copybench.metrics."""
    import pandas as pd

    gt = pd.read_csv(gt_csv, dtype=str, keep_default_na=False)
    truth = {(q, r) for q, r in zip(gt["query_id"], gt["reference_id"]) if r}
    pred = pd.read_csv(pred_csv, dtype={"query_id": str, "reference_id": str})
    pred["hit"] = [(q, r) in truth for q, r in zip(pred["query_id"], pred["reference_id"])]
    pred = pred.sort_values(["score", "hit"], ascending=[False, True])
    hits = pred["hit"].to_numpy()
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / len(truth))


def test_score_h5_counts_queries_missing_from_the_file_as_misses(tiny_dataset, tmp_path):
    from copybench.report.interop import write_isc_h5

    ds = load_dataset(tiny_dataset)
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((8, 16)).astype(np.float32)
    queries = np.concatenate([refs, rng.standard_normal((3, 16)).astype(np.float32)])  # copies exact
    write_isc_h5(tmp_path / "r.h5", ds.reference_ids, refs)
    write_isc_h5(tmp_path / "q.h5", ds.query_ids[2:], queries[2:])  # Q000 and Q001 (both copies) left out
    args = ["--dataset", tiny_dataset, "--queries", tmp_path / "q.h5", "--references", tmp_path / "r.h5"]
    assert _cli("score-h5", *args, "--name", "h5", "--results", tmp_path / "res", "--n-boot", "0") == 0
    result_file = next((tmp_path / "res").rglob("h5.json"))
    res = copybench.results.read_result(result_file)
    m = res.metrics
    assert m["n_queries"] == 11 and m["n_queries_missing"] == 2 and m["n_queries_undecodable"] == 0
    # 6 of the 8 true pairs found, each ranked above every false one: micro-AP = 6/8 (was 1.0 over 6 pairs)
    assert m["micro_ap"] == pytest.approx(6 / 8) and m["recall@1"] == pytest.approx(6 / 8)
    assert _cli("export", result_file, "--format", "isc", "--out", tmp_path / "isc") == 0
    got = _micro_ap_from_export(tmp_path / "isc" / "predictions.csv", tmp_path / "isc" / "ground_truth.csv")
    assert got == pytest.approx(m["micro_ap"], abs=1e-6)


def test_run_counts_undecodable_and_missing_queries_as_misses(tiny_dataset_corrupt, tmp_path, capsys):
    import pandas as pd

    root = tiny_dataset_corrupt
    queries = pd.read_csv(root / "queries.csv", dtype=str, keep_default_na=False)
    extra = {"query_id": "GONE", "path": "queries/GONE.png", "reference_id": "R001", "family": "crop",
             "tier": "light", "params": "{}"}  # fmt: skip
    queries = pd.concat([queries, pd.DataFrame([extra])], ignore_index=True)
    refs = pd.read_csv(root / "references.csv", dtype=str, keep_default_na=False)
    meta = {k: v for k, v in load_dataset(root).meta.items() if k not in ("schema", "integrity")}
    from copybench.datasets.dataset import write_dataset_index

    write_dataset_index(root, meta, refs, queries)  # GONE is listed but absent from the start
    res = tmp_path / "res"
    assert _cli("run", "--dataset", root, "--detectors", "pixel_gray_16", "--results", res, "--no-cache",
                "--n-boot", "0") == 0  # fmt: skip
    out = capsys.readouterr().out
    result = copybench.results.read_result(next(res.rglob("pixel_gray_16.json")))
    m = result.metrics
    assert m["n_queries"] == 13 and m["n_queries_missing"] == 1 and m["n_queries_undecodable"] == 1
    assert m["n_with_match"] == 10  # BAD and GONE each have a match, which they cannot have found
    assert m["recall@1"] <= 8 / 10 + 1e-9
    assert "missing" in out and "undecodable" in out  # the table shows both counts


# --- builds and imports never delete what a user made; ambiguous inputs are refused ---------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rebuild_refuses_to_delete_a_results_folder_inside_the_dataset(tmp_path):
    from copybench.datasets import SourceError, build_dataset

    out = tmp_path / "ds"
    build_dataset("crop-xs", out, n_queries=3, progress=False)
    (out / "results").mkdir()
    (out / "results" / "mine.json").write_text("{}")
    with pytest.raises(SourceError, match=r"holds files a build did not write \(.*results"):
        build_dataset("crop-xs", out, n_queries=3, progress=False)  # was: exit 0, results/ deleted
    assert (out / "results" / "mine.json").read_text() == "{}"
    (out / "queries" / "notes.txt").write_text("mine")
    shutil.rmtree(out / "results")
    with pytest.raises(SourceError, match=r"notes\.txt"):
        build_dataset("crop-xs", out, n_queries=3, progress=False)


def test_temp_folders_of_killed_builds_are_removed_by_the_next_build(tmp_path):
    from copybench.datasets import build_dataset

    pid = _dead_pid()
    stale = [tmp_path / f".ds.building-{pid}-x1", tmp_path / f".ds.old-{pid}-x2"]
    alive = tmp_path / f".ds.building-{__import__('os').getpid()}-x3"  # a live build's folder stays
    for d in (*stale, alive):
        (d / "queries").mkdir(parents=True)
    build_dataset("crop-xs", tmp_path / "ds", n_queries=3, progress=False)
    assert not any(d.exists() for d in stale) and alive.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "ds"])


def _disc21_src(tmp_path: Path) -> Path:
    from PIL import Image

    src = tmp_path / "disc"
    (src / "queries").mkdir(parents=True)
    (src / "references").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 60, 0, 0)).save(src / "references" / f"R{i}.jpg")
        Image.new("RGB", (16, 16), (0, i * 60, 0)).save(src / "queries" / f"Q{i}.jpg")
    (src / "ground_truth.csv").write_text("query_id,reference_id\nQ0,R0\nQ1,R1\nQ2,\n")
    return src


def test_disc21_import_refuses_duplicate_stems_naming_both(tmp_path):
    from PIL import Image

    from copybench.datasets import SourceError, import_dataset

    src = _disc21_src(tmp_path)
    Image.new("RGB", (16, 16), (0, 0, 255)).save(src / "references" / "R0.png")  # same stem as R0.jpg
    with pytest.raises(SourceError, match=r"ambiguous id 'R0': both .*R0\.jpg and .*R0\.png"):
        import_dataset("disc21", src, tmp_path / "out", progress=False)


def test_disc21_import_refuses_two_ground_truth_files_naming_both(tmp_path):
    from copybench.datasets import SourceError, import_dataset

    src = _disc21_src(tmp_path)
    (src / "backup_ground_truth.csv").write_text("query_id,reference_id\nQ0,R2\n")
    with pytest.raises(
        SourceError, match=r"several ground-truth CSVs: .*backup_ground_truth\.csv, .*/ground_truth\.csv"
    ):
        import_dataset("disc21", src, tmp_path / "out", progress=False)
    (src / "backup_ground_truth.csv").unlink()
    assert import_dataset("disc21", src, tmp_path / "out", progress=False).positives["Q0"] == {"R0"}


# --- concurrency, write errors, exit codes -------------------------------------------------------------------


def test_predictions_temp_name_is_unique_to_its_writer(tiny_dataset, tmp_path):
    """Another process's temp file in the way (what two concurrent runs did to each other) breaks nothing."""
    res = tmp_path / "res"
    args = ["run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--results", res, "--no-cache"]
    assert _cli(*args, "--n-boot", "0") == 0
    pred = next(res.rglob("*.predictions.csv.gz"))
    (pred.parent / f".{pred.name}.tmp").mkdir()  # the name every writer used before
    assert _cli(*args, "--n-boot", "0", "--force") == 0
    assert not [
        p for p in pred.parent.iterdir() if p.name.startswith(".") and p.is_file() and "lock" not in p.name
    ]


def test_a_write_error_loses_no_other_detector_and_leaves_no_orphan(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    import copybench.run

    real = copybench.run.write_result

    def full_for_gray8(path, result):
        if result.detector_name == "pixel_gray_8":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, result)

    monkeypatch.setattr(copybench.run, "write_result", full_for_gray8)
    res = tmp_path / "res"
    code = _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8,pixel_rgb_8", "--results", res,
                "--no-cache", "--n-boot", "0")  # fmt: skip
    out = capsys.readouterr()
    assert code == 3  # a runtime failure, not "bad input" and not the gate's 1
    names = sorted(p.name for p in next(res.iterdir()).iterdir() if not p.name.startswith("."))
    assert names == ["pixel_rgb_8.json", "pixel_rgb_8.predictions.csv.gz"]  # no orphan gray_8 predictions
    said = (out.out + out.err).replace("\n", "")  # rich may fold the long line
    assert "pixel_gray_8.json: No space left on device" in said


def test_an_unexpected_exception_exits_3_with_one_line(tiny_dataset, monkeypatch, capsys):
    import copybench.run

    def boom(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr(copybench.run, "run_benchmark", boom)
    code = _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8")
    err = capsys.readouterr().err
    assert (
        code == 3 and "RuntimeError: CUDA error: an illegal memory access" in err
    )  # was a traceback, exit 1
    assert "Traceback" not in err


# --- the gate and the table see every result file ------------------------------------------------------------


@pytest.fixture
def one_result(tiny_dataset, tmp_path) -> Path:
    res = tmp_path / "res"
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--results", res,
                "--no-cache", "--n-boot", "0") == 0  # fmt: skip
    return res


def test_check_refuses_two_results_with_one_key_naming_both(one_result, tmp_path, capsys):
    import json

    original = next(one_result.rglob("pixel_gray_8.json"))
    base = tmp_path / "base"
    shutil.copytree(one_result, base)
    old = json.loads(original.read_text())
    old["metrics"]["micro_ap"] = 0.99  # an old, better-looking copy that would hide a regression
    (one_result / "old").mkdir()
    (one_result / "old" / "pixel_gray_8.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert _cli("check", "--baseline", base, "--results", one_result) == 2  # was 0 or 1 by path order
    said = capsys.readouterr().err.replace("\n", "")
    assert "two results for one key" in said and "old/pixel_gray_8.json" in said and str(original) in said


def test_table_names_every_result_file_it_cannot_read(one_result, caplog):
    import json

    original = next(one_result.rglob("pixel_gray_8.json"))
    newer = json.loads(original.read_text())
    newer["schema_version"] = 2
    (original.parent / "future.json").write_text(json.dumps(newer))
    (original.parent / "broken.json").write_text("{")
    with caplog.at_level(logging.WARNING):  # the CLI's logging handler writes these lines to stderr
        assert _cli("table", one_result) == 0
    err = " ".join(r.getMessage() for r in caplog.records)
    assert "future.json" in err and "schema version 2" in err and "broken.json" in err


# --- decoding: pixel limit, EXIF orientation; throughput counts only decoded images; option checks -----------


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header claims width x height RGB pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * 64) * 4)  # a few rows of data: the rest is "to come"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_400_megapixel_png_is_refused_before_decoding(tmp_path, monkeypatch):
    from copybench.preprocess import ImageReadError, read_image

    bomb = _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(
        ImageReadError, match=r"bomb\.png: 20000x20000 is 400 megapixels, over the 120-megapixel"
    ):
        read_image(bomb)
    small = tmp_path / "small.png"
    from PIL import Image

    Image.new("RGB", (96, 96)).save(small)
    monkeypatch.setenv("COPYBENCH_MAX_PIXELS", "5000")  # configurable
    with pytest.raises(ImageReadError, match=r"small\.png: 96x96 .* COPYBENCH_MAX_PIXELS"):
        read_image(small)
    monkeypatch.setenv("COPYBENCH_MAX_PIXELS", "0")  # 0: no limit
    assert read_image(small).size == (96, 96)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from copybench.preprocess import read_image

    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))  # 40 wide, 20 high
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # a camera held sideways writes it like this...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and asks viewers to rotate it 90 degrees clockwise
    stored.save(tmp_path / "phone.png", exif=exif)
    got = read_image(tmp_path / "phone.png")
    assert got.size == (40, 20)  # was (20, 40): the sideways pixels
    np.testing.assert_array_equal(np.asarray(got), np.asarray(upright))


def test_throughput_counts_only_images_that_decoded(tmp_path, monkeypatch):
    import importlib

    from PIL import Image

    from copybench.detectors import create_detector
    from copybench.throughput import ThroughputSettings, Timing

    paths = []
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 50, 0, 0)).save(tmp_path / f"ok{i}.png")
        (tmp_path / f"bad{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        paths += [str(tmp_path / f"ok{i}.png"), str(tmp_path / f"bad{i}.jpg")]

    def one_second_each(passes, **kw):  # run each pass once, as if it took exactly one second
        return {name: (fn(), Timing((1.0,), n))[1] for name, (fn, n) in passes.items()}

    measure = importlib.import_module(
        "copybench.throughput.measure"
    )  # the package exports a function so named
    monkeypatch.setattr(measure, "interleaved", one_second_each)
    det = create_detector("pixel_gray_8")
    extractor = Extractor(det, batch_size=4, num_workers=0, progress=False)
    settings = ThroughputSettings(batch_sizes=(4,), n_images=8, repeats=1, min_time=0.0, num_workers=0)
    m = measure.time_extraction(det, extractor, paths, settings, 4)
    assert m["skipped"] == 4 and m["e2e_ips"] == pytest.approx(4.0)  # was 8 images/s: 4 never decoded


def test_negative_bootstrap_count_is_refused(tiny_dataset, capsys):
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--n-boot", "-5") == 2
    assert "--n-boot" in capsys.readouterr().err.replace("\n", "")


def test_all_caches_live_under_one_root(tmp_path, monkeypatch):
    import numpy as np

    from copybench.datasets import masks
    from copybench.io import cache_root

    monkeypatch.setenv("COPYBENCH_CACHE", str(tmp_path / "root"))
    monkeypatch.delenv("COPYBENCH_CACHE_DIR", raising=False)
    assert cache_root() == tmp_path / "root" and masks.cache_dir() == tmp_path / "root"
    with masks.use_cache_dir(tmp_path / "flag"):  # data build --cache-dir
        assert masks.cache_dir() == tmp_path / "flag"
        masks._disk_cached(("model", "pixels"), lambda: np.zeros((4, 4), np.uint8))
    assert (tmp_path / "flag" / "u2netp-masks").is_dir() and not (tmp_path / "root").exists()
    monkeypatch.delenv("COPYBENCH_CACHE")
    assert cache_root() == Path.home() / ".cache" / "copybench"


def test_a_dataset_without_its_integrity_record_is_refused_never_scored_under_its_old_fingerprint(
    tiny_dataset, tmp_path, capsys
):
    import json

    from copybench.datasets.integrity import DatasetChangedError

    meta_file = tiny_dataset / "dataset.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "integrity"}))
    _edit_csv(tiny_dataset / "queries.csv", "Q000,queries/Q000.png,R000", "Q000,queries/Q000.png,R001")
    with pytest.raises(DatasetChangedError, match=r"no integrity record.*rebuild or re-import"):
        load_dataset(tiny_dataset)  # was a warning, then scored under the old fingerprint
    capsys.readouterr()
    code = _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_gray_8", "--results", tmp_path / "r",
                "--no-cache", "--n-boot", "0")  # fmt: skip
    assert code == 2 and "no integrity record" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))
    assert _cli("data", "verify", tiny_dataset) == 1


def test_an_imported_ground_truth_edited_with_forged_records_is_refused(tiny_dataset, tmp_path, capsys):
    """The integrity record can be rewritten by whoever edits the manifests; an import's fingerprint is
    recomputed from its manifests and files.csv on load, so an edited ground truth still cannot pass."""
    import json

    import pandas as pd

    from copybench.datasets import import_dataset
    from copybench.datasets.integrity import DatasetChangedError, manifest_digests

    rows = [(f"queries/Q{i:03d}.png", f"references/R{i:03d}.png") for i in range(8)]
    pd.DataFrame(rows, columns=["query", "reference"]).to_csv(tiny_dataset / "m.csv", index=False)
    ds = import_dataset("csv", tiny_dataset / "m.csv", tmp_path / "idx", progress=False)
    assert load_dataset(tmp_path / "idx").fingerprint == ds.fingerprint
    _edit_csv(tmp_path / "idx" / "queries.csv", "queries__Q000,queries/Q000.png,references__R000",
              "queries__Q000,queries/Q000.png,references__R001")  # fmt: skip
    meta = json.loads((tmp_path / "idx" / "dataset.json").read_text())
    meta["integrity"] = manifest_digests(tmp_path / "idx")  # forged to match the edit
    (tmp_path / "idx" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetChangedError, match=r"fingerprint .* does not match .*queries\.csv"):
        load_dataset(tmp_path / "idx")
    capsys.readouterr()
    assert _cli("data", "verify", tmp_path / "idx") == 1
    assert "does not match" in capsys.readouterr().out
