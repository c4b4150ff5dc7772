"""Indexing real copy-detection datasets in place: DISC21, Copydays and a plain image folder.

The dataset folder written holds only the index (``images_root`` is the absolute source folder, every other
path is relative to it); its fingerprint hashes the image files' bytes, so results are keyed by what the files
really are. Before anything is written, what would corrupt the ground truth is refused or reported
(:mod:`.duplicates`: byte-identical references, a query identical to a reference it is not paired with,
near-duplicate distractors) and symbolic links are checked and recorded (:mod:`.links`). The new index is
loaded back before it replaces an earlier one at ``out``, so a refused import changes nothing there.

- DISC21: a query folder (``*quer*``), a reference folder (``*ref*``) and a ground-truth CSV
  ``query_id,reference_id`` (``*ground_truth*.csv`` or ``*gt*.csv``); an empty reference means no match. Ids
  are file stems (Q00001, R000001). Queries absent from the CSV are left out.
- Copydays: originals ``BBBB00.jpg`` in a folder named like ``original``; copies share the 4-digit block id in
  folders like ``crops/<percent>/``, ``jpegqual/<quality>/``, ``strong/``. family = copy type, tier = subfolder.
- folder: every image is a reference; no queries.
- csv: a manifest of the user's own benchmark, one row per (query, reference) pair: columns ``query``,
  ``reference`` (empty: the query has no match) and optional ``family``; paths are relative to the manifest's
  folder, or absolute inside it (one leaving it is refused before any file is read). A row with an empty query
  lists a reference only. Ids are the paths without extension.

Every format takes distractor references (``distractors``: folders, searched recursively): images added to the
reference set that match no query, e.g. Copydays + 10k distractors or DISC21 queries against 1M references.
Their ids are their paths under their folder (stems at the top level); one that clashes with another
reference id is refused by name, as is a folder given twice or inside another one given. They are counted
(``distractor_references``), listed in ``dataset.json`` and hashed into the fingerprint like every other
reference.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from copybench.io import IMAGE_SUFFIXES, atomic_write_text, file_sha256, make_temp_dir

from .dataset import (
    CopyDataset,
    compute_fingerprint,
    load_dataset,
    split_ids,
    write_dataset_index,
)
from .duplicates import NEAR_DUPLICATE_BITS, Item, near_duplicates, refuse_exact_duplicates
from .errors import SourceError
from .integrity import IMPORT_FORMATS, LINKS_FILE
from .links import LinkPolicy, walk_images
from .shard_import import images_folder, is_shards, materialize, remove_images, shard_identity
from .sources import image_id

log = logging.getLogger(__name__)
IMPORT_VERSION = 1
FORMATS = IMPORT_FORMATS


def _images(folder: Path) -> dict[str, Path]:
    """Images of ``folder`` by stem (the id); two files with one stem (a.jpg, a.png) are refused by name."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            _claim_stem(out, p.stem, p)
    return out


def _claim_stem(taken: dict[str, Path], stem: str, path: Path) -> None:
    if stem in taken:  # which one the ground truth means cannot be known: never pick one silently
        raise SourceError(f"ambiguous id {stem!r}: both {taken[stem]} and {path}; remove or rename one")
    taken[stem] = path


def _find_dir(src: Path, pattern: str) -> Path:
    hits = sorted(d for d in src.iterdir() if d.is_dir() and re.search(pattern, d.name, re.IGNORECASE))
    if not hits:
        raise SourceError(f"{src}: no folder matching {pattern!r}")
    if len(hits) > 1:
        raise SourceError(f"{src}: ambiguous, several folders match {pattern!r}: {', '.join(map(str, hits))}")
    return hits[0]


def _disc21(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    qdir, rdir = _find_dir(src, "quer"), _find_dir(src, "ref")
    gts = sorted(p for p in src.glob("*.csv") if re.search(r"ground_?truth|gt", p.name, re.IGNORECASE))
    if not gts:
        raise SourceError(f"{src}: no ground-truth CSV (*ground_truth*.csv, *groundtruth*.csv or *gt*.csv)")
    if len(gts) > 1:  # e.g. a backup beside the real one: using either silently could score the wrong truth
        raise SourceError(f"{src}: ambiguous, several ground-truth CSVs: {', '.join(map(str, gts))}")
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
    for path in walk_images(src):
        rel = path.relative_to(src)
        if not re.fullmatch(r"\d{6}", path.stem):
            log.warning("copydays: ignoring %s (not a 6-digit Copydays name)", rel)
            continue
        top = rel.parts[0].lower() if len(rel.parts) > 1 else "original"
        if "orig" in top:
            _claim_stem(refs, path.stem, rel)
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
        {"reference_id": image_id(p, src, taken), "path": str(p.relative_to(src))} for p in walk_images(src)
    ]
    if not rows:
        raise SourceError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)})")
    cols = ["query_id", "path", "reference_id", "family", "tier", "params"]
    return pd.DataFrame(rows), pd.DataFrame(columns=cols)


