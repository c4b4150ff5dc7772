"""Fetching official weights files: resumable HTTP downloads checked against a published or pinned sha256.

Nothing here runs unless asked (``copybench weights fetch``, ``--download``, ``create_detector(download=True)``).

Integrity, as pip's hash-checking mode: a file with a published sha256 (the spec's ``sha256``, or the hash prefix
torchvision and timm put in file names, ``resnet50-0676ba61.pth``) must match it; a file without one has its
sha256 pinned in a lock file on first download (``$COPYBENCH_WEIGHTS_LOCK``, default
``$COPYBENCH_CACHE/weights.lock.json``), and every later fetch or load of that URL must match the pin. A file
that fails its check is deleted (download) or refused (load), never used.

Resuming: the download goes to ``<file>.part``; an interrupted one keeps it and the next fetch asks the server for
the remaining bytes (HTTP Range). A server that ignores Range restarts the file from zero.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from copybench.io import atomic_write_text, cache_root, file_sha256

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

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.sha256)


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
    if entry:
        rev = f" from revision {entry['revision']}" if entry.get("revision") else ""
        return Expected(entry["sha256"], f"pinned {entry.get('pinned', '')}{rev} in {lock_path()}")
    prefix = re.search(r"-([0-9a-f]{8,64})\.[a-z.]+$", url.rsplit("/", 1)[-1])
    return Expected(prefix[1], "published prefix") if prefix else None


def verify_file(url: str, path: Path, digest: str, published: str | None = None) -> Expected | None:
    """Raise WeightsHashError when ``path`` (hashing to ``digest``) fails the check for ``url``."""
    want = expected_sha256(url, published)
    if want is not None and not want.matches(digest):
        raise WeightsHashError(
            f"{path} has sha256 {digest}, but {url} must hash to {want.sha256} ({want.origin}): refusing it. "
            f"Delete the file and fetch it again, or remove its entry from the lock file if the publisher "
            f"really changed it."
        )
    return want


# ------------------------------------------------------------------------------------------------ download
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
    with open(part, "ab" if have else "wb") as out, _byte_bar(part.name, total, have, progress) as bar:
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


class _byte_bar:
    """A rich transfer bar on stderr (bytes, speed, time left); a no-op when progress is off."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self.progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
        columns += [TransferSpeedColumn(), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=Console(stderr=True), transient=False)
        self.progress.__enter__()
        task = self.progress.add_task(self.label, total=self.total, completed=self.done)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _bar_columns() -> list:
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

    return [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}")] + [
        TimeRemainingColumn()
    ]


