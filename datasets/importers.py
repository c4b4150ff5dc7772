"""Indexing real copy-detection datasets in place: DISC21, Copydays and a plain image folder.

The dataset folder written holds only the index (``images_root`` is the absolute source folder); its
fingerprint hashes the image files' bytes, so results are keyed by what the files really are.

- DISC21: a query folder (``*quer*``), a reference folder (``*ref*``) and a ground-truth CSV
  ``query_id,reference_id`` (``*ground_truth*.csv`` or ``*gt*.csv``); an empty reference means no match. Ids
  are file stems (Q00001, R000001). Queries absent from the CSV are left out.
- Copydays: originals ``BBBB00.jpg`` in a folder named like ``original``; copies share the 4-digit block id in
  folders like ``crops/<percent>/``, ``jpegqual/<quality>/``, ``strong/``. family = copy type, tier = subfolder.
- folder: every image is a reference; no queries.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pandas as pd

from copybench.io import IMAGE_SUFFIXES, file_sha256, make_temp_dir

from .dataset import (
    CopyDataset,
    compute_fingerprint,
    load_dataset,
    write_dataset_index,
)
from .errors import SourceError
from .sources import image_id, list_images

log = logging.getLogger(__name__)
IMPORT_VERSION = 1
FORMATS = ("disc21", "copydays", "folder")


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _find_dir(src: Path, pattern: str) -> Path:
    hits = sorted(d for d in src.iterdir() if d.is_dir() and re.search(pattern, d.name, re.IGNORECASE))
    if not hits:
        raise SourceError(f"{src}: no folder matching {pattern!r}")
    return hits[0]


def _disc21(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    qdir, rdir = _find_dir(src, "quer"), _find_dir(src, "ref")
    gts = sorted(p for p in src.glob("*.csv") if re.search(r"ground_truth|gt", p.name, re.IGNORECASE))
    if not gts:
        raise SourceError(f"{src}: no ground-truth CSV (*ground_truth*.csv or *gt*.csv)")
    gt = pd.read_csv(gts[0], dtype=str, keep_default_na=False)
    if not {"query_id", "reference_id"} <= set(gt.columns):
        raise SourceError(f"{gts[0]}: need columns query_id,reference_id, got {', '.join(gt.columns)}")
    queries, refs = _images(qdir), _images(rdir)
    gt = gt.groupby("query_id", sort=True)["reference_id"].agg(lambda v: "|".join(sorted(x for x in v if x)))
    rows = []
    for qid, ref in gt.items():
        if qid not in queries:
            raise SourceError(f"{gts[0]}: query {qid!r} has no image in {qdir}")
        bad = [r for r in ref.split("|") if r and r not in refs]
        if bad:
            raise SourceError(f"{gts[0]}: query {qid!r} names reference {bad[0]!r}, not found in {rdir}")
        rows.append({"query_id": qid, "path": str(queries[qid].relative_to(src)), "reference_id": ref,
                     "family": "disc21", "tier": "", "params": "{}"})  # fmt: skip
    if not rows:
        raise SourceError(f"{gts[0]}: no query rows under the query_id,reference_id header")
    ref_rows = [{"reference_id": r, "path": str(p.relative_to(src))} for r, p in refs.items()]
    return pd.DataFrame(ref_rows, columns=["reference_id", "path"]), pd.DataFrame(rows)


_COPYDAYS_FAMILY = (("crop", "crop"), ("jpeg", "jpeg"), ("strong", "strong"))


def _copydays(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    refs, queries = {}, []
    for path in list_images(src):
        rel = path.relative_to(src)
        if not re.fullmatch(r"\d{6}", path.stem):
            log.warning("copydays: ignoring %s (not a 6-digit Copydays name)", rel)
            continue
        top = rel.parts[0].lower() if len(rel.parts) > 1 else "original"
        if "orig" in top:
            refs[path.stem] = rel
            continue
        family = next((f for key, f in _COPYDAYS_FAMILY if key in top), top)
        tier = rel.parts[1] if len(rel.parts) > 2 else ""
        queries.append((family, tier, path.stem, rel))
    if not refs:
        raise SourceError(f"{src}: no Copydays originals (BBBB00.jpg in a folder named like 'original')")
    rows = []
    for family, tier, stem, rel in queries:
        ref = f"{stem[:4]}00"
        if ref not in refs:
            raise SourceError(f"{src / rel}: its original {ref}.jpg is missing")
        qid = f"{family}_{tier}_{stem}" if tier else f"{family}_{stem}"
        rows.append({"query_id": qid, "path": str(rel), "reference_id": ref, "family": family, "tier": tier,
                     "params": "{}"})  # fmt: skip
    ref_rows = [{"reference_id": r, "path": str(p)} for r, p in sorted(refs.items())]
    return pd.DataFrame(ref_rows), pd.DataFrame(
        rows, columns=["query_id", "path", "reference_id", "family", "tier", "params"]
    )


def _folder(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    taken: set[str] = set()
    rows = [
        {"reference_id": image_id(p, src, taken), "path": str(p.relative_to(src))} for p in list_images(src)
    ]
    if not rows:
        raise SourceError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)})")
    cols = ["query_id", "path", "reference_id", "family", "tier", "params"]
    return pd.DataFrame(rows), pd.DataFrame(columns=cols)


def import_dataset(fmt: str, src: str | Path, out: str | Path, progress: bool = True) -> CopyDataset:
    """Index the dataset at ``src`` (``fmt``: disc21, copydays, folder) into the dataset folder ``out``."""
    if fmt not in FORMATS:
        raise SourceError(f"unknown dataset format {fmt!r}: known formats are {', '.join(FORMATS)}")
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise SourceError(f"dataset folder not found: {src}")
    refs, queries = {"disc21": _disc21, "copydays": _copydays, "folder": _folder}[fmt](src)
    digests = _digests(src, refs, queries, progress)
    counts = {
        "references": len(refs),
        "queries": len(queries),
        "distractors": int((queries["reference_id"] == "").sum()),
    }
    identity = {"format": fmt, "import_version": IMPORT_VERSION, "counts": counts}
    meta = {"name": f"{fmt}:{src.name}", "format": fmt, "counts": counts, "images_root": str(src),
            "fingerprint": compute_fingerprint(identity, refs, queries, digests)}  # fmt: skip
    out = Path(out).expanduser().resolve()
    _check_import_target(out, src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, f".{out.name}.importing-")
    try:
        by_path = {rel: digests[f"R:{r}"] for r, rel in zip(refs["reference_id"], refs["path"])}
        by_path.update({rel: digests[f"Q:{q}"] for q, rel in zip(queries["query_id"], queries["path"])})
        write_dataset_index(tmp, meta, refs, queries, file_digests=by_path)
        if out.exists():
            (out / "dataset.json").unlink(missing_ok=True)
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_dataset(out)


INDEX_FILES = frozenset({"dataset.json", "queries.csv", "references.csv", "files.csv"})


def _check_import_target(out: Path, src: Path) -> None:
    """Only an empty folder or an earlier import's index may be replaced: never images (least of all src's)."""
    if out == src or out in src.parents:
        raise SourceError(
            f"output {out} contains the source folder {src}; an import indexes files in place, "
            "so --out must be a separate folder"
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "dataset.json").is_file())):
        raise SourceError(f"output {out} exists and is not a copybench dataset: refusing to overwrite it")
    extra = sorted(p.name for p in out.iterdir() if p.name not in INDEX_FILES) if out.is_dir() else []
    if extra:
        raise SourceError(
            f"output {out} holds a built dataset ({', '.join(extra[:3])}...), not an import index: "
            "refusing to overwrite it; choose another --out"
        )


def _digests(src: Path, refs: pd.DataFrame, queries: pd.DataFrame, progress: bool) -> dict[str, str]:
    items = [(f"R:{r}", p) for r, p in zip(refs["reference_id"], refs["path"])]
    items += [(f"Q:{q}", p) for q, p in zip(queries["query_id"], queries["path"])]
    out = {}
    if progress:
        from rich.progress import track

        items_iter = track(items, description="hashing files", transient=True)
    else:
        items_iter = items
    for key, rel in items_iter:
        out[key] = file_sha256(src / rel)
    return out