def import_dataset(
    fmt: str,
    src: str | Path,
    out: str | Path,
    progress: bool = True,
    distractors: Sequence[str | Path] = (),
    allow_outside_links: bool = False,
) -> CopyDataset:
    """Index the dataset at ``src`` (``fmt``: disc21, copydays, folder, csv) into the dataset folder ``out``,
    with the images under each ``distractors`` folder added as distractor references. Symbolic links are
    followed and recorded; one resolving outside ``src`` and the distractor folders is refused unless
    ``allow_outside_links`` (see :mod:`copybench.datasets.links`)."""
    if fmt not in FORMATS:
        raise SourceError(f"unknown dataset format {fmt!r}: known formats are {', '.join(FORMATS)}")
    if fmt == "folder" and is_shards(src):
        return _import_shards(str(src), out, progress, distractors, allow_outside_links)
    return _import(fmt, src, out, progress, distractors, allow_outside_links)


def _import(
    fmt, src, out, progress, distractors, allow_outside_links, shards: dict | None = None
) -> CopyDataset:
    src = Path(src).expanduser().resolve()
    refs, queries, root = _read_layout(fmt, src)
    own = len(refs)
    folders = _distractor_folders(distractors)
    refs, sets = add_distractors(refs, folders, root)
    out = Path(out).expanduser().resolve()
    _check_import_target(out, src)
    links = LinkPolicy([root, *folders], allow_outside_links)
    for rel in (*refs["path"], *queries["path"]):  # before any file is read
        links.admit(_under(root, rel))
    digests = _digests(root, refs, queries, progress)
    near = _check_duplicates(root, refs, own, queries, digests, progress)
    counts = {
        "references": len(refs),
        "queries": len(queries),
        "distractors": int((queries["reference_id"] == "").sum()),
    }
    identity = {"format": fmt, "import_version": IMPORT_VERSION, "counts": counts}
    if sets:  # only then, so imports without distractors keep their fingerprint
        counts["distractor_references"] = sum(n for _, n in sets)
        identity["distractor_sets"] = [n for _, n in sets]
    if shards:  # the shards the images came from: their names, sizes and checksums
        identity["shards"] = shard_identity(shards["shards"])
    meta = {"name": f"{fmt}:{src.stem if fmt == 'csv' else src.name}", "format": fmt, "counts": counts,
            "import_version": IMPORT_VERSION,
            "images_root": str(root), "fingerprint": compute_fingerprint(identity, refs, queries, digests)}  # fmt: skip
    if sets:
        meta["distractor_sets"] = [{"path": d, "count": n} for d, n in sets]
        meta["near_duplicate_check"] = {"hash": "phash64", "max_bits": NEAR_DUPLICATE_BITS}
        meta["near_duplicates"] = near
    if links.links:
        meta["links"] = {"count": len(links.links), "outside_allowed": allow_outside_links}
    if shards:
        meta["shards"], meta["shard_problems"] = shards["shards"], shards["problems"]
    return _write_import(out, meta, refs, queries, digests, links.rows(root))


def _import_shards(spec: str, out, progress: bool, distractors, allow_outside_links: bool) -> CopyDataset:
    """``data import folder SHARDS``: the shards' images written beside the index, then imported as a folder,
    with the shards (name, size, sha256) in the dataset record and its fingerprint."""
    out = Path(out).expanduser().resolve()
    dest = images_folder(out)
    record = materialize(spec, dest, progress)
    try:
        return _import("folder", dest, out, progress, distractors, allow_outside_links, shards=record)
    except BaseException:
        remove_images(dest)
        raise


