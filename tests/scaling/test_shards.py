"""Shard inputs, the descriptor store, sharded extraction and resumable search, in this process (no Ray).

Tiny WebDataset tars and a Parquet file are written here with the stdlib and pyarrow; the detector is
``pixel_gray_16`` (weight-free), so descriptors are checked against the local Extractor on the same images.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copybench.scaling.descstore import DescriptorStore, StoreError, shard_id
from copybench.scaling.shardextract import (
    DetectorRunner,
    SyntheticRunner,
    duplicate_keys,
    extract_shards,
    synthetic_shards,
)
from copybench.scaling.shards import (
    ShardError,
    expand_braces,
    is_shard_spec,
    list_shards,
    read_shard,
)
from copybench.scaling.shardsearch import search_store, split_gid


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _tar(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def shards(tmp_path) -> Path:
    root = tmp_path / "shards"
    root.mkdir()
    for s in range(3):
        _tar(
            root / f"{s:05d}.tar",
            {f"s{s}_{i:03d}": {"jpg": _jpeg(10 * s + i), "json": b"{}"} for i in range(4)},
        )
    return root


def _extractor():
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    return Extractor(create_detector("pixel_gray_16"), batch_size=3, num_workers=0, progress=False)


def test_brace_patterns_expand_as_webdataset_names_them():
    assert expand_braces("a/{000..002}.tar") == ["a/000.tar", "a/001.tar", "a/002.tar"]
    assert expand_braces("{x,y}-{8..10}.parquet") == [
        "x-8.parquet", "x-9.parquet", "x-10.parquet", "y-8.parquet", "y-9.parquet", "y-10.parquet",
    ]  # fmt: skip
    with pytest.raises(ShardError, match="backwards"):
        expand_braces("{5..1}.tar")
    assert is_shard_spec("s3://bucket/x.tar") and is_shard_spec("shards/{0..3}.tar")
    assert not is_shard_spec("some/folder/of/images")


def test_list_shards_by_pattern_folder_and_uri(shards):
    by_pattern = list_shards(f"{shards}/{{00000..00002}}.tar")
    assert [r.name for r in by_pattern] == ["00000.tar", "00001.tar", "00002.tar"]
    assert list_shards(shards) == by_pattern
    uri = list_shards(f"file://{shards}/00001.tar")[0]
    assert uri.uri.startswith("file://") and uri.size == by_pattern[1].size
    with pytest.raises(ShardError, match="00003.tar: no such shard"):
        list_shards(f"{shards}/{{00000..00003}}.tar")
    with pytest.raises(ShardError, match="unreadable URI"):
        list_shards("nosuchscheme://bucket/x.tar")


def test_bad_samples_are_named_and_counted(tmp_path):
    path = _tar(
        tmp_path / "bad.tar",
        {"a": {"jpg": _jpeg(1)}, "b": {"json": b"{}", "txt": b"caption"}, "c": {"png": _jpeg(2)}},
    )
    s = read_shard(list_shards(path)[0])
    assert s.keys == ["a", "c"]
    assert [k for k, _ in s.errors] == ["b"] and "sample without an image (has json, txt)" in s.errors[0][1]
    raw = path.read_bytes()
    cut = tmp_path / "cut.tar"
    a_end = 512 + -(-len(_jpeg(1)) // 512) * 512  # header and data of "a"
    cut.write_bytes(raw[: a_end + 100])  # then part of the next header
    t = read_shard(list_shards(cut)[0])
    assert t.keys == ["a"]
    assert len(t.errors) == 1 and "truncated or corrupt tar after 1 samples" in t.errors[0][1]


def test_parquet_shards_with_image_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"key": ["p0", "p1", "p2"], "jpg": [_jpeg(5), b"", _jpeg(6)]})
    pq.write_table(table, tmp_path / "x.parquet")
    s = read_shard(list_shards(tmp_path / "x.parquet")[0])
    assert s.keys == ["p0", "p2"] and s.data[0] == _jpeg(5)
    assert s.errors == [("p1", f"{tmp_path / 'x.parquet'}:p1: sample without an image (empty 'jpg')")]


def test_extraction_writes_each_shard_once_and_equals_the_local_extractor(shards, tmp_path):
    ext = _extractor()
    refs = list_shards(shards)
    store = DescriptorStore(tmp_path / "store", "k")
    first = extract_shards(refs, store, DetectorRunner.from_extractor(ext))
    assert (first.computed, first.reused, first.rows, first.n_errors) == (3, 0, 12, 0)
    # the same images as files through the local Extractor: the same descriptors
    files = []
    for s in range(3):
        for i in range(4):
            files.append(tmp_path / f"{s}_{i}.jpg")
            files[-1].write_bytes(_jpeg(10 * s + i))
    local = ext.run([str(f) for f in files])
    stored = np.concatenate([store.read(sh["id"]) for sh in first.shards])
    np.testing.assert_allclose(stored, local.vectors, atol=1e-6)
    again = extract_shards(refs, store, DetectorRunner.from_extractor(ext))
    assert (again.computed, again.reused) == (0, 3) and again.shards == first.shards


def test_a_changed_shard_invalidates_only_its_own_descriptors(shards, tmp_path):
    ext, store = _extractor(), DescriptorStore(tmp_path / "store", "k")
    first = extract_shards(list_shards(shards), store, DetectorRunner.from_extractor(ext))
    _tar(shards / "00001.tar", {f"new{i}": {"jpg": _jpeg(100 + i)} for i in range(2)})
    second = extract_shards(list_shards(shards), store, DetectorRunner.from_extractor(ext))
    assert second.changed == [str(shards / "00001.tar")]
    assert (second.computed, second.reused) == (1, 2)
    assert second.shards[0] == first.shards[0] and second.shards[2] == first.shards[2]
    assert second.shards[1]["rows"] == 2
    # touched but unchanged bytes: re-hashed, still reused
    import os

    os.utime(shards / "00000.tar", ns=(1, 1))
    third = extract_shards(list_shards(shards), store, DetectorRunner.from_extractor(ext))
    assert (third.computed, third.changed) == (0, [])


def test_a_damaged_descriptor_shard_is_named(shards, tmp_path):
    ext, store = _extractor(), DescriptorStore(tmp_path / "store", "k")
    res = extract_shards(list_shards(shards), store, DetectorRunner.from_extractor(ext))
    sid = res.shards[0]["id"]
    npy = tmp_path / "store" / "k" / f"{sid}.npy"
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"shard {sid} does not match its checksum"):
        store.read(sid)
    q = np.ones((1, 256), np.float32)  # pixel_gray_16: 16 x 16 gray
    with pytest.raises(StoreError, match="discarded: rerun to extract that shard again"):
        search_store(q, store, res.shards, 1)
    again = extract_shards(list_shards(shards), store, DetectorRunner.from_extractor(ext))
    assert (again.computed, again.reused) == (1, 2)  # only the damaged shard
    assert store.read(sid).shape == (4, 256)


def test_duplicate_keys_across_shards_are_named(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    _tar(root / "a.tar", {"x": {"jpg": _jpeg(1)}, "y": {"jpg": _jpeg(2)}})
    _tar(root / "b.tar", {"y": {"jpg": _jpeg(3)}, "z": {"jpg": _jpeg(4)}})
    store = DescriptorStore(tmp_path / "store", "k")
    res = extract_shards(list_shards(root), store, DetectorRunner.from_extractor(_extractor()))
    n, msgs = duplicate_keys(store, [s["id"] for s in res.shards])
    assert n == 1 and msgs == [
        f"duplicate key 'y' in shards {shard_id(str(root / 'a.tar'))}, {shard_id(str(root / 'b.tar'))}"
    ]


def test_search_over_the_store_equals_brute_force_and_resumes_with_missing_pairs_only(tmp_path, monkeypatch):
    import copybench.scaling.shardsearch as ss

    monkeypatch.setattr(ss, "QUERY_BLOCK", 7)
    store = DescriptorStore(tmp_path / "store", "syn")
    res = extract_shards(synthetic_shards(230, 50), store, SyntheticRunner(dims=16, seed=3))
    allv = np.concatenate([store.read(s["id"]) for s in res.shards])
    q = np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s, g, stats = search_store(q, store, res.shards, 4)
    assert (stats.pairs, stats.computed, stats.reused) == (3 * 5, 15, 0)
    shard, row = split_gid(g)
    offsets = np.cumsum([0] + [sh["rows"] for sh in res.shards])
    flat = offsets[shard] + row
    want = np.argsort(-(q @ allv.T), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(flat, want)
    np.testing.assert_allclose(s, np.take_along_axis(q @ allv.T, want, 1), atol=1e-5)
    # a killed run: remove some partials, rerun computes only those and gives the same result
    parts = sorted((tmp_path / "store" / "syn").glob("search-*/*.npz"))
    for p in parts[::4]:
        p.unlink()
    parts[1].write_bytes(b"garbage")  # a half-written partial from a kill -9
    s2, g2, stats2 = search_store(q, store, res.shards, 4)
    assert stats2.computed == len(parts[::4]) + 1 and stats2.reused == 15 - stats2.computed
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(s2, s)


def test_scan_on_tar_shards_end_to_end(shards, tmp_path, capsys):
    """``copybench scan --train PATTERN``: matches named SHARD:KEY, the exact copy found, images copied out."""
    import json

    from copybench.cli import main

    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "copy.jpg").write_bytes(_jpeg(21))  # shard 2, sample 1
    (gen / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "scan"
    argv = ["-q", "scan", "--generated", str(gen), "--train", f"{shards}/{{00000..00002}}.tar"]
    argv += ["--detector", "pixel_gray_16", "--threshold", "0.99", "--out", str(out), "--top-k", "2"]
    argv += ["--descriptor-dir", str(tmp_path / "store")]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    top = summary["flagged"][0]
    assert top["train"] == "00002.tar:s2_001" and top["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert summary["counts"]["train_indexed"] == 12 and summary["shards"]["n"] == 3
    assert summary["search"] == {"kind": "exact", "pairs": 3, "computed": 3, "reused": 0}
    assert [s["role"] for s in summary["skipped"]] == ["generated"]
    copied = list((out / "train-samples" / "00002.tar").glob("s2_001.jpg"))
    assert len(copied) == 1 and copied[0].read_bytes() == _jpeg(21)
    # rerun: every descriptor shard and search pair is reused
    assert main([*argv[:-6], "--out", str(tmp_path / "scan2"), *argv[-4:]]) == 0
    again = json.loads((tmp_path / "scan2" / "summary.json").read_text())
    assert again["search"]["reused"] == 3 and again["shards"]["reused"] == 3
    assert again["replication_rate"] == summary["replication_rate"]
    # opt-in ANN through the CLI: the index's search, its recall and the exact rate on the sample beside it
    assert main([*argv[:-6], "--out", str(tmp_path / "ann"), *argv[-4:], "--ann", "ivf-flat"]) == 0
    ann = json.loads((tmp_path / "ann" / "summary.json").read_text())
    assert ann["search"] == {"kind": "ivf-flat"} and ann["ann"]["recall_at_k"] == 1.0  # every list probed
    assert ann["ann"]["replication_rate_sample"]["exact"]["flagged"] == 1
    html = (tmp_path / "ann" / "report.html").read_text()
    assert "APPROXIMATE (ivf-flat" in html and "recall@2 vs exact" in html
    assert "exact 100.00% (1), ANN 100.00% (1)" in html


def test_scan_names_a_missing_shard_and_exits_2(shards, tmp_path, capsys):
    from copybench.cli import main

    argv = ["scan", "--generated", str(shards), "--train", f"{shards}/{{00000..00004}}.tar"]
    argv += ["--detector", "pixel_gray_16", "--threshold", "0.9", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "00003.tar: no such shard" in err


def test_an_address_where_nothing_listens_fails_fast_with_one_line(tmp_path, capsys):
    """#22.9: Ray retries a dead --address for minutes; copybench names the cause at once and exits 2."""
    import socket
    import time

    from copybench.cli import main

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        argv = ["scan", "--generated", str(tmp_path), "--train", str(tmp_path), "--detector", "pixel_gray_16"]
        argv += ["--threshold", "0.9", "--out", str(tmp_path / "o"), "--engine", "ray"]
        t0 = time.perf_counter()
        assert main([*argv, "--address", f"127.0.0.1:{port}"]) == 2
        assert time.perf_counter() - t0 < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--address 127.0.0.1:{port}: no Ray cluster answers there" in err[0], err
    assert main([*argv, "--address", "nonsense"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_ann_reports_recall_and_the_exact_rate_beside_its_own(tmp_path):
    from copybench.scaling.ann import AnnOptions, ann_scan, recall_at_k

    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3, -1]])) == 0.5  # 1 of the 2 real ids
    store = DescriptorStore(tmp_path / "store", "syn")
    res = extract_shards(synthetic_shards(2000, 500), store, SyntheticRunner(dims=16, seed=4))
    allv = np.concatenate([store.read(s["id"]) for s in res.shards])
    q = allv[::50] + 0.01 * np.random.default_rng(1).standard_normal((40, 16)).astype(np.float32)
    opts = AnnOptions("ivf-flat", nlist=16, nprobe=16, sample=10)  # every list probed: exact
    _, _, info = ann_scan(q, store, res.shards, 3, opts, 0.9, ">=", None)
    assert info["recall_at_k"] == 1.0 and info["sample"] == {"n": 10, "of": 40, "seed": 0}
    rates = info["replication_rate_sample"]
    assert rates["ann"]["flagged"] == rates["exact"]["flagged"] == 10
    few = ann_scan(
        q, store, res.shards, 3, AnnOptions("ivf-flat", nlist=64, nprobe=1, sample=40), 0.9, ">=", None
    )
    assert (
        few[2]["recall_at_k"] < 1.0
    )  # one list of 64: neighbours are missed, and the summary says how often


