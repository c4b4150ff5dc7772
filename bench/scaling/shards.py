"""Training sets as users hold them: WebDataset tar shards and Parquet files of image bytes.

A shard spec is a path, a brace pattern (``shards/{00000..00127}.tar``, ``{a,b}.parquet``) or a URI that
pyarrow's filesystems open (``s3://``, ``gs://``, ``file://``...), or a folder holding ``*.tar`` / ``*.parquet``
files. A sample is named by its shard and its key (WebDataset: the member name up to the first dot of its base
name; Parquet: the ``key`` / ``__key__`` column, else the row number), so a match names where the image is.

A shard is read whole, once: its bytes are hashed (sha256) on the way, so its checksum costs no second read and
no image is decoded twice. Problems are named and counted, never skipped silently: a truncated tar keeps the
samples before the cut and records the cut; a sample without an image member is recorded by key.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTS = (
    "jpg",
    "jpeg",
    "png",
    "webp",
    "bmp",
    "tif",
    "tiff",
)  # WebDataset member extensions, in preference
SHARD_SUFFIXES = (".tar", ".parquet")
PARQUET_IMAGE_COLUMNS = (
    "jpg",
    "png",
    "webp",
    "image",
    "img",
    "bytes",
)  # first present column holds the bytes
PARQUET_KEY_COLUMNS = ("__key__", "key")
_BRACE = re.compile(r"\{([^{}]*)\}")


class ShardError(ValueError):
    """A shard spec that names nothing readable (no file, unreadable URI, unknown format)."""


@dataclass(frozen=True)
class ShardRef:
    """One input shard: where it is, its format, and its size and mtime when listed (the cheap change check)."""

    uri: str
    kind: str  # "tar" or "parquet"
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class ShardSamples:
    """What reading one shard gave: sample keys and image bytes, problems by key, the shard's sha256."""

    ref: ShardRef
    keys: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (key or "", message naming shard and key)
    sha256: str = ""
    size: int = 0


# ---------------------------------------------------------------------------------------------- specs
def is_shard_spec(spec: str | Path) -> bool:
    """True for a URI, a brace pattern, a ``.tar`` / ``.parquet`` path, or a folder of such files only."""
    s = str(spec)
    if "://" in s or _BRACE.search(s) or s.endswith(SHARD_SUFFIXES):
        return True
    p = Path(s).expanduser()
    if p.is_dir():
        files = [c for c in p.iterdir() if c.is_file()]
        return bool(files) and all(c.suffix in SHARD_SUFFIXES for c in files if not c.name.startswith("."))
    return False


def expand_braces(pattern: str) -> list[str]:
    """Every name a brace pattern stands for: ``{00..03}`` (zero-padded ranges) and ``{a,b}``, in order."""
    parts: list[list[str]] = []
    pos = 0
    for m in _BRACE.finditer(pattern):
        parts.append([pattern[pos : m.start()]])
        parts.append(_brace_options(m.group(1), pattern))
        pos = m.end()
    parts.append([pattern[pos:]])
    return ["".join(p) for p in itertools.product(*parts)]


