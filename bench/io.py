"""Shared file I/O: image suffixes and listing, atomic writes, temporary folders, file hashes, file locks.

One home for what every stage (datasets, detectors, extraction, results, scan) needs, so each helper exists
once. Standard library only: importing it must stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def is_image_file(path: Path) -> bool:
    """A regular file whose suffix is one copybench decodes."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); NotADirectoryError when it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if is_image_file(p))


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A temporary folder beside its final place, with the mode mkdir would give it (mkdtemp makes 0700).

    Its name carries the creating pid (``PREFIX<pid>-<random>``), so a later call removes the folders of
    processes that died (``kill -9`` runs no cleanup) instead of leaving them behind forever."""
    remove_stale_temp_dirs(parent, prefix)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-"))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def remove_stale_temp_dirs(parent: Path, prefix: str) -> list[Path]:
    """Remove folders named ``PREFIX<pid>-*`` in ``parent`` whose process is gone; returns what was removed."""
    import shutil

    removed = []
    for path in Path(parent).glob(f"{glob_escape(prefix)}*-*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters quoted."""
    import glob

    return glob.escape(text)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (weights and source images can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write then rename, so an interrupted write never leaves a half file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, written atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside ``path`` (pid + random: concurrent writers never share one), renamed onto
    ``path`` when the block succeeds and removed when it fails, so no partial or orphan file is ever left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        Path(tmp).chmod(0o666 & ~current_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | Path, *, waiting: str = "") -> Iterator[None]:
    """Exclusive advisory lock (fcntl) on ``path`` for the block: where two processes write one entry, the
    second waits for the first instead of interleaving with it. ``waiting`` is logged when it has to wait.

    The lock file is removed on release, so no empty ``.lock`` files pile up beside results. A waiter that then
    holds the lock of a removed file notices (its inode is no longer the path's) and locks the path anew.
    """
    import fcntl
    import logging

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+b")  # noqa: SIM115 - held open across the yield, closed below
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                logging.getLogger(__name__).warning("%s (lock %s)", waiting, path)
            fcntl.flock(f, fcntl.LOCK_EX)
        if _same_file(f, path):
            break
        f.close()  # the holder before us removed this file on release: lock the one at the path now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _same_file(f, path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def cache_root() -> Path:
    """The one folder for every copybench cache: $COPYBENCH_CACHE, else ~/.cache/copybench.

    It holds ``descriptors/`` (descriptor cache of run, scan and study) and ``u2netp-masks/`` (saliency masks of
    data build). $COPYBENCH_CACHE_DIR, the masks' older variable, is still honoured."""
    env = os.environ.get("COPYBENCH_CACHE") or os.environ.get("COPYBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "copybench"


def portable_path(path: str | Path, base: str | Path) -> str:
    """``path`` as published in an output file written in folder ``base``: relative to ``base`` (POSIX
    separators) when the two share a folder below the filesystem root, else absolute (no relative path would
    be more portable). Moving or copying ``base`` together with ``path`` keeps the relative path valid."""
    target, base = Path(path).resolve(), Path(base).resolve()
    if Path(os.path.commonpath([target, base])) == Path(target.anchor):
        return str(target)
    return Path(os.path.relpath(target, base)).as_posix()
