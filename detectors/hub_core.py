"""What every hub adapter shares: the resolved entry, the Hugging Face cache, weights-file checks, model cards.

Below the adapters (``hub_timm``, ``hub_open_clip``, ``hub_transformers``) and above the weights files
(:mod:`copybench.detectors.weightfiles`); it never imports an adapter. :mod:`copybench.detectors.hub` resolves
names through the adapters and re-exports these names, where they were first offered.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .bars import hub_bars
from .registry import DetectorSpec, UnknownDetectorError, WeightsMissingError
from .weightfiles import WeightsHashError, pin, unreachable, verify_file

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
# transformers model types whose last_hidden_state starts with a CLS token (the pooler, if any, is not DINO's)
CLS_TOKEN_TYPES = {"vit", "deit", "dinov2", "dinov2_with_registers", "vit_msn", "vit_mae", "dinov3_vit"}


@dataclass
class HubEntry:
    """A resolved hub name: spec, factory, where its weights are (offline) and how to fetch them."""

    spec: DetectorSpec
    factory: Callable
    locate: Callable[..., Path | None]  # (download=False, progress=True)
    fetch: Callable[..., tuple[Path, str, str]]
    origin: str = "hub"
    revision: str = ""

    def check(self, path: Path) -> str:
        """sha256 of the weights file, checked against the hub's content address and the lock file's pin (pinned
        on first use, as pip's hash-checking mode: a later revision with other weights is refused, not used).
        A sharded checkpoint's index is checked with every shard it names."""
        revision = self.revision or path.parent.name
        for shard in shards(path):
            file_check(f"{self.spec.name}/{shard.name}", shard, revision)
        return file_check(f"{self.spec.name}/{path.name}", path, revision)


# ------------------------------------------------------------------------------------------------ HF cache
def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


# A hub name is checked before anything is made from it (a file name, a lock key, a cache path): at most
# MAX_HUB_NAME characters, and each part in the grammar of the library that owns it.
MAX_HUB_NAME = 200
MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")  # a timm model name, an open_clip architecture or tag
# Hugging Face repository ids: ORG/NAME, each 1-96 of [A-Za-z0-9_.-], not starting or ending with '.' or '-',
# no '--' or '..' (huggingface_hub's validate_repo_id rules)
REPO_PART = re.compile(r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?")
COMMIT = re.compile(r"[0-9a-f]{40}")


def shown(name: str) -> str:
    """A name as quoted in an error: whole when short, its start and length when not."""
    return repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"


def check_revision(rev: str, ident: str) -> None:
    """A revision is a commit hash or a branch or tag name (git's ref rules: no '..', no component starting
    with '.', no '//', not starting with '-' or '/', not ending with '/', '.' or '.lock'); anything else could
    name a path outside the cache."""
    if COMMIT.fullmatch(rev):
        return
    parts = rev.split("/")
    if (
        not 0 < len(rev) <= 128
        or not re.fullmatch(r"[\w./-]+", rev)
        or rev.startswith("-")
        or rev.endswith((".", ".lock"))
        or ".." in rev
        or any(not part or part.startswith(".") for part in parts)
    ):
        raise UnknownDetectorError(
            f"hub name {shown(ident)}: revision {shown(rev)} is not a commit hash, branch or tag name"
        )


def split_repo(ident: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (repo id, revision or None); anything else is a bad name."""
    repo, at, rev = ident.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(REPO_PART.fullmatch(p) and "--" not in p and ".." not in p for p in parts):
        raise UnknownDetectorError(f"hub name needs ORG/NAME[@REVISION], got {shown(ident)}")
    if at:
        check_revision(rev, ident)
    return repo, rev or None


def check_hub_name(name: str) -> None:
    """Refuse a malformed hub name (UnknownDetectorError, exit 2 on the command line) before it is used."""
    prefix, _, ident = name.partition(":")
    if len(name) > MAX_HUB_NAME:
        raise UnknownDetectorError(
            f"hub name {name[:60]!r}... is too long ({len(name)} characters, at most {MAX_HUB_NAME})"
        )
    if not ident:
        raise UnknownDetectorError(f"hub name {shown(name)} names no model")
    if prefix == "timm":
        if not MODEL_NAME.fullmatch(ident) or ".." in ident:
            raise UnknownDetectorError(
                f"hub name {shown(name)}: a timm model name holds letters, digits and '_', '.', '-' only "
                f"(a character it cannot hold is there)"
            )
    elif prefix == "open_clip":
        arch, _, tag = ident.partition("/")
        if not all(MODEL_NAME.fullmatch(p) and ".." not in p for p in (arch, tag)):
            raise UnknownDetectorError(
                f"hub name {shown(name)}: open_clip names are open_clip:ARCH/TAG, each of letters, digits "
                f"and '_', '.', '-' (e.g. open_clip:ViT-B-32/openai)"
            )
    else:
        split_repo(ident)


def confined(path: Path, what: str) -> Path:
    """``path`` when it resolves inside the Hugging Face cache; a cache entry (a ref, a snapshot link, a shard
    index) pointing elsewhere is refused, never followed."""
    root = hf_cache_dir().resolve()
    if not path.resolve().is_relative_to(root):
        raise UnknownDetectorError(
            f"{what} {path} resolves to {path.resolve()}, outside the Hugging Face cache {root}: refusing it"
        )
    return path


def cached_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of ``repo`` at ``revision`` (a branch or tag through the cache's refs, or a commit) in
    the Hugging Face cache, however it got there and however complete: a cache filled by transformers' or timm's
    own loading holds only the files they read, which huggingface_hub's offline snapshot lookup rejects as
    incomplete. Whether the files a loader needs are there is checked by that loader."""
    from huggingface_hub.file_download import repo_folder_name

    root = hf_cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")
    rev = revision or "main"
    check_revision(rev, f"{repo}@{rev}")
    commit = rev if COMMIT.fullmatch(rev) else None
    if commit is None and (root / "refs" / rev).is_file():
        commit = (root / "refs" / rev).read_text(encoding="utf-8").strip()
        if not COMMIT.fullmatch(commit):
            raise UnknownDetectorError(
                f"{root / 'refs' / rev} holds {shown(commit)}, not a commit hash: the Hugging Face cache entry "
                f"of {repo} is damaged; delete {root} and fetch it again"
            )
    folder = root / "snapshots" / commit if commit else None
    if folder is None or not folder.is_dir():
        return None
    return confined(folder, f"the snapshot of {repo}")


def snapshot(
    repo: str,
    revision: str | None = None,
    *,
    download: bool = False,
    progress: bool = True,
    weights: tuple[str, ...] = (),
) -> Path | None:
    """The cached snapshot folder of ``repo`` (None when absent); with ``download``, fetched first unless it
    already holds weights (``weights``: the file names its loader reads, see _download_patterns), resumable,
    with ``progress`` bars on stderr."""
    from huggingface_hub import snapshot_download

    folder = cached_snapshot(repo, revision)
    if folder is not None and not download:
        return folder
    if folder is not None and (any((folder / w).is_file() for w in weights) or weights_file(folder)):
        return folder
    if not download:
        return None
    network_check(repo)
    try:
        with quiet_library_logs(not progress):
            patterns = _download_patterns(repo, revision, weights)
        with hub_bars(progress) as bars, quiet_library_logs(not progress):
            got = snapshot_download(
                repo,
                revision=revision,
                cache_dir=str(hf_cache_dir()),
                allow_patterns=patterns,
                tqdm_class=bars,
            )
    except (OSError, ValueError):
        raise
    except Exception as exc:
        raise OSError(
            f"cannot download {repo} from the Hugging Face hub: {type(exc).__name__}: {exc}"
        ) from exc
    return confined(Path(got), f"the snapshot of {repo}")


def hub_host() -> str:
    """The host huggingface_hub downloads from (its ENDPOINT: HF_ENDPOINT, else huggingface.co)."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    return urlsplit(constants.ENDPOINT).hostname or "huggingface.co"


def network_check(repo: str = "") -> None:
    """Fail at once when the hub cannot be reached by name (huggingface_hub would retry for half a minute)."""
    why = unreachable(hub_host())
    if why:
        raise OSError(
            f"cannot download {repo or 'from the Hugging Face hub'}: {why}; fetch it where there is network "
            f"and copy the Hugging Face cache ({hf_cache_dir()}) here, or point HF_HUB_CACHE at a copy"
        )


@contextmanager
def quiet_library_logs(quiet: bool):
    """With ``-q``, the hub library's own log lines (retries, warnings) are silenced; its errors still raise."""
    if not quiet:
        yield
        return
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _download_patterns(repo: str, revision: str | None, weights: tuple[str, ...] = ()) -> list[str]:
    """Configs plus one weights format (safetensors when published), never the TF / Flax / ONNX copies;
    ``weights``: the file names the loading library reads, in its order of preference (the first published one
    is fetched: a timm repository of a CLIP model also holds open_clip's copy of the weights)."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(repo, revision=revision)
    if (
        not weights and "open_clip_config.json" in files
    ):  # hf-hub: loads it through open_clip (_resolve_hf_hub)
        weights = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    wanted = next((w for w in weights if w in files), None)
    if wanted is None:
        top = any(f.endswith(".safetensors") and "/" not in f for f in files)
        wanted = "*.safetensors" if top else "*.bin"
    return ["*.json", "*.txt", "README.md", wanted]  # README.md: the model card (release date, licence)


def weights_file(folder: Path) -> Path | None:
    """The main weights file of a snapshot (safetensors first; sharded models: their index)."""
    for pattern in ("*.safetensors.index.json", "*.safetensors", "*.bin.index.json", "*.bin", "*.pth"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def shards(path: Path) -> list[Path]:
    """The shard files a ``*.index.json`` checkpoint index names (its ``weight_map``); [] for other files."""

    if not path.name.endswith(".index.json"):
        return []
    names = sorted(set(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}).values()))
    for n in names:  # a shard lies in the snapshot (a link into the cache's blobs), never elsewhere
        if Path(n).is_absolute() or ".." in Path(n).parts:
            raise UnknownDetectorError(
                f"{path} names the shard {shown(n)}, outside its snapshot: refusing it"
            )
    missing_shards = [n for n in names if not (path.parent / n).is_file()]
    if missing_shards:
        raise FileNotFoundError(f"{path.parent} lacks the shards {', '.join(missing_shards)} its index names")
    return [path.parent / n for n in names]


def file_check(key: str, path: Path, revision: str = "") -> str:
    """sha256 of a hub file, checked against the hub's content address (the HF cache names LFS blobs by their
    sha256) and against its pin in the weights lock, pinned on first use; a mismatch raises WeightsHashError."""
    from copybench.io import file_sha256

    if path.absolute().is_relative_to(hf_cache_dir().absolute()):  # a cached hub file: its link stays inside
        confined(path, f"the hub file {key}")
    digest = file_sha256(path)
    blob = path.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", blob) and digest != blob:
        raise WeightsHashError(f"{path} has sha256 {digest}, but the hub published {blob}: refusing it")
    if verify_file(key, path, digest) is None:
        pin(key, path, digest, revision=revision)
    return digest


def missing(name: str, what: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"no weights for detector {name!r} offline: {what}; fetch them with `copybench weights fetch {name}` "
        f"(or add --download); caches searched: {hf_cache_dir()}, torch hub checkpoints, ~/.cache/clip"
    )


# ------------------------------------------------------------------------------------------------ release dates
ARXIV_ID = re.compile(r"(?:arxiv\.org/(?:abs|pdf)/|arxiv:\s*)(\d{2})(\d{2})\.\d{4,5}", re.IGNORECASE)


def arxiv_release(text: str) -> tuple[str, str]:
    """(YYYY-MM, arXiv URL) when ``text`` cites exactly one arXiv paper (new-style ids encode the month of its
    first version); ("", "") when it cites none or several: which one introduced the weights is not said."""
    found = {(m[1], m[2]) for m in ARXIV_ID.finditer(text or "")}
    if len(found) != 1:
        return "", ""
    (yy, mm), full = found.pop(), ARXIV_ID.search(text)[0]
    ident = re.search(r"\d{4}\.\d{4,5}", full)[0]
    return f"20{yy}-{mm}", f"https://arxiv.org/abs/{ident}"


def card_release(folder: Path | None) -> tuple[str, str]:
    """The release month a cached repository's model card (README.md) states: a ``release_date`` in its YAML
    metadata, else the month of the one arXiv paper it cites; ("", "") otherwise (shown as unknown)."""
    card = folder / "README.md" if folder else None
    if card is None or not card.is_file():
        return "", ""
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(card) or {}
    except (ValueError, OSError) as exc:  # a malformed card: no date rather than a wrong one
        log.debug("unreadable model card %s: %s", card, exc)
        return "", ""
    date = str(meta.get("release_date") or "")
    if re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", date):
        return date[:7], f"{card} (release_date)"
    return arxiv_release(card.read_text(encoding="utf-8", errors="replace"))


def card_license(folder: Path | None) -> str:
    """The ``license`` a cached repository's model card declares in its metadata ("" when none)."""
    card = folder / "README.md" if folder else None
    if card is None or not card.is_file():
        return ""
    from huggingface_hub.repocard import metadata_load

    try:
        value = (metadata_load(card) or {}).get("license") or ""
    except (ValueError, OSError):
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def release_fields(date: str, source: str) -> dict:
    """DetectorSpec keyword arguments for a release month and where it was read (when the spec records it)."""
    from dataclasses import fields

    out = {"release_date": date}
    if "release_source" in {f.name for f in fields(DetectorSpec)}:
        out["release_source"] = source
    return out