class hub_bars:
    """A tqdm class for huggingface_hub's downloads whose bars are rows of one rich display on stderr, like
    copybench's own downloads (huggingface_hub draws tqdm bars only on a terminal); with ``enabled=False`` a
    silent one. ``with hub_bars(progress) as tqdm_class: snapshot_download(..., tqdm_class=tqdm_class)``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.progress = enabled, None

    def __enter__(self) -> type:
        import io

        from tqdm.std import tqdm

        if not self.enabled:
            return type("QuietTqdm", (tqdm,), {"__init__": _quiet_init})
        from rich.progress import Progress

        from copybench.progress import console

        self.progress = Progress(*_bar_columns(), console=console(stderr=True))
        self.progress.__enter__()
        board = self.progress

        class RichTqdm(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)  # huggingface_hub's bar group, which plain tqdm rejects
                super().__init__(*args, **{**kwargs, "file": io.StringIO(), "disable": False})

            def display(self, msg=None, pos=None):  # tqdm's drawing call: update this bar's rich row
                if not hasattr(self, "_row"):
                    self._row = board.add_task(self.desc or "", total=self.total, amount="")
                board.update(self._row, completed=self.n, total=self.total, description=self.desc or "",
                             amount=_amount(self.n, self.total, self.unit))  # fmt: skip
                return True

        return RichTqdm

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _quiet_init(self, *args, **kwargs) -> None:
    from tqdm.std import tqdm

    kwargs.pop("name", None)
    tqdm.__init__(self, *args, **{**kwargs, "disable": True})


def _amount(n: float, total: float | None, unit: str) -> str:
    """``12.3MB/45.0MB`` for bytes, ``3/7 files`` otherwise, as tqdm states them."""
    from tqdm.std import tqdm

    if unit == "B":
        size = tqdm.format_sizeof
        return f"{size(n)}B/{size(total)}B" if total else f"{size(n)}B"
    return f"{n:g}/{total:g} {unit}" if total else f"{n:g} {unit}"


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


# ------------------------------------------------------------------------------------------------ commands
# The ten pretrained baselines a new extractor is compared against: the extractors the replication paper's code
# loads (SSCD, DINO ViT-S/16, ViT-B/16, ViT-B/8 and ResNet-50, CLIP ViT-B/16, ViT-L/14 and RN50x16) plus the
# larger SSCD and Swin-B, named among the strongest. All download from their publishers' URLs.
BASELINES = (
    "sscd_disc_mixup",
    "sscd_disc_large",
    "dino_vits16",
    "dino_vitb16",
    "dino_vitb8",
    "dino_resnet50",
    "clip_vitb16.openai",
    "clip_vitl14.openai",
    "clip_rn50x16.openai",
    "swin_b.in1k",
)


@dataclass(frozen=True)
class FetchOutcome:
    """What ``fetch_weights`` did for one detector: fetched, present, skipped (nothing to fetch) or failed."""

    detector: str
    status: str
    path: str = ""
    sha256: str = ""
    message: str = ""
    runtime: bool = (
        False  # failed for the machine's reason (network, disk: exit 3), not the request's (exit 2)
    )


def expand_names(patterns: list[str]) -> list[str]:
    """Detector names from names, shell patterns and ``baselines`` (the ten baselines); unknown ones raise."""
    from .registry import UnknownDetectorError, get_spec, list_detectors

    names: list[str] = []
    for item in patterns:
        if item == "baselines":
            names += BASELINES
        elif item.startswith(("timm:", "open_clip:", "hf-hub:", "hf:")):
            names.append(item)  # resolved (and for hf-hub: / hf:, downloaded) by its library when fetched
        elif any(ch in item for ch in "*?[") and ":" not in item:
            found = list_detectors(item)
            if not found:
                raise UnknownDetectorError(f"detector pattern {item!r} matches nothing")
            names += found
        else:
            get_spec(item)
            names.append(item)
    return list(dict.fromkeys(names))


def fetch_weights(
    patterns: list[str], *, force: bool = False, progress: bool = True, on_error: str = "warn"
) -> list[FetchOutcome]:
    """Fetch the official weights of every matching detector (each file once).

    A failed file never stops the others. ``on_error``: ``"warn"`` (default) logs a warning naming the detector
    and the cause; ``"raise"`` raises the first failure's error; ``"return"`` only records it in the outcomes.
    """
    if on_error not in ("warn", "raise", "return"):
        raise ValueError(f"on_error must be warn, raise or return, got {on_error!r}")
    from .hub import fetch as fetch_hub
    from .hub import is_hub_name
    from .registry import get_spec

    outcomes, done = [], {}
    for name in expand_names(patterns):
        spec = None if is_hub_name(name) else get_spec(name)
        if spec is not None and not is_url(spec.weights):
            why = "parameter-free" if spec.parameter_free else f"weights from {spec.weights}"
            outcomes.append(FetchOutcome(name, "skipped", message=f"nothing to download ({why})"))
            continue
        key = name if spec is None else spec.weights  # variants sharing one file fetch (or fail) once
        if key not in done:
            try:  # hub names fetch through their own library, into its cache
                done[key] = (
                    fetch_hub(name, progress=progress)
                    if spec is None
                    else fetch_spec(spec, force=force, progress=progress)
                )
            except (OSError, ValueError, KeyError, WeightsMissingError) as exc:
                done[key] = exc
        if isinstance(done[key], Exception):
            error = done[key]
            runtime = isinstance(error, OSError) and not isinstance(error, FileNotFoundError)
            outcomes.append(FetchOutcome(name, "failed", message=str(error), runtime=runtime))
            _speak_up(name, done[key], on_error)
            continue
        path, digest, note = done[key]
        status = "fetched" if note.startswith("downloaded") else "present"
        outcomes.append(FetchOutcome(name, status, str(path), digest, note))
    return outcomes


def _speak_up(name: str, error: Exception, on_error: str) -> None:
    if on_error == "raise":
        raise error
    if on_error == "warn":
        log.warning("weights for %s not fetched: %s", name, error)


@dataclass(frozen=True)
class WeightsFileRow:
    """One detector's weights file as ``copybench weights list`` shows it."""

    detector: str
    file: str
    status: str  # present, missing, package, none
    size: int | None
    sha256: str
    check: str  # published, published prefix, pinned ..., unpinned, or ""
    source: str
    license: str


def list_weights(pattern: str = "*") -> list[WeightsFileRow]:
    """Every registered detector's weights file: where it is, its size, its sha256 and what checks it."""
    from .hub import is_hub_name
    from .load import find_weights
    from .registry import get_spec, list_detectors

    if is_hub_name(pattern):  # one hub model: its cached weights file, as the library would load it
        return [_hub_row(pattern)]
    rows = []
    for name in list_detectors(pattern):
        spec = get_spec(name)
        path = None if spec.parameter_free or spec.random_only else find_weights(spec)
        rows.append(_row(spec, path))
    return rows


def _hub_row(name: str) -> WeightsFileRow:
    from .registry import get_entry

    entry = get_entry(name)
    spec, path = entry.spec, entry.locate()
    digest = file_sha256(path) if path else ""
    pinned = read_lock().get(f"{name}/{path.name}") if path else None
    check = f"pinned {pinned['pinned']} in {lock_path()}" if pinned else "unpinned (pinned on first use)"
    if entry.revision:
        check += f"; revision {entry.revision}"
    status = "present" if path else "missing"
    size = path.stat().st_size if path else None
    return WeightsFileRow(
        name, path.name if path else "", status, size, digest, check, spec.weights, spec.license
    )


def _row(spec: DetectorSpec, path: Path | None) -> WeightsFileRow:
    size = path.stat().st_size if path else None
    if spec.parameter_free or spec.random_only:
        status, file = "none", ""
    elif is_url(spec.weights):
        status, file = ("present" if path else "missing"), spec.weights.rsplit("/", 1)[-1]
    else:
        status, file = ("package" if path else "missing"), (path.name if path else spec.weights)
    sha, check = "", ""
    if is_url(spec.weights):
        want = expected_sha256(spec.weights, spec.sha256)
        sha, check = (want.sha256, want.origin) if want else ("", "unpinned")
    elif path is not None:
        sha, check = file_sha256(path), "package file"
    return WeightsFileRow(
        spec.name, file, status, size, sha, check, spec.weights or "parameter-free", spec.license
    )
