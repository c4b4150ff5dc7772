"""Building a synthetic copy dataset from a recipe, streaming queries to disk in batches, and replaying one.

A build writes into a hidden sibling folder and renames it into place at the end, so an interrupted build never
leaves a ``dataset.json`` beside incomplete files. Memory holds the source pool and one batch of queries.
The folder also keeps the held-out sources (``sources/``) and the masks (``masks/``) the queries were made
from, so :func:`replay_query` regenerates a query from the dataset folder alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from copybench.io import atomic_write_text, make_temp_dir, remove_stale_temp_dirs

from .dataset import (
    DATASET_FILE,
    CopyDataset,
    compute_fingerprint,
    load_dataset,
    write_dataset_index,
)
from .errors import MaskError, RecipeError, SourceError
from .params import PoolView, sample_query
from .recipes import RECIPE_VERSION, Recipe, parse_recipe
from .sources import Pool, SourceImage, load_pool
from .sweep import Sweep, make_sweep, sample_sweep_query

log = logging.getLogger(__name__)

BATCH = 32  # queries are rendered in fixed index chunks: replay recomputes exactly the batch a query was in


def pixel_digest(arr: np.ndarray) -> str:
    """sha256 of an image's shape and pixels."""
    return hashlib.sha256(str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes()).hexdigest()


def build_dataset(
    recipe: str,
    out: str | Path,
    *,
    sources: str | None = None,
    n_queries: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    cache_dir: str | Path | None = None,
    levels: int | None = None,
    severities: list[float] | None = None,
) -> CopyDataset:
    """Build recipe ``recipe`` (e.g. ``default-s``) into folder ``out`` and return the loaded dataset.
    ``cache_dir``: cache root for computed saliency masks (default: $COPYBENCH_CACHE or ~/.cache/copybench).
    ``levels`` / ``severities``: a sweep recipe's severity levels (default 8 over each axis's span)."""
    from .masks import use_cache_dir

    rec = parse_recipe(recipe, n_queries)
    sweep = _sweep_of(rec, levels, severities)
    out = Path(out).expanduser().resolve()
    _check_target(out)
    with use_cache_dir(cache_dir):
        pool = load_pool(sources, rec.max_references, need_masks=rec.needs_masks)
        if rec.family == "default" and pool.masks == "none":
            pool = _try_masks(pool)
    view = PoolView.of(pool)
    _check_pool(rec, pool, view, sweep)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out.parent, f".{out.name}.old-")  # a replaced folder a killed build left
    tmp = make_temp_dir(out.parent, f".{out.name}.building-")
    try:
        refs = _write_pool(tmp, pool)
        queries, pixels = _write_queries(tmp, rec, sweep, seed, pool, view, device, progress)
        meta = _meta(rec, sweep, seed, pool, refs, queries, pixels, device)
        write_contact_sheet(tmp, queries, pool)
        atomic_write_text(tmp / "skipped.txt", "".join(f"{n}\t{why}\n" for n, why in pool.skipped))
        write_dataset_index(tmp, meta, refs, queries)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if pool.skipped:
        log.warning(
            "%d unreadable source file(s) skipped: %s",
            len(pool.skipped),
            ", ".join(n for n, _ in pool.skipped),
        )
    return load_dataset(out)


