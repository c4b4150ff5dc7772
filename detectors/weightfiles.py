"""Weights files: the sha256 lock, the check every file must pass, resumable HTTP downloads, the managed folder.

Nothing here runs unless asked (``copybench weights fetch``, ``--download``, ``create_detector(download=True)``).

Integrity, as pip's hash-checking mode: a file with a published sha256 (the spec's ``sha256``, or the hash prefix
torchvision and timm put in file names, ``resnet50-0676ba61.pth``) must match it; a file without one has its
sha256 pinned in a lock file on first download (``$COPYBENCH_WEIGHTS_LOCK``, default
``$COPYBENCH_CACHE/weights.lock.json``), and every later fetch or load of that URL must match the pin. A file
that fails its check is deleted (download) or refused (load), never used.

Resuming: the download goes to ``<file>.part``; an interrupted one keeps it and the next fetch asks the server for
the remaining bytes (HTTP Range). A server that ignores Range restarts the file from zero.

This module sits below the registry's users (fetch, locate, load, meta) and the hub adapters, which all read or
write weights files; it imports the registry's spec and errors, the progress bars and ``copybench.io``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from copybench.io import atomic_write_text, cache_root, file_sha256

from .bars import byte_bar
from .registry import DetectorSpec, WeightsMissingError

log = logging.getLogger(__name__)

LOCK_ENV = "COPYBENCH_WEIGHTS_LOCK"
LOCK_VERSION = 1
CHUNK = 1 << 20


class WeightsHashError(ValueError):
    """A weights file does not match its published or pinned sha256: it is refused."""


@dataclass(frozen=True)
class Expected:
    """What a file must hash to: the full sha256 or a published prefix, and where that value comes from."""

    sha256: str
    origin: str  # "published", "published prefix" or "pinned <date> in <lock file>"
    size: int | None = None  # bytes, as pinned (a lock entry records it)

    def matches(self, digest: str) -> bool:
        # only a prefix a publisher put in the file name is compared as a prefix; every full hash exactly
        return digest.startswith(self.sha256) if self.origin == "published prefix" else digest == self.sha256


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_url(weights: str) -> bool:
    return weights.startswith(("http://", "https://"))


def checkpoints_dir() -> Path:
    """Where downloaded official files live: torch hub's ``checkpoints`` folder (``$TORCH_HOME``).

    ``torch.hub.get_dir()`` once torch is imported (it honours ``torch.hub.set_dir``); before that, torch's own
    rule read from the environment, so looking for weights (``list detectors``) never imports torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def official_path(url: str) -> Path:
    """The managed location of the file behind ``url``."""
    return checkpoints_dir() / url.rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------------------ lock file
def lock_path() -> Path:
    """The lock file: ``$COPYBENCH_WEIGHTS_LOCK``, else ``weights.lock.json`` in the one cache root."""
    env = os.environ.get(LOCK_ENV)
    return Path(env).expanduser() if env else cache_root() / "weights.lock.json"


def read_lock() -> dict[str, dict]:
    """URL -> {sha256, size, file, pinned}; an unreadable or foreign lock file is an error, never ignored."""
    path = lock_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsHashError(f"weights lock file {path} is unreadable ({exc}); fix or delete it") from exc
    if not isinstance(data, dict) or data.get("schema_version") != LOCK_VERSION:
        raise WeightsHashError(f"weights lock file {path} is not a copybench lock of version {LOCK_VERSION}")
    return data.get("files", {})


