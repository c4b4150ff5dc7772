"""What a dataset's fingerprint was computed from, recorded when it is written and checked whenever it is read.

``dataset.json`` names a fingerprint that results and descriptors are keyed by; it stays true only while the
files it describes stay as they were. At write time the manifests' sha256 go into ``dataset.json``
(``integrity``) and every image's size, mtime and sha256 into ``files.csv``. At load time the manifests are
hashed again and every image is stat'ed; an image whose size or mtime moved is hashed and compared (a copied
folder with new mtimes is fine, a replaced image is not). Any difference refuses the dataset, naming the file
and what changed, so an edited ground truth or a swapped image can never reuse results under the old key.
``verify_dataset`` (``copybench data verify``) hashes every image, for bit rot the stat check cannot see.

Every manifest path must stay inside the dataset folder or its recorded ``images_root``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from copybench.io import atomic_write_text, file_sha256

from .errors import DatasetError

log = logging.getLogger(__name__)
LINKS_FILE = "links.csv"  # the symbolic links an import followed (see links.py)
MANIFESTS = ("references.csv", "queries.csv", "files.csv", LINKS_FILE)
FILES = "files.csv"
IMPORT_FORMATS = (
    "disc21",
    "copydays",
    "folder",
    "csv",
)  # importers.FORMATS, without importing pandas-heavy code


class DatasetChangedError(DatasetError):
    """The dataset's files no longer match what its fingerprint was computed from (message says what changed)."""


def compute_fingerprint(
    identity: dict, references: pd.DataFrame, queries: pd.DataFrame, digests: dict[str, str]
) -> str:
    """sha256 over the identity dict, the ground truth, stored params and the given content digests."""
    h = hashlib.sha256()
    h.update(json.dumps(identity, sort_keys=True).encode())
    for rid in references["reference_id"]:
        h.update(f"R|{rid}|{digests.get('R:' + rid, '')}\n".encode())
    cols = ["query_id", "reference_id", "family", "tier", "params"]
    for row in queries[cols].fillna("").itertuples(index=False):
        qid = row[0]
        h.update(("Q|" + "|".join(map(str, row)) + f"|{digests.get('Q:' + qid, '')}\n").encode())
    return h.hexdigest()


def check_inside(allowed: list[Path], manifest: Path, rel: str) -> Path:
    """The image path ``rel`` of ``manifest`` resolved lexically against ``allowed[0]`` (the images root),
    refused when it leaves every allowed folder (``../../etc/passwd``, an absolute path elsewhere)."""
    path = Path(os.path.normpath(allowed[0] / rel))
    for base in allowed:
        if path == base or base in path.parents:
            return path
    raise DatasetChangedError(
        f"{manifest}: path {rel!r} points outside the dataset folder and its images root "
        f"({', '.join(map(str, allowed))}): refused (a manifest may only name files inside them)"
    )


def record_files(root: Path, images_root: Path, rel_paths: list[str], digests: dict[str, str]) -> None:
    """files.csv: size, mtime and sha256 of each image (sha256 reused from ``digests`` by relative path)."""
    rows = []
    for rel in dict.fromkeys(rel_paths):
        path = images_root / rel
        try:
            st = path.stat()
        except OSError:  # listed but absent: it will count as unreadable, and must stay absent
            rows.append((rel, -1, -1, ""))
            continue
        rows.append((rel, st.st_size, st.st_mtime_ns, digests.get(rel) or file_sha256(path)))
    table = pd.DataFrame(rows, columns=["path", "size", "mtime_ns", "sha256"])
    atomic_write_text(root / FILES, table.to_csv(index=False))


def manifest_digests(root: Path) -> dict[str, str]:
    """sha256 of each manifest file present (written into dataset.json's ``integrity``)."""
    return {name: file_sha256(root / name) for name in MANIFESTS if (root / name).is_file()}


def check_manifests(root: Path, meta: dict) -> None:
    """Refuse a dataset whose manifests differ from the ones its fingerprint was computed from."""
    recorded = meta.get("integrity")
    if not recorded:  # removed, or written before integrity records: what it describes cannot be checked
        raise DatasetChangedError(
            f"{root / 'dataset.json'}: no integrity record, so edits to its manifests or images since its "
            f"fingerprint {meta.get('fingerprint', '')[:12]} was computed cannot be detected: refused; rebuild "
            f"or re-import it (copybench data build / data import fingerprint it afresh)"
        )
    for name, want in sorted(recorded.items()):
        path = root / name
        if not path.is_file():
            raise DatasetChangedError(f"{path}: missing (dataset.json records it): {_rebuild(root)}")
        if file_sha256(path) != want:
            raise DatasetChangedError(
                f"{path}: changed after the dataset was written (sha256 differs from dataset.json), so the "
                f"fingerprint {meta.get('fingerprint', '')[:12]} no longer describes it: {_rebuild(root)}"
            )


