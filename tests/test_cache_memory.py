"""The descriptor cache holds a run's descriptors once: flushed shards live on disk, not in RAM as well as in
the final memory-mapped arrays (they were held twice, which doubles memory at a million images)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import copybench.cache
from copybench.cache import CacheWriteError, ShardStore
from copybench.extract import Extractor

N_IMAGES = 500  # pixel_rgb_32: 3072 float32 dims, 6.1 MB of descriptors


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _extractor(cache: Path | None) -> Extractor:
    from copybench.detectors import create_detector

    det = create_detector("pixel_rgb_32")
    return Extractor(det, batch_size=64, num_workers=0, cache_dir=cache, progress=False)


def test_cached_extraction_holds_the_descriptors_once(tmp_path, monkeypatch):
    monkeypatch.setattr(copybench.cache, "SHARD_IMAGES", 64)  # many shards, as at scale
    paths = _images(tmp_path / "imgs", N_IMAGES)
    extractor = _extractor(tmp_path / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend with the machine's other work
    tracemalloc.start()  # numpy's allocations are traced; the final memmap's pages are not heap
    try:
        result = extractor.run(paths)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        torch.set_num_threads(threads)
    size = result.vectors.nbytes
    assert isinstance(result.vectors, np.memmap)
    # measured: about 4 MB, flat in the number of images; shards kept in RAM as well made it size + 4 MB
    assert peak < 0.25 * size + 5e6, f"peak heap {peak / 1e6:.1f} MB for {size / 1e6:.1f} MB of descriptors"
    uncached = _extractor(None).run(paths).vectors
    np.testing.assert_array_equal(np.asarray(result.vectors), uncached)  # same descriptors as without a cache
    again = _extractor(tmp_path / "cache").run(paths)
    assert again.seconds == 0.0
    np.testing.assert_array_equal(np.asarray(again.vectors), uncached)


def _filled_store(root: Path, n: int = 8) -> tuple[ShardStore, np.ndarray]:
    vecs = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
    store = ShardStore(root, n, "k")
    store.__enter__()
    for start in range(0, n, 4):
        store.add(list(range(start, start + 4)), vecs[start : start + 4], None)
        store.flush()
    return store, vecs


def test_shards_are_read_back_from_disk_and_verified_again(tmp_path):
    store, vecs = _filled_store(tmp_path / "entry")
    try:
        assert all("vectors" not in s for s in store.shards)  # only rows, failures and the file are kept
        result = store.finalize([f"{i}.png" for i in range(8)], 4, False)
        np.testing.assert_array_equal(np.asarray(result.vectors), vecs)
    finally:
        store.__exit__(None, None, None)


def test_a_shard_changed_before_finalising_is_an_error_never_used(tmp_path):
    store, _ = _filled_store(tmp_path / "entry")
    try:
        shard = sorted((tmp_path / "entry").glob("shard-*.npz"))[1]
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["vectors"] = np.zeros_like(arrays["vectors"])  # same shape, wrong numbers
        np.savez(shard, **arrays)
        with pytest.raises(CacheWriteError, match=shard.name):
            store.finalize([f"{i}.png" for i in range(8)], 4, False)
        assert not (tmp_path / "entry" / "done.json").exists()
    finally:
        store.__exit__(None, None, None)


def test_descriptor_key_refuses_tokens_a_detector_or_multiscale_cannot_give(tmp_path):
    """The one key function (local and Ray extractors) refuses before keying; a global request is keyed."""
    from copybench.detectors import create_detector
    from copybench.extract import descriptor_key

    paths = _images(tmp_path / "img", 2)
    plain = _extractor(None)
    with pytest.raises(ValueError, match="outputs global descriptors, not tokens"):
        descriptor_key(plain, paths, tokens=True, fingerprint=None, decode="pil")
    multi = Extractor(create_detector("pixel_rgb_32"), scales=(1.0, 0.5), num_workers=0, progress=False)
    assert descriptor_key(multi, paths, tokens=False, fingerprint=None, decode="pil") != descriptor_key(
        plain, paths, tokens=False, fingerprint=None, decode="pil"
    )
