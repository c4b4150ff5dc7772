"""The on-disk copy dataset every stage reads: built recipes and imported real datasets alike.

Layout of a dataset folder::

    dataset.json     schema, name, recipe, seed, counts, fingerprint, images_root, pixel digest, integrity
                     (sha256 of the three CSV files below: an edited manifest is refused on load)
    references.csv   reference_id, path                      (path relative to images_root)
    queries.csv      query_id, path, reference_id, family, tier, params
                     reference_id: the matching reference ids joined by '|', empty for a distractor
                     params: JSON of the applied transformation parameters (for replay)
    files.csv        path, size, mtime_ns, sha256 of every image (what the fingerprint describes; see integrity.py)
    references/ queries/ contact_sheet.png   (for built datasets)

The ``fingerprint`` identifies what the dataset *is*: its recipe, seed, ground truth, stored parameters and the
content of its source/reference files. It is what results are keyed by. Built datasets hash their sources and
parameters rather than their generated pixels, so the same recipe and seed give the same fingerprint on CPU or
GPU, whose float rounding may move a generated pixel by one level; ``pixels_sha256`` records the generated
files themselves for integrity checks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from copybench.io import atomic_write_text

from .errors import DatasetError  # defined below integrity.py, which raises it too; offered here as before
from .integrity import (  # compute_fingerprint lives there (the load checks recompute it); offered here as before
    check_files,
    check_import_fingerprint,
    check_inside,
    check_manifests,
    compute_fingerprint,
    manifest_digests,
    record_files,
)

__all__ = [
    "CopyDataset",
    "DatasetError",
    "compute_fingerprint",
    "load_dataset",
    "split_ids",
    "write_dataset_index",
]

DATASET_SCHEMA = 1
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class CopyDataset:
    """References, queries and ground truth of one dataset folder."""

    root: Path
    meta: dict
    references: pd.DataFrame  # reference_id, path (absolute)
    queries: pd.DataFrame  # query_id, path (absolute), reference_id, family, tier, params
    positives: dict[str, frozenset[str]] = field(repr=False)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def reference_ids(self) -> list[str]:
        return self.references["reference_id"].tolist()

    @property
    def query_ids(self) -> list[str]:
        return self.queries["query_id"].tolist()

    def counts(self) -> dict[str, int]:
        """references, queries, distractors (queries without a match), and distractor_references (references
        added with ``--distractors``) when there are any."""
        n_dis = sum(1 for q in self.query_ids if not self.positives.get(q))
        out = {"references": len(self.references), "queries": len(self.queries), "distractors": n_dis}
        n_dref = self.meta.get("counts", {}).get("distractor_references")
        if n_dref:
            out["distractor_references"] = int(n_dref)
        return out


def split_ids(value: object) -> frozenset[str]:
    """Parse the '|'-joined reference ids of a manifest cell (empty or NaN: a distractor)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return frozenset()
    return frozenset(str(value).split("|"))


def write_dataset_index(
    root: str | Path,
    meta: dict,
    references: pd.DataFrame,
    queries: pd.DataFrame,
    file_digests: dict[str, str] | None = None,
) -> None:
    """Write references.csv, queries.csv, files.csv and dataset.json (last, atomically: its presence marks a
    complete dataset). ``file_digests``: sha256 of image files already hashed, by manifest path."""
    root = Path(root)
    for col in ("family", "tier", "params"):
        if col not in queries:
            queries = queries.assign(**{col: "" if col != "params" else "{}"})
    atomic_write_text(root / "references.csv", references[["reference_id", "path"]].to_csv(index=False))
    cols = ["query_id", "path", "reference_id", "family", "tier", "params"]
    atomic_write_text(root / "queries.csv", queries[cols].to_csv(index=False))
    images_root = (root / meta.get("images_root", ".")).resolve()
    paths = [*references["path"], *queries["path"]]
    record_files(root, images_root, [str(p) for p in paths], file_digests or {})
    meta = {"schema": DATASET_SCHEMA, **meta, "integrity": manifest_digests(root)}
    atomic_write_text(root / DATASET_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_dataset(path: str | Path) -> CopyDataset:
    """Read a dataset folder written by ``copybench data build`` or ``copybench data import``."""
    root = Path(path).expanduser().resolve()
    meta_file = root / DATASET_FILE
    if not meta_file.is_file():
        raise DatasetError(
            f"not a copybench dataset: {meta_file} is missing (build one with `copybench data build`)"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_file} is not valid JSON: {exc}") from exc
    if meta.get("schema") != DATASET_SCHEMA:
        raise DatasetError(
            f"{meta_file}: unknown dataset schema {meta.get('schema')!r} (this copybench reads {DATASET_SCHEMA})"
        )
    images_root = (root / meta.get("images_root", ".")).resolve()
    check_manifests(root, meta)  # before anything is read from them: an edited manifest is refused
    # manifest paths may only name files in the dataset folder, its images root or its distractor folders
    # (distractor folders are recorded relative to the images root; older imports recorded them absolute)
    sets = [Path(os.path.normpath(images_root / d["path"])) for d in meta.get("distractor_sets", [])]
    allowed = [images_root, root, *sets]
    refs = _read_table(root / "references.csv", ["reference_id", "path"])
    queries = _read_table(root / "queries.csv", ["query_id", "path", "reference_id"])
    check_import_fingerprint(root, meta, refs, queries)
    for table, name in ((refs, "references.csv"), (queries, "queries.csv")):
        table["path"] = [str(check_inside(allowed, root / name, p)) for p in table["path"]]
    check_files(root, images_root)
    for col, default in (("family", ""), ("tier", ""), ("params", "{}")):
        queries[col] = queries[col].fillna(default) if col in queries else default
    positives = {q: split_ids(r) for q, r in zip(queries["query_id"], queries["reference_id"])}
    _check_ids(meta_file, refs, queries, positives)
    return CopyDataset(root, meta, refs, queries, positives)


def _read_table(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"dataset file missing: {path}")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def _check_ids(meta_file: Path, refs: pd.DataFrame, queries: pd.DataFrame, positives: dict) -> None:
    for kind, ids in (("reference", refs["reference_id"]), ("query", queries["query_id"])):
        dup = ids[ids.duplicated()]
        if len(dup):
            raise DatasetError(f"{meta_file.parent}: duplicate {kind} id {dup.iloc[0]!r}")
    known = set(refs["reference_id"])
    for q, pos in positives.items():
        unknown = pos - known
        if unknown:
            raise DatasetError(f"{meta_file.parent}: query {q!r} names unknown reference {min(unknown)!r}")