KILLED_SEARCH = """
import sys, time
import numpy as np
import copybench.scaling.shardsearch as ss
from copybench.scaling.descstore import DescriptorStore
from copybench.scaling.shardextract import SyntheticRunner, extract_shards, synthetic_shards

slow = ss.search_shard_blocks
def slowly(*a, **kw):
    time.sleep(0.2)  # fault injection: time for the parent to kill -9 this driver between pairs
    return slow(*a, **kw)
ss.search_shard_blocks = slowly
store = DescriptorStore(sys.argv[1], "syn")
res = extract_shards(synthetic_shards(4000, 100), store, SyntheticRunner(dims=8, seed=5))
q = np.random.default_rng(3).standard_normal((30, 8)).astype(np.float32)
ss.search_store(q, store, res.shards, 4)
"""


@pytest.mark.slow
def test_a_search_killed_with_sigkill_resumes_with_the_missing_pairs_only(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SEARCH, str(root)])
    deadline = time.time() + 120
    while len(list(root.glob("syn/search-*/*.npz"))) < 5 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(root.glob("syn/search-*/*.npz")))
    assert 5 <= done < 40
    store = DescriptorStore(root, "syn")
    res = extract_shards(synthetic_shards(4000, 100), store, SyntheticRunner(dims=8, seed=5))
    assert res.reused == 40
    q = np.random.default_rng(3).standard_normal((30, 8)).astype(np.float32)
    s, g, stats = search_store(q, store, res.shards, 4)
    assert stats.reused == done and stats.computed == 40 - done
    fresh = DescriptorStore(tmp_path / "fresh", "syn")
    res2 = extract_shards(synthetic_shards(4000, 100), fresh, SyntheticRunner(dims=8, seed=5))
    s2, g2, _ = search_store(q, fresh, res2.shards, 4)
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(s, s2)


