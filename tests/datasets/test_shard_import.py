"""``data import folder SHARDS``: WebDataset tar shards imported as references named by shard and key, the
shards (name, size, sha256) in the fingerprint, a sample without an image and a key in two shards named."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image

from copybench.cli import main
from copybench.datasets import load_dataset


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    return buf.getvalue()


def _shard(path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_shards_import_as_references_named_by_shard_and_key(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    _shard(shards / "00000.tar", {"a": {"jpg": _jpeg(1), "json": b"{}"}, "b": {"jpg": _jpeg(2)}})
    _shard(shards / "00001.tar", {"c": {"jpg": _jpeg(3)}, "nop": {"json": b"{}"}, "a": {"jpg": _jpeg(4)}})
    out = tmp_path / "ds"
    assert (
        main(["-q", "data", "import", "folder", str(shards / "{00000..00001}.tar"), "--out", str(out)]) == 0
    )
    ds = load_dataset(out)
    assert sorted(ds.reference_ids) == ["00000__a", "00000__b", "00001__a", "00001__c"]  # shard, then key
    assert (tmp_path / "ds.images" / "00001" / "c.jpg").read_bytes() == _jpeg(3)
    meta = json.loads((out / "dataset.json").read_text())
    assert [s["shard"] for s in meta["shards"]] == ["00000.tar", "00001.tar"]
    assert all(len(s["sha256"]) == 64 for s in meta["shards"])
    problems = " ".join(meta["shard_problems"])
    assert "00001.tar:nop: sample without an image" in problems and "key 'a' is also in 00000.tar" in problems
    err = capsys.readouterr().err
    assert "nop" in err  # named on stderr too

    # the same shards, imported again: the same fingerprint; a changed shard: another one
    again = tmp_path / "again"
    assert main(["-q", "data", "import", "folder", str(shards), "--out", str(again)]) == 0
    assert load_dataset(again).fingerprint == ds.fingerprint
    _shard(shards / "00001.tar", {"c": {"jpg": _jpeg(5)}})
    changed = tmp_path / "changed"
    assert main(["-q", "data", "import", "folder", str(shards), "--out", str(changed)]) == 0
    assert load_dataset(changed).fingerprint != ds.fingerprint


def test_a_missing_shard_is_exit_2_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["-q", "data", "import", "folder", str(tmp_path / "gone-{0..1}.tar"), "--out", str(out)]) == 2
    assert "gone-0.tar" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "ds.images").exists()