def _read_layout(fmt: str, src: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """References, queries and the images root (paths in the tables are relative to it) of one layout."""
    if fmt == "csv":
        if not src.is_file():
            raise SourceError(f"manifest not found: {src}")
        return (*_manifest(src), src.parent)
    if not src.is_dir():
        raise SourceError(f"dataset folder not found: {src}")
    return (*{"disc21": _disc21, "copydays": _copydays, "folder": _folder}[fmt](src), src)


def _check_duplicates(
    root: Path, refs: pd.DataFrame, own: int, queries: pd.DataFrame, digests: dict[str, str], progress: bool
) -> list[dict]:
    """Refuse exact duplicates (by the sha256 just computed); the near-duplicate distractors, logged."""
    roles = ["reference"] * own + ["distractor"] * (len(refs) - own)
    items = [Item(role, r, _under(root, p), digests[f"R:{r}"])
             for role, r, p in zip(roles, refs["reference_id"], refs["path"])]  # fmt: skip
    items += [
        Item("query", q, _under(root, p), digests[f"Q:{q}"])
        for q, p in zip(queries["query_id"], queries["path"])
    ]
    positives = {q: split_ids(r) for q, r in zip(queries["query_id"], queries["reference_id"])}
    refuse_exact_duplicates(items, positives)
    near = near_duplicates(items[own : len(refs)], items[:own], progress)
    if near:
        listed = "; ".join(
            f"{p['distractor_path']} ~ {p['reference_path']} ({p['bits']} bits)" for p in near[:5]
        )
        log.warning(
            "%d near-duplicate distractor(s) (pHash within %d bits of a reference: a resized or re-encoded copy "
            "would be a true match the ground truth calls a miss): %s%s; listed in dataset.json "
            "(near_duplicates): remove them from the distractor folders",
            len(near), NEAR_DUPLICATE_BITS, listed, " ..." if len(near) > 5 else "",
        )  # fmt: skip
    return [{k: p[k] for k in ("distractor", "reference", "bits")} for p in near]


def _under(root: Path, rel: str) -> Path:
    """The file ``rel`` of the index (distractors: ``../DX/a.jpg``) as a plain path, for messages and reading."""
    return Path(os.path.normpath(root / rel))


def _write_import(
    out: Path,
    meta: dict,
    refs: pd.DataFrame,
    queries: pd.DataFrame,
    digests: dict[str, str],
    links: list[dict],
) -> CopyDataset:
    """Write the index beside ``out`` and load it back before it replaces anything: a refused or failed
    import leaves an earlier index at ``out`` as it was, and removes every folder it created."""
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, f".{out.name}.importing-")
    try:
        by_path = {rel: digests[f"R:{r}"] for r, rel in zip(refs["reference_id"], refs["path"])}
        by_path.update({rel: digests[f"Q:{q}"] for q, rel in zip(queries["query_id"], queries["path"])})
        if links:  # before the index: its integrity record covers links.csv too
            atomic_write_text(
                tmp / LINKS_FILE, pd.DataFrame(links, columns=["path", "target"]).to_csv(index=False)
            )
        write_dataset_index(tmp, meta, refs, queries, file_digests=by_path)
        load_dataset(tmp)  # every check a later run makes, before the old index is touched
        if out.exists():
            (out / "dataset.json").unlink(missing_ok=True)  # first: the old folder stops being a dataset
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # deepest first; only folders this import made, and only while still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return load_dataset(out)