def check_import_fingerprint(root: Path, meta: dict, refs: pd.DataFrame, queries: pd.DataFrame) -> None:
    """Recompute an imported dataset's fingerprint from its manifests and the sha256 in files.csv, and refuse
    a mismatch: an edited ground truth is caught even where the integrity record was rewritten to match.
    (A built dataset's fingerprint hashes its source pixels, checked through files.csv instead.)"""
    if meta.get("format") not in IMPORT_FORMATS or "recipe" in meta or not (root / FILES).is_file():
        return
    files = pd.read_csv(root / FILES, dtype={"path": str, "sha256": str}, keep_default_na=False)
    sha = dict(zip(files["path"], files["sha256"]))
    digests = {f"R:{r}": sha.get(p, "") for r, p in zip(refs["reference_id"], refs["path"])}
    digests.update({f"Q:{q}": sha.get(p, "") for q, p in zip(queries["query_id"], queries["path"])})
    # imports written before import_version was recorded in dataset.json were all version 1
    version = meta.get("import_version", 1)
    identity = {"format": meta["format"], "import_version": version, "counts": meta.get("counts")}
    if meta.get("distractor_sets"):
        identity["distractor_sets"] = [d["count"] for d in meta["distractor_sets"]]
    if meta.get("shards"):
        from .shard_import import shard_identity

        identity["shards"] = shard_identity(meta["shards"])
    full = queries.assign(family=queries.get("family", ""), tier=queries.get("tier", ""))
    full = full.assign(params=queries.get("params", "{}"))
    recomputed = compute_fingerprint(identity, refs, full, digests)
    if recomputed != meta.get("fingerprint"):
        raise DatasetChangedError(
            f"{root}: fingerprint {str(meta.get('fingerprint'))[:12]} does not match what its references.csv, "
            f"queries.csv and files.csv describe ({recomputed[:12]}): they were edited after the import: "
            f"{_rebuild(root)}"
        )


def _rebuild(root: Path) -> str:
    return f"rebuild or re-import the dataset instead of editing {root}"


@dataclass(frozen=True)
class FileChange:
    """One image that differs from its record: ``what`` is 'missing' or 'content changed'."""

    path: str
    what: str


def changed_files(root: Path, images_root: Path, *, full: bool = False) -> list[FileChange]:
    """Images whose content differs from files.csv; only those whose stat moved are hashed unless ``full``."""
    if not (root / FILES).is_file():
        return []
    table = pd.read_csv(root / FILES, dtype={"path": str, "sha256": str}, keep_default_na=False)
    changes = []
    for rel, size, mtime, sha in table[["path", "size", "mtime_ns", "sha256"]].itertuples(index=False):
        path = images_root / rel
        try:
            st = path.stat()
        except OSError:
            if sha:
                changes.append(FileChange(str(path), "missing"))
            continue
        if not sha:
            changes.append(FileChange(str(path), "appeared (it was absent when the dataset was written)"))
            continue
        if (full or st.st_size != size or st.st_mtime_ns != mtime) and file_sha256(path) != sha:
            changes.append(FileChange(str(path), "content changed"))
    return changes


def check_files(root: Path, images_root: Path) -> None:
    """Refuse a dataset one of whose images was replaced, edited or removed since it was written."""
    changes = changed_files(root, images_root)
    if changes:
        listed = "; ".join(f"{c.path}: {c.what}" for c in changes[:5])
        more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
        raise DatasetChangedError(
            f"{root}: {len(changes)} image(s) differ from what the dataset was written with: {listed}{more}; "
            f"its results and cached descriptors would describe other images: {_rebuild(root)}"
        )


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of ``copybench data verify``: the problems found (empty when the dataset is intact)."""

    root: Path
    n_files: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_dataset(path: str | Path) -> VerifyReport:
    """Hash every manifest and every image of a dataset and compare them with the records written with it (and,
    for an import, its fingerprint with the one its manifests give)."""
    root = Path(path).expanduser().resolve()
    meta = json.loads((root / "dataset.json").read_text())
    images_root = (root / meta.get("images_root", ".")).resolve()
    problems: list[str] = []
    try:
        check_manifests(root, meta)  # refuses a missing integrity record too
        tables = [pd.read_csv(root / n, dtype=str, keep_default_na=False) for n in MANIFESTS[:2]]
        check_import_fingerprint(root, meta, *tables)
    except DatasetChangedError as exc:
        problems.append(str(exc))
    changes = changed_files(root, images_root, full=True)
    problems += [f"{c.path}: {c.what}" for c in changes]
    n = len(pd.read_csv(root / FILES)) if (root / FILES).is_file() else 0
    return VerifyReport(root, n, tuple(problems))
