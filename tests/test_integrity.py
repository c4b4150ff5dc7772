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