def add_distractors(
    refs: pd.DataFrame, folders: Sequence[Path], root: Path
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """References plus the images of each distractor folder; (folder, count) per folder. Paths are relative
    to the images ``root`` like every other path of the index (``../distractors/x.jpg``), so only
    ``images_root`` names a folder of this machine and the whole tree can move."""
    taken = set(refs["reference_id"])
    rows, sets = [], []
    for folder in folders:
        paths = walk_images(folder)
        if not paths:
            raise SourceError(f"distractor folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in paths:
            rid = re.sub(
                r"[^A-Za-z0-9._-]+", "_", str(path.relative_to(folder).with_suffix("")).replace("/", "__")
            )
            if rid in taken:
                raise SourceError(
                    f"distractor {path}: id {rid!r} is already a reference or another distractor; "
                    "rename the file or move it into a subfolder"
                )
            taken.add(rid)
            rows.append({"reference_id": rid, "path": os.path.relpath(path, root)})
        sets.append((os.path.relpath(folder, root), len(paths)))
    if not rows:
        return refs, sets
    return pd.concat([refs, pd.DataFrame(rows)], ignore_index=True), sets


def _distractor_folders(folders: Sequence[str | Path]) -> list[Path]:
    """The folders, resolved; one given twice, or inside another one given, is refused by name (its images
    would be listed twice under two ids)."""
    out: list[Path] = []
    for given in folders:
        folder = Path(given).expanduser().resolve()
        if not folder.is_dir():
            raise SourceError(f"distractor folder not found: {folder}")
        for other in out:
            if folder == other:
                raise SourceError(f"--distractors {folder} given twice: give each folder once")
            if other in folder.parents or folder in other.parents:
                inner, outer = (folder, other) if other in folder.parents else (other, folder)
                raise SourceError(
                    f"--distractors {inner} is inside {outer}, also given: its images would be listed twice; "
                    "give only the outer folder"
                )
        out.append(folder)
    return out


_MANIFEST_COLUMNS = ("query", "reference")


def _manifest(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """References and queries of a CSV manifest: query, reference (empty: no match), optional family."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read the manifest ({exc})") from exc
    missing = [c for c in _MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise SourceError(
            f"{path}: need columns query,reference[,family], missing {', '.join(missing)} "
            f"(got {', '.join(table.columns)})"
        )
    if "family" not in table:
        table["family"] = ""
    root = path.parent
    ids: dict[str, str] = {}  # path relative to the manifest's folder -> id
    refs = _manifest_files(root, table["reference"], ids, path)
    queries = _manifest_files(root, table["query"], ids, path)
    positives: dict[str, set[str]] = {}
    families: dict[str, str] = {}
    for line, (q, r, fam) in enumerate(zip(table["query"], table["reference"], table["family"]), start=2):
        if not q:
            continue
        qid = queries[q]
        positives.setdefault(qid, set())
        if r:
            positives[qid].add(refs[r])
        if families.setdefault(qid, fam) != fam:
            raise SourceError(
                f"{path} line {line}: query {q!r} has two families ({families[qid]!r}, {fam!r})"
            )
    if not refs:
        raise SourceError(f"{path}: no references listed")
    rel = {rid: path for path, rid in ids.items()}
    q_rows = [{"query_id": qid, "path": rel[qid], "reference_id": "|".join(sorted(positives[qid])),
               "family": families[qid], "tier": "", "params": "{}"}
              for qid in sorted(set(queries.values()))]  # fmt: skip
    r_rows = [{"reference_id": rid, "path": rel[rid]} for rid in sorted(set(refs.values()))]
    return pd.DataFrame(r_rows, columns=["reference_id", "path"]), pd.DataFrame(
        q_rows, columns=["query_id", "path", "reference_id", "family", "tier", "params"]
    )


def _manifest_files(root: Path, cells, ids: dict[str, str], manifest: Path) -> dict[str, str]:
    """{path as written: id} for the non-empty cells; every file must exist under ``root``; a file is either
    role only. ``ids``: {path relative to root: id} over both roles, filled here."""
    out: dict[str, str] = {}
    for cell in cells:
        if not cell or cell in out:
            continue
        file = Path(os.path.normpath(root / cell))  # lexically: refused before the file is even looked at
        if not file.is_relative_to(root):
            raise SourceError(
                f"{manifest}: {cell!r} points outside the manifest's folder {root}: refused before reading it "
                "(a manifest names files under its own folder; put the manifest higher up)"
            )
        if not file.is_file():
            raise SourceError(f"{manifest}: {cell!r} not found (paths are relative to {root})")
        rel = file.relative_to(root)
        if str(rel) in ids:
            if ids[str(rel)] not in out.values():
                raise SourceError(f"{manifest}: {cell!r} is listed both as a query and as a reference")
            out[cell] = ids[str(rel)]  # the same file written two ways (./a.jpg, a.jpg): one image
            continue
        rid = re.sub(r"[^A-Za-z0-9._-]+", "_", str(rel.with_suffix("")).replace("/", "__"))
        if rid in out.values() or rid in ids.values():
            raise SourceError(f"{manifest}: two files map to the id {rid!r} ({cell!r}); rename one")
        ids[str(rel)] = rid
        out[cell] = rid
    return out


INDEX_FILES = frozenset({"dataset.json", "queries.csv", "references.csv", "files.csv", LINKS_FILE})


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
