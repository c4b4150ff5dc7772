"""Descriptor cache folders for the Ray engine: a local folder, or a URI (``s3://``, ``gs://``, ``file://``)
mirrored file for file from a local staging folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- cache folders
def is_uri(cache_dir: str | Path | None) -> bool:
    """A cache location written through pyarrow's filesystems (``s3://``, ``gs://``, ``file://``...)."""
    return cache_dir is not None and "://" in str(cache_dir)


@contextmanager
def open_store(cache_dir: str | Path | None, key: str, n: int) -> Iterator:
    """The descriptor cache's shard store for ``key``: in memory, in a folder, or staged and mirrored to a URI."""
    from copybench.cache import ShardStore

    if not is_uri(cache_dir):
        with ShardStore(Path(cache_dir) / key if cache_dir is not None else None, n, key) as store:
            yield store
        return
    mirror = _Mirror(f"{str(cache_dir).rstrip('/')}/{key}", key)
    with ShardStore(mirror.pull(), n, key) as store:
        mirror.watch(store)
        try:
            yield store
        finally:
            mirror.push()


class _Mirror:
    """A local staging folder kept file-for-file equal to a folder on a pyarrow filesystem."""

    def __init__(self, uri: str, key: str) -> None:
        import tempfile

        import pyarrow.fs

        self.fs, self.remote = pyarrow.fs.FileSystem.from_uri(uri)
        self.local = Path(tempfile.gettempdir()) / "copybench-staging" / key
        self.pushed: set[str] = set()

    def _remote_files(self) -> dict[str, int]:
        import pyarrow.fs

        self.fs.create_dir(self.remote, recursive=True)
        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.remote))
        return {Path(i.path).name: i.size for i in infos if i.type == pyarrow.fs.FileType.File}

    def pull(self) -> Path:
        """Make the staging folder a copy of the remote one (finished shards, or the final arrays)."""
        self.local.mkdir(parents=True, exist_ok=True)
        remote = {n: s for n, s in self._remote_files().items() if not n.startswith(".")}
        for p in self.local.iterdir():
            if not p.name.startswith(".") and (p.name not in remote or p.stat().st_size != remote[p.name]):
                p.unlink()
        for name in remote:
            target = self.local / name
            if not target.exists():
                with self.fs.open_input_stream(f"{self.remote}/{name}") as src:
                    target.write_bytes(src.readall())
        self.pushed = set(remote)
        return self.local

    def watch(self, store) -> None:
        """Push after every shard the store flushes, so a killed run leaves its finished shards remotely."""
        flush = store.flush

        def flush_and_push() -> None:
            flush()
            self.push()

        store.flush = flush_and_push

    def push(self) -> None:
        """Upload new files (write then move, so readers never see half a file), delete the ones gone locally."""
        local = {p.name for p in self.local.iterdir() if p.is_file() and not p.name.startswith(".")}
        for name in sorted(local - self.pushed):
            tmp = f"{self.remote}/.{name}.part"
            with self.fs.open_output_stream(tmp) as dst:
                dst.write((self.local / name).read_bytes())
            self.fs.move(tmp, f"{self.remote}/{name}")
        for name in sorted(self.pushed - local):
            self.fs.delete_file(f"{self.remote}/{name}")
        self.pushed = local


# ---------------------------------------------------------------------------------------------- CLI helpers