def test_a_shard_rewritten_during_the_scan_is_named(shards):
    from copybench.scaling.webscan import changed_since_listed

    refs = list_shards(shards)
    _tar(shards / "00002.tar", {"other": {"jpg": _jpeg(99)}})
    (shards / "00001.tar").unlink()
    moved = changed_since_listed(refs)
    assert len(moved) == 2
    assert "00001.tar: no such shard" in moved[0] and "00002.tar: changed during the scan" in moved[1]


def test_generated_shards_and_a_uri_store(shards, tmp_path):
    """--generated as a shard too, the store written through a file:// URI: the copy is found by name."""
    import json

    from copybench.cli import main

    gen = _tar(tmp_path / "gen.tar", {"copy": {"jpg": _jpeg(13)}, "other": {"jpg": _jpeg(500)}})
    out = tmp_path / "scan"
    argv = ["-q", "scan", "--generated", str(gen), "--train", str(shards), "--detector", "pixel_gray_16"]
    argv += ["--threshold", "0.99", "--out", str(out), "--descriptor-dir", f"file://{tmp_path}/uristore"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flagged"] == [
        {"generated": "gen.tar:copy", "train": "00001.tar:s1_003", "similarity": pytest.approx(1.0, abs=1e-5)}
    ]
    assert summary["counts"]["generated_scanned"] == 2
    assert len(list((tmp_path / "uristore").glob("*/*.npy"))) == 4  # three training shards and gen.tar
