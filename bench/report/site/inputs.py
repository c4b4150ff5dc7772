"""The result files a site is built from: what goes on it, and every file left out with the reason.

Nothing is dropped or merged silently. A file is left out (and listed on the site's "not included" page) when it
is unreadable, of another schema version, of a kind no page shows, records an unknown or self-contradicting
protocol, or shares its key with another file: identical copies keep the first, conflicting ones are all left
out (which of them is right cannot be told from the files).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from copybench.results import SCHEMA_VERSION, Result, ResultError, iter_result_files

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The inputs hold nothing to publish, or name a path that does not exist (exit 2)."""


@dataclass(frozen=True)
class Included:
    """A result on the site: its record, the name it is shown under and its copy among the downloads."""

    result: Result
    label: str  # <input folder name>/<path inside it>: the same on every machine
    raw: str  # site-relative path of the copied file


@dataclass(frozen=True)
class Excluded:
    """A file left out of the site and why."""

    label: str
    reason: str


@dataclass
class SiteInputs:
    accuracy: list[Included] = field(default_factory=list)
    throughput: list[Included] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)

    @property
    def included(self) -> list[Included]:
        return sorted(self.accuracy + self.throughput, key=lambda i: i.raw)


def sha256(data: bytes) -> str:
    """The hex sha256 of a file's bytes (the manifest's and the downloads page's)."""
    return hashlib.sha256(data).hexdigest()


def _files(paths: list[str | Path]) -> list[tuple[Path, str, str]]:
    """(file, label, raw prefix) of every result JSON under the inputs, in the order given, each file once."""
    seen, prefixes, out = set(), set(), []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"no such results file or folder: {path}")
        root = path.resolve() if path.is_dir() else path.resolve().parent
        prefix, n = root.name or "results", 2
        while prefix in prefixes:  # two inputs named alike get their own download folders
            prefix, n = f"{root.name}-{n}", n + 1
        prefixes.add(prefix)
        for file in iter_result_files(path):
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            # named where it was found: a linked file's target may lie outside the input folder
            rel = file.relative_to(path if path.is_dir() else path.parent).as_posix()
            out.append((file, f"{root.name}/{rel}", prefix + "/" + rel))
    return out


def _read(file: Path, label: str) -> Result | str:
    """The record, or why the file cannot be on the site."""
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"unreadable: {exc}"
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
        return (
            f"schema version {data.get('schema_version')!r}, this copybench reads {SCHEMA_VERSION}: "
            "results of two schemas are never merged"
        )
    try:
        result = Result.from_dict(data, file)
    except (ResultError, TypeError) as exc:
        return f"not a result file: {str(exc).removeprefix(f'{file}: ')}"
    return _misfit(result) or result


def _misfit(result: Result) -> str | None:
    """Why a readable result has no place on the site (None: it has one)."""
    from copybench.protocols import PROTOCOLS

    if result.kind == "scale":
        return "a scale result (memory at a size): no page of the site shows this kind"
    if result.kind == "throughput":
        return None if result.environment.get("device_name") else "a throughput result naming no device"
    if not result.fingerprint:
        return "an accuracy result naming no dataset fingerprint"
    in_key, in_settings = (
        result.key.get("protocol"),
        result.settings.get("protocol", result.key.get("protocol")),
    )
    if in_key != in_settings:
        return f"protocol {in_key!r} in its key but {in_settings!r} in its settings: which one ran is unknown"
    if in_key not in PROTOCOLS:
        return f"unknown protocol {in_key!r} (this copybench knows {', '.join(PROTOCOLS)})"
    return None


def _untrusted(result: Result, datasets: dict) -> str | None:
    """Why a result's numbers cannot be published as computed (None: they can, or cannot be checked here,
    which is logged): :mod:`copybench.verify`'s cheap check, as ``table`` and ``check`` run it."""
    from copybench.verify import metric_problems, verify_result, warn_unverified

    problems = metric_problems(result)
    if problems:
        return "invalid metric values: " + "; ".join(problems)
    check = verify_result(result, datasets=datasets)
    warn_unverified([check])
    if check.disagreements:
        return "its numbers are not what its predictions give: " + "; ".join(check.disagreements[:3])
    return None


def _identity(result: Result) -> str:
    return json.dumps([result.kind, result.key], sort_keys=True, default=str)


def collect(paths: list[str | Path], *, verify: bool = True) -> SiteInputs:
    """Read every result file under ``paths``; raises :class:`InputError` when there is none. ``verify``:
    an accuracy result whose metrics are invalid or not what its predictions give is left out (named)."""
    files = _files(paths)
    if not files:
        raise InputError(f"no result files (*.json) under {', '.join(str(p) for p in paths)}")
    inputs, by_key, datasets = SiteInputs(), {}, {}
    for file, label, raw in files:
        read = _read(file, label)
        if verify and isinstance(read, Result):
            read = _untrusted(read, datasets) or read
        if isinstance(read, str):
            inputs.excluded.append(Excluded(label, read))
        else:
            by_key.setdefault(_identity(read), []).append(Included(read, label, "data/raw/" + raw))
    for same in by_key.values():
        for item in _deduplicate(same, inputs.excluded):
            (inputs.accuracy if item.result.kind == "accuracy" else inputs.throughput).append(item)
    inputs.accuracy.sort(key=lambda i: i.label)
    inputs.throughput.sort(key=lambda i: i.label)
    inputs.excluded.sort(key=lambda e: e.label)
    for item in inputs.excluded:
        log.info("not included in the site: %s: %s", item.label, item.reason)
    return inputs


def _deduplicate(same: list[Included], excluded: list[Excluded]) -> list[Included]:
    """Files sharing one key: identical copies keep the first; differing ones are all left out."""
    same = sorted(same, key=lambda i: i.label)
    if len(same) == 1:
        return same
    texts = {i.result.to_json() for i in same}
    if len(texts) == 1:
        excluded += [Excluded(i.label, f"duplicate of {same[0].label} (same content)") for i in same[1:]]
        return same[:1]
    for item in same:
        others = ", ".join(o.label for o in same if o is not item)
        excluded.append(
            Excluded(
                item.label, f"conflicting results for one key (also in {others}): publish only one of them"
            )
        )
    return []