def _brace_options(body: str, pattern: str) -> list[str]:
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise ShardError(f"shard pattern {pattern!r}: range {{{body}}} runs backwards")
        width = len(lo) if lo.startswith("0") else 0
        return [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    if "," in body:
        return body.split(",")
    raise ShardError(f"shard pattern {pattern!r}: cannot expand {{{body}}} (use {{000..127}} or {{a,b}})")


def _filesystem(uri: str):
    import pyarrow.fs

    if "://" in uri:
        try:
            return pyarrow.fs.FileSystem.from_uri(uri)
        except (pyarrow.ArrowInvalid, OSError, ValueError) as exc:
            raise ShardError(f"{uri}: unreadable URI ({exc})") from exc
    return pyarrow.fs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def list_shards(spec: str | Path) -> list[ShardRef]:
    """The shards a spec names, in order, each stat-ed; ShardError naming the first one missing."""
    import pyarrow.fs

    s = str(spec)
    names = expand_braces(s)
    if len(names) == 1 and "://" not in s and Path(s).expanduser().is_dir():
        root = Path(s).expanduser().resolve()
        names = sorted(str(p) for p in root.iterdir() if p.suffix in SHARD_SUFFIXES and p.is_file())
        if not names:
            raise ShardError(f"{root}: no .tar or .parquet shards in this folder")
    refs = []
    for name in names:
        fs, inner = _filesystem(name)
        try:
            info = fs.get_file_info(inner)
        except OSError as exc:
            raise ShardError(f"{name}: unreadable URI ({exc})") from exc
        if info.type != pyarrow.fs.FileType.File:
            raise ShardError(f"{name}: no such shard")
        kind = "parquet" if name.endswith(".parquet") else "tar"
        uri = name if "://" in name else inner
        refs.append(ShardRef(uri, kind, int(info.size), int(info.mtime_ns or 0)))
    return refs


def stat_shard(ref: ShardRef) -> ShardRef:
    """The shard as it is now (size, mtime); ShardError when it is gone or unreadable."""
    return list_shards(ref.uri)[0]


def fingerprint(refs: list[ShardRef], checksums: dict[str, str]) -> str:
    """Hash of every shard's name, size and sha256 (from extraction: read once), in order."""
    h = hashlib.sha256()
    for r in refs:
        h.update(f"{r.uri}|{r.size}|{checksums.get(r.uri, '')}\n".encode())
    return "shards:" + h.hexdigest()[:24]


# ---------------------------------------------------------------------------------------------- reading
def read_bytes(uri: str) -> bytes:
    """A shard's bytes (local path or URI); ShardError naming it when it cannot be read."""
    fs, inner = _filesystem(uri)
    try:
        with fs.open_input_stream(inner) as f:
            return f.readall()
    except OSError as exc:
        raise ShardError(f"{uri}: cannot read ({exc})") from exc


def read_shard(ref: ShardRef) -> ShardSamples:
    """Every sample of one shard, its problems, and the sha256 of the bytes read."""
    raw = read_bytes(ref.uri)
    out = ShardSamples(ref, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    if ref.kind == "parquet":
        _parquet_samples(raw, out)
    else:
        _tar_samples(raw, out)
    return out


def _tar_samples(raw: bytes, out: ShardSamples) -> None:
    """WebDataset grouping: consecutive members sharing a key form one sample; its image is the first IMAGE_EXTS."""
    groups: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_member(member.name)
                f = tar.extractfile(member)
                groups.setdefault(key, {})[ext] = f.read() if f is not None else b""
            tail = raw[tar.offset :]
        # tarfile stops quietly at a cut header; a whole archive ends in two zero blocks and nothing else
        if len(tail) < 1024 or tail.strip(b"\0"):
            raise tarfile.ReadError(f"{len(tail)} bytes after the last whole member are no end marker")
    except (tarfile.TarError, EOFError, OSError) as exc:
        out.errors.append(
            ("", f"{out.ref.uri}: truncated or corrupt tar after {len(groups)} samples ({exc})")
        )
    seen = set()
    for key, members in groups.items():
        if key in seen:  # tarfile gives members in order; a key split over two runs would be one group here
            continue
        seen.add(key)
        ext = next((e for e in IMAGE_EXTS if e in members), None)
        if ext is None:
            has = ", ".join(sorted(members)) or "nothing"
            out.errors.append((key, f"{out.ref.uri}:{key}: sample without an image (has {has})"))
            continue
        out.keys.append(key)
        out.data.append(members[ext])


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the path up to the first dot of the base name, the rest the extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _parquet_samples(raw: bytes, out: ShardSamples) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        out.errors.append(("", f"{out.ref.uri}: unreadable Parquet ({exc})"))
        return
    names = table.column_names
    col = next((c for c in PARQUET_IMAGE_COLUMNS if c in names), None)
    if col is None:
        out.errors.append(
            ("", f"{out.ref.uri}: no image column (looked for {', '.join(PARQUET_IMAGE_COLUMNS)})")
        )
        return
    key_col = next((c for c in PARQUET_KEY_COLUMNS if c in names), None)
    keys = table[key_col].to_pylist() if key_col else [f"{i:09d}" for i in range(table.num_rows)]
    for key, value in zip(keys, table[col].to_pylist()):
        data = value.get("bytes") if isinstance(value, dict) else value  # Hugging Face's Image: {bytes, path}
        if not data:
            out.errors.append((str(key), f"{out.ref.uri}:{key}: sample without an image (empty {col!r})"))
            continue
        out.keys.append(str(key))
        out.data.append(bytes(data))
