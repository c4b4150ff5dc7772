"""``copybench scan`` on shard inputs: training sets (and generated sets) held as WebDataset tars or Parquet.

Same detector, threshold, statistics and outputs as :func:`copybench.scan.pipeline.scan`; what differs is
where descriptors live and how the search runs. Each training shard becomes one descriptor shard in the store
(:mod:`.shardextract`, written by the actor that computed it), the search is one stored partial top-k per
(query block, reference shard) (:mod:`.shardsearch`: a killed scan resumes with the missing pairs), and a match
is named ``SHARD:KEY``. The matched training images of the rows shown in the grids are copied out of their
shards into ``out/train-samples/`` so a reader sees them; every other match is named, not copied.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from copybench.scaling.descstore import DescriptorStore
from copybench.scaling.shardextract import DetectorRunner, ShardExtraction
from copybench.scaling.shards import ShardRef, read_shard
from copybench.scaling.shardsearch import gid, search_store, search_tag, split_gid

log = logging.getLogger(__name__)

BASELINE_TAG = "baseline"


# ---------------------------------------------------------------------------------------------- inputs
def store_for(ext, descriptor_dir, out: Path) -> DescriptorStore:
    """The descriptor store of this detector and its settings (a folder or URI; ``out``'s own without a cache)."""
    from copybench.cache import cache_key

    decode = ext.decode_key if hasattr(ext, "decode_key") else ext._decode_key()
    key = cache_key(
        ext.detector, [], dtype=ext.dtype, tokens=False, fingerprint="shards", scales=ext.scales, raw=ext.raw,
        decode=decode,
    )  # fmt: skip
    return DescriptorStore(descriptor_dir if descriptor_dir is not None else out / "descriptor-store", key)


def runner_for(ext, engine) -> DetectorRunner:
    """This process's detector, or the load arguments and options every actor rebuilds it from."""
    if engine is None:
        return DetectorRunner.from_extractor(ext)
    from copybench.scaling.actor import detector_load_args

    return DetectorRunner(detector_load_args(ext.detector), ext._options(False))


class ShardSide:
    """One input side held as shards: its extraction, and row names by global id."""

    def __init__(self, refs: list[ShardRef], extraction: ShardExtraction) -> None:
        self.refs, self.x = refs, extraction
        self.shards = extraction.shards

    def names(self, store: DescriptorStore, gids: np.ndarray) -> dict[int, tuple[str, str]]:
        """Global id -> (shard uri, key) for the ids asked, reading only the records of the shards they hit."""
        out: dict[int, tuple[str, str]] = {}
        sidx, rows = split_gid(gids[gids >= 0])
        for j in np.unique(sidx):
            keys = store.record(self.shards[j]["id"])["keys"]
            for r in rows[sidx == j]:
                out[int(gid(j, r))] = (self.shards[j]["uri"], keys[r])
        return out

    def skipped(self, role: str) -> list[dict]:
        """Every problem the extraction was told of (the store's records hold all, the counts say how many)."""
        return [{"path": e.split(": ", 1)[0], "error": e, "role": role} for e in self.x.errors]


def load_vectors(store: DescriptorStore, side: ShardSide) -> tuple[np.ndarray, np.ndarray]:
    """All descriptors of a (small: generated) shard side and their global ids."""
    vecs, ids = [], []
    for j, sh in enumerate(side.shards):
        vecs.append(store.read(sh["id"], sh["desc_sha256"]).astype(np.float32))
        ids.append(gid(j, np.arange(sh["rows"])))
    dims = vecs[0].shape[1] if vecs else 0
    return (np.concatenate(vecs) if vecs else np.zeros((0, dims), np.float32)), np.concatenate(ids or [[]])


# ---------------------------------------------------------------------------------------------- baseline
def baseline_sample(shards: list[dict], sample: int | None, seed: int) -> np.ndarray:
    """Global ids of all training rows, or of a seeded sample (sorted), drawn over flat row numbers."""
    counts = np.array([s["rows"] for s in shards], dtype=np.int64)
    total = int(counts.sum())
    flat = np.arange(total)
    if sample is not None and total > sample:
        flat = np.sort(np.random.default_rng(seed).choice(total, size=sample, replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.searchsorted(starts, flat, side="right") - 1
    return gid(j, flat - starts[j])


def gather_rows(store: DescriptorStore, shards: list[dict], gids: np.ndarray) -> np.ndarray:
    """Descriptors of the given global ids, one shard read at a time (in id order)."""
    sidx, rows = split_gid(gids)
    out = np.zeros((len(gids), 0), np.float32)
    for j in np.unique(sidx):
        block = store.read(shards[j]["id"], shards[j]["desc_sha256"])
        if out.shape[1] == 0:
            out = np.zeros((len(gids), block.shape[1]), np.float32)
        out[sidx == j] = block[rows[sidx == j]]
    return out


def train_baseline(store, shards, sample: int | None, seed: int, *, engine, device: str):
    """Each sampled training image's similarity to its nearest OTHER training image (self dropped by id)."""
    b_ids = baseline_sample(shards, sample, seed)
    q = gather_rows(store, shards, b_ids)
    s, i, stats = search_store(
        q, store, shards, 2, engine=engine, device=device, tag=BASELINE_TAG + search_tag(q, 2)
    )
    other = i != b_ids[:, None]
    return b_ids, s[np.arange(len(b_ids)), np.argmax(other, axis=1)], stats


# ---------------------------------------------------------------------------------------------- samples
def copy_samples(out: Path, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Copy the wanted (shard uri, key) images out of their shards into ``out/train-samples/SHARD/``."""
    from copybench.scaling.shards import _filesystem

    done: dict[tuple[str, str], str] = {}
    by_shard: dict[str, set[str]] = {}
    for uri, key in wanted:
        by_shard.setdefault(uri, set()).add(key)
    for uri, keys in sorted(by_shard.items()):
        fs, inner = _filesystem(uri)
        info = fs.get_file_info(inner)
        ref = ShardRef(uri, "parquet" if uri.endswith(".parquet") else "tar", info.size, info.mtime_ns or 0)
        samples = read_shard(ref)
        folder = out / "train-samples" / ref.name
        folder.mkdir(parents=True, exist_ok=True)
        for key, data in zip(samples.keys, samples.data):
            if key in keys:
                path = folder / f"{key.replace('/', '_')}.{_image_format(data)}"
                path.write_bytes(data)
                done[(uri, key)] = str(path)
    return done


def _image_format(data: bytes) -> str:
    """The file suffix of an image's bytes as Pillow identifies them (``bin`` when it cannot)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return (img.format or "bin").lower().replace("jpeg", "jpg")
    except (UnidentifiedImageError, OSError):
        return "bin"
