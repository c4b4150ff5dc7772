"""``data import folder SHARDS``: a training set held as WebDataset tar shards or Parquet with image bytes,
imported as a folder of references.

An import indexes files in place, and a shard's samples are not files: each sample's image is written once to
``OUT.images/<shard>/<key>.<ext>`` (beside the index, so the dataset folder moves with it), and the folder
import indexes that. A reference is named by its shard and key (``<shard>__<key>``), so a match names the image
inside its shard. The fingerprint covers every shard's name, size and sha256 besides the images' own digests.
A sample without an image, a truncated shard and a key found in two shards are named and counted, never
skipped silently.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from .errors import SourceError

log = logging.getLogger(__name__)
_SIGNATURES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"RIFF", ".webp"), (b"BM", ".bmp"))


def is_shards(src: str | Path) -> bool:
    """True when ``src`` names shards (a .tar/.parquet path, a brace pattern, a URI, or a folder of shards)."""
    from copybench.scaling.shards import is_shard_spec

    return is_shard_spec(src)


def images_folder(out: Path) -> Path:
    """Where an import of shards into ``out`` writes their images."""
    return out.with_name(f"{out.name}.images")


def _suffix(data: bytes) -> str | None:
    return next((ext for magic, ext in _SIGNATURES if data.startswith(magic)), None)


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("._") or "sample"


def materialize(spec: str, dest: Path, progress: bool = True) -> dict:
    """Write every sample's image of the shards ``spec`` names into ``dest``; returns the record the dataset
    keeps (shards with size, sha256, samples and problems; the problems by name)."""
    from copybench.progress import progress_bar
    from copybench.scaling.shards import ShardError, list_shards, read_shard

    try:
        refs = list_shards(spec)
    except ShardError as exc:
        raise SourceError(str(exc)) from exc
    if dest.exists():
        raise SourceError(f"{dest} exists: an import of shards writes their images there; remove it first")
    shards, problems, first_seen = [], [], {}
    with progress_bar("writing shard images", len(refs), progress) as bar:
        for ref in refs:
            samples = read_shard(ref)
            folder = dest / _safe(Path(ref.name).stem)
            folder.mkdir(parents=True)
            for key, data in zip(samples.keys, samples.data):
                problems += _write_sample(folder, ref.name, key, data, first_seen)
            problems += [message for _, message in samples.errors]
            shards.append(
                {"shard": ref.name, "uri": ref.uri, "size": samples.size, "sha256": samples.sha256,
                 "samples": len(samples.keys), "problems": len(samples.errors)}
            )  # fmt: skip
            bar.advance()
    for message in problems:
        log.warning("%s", message)
    return {"shards": shards, "problems": problems}


def _write_sample(folder: Path, shard: str, key: str, data: bytes, first_seen: dict) -> list[str]:
    problems = []
    if key in first_seen:
        problems.append(f"{shard}: key {key!r} is also in {first_seen[key]}: both kept, named by their shard")
    first_seen.setdefault(key, shard)
    suffix = _suffix(data)
    if suffix is None:
        return [
            *problems,
            f"{shard}: sample {key!r} holds no image copybench can read (not JPEG, PNG, WebP, BMP)",
        ]
    (folder / f"{_safe(key)}{suffix}").write_bytes(data)
    return problems


def shard_identity(shards: list[dict]) -> list[list]:
    """What of the shards enters the fingerprint: name, size and sha256 of each, in order."""
    return [[s["shard"], s["size"], s["sha256"]] for s in shards]


def remove_images(dest: Path) -> None:
    """Remove the images an import of shards wrote (a refused or failed import leaves nothing behind)."""
    shutil.rmtree(dest, ignore_errors=True)