BUILD_FILES = frozenset({DATASET_FILE, "queries.csv", "references.csv", "files.csv", "contact_sheet.png",
                         "skipped.txt", "references", "queries", "sources", "masks"})  # fmt: skip


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / DATASET_FILE).is_file())):
        raise SourceError(f"output {out} exists and is not a copybench dataset: refusing to overwrite it")
    if out.is_dir():  # a rebuild replaces the folder: only if it holds nothing but what a build writes
        foreign = sorted(p for p in out.iterdir() if p.name not in BUILD_FILES)
        foreign += sorted(p for sub in ("references", "queries", "sources", "masks") if (out / sub).is_dir()
                          for p in (out / sub).iterdir() if p.suffix != ".png" or not p.is_file())  # fmt: skip
        if foreign:
            listed = ", ".join(str(p) for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise SourceError(
                f"output {out} holds files a build did not write ({listed}): a rebuild replaces the whole "
                "folder, so refusing; move them out or choose another --out"
            )


def _try_masks(pool: Pool) -> Pool:
    # The demo recipe pastes segments when saliency masks are available and pastes boxes otherwise.
    from .sources import attach_masks

    try:
        attach_masks(pool)
    except MaskError:
        log.warning("no U2-Netp model: default recipe pastes boxes (cutmix) instead of segments")
    return pool


def _sweep_of(rec: Recipe, levels: int | None, severities: list[float] | None) -> Sweep | None:
    if rec.family == "sweep":
        return make_sweep(str(rec.axis), levels, severities)
    if levels is not None or severities is not None:
        raise RecipeError(
            f"--levels and --severities apply to sweep recipes (sweep-AXIS-SIZE), not {rec.name!r}"
        )
    return None


def _sweep_from_meta(meta: dict) -> Sweep | None:
    s = meta.get("sweep")
    return None if s is None else Sweep(tuple(s["axes"]), {a: tuple(v) for a, v in s["severities"].items()})


def _sampler(rec: Recipe, sweep: Sweep | None, seed: int, view: PoolView, paste_ok: bool):
    """index -> the parameters of query ``index``, for a sweep or any other recipe."""
    if sweep is not None:
        return lambda i: sample_sweep_query(rec, sweep, seed, i, view)
    return lambda i: sample_query(rec, seed, i, view, paste_ok)


def total_queries(rec: Recipe, sweep: Sweep | None) -> int:
    """Queries a build writes: a sweep has ``n_queries`` per level of each axis."""
    return rec.n_queries if sweep is None else rec.n_queries * sweep.n_levels * len(sweep.axes)


def _check_pool(rec: Recipe, pool: Pool, view: PoolView, sweep: Sweep | None = None) -> None:
    if sweep is not None and "paste" in sweep.axes and len(view.backgrounds) < 2:
        raise SourceError(
            f"sources {pool.spec!r}: the paste axis needs at least 2 held-out images for backgrounds"
        )
    if rec.needs_masks and not any(view.segments[i] for i in view.references):
        raise MaskError(f"sources {pool.spec!r}: no reference has a usable mask segment (>= 1% of the image)")
    if len(view.backgrounds) < 2 and rec.family in (
        "segmix",
        "segmix_hard",
        "segmix_resized",
        "cutmix",
        "default",
    ):
        raise SourceError(
            f"sources {pool.spec!r}: paste recipes need at least 2 held-out images for backgrounds"
        )


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _write_pool(root: Path, pool: Pool) -> pd.DataFrame:
    for sub in ("references", "sources", "masks"):
        (root / sub).mkdir()
    for s in pool.references:
        _save_png(root / "references" / f"{s.id}.png", s.rgb)
    for s in pool.by_id().values():
        if s.id not in {r.id for r in pool.references}:
            _save_png(root / "sources" / f"{s.id}.png", s.rgb)
        if s.mask is not None:
            _save_png(root / "masks" / f"{s.id}.png", s.mask)
    ids = [s.id for s in pool.references]
    return pd.DataFrame({"reference_id": ids, "path": [f"references/{i}.png" for i in ids]})


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import Progress

    return Progress(transient=True, console=Console(stderr=True))  # stdout is for results


def _write_queries(
    root, rec, sweep, seed, pool, view, device, progress
) -> tuple[pd.DataFrame, dict[str, str]]:
    from .render import cpu_pool, render

    (root / "queries").mkdir()
    by_id, sample = pool.by_id(), _sampler(rec, sweep, seed, view, pool.masks != "none")
    rows, pixels, total = [], {}, total_queries(rec, sweep)
    with _progress(progress) as bar:
        task = bar.add_task(f"building {rec.name}", total=total) if bar else None
        for start in range(0, total, BATCH):
            idx = range(start, min(start + BATCH, total))
            plist = [sample(i) for i in idx]
            qids = [f"Q{i:06d}" for i in idx]
            paths = [root / "queries" / f"{qid}.png" for qid in qids]
            # PNG encoding releases the GIL: the writes spread over the same threads as overlays and JPEG
            digests = cpu_pool(None).map(_write_query, paths, render(plist, by_id, device))
            for qid, p, digest in zip(qids, plist, digests):
                pixels[qid] = digest
                rows.append(_row(qid, p))
            if bar:
                bar.advance(task, len(idx))
    return pd.DataFrame(rows), pixels


def _write_query(path: Path, img: np.ndarray) -> str:
    """Write one query as PNG; returns its pixel digest (timed as the profile's ``write`` stage)."""
    from .render import account_stage

    t0 = time.perf_counter()
    _save_png(path, img)
    account_stage("write", time.perf_counter() - t0)
    return pixel_digest(img)


def _row(qid: str, p: dict) -> dict:
    return {
        "query_id": qid, "path": f"queries/{qid}.png", "reference_id": "" if p["distractor"] else p["source"],
        "family": p["family"], "tier": p["tier"], "params": json.dumps(p, sort_keys=True, separators=(",", ":")),
    }  # fmt: skip


def _meta(rec, sweep, seed, pool, refs, queries, pixels, device) -> dict:
    n_dis = int((queries["reference_id"] == "").sum())
    counts = {"references": len(refs), "queries": len(queries), "distractors": n_dis}
    identity = {
        "recipe": rec.name, "recipe_version": RECIPE_VERSION, "seed": int(seed), "counts": counts,
        "masks": pool.masks, "held_out": {s.id: s.digest() for s in (*pool.held_out, *pool.backgrounds)},
    }  # fmt: skip
    extra = {} if sweep is None else {"sweep": sweep.to_json()}  # other recipes' fingerprints unchanged
    digests = {f"R:{s.id}": s.digest() for s in pool.references}
    fingerprint = compute_fingerprint({**identity, **extra}, refs, queries, digests)
    pix = hashlib.sha256("".join(f"{q}:{d}\n" for q, d in sorted(pixels.items())).encode()).hexdigest()
    return {
        "name": f"{rec.name}.seed{seed}", "recipe": rec.name, "recipe_version": RECIPE_VERSION, "seed": int(seed),
        "n_queries": rec.n_queries, "counts": counts, "fingerprint": fingerprint, "pixels_sha256": pix,
        "device": str(device), "images_root": ".", "sources": pool.spec, "masks": pool.masks,
        "skipped": [n for n, _ in pool.skipped], "batch": BATCH,
        "reference_origins": {s.id: s.origin for s in pool.references},
        "held_out": [s.id for s in pool.held_out], "backgrounds": [s.id for s in pool.backgrounds], **extra,
    }  # fmt: skip


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        (out / DATASET_FILE).unlink(missing_ok=True)  # first: the old folder stops being a dataset
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{os.urandom(4).hex()}")  # cleaned if we die
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# --- contact sheet -----------------------------------------------------------------------------------------


def write_contact_sheet(root: Path, queries: pd.DataFrame, pool: Pool, n: int = 12, side: int = 160) -> None:
    """contact_sheet.png: sample copies (one per family first) beside their sources; distractors marked."""
    from PIL import ImageDraw

    picks = _sheet_picks(queries, n)
    by_id = pool.by_id()
    sheet = Image.new("RGB", (2 * (side + 8) * 2, (side + 22) * ((len(picks) + 1) // 2) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (_, row) in enumerate(picks.iterrows()):
        p = json.loads(row["params"])
        x0, y0 = (k % 2) * 2 * (side + 8) + 4, (k // 2) * (side + 22) + 4
        q = Image.open(root / row["path"]).convert("RGB")
        s = Image.fromarray(by_id[p["source"]].rgb)
        for j, img in enumerate((q, s)):
            img.thumbnail((side, side))
            sheet.paste(img, (x0 + j * (side + 4), y0))
        tag = "distractor" if p["distractor"] else "copy"
        tier = p["tier"] or (f"{p['sweep']['severity']:g}" if p.get("sweep") else "")
        draw.text((x0, y0 + side + 4), f"{row['query_id']} {p['family']} {tier} {tag}"[:44], fill="black")
    buf = root / ".contact_sheet.tmp.png"
    sheet.save(buf, format="PNG")
    os.replace(buf, root / "contact_sheet.png")


def _sheet_picks(queries: pd.DataFrame, n: int) -> pd.DataFrame:
    if len(queries) and queries["family"].str.startswith("sweep_").all():
        # a sweep's level 0 is the untouched source: show each axis at its most severe level instead
        level = queries["params"].map(lambda p: json.loads(p)["sweep"]["level"])
        queries = queries[level == level.max()]
    first = queries.drop_duplicates("family")
    rest = queries.drop(first.index)
    return pd.concat([first, rest]).head(n)


# --- replay ------------------------------------------------------------------------------------------------


def _pool_from_folder(ds: CopyDataset) -> Pool:
    root = ds.root

    def load(sid: str, sub: str) -> SourceImage:
        rgb = np.array(Image.open(root / sub / f"{sid}.png").convert("RGB"), dtype=np.uint8)
        mpath = root / "masks" / f"{sid}.png"
        mask = np.asarray(Image.open(mpath), dtype=np.uint8) if mpath.is_file() else None
        return SourceImage(sid, sid, rgb, mask)

    refs = [load(r, "references") for r in ds.reference_ids]
    held = [load(h, "sources") for h in ds.meta["held_out"]]
    by_id = {s.id: s for s in held}
    bgs = [by_id[b] if b in by_id else load(b, "sources") for b in ds.meta["backgrounds"]]
    return Pool(ds.meta["sources"], refs, held, bgs, ds.meta["masks"])


def replay_query(dataset: str | Path | CopyDataset, query_id: str, device: str = "cpu") -> np.ndarray:
    """Regenerate one query (uint8 (h, w, 3)) from the dataset's seed and its query index, alone."""
    from .render import group_key, render

    ds = dataset if isinstance(dataset, CopyDataset) else load_dataset(dataset)
    if "recipe" not in ds.meta or "batch" not in ds.meta:
        raise SourceError(
            f"{ds.root}: dataset {ds.name!r} was imported, not built: there is nothing to replay"
        )
    if query_id not in set(ds.query_ids):
        raise SourceError(f"{ds.root}: no query {query_id!r}")
    rec = parse_recipe(ds.meta["recipe"], ds.meta["n_queries"])
    pool, sweep = _pool_from_folder(ds), _sweep_from_meta(ds.meta)
    sample = _sampler(rec, sweep, ds.meta["seed"], PoolView.of(pool), pool.masks != "none")
    index, batch = int(query_id[1:]), int(ds.meta["batch"])
    start = index // batch * batch
    plist = [sample(i) for i in range(start, min(start + batch, total_queries(rec, sweep)))]
    mine = plist[index - start]
    stored = json.loads(ds.queries.set_index("query_id").loc[query_id, "params"])
    if stored != json.loads(json.dumps(mine)):
        raise SourceError(
            f"{ds.root}: query {query_id!r}: regenerated parameters differ from the stored ones"
        )
    same = [p for p in plist if group_key(p) == group_key(mine)]
    imgs = render(same, pool.by_id(), device)
    return imgs[next(i for i, p in enumerate(same) if p is mine)]