def pin(url: str, path: Path, digest: str, *, revision: str = "") -> None:
    """Record ``digest`` as the sha256 every later use of ``url`` (or hub name and file) must match."""
    files = read_lock()
    files[url] = {
        "sha256": digest,
        "size": path.stat().st_size,
        "file": path.name,
        "pinned": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if revision:  # a hub file: the revision it was pinned from, named when a later one differs
        files[url]["revision"] = revision
    text = json.dumps({"schema_version": LOCK_VERSION, "files": files}, indent=1, sort_keys=True)
    atomic_write_text(lock_path(), text + "\n")
    log.info("pinned sha256 %s of %s in %s", digest, url, lock_path())


def expected_sha256(url: str, published: str | None = None) -> Expected | None:
    """The check a file from ``url`` must pass: published sha256, published name prefix, or the lock's pin."""
    if published:
        return Expected(published, "published")
    entry = read_lock().get(url)
    if entry is not None:
        return _pinned(url, entry)
    prefix = re.search(r"-([0-9a-f]{8,64})\.[a-z.]+$", url.rsplit("/", 1)[-1])
    return Expected(prefix[1], "published prefix") if prefix else None


def _pinned(url: str, entry: object) -> Expected:
    """A lock entry as the check it stands for; an entry that is not a full sha256 (empty, truncated, edited)
    or whose size is not a byte count is refused: it would otherwise match anything."""
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    size = entry.get("size") if isinstance(entry, dict) else None
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
        raise WeightsHashError(
            f"weights lock file {lock_path()}: the entry for {url} has sha256 {sha!r}, not 64 hex digits "
            f"(lower case): fix or delete that entry, then fetch again to pin it"
        )
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise WeightsHashError(
            f"weights lock file {lock_path()}: the entry for {url} has size {size!r}, not a byte count: "
            f"fix or delete that entry"
        )
    rev = f" from revision {entry['revision']}" if entry.get("revision") else ""
    return Expected(sha, f"pinned {entry.get('pinned', '')}{rev} in {lock_path()}", size)


def verify_file(url: str, path: Path, digest: str, published: str | None = None) -> Expected | None:
    """Raise WeightsHashError when ``path`` (hashing to ``digest``) fails the check for ``url``."""
    want = expected_sha256(url, published)
    if want is not None and want.size is not None and path.stat().st_size != want.size:
        raise WeightsHashError(
            f"{path} is {path.stat().st_size} bytes, but {url} was pinned at {want.size} bytes "
            f"({want.origin}): refusing it. Delete the file and fetch it again."
        )
    if want is not None and not want.matches(digest):
        raise WeightsHashError(
            f"{path} has sha256 {digest}, but {url} must hash to {want.sha256} ({want.origin}): refusing it. "
            f"Delete the file and fetch it again, or remove its entry from the lock file if the publisher "
            f"really changed it."
        )
    return want


# ------------------------------------------------------------------------------------------------ download
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def unreachable(host: str) -> str:
    """ "" when ``host`` resolves (or a proxy resolves for us), else why the network is unreachable: checked once
    before a library that would retry a failed look-up five times over half a minute is called."""
    if any(os.environ.get(v) for v in PROXY_VARS):
        return ""
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as exc:
        return f"the network is unreachable ({host} cannot be resolved: {exc.strerror})"
    return ""


def download(
    url: str, dest: Path, *, published: str | None = None, progress: bool = True, timeout: float = 60.0
) -> tuple[str, str]:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``), check or pin its sha256: (sha256, how checked)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_into(url, part, progress=progress, timeout=timeout)
    digest = file_sha256(part)
    try:
        want = verify_file(url, part, digest, published)
    except WeightsHashError:
        part.unlink()  # a wrong file cannot be resumed into a right one
        raise
    os.replace(part, dest)
    if want is not None and (want.origin == "published" or want.origin.startswith("pinned")):
        return digest, f"sha256 matches ({want.origin})"
    pin(url, dest, digest)  # no full published hash: this first download's hash is what later runs verify
    return digest, f"sha256 pinned in {lock_path()}" + (" (published prefix matches)" if want else "")


def _fetch_into(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """Append the missing bytes of ``url`` to ``part`` (Range request when part of it is already there)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise OSError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # no name resolution: offline, say so and what to do
            dest = part.with_name(part.name.removesuffix(".part"))
            raise OSError(
                f"cannot download {url}: the network is unreachable ({urlsplit(url).hostname} cannot be "
                f"resolved); download the file where there is network and put it at {dest}, or in "
                f"$COPYBENCH_WEIGHTS_DIR/ (copybench finds it there by its file name {dest.name})"
            ) from exc
        raise OSError(f"cannot download {url}: {exc.reason}") from exc
    with response:
        if have and response.status != 206:
            log.info("%s: server ignored the Range request; downloading from the start", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        _stream(response, part, have, total, url, progress)


def _stream(response, part: Path, have: int, total: int | None, url: str, progress: bool) -> None:
    written = have
    with open(part, "ab" if have else "wb") as out, byte_bar(part.name, total, have, progress) as bar:
        try:
            while block := response.read(CHUNK):
                out.write(block)
                written += len(block)
                bar(len(block))
        except OSError as exc:  # http.client.IncompleteRead, reset connections, timeouts
            raise OSError(
                f"download of {url} interrupted after {written} bytes ({exc}); the partial file {part} "
                f"is kept: fetch again to resume"
            ) from exc
    if total is not None and written != total:
        raise OSError(
            f"download of {url} stopped at {written} of {total} bytes; the partial file {part} is kept: "
            f"fetch again to resume"
        )


# ------------------------------------------------------------------------------------------------ specs
def fetch_spec(spec: DetectorSpec, *, force: bool = False, progress: bool = True) -> tuple[Path, str, str]:
    """The official file of ``spec`` in the managed folder: (path, sha256, what happened)."""
    if not is_url(spec.weights):
        raise WeightsMissingError(
            f"detector {spec.name!r} has no downloadable file (weights: {spec.weights or 'none'})"
        )
    dest = official_path(spec.weights)
    if dest.is_file() and not force:
        digest = file_sha256(dest)
        want = verify_file(spec.weights, dest, digest, spec.sha256)
        if want is None or want.origin == "published prefix":
            pin(spec.weights, dest, digest)
            return dest, digest, f"present, sha256 pinned in {lock_path()}"
        return dest, digest, f"present, sha256 matches ({want.origin})"
    digest, note = download(spec.weights, dest, published=spec.sha256, progress=progress)
    return dest, digest, f"downloaded, {note}"
