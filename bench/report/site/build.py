"""Build the site: read the inputs, compute every page, figure and download in memory, then write the folder.

The whole site is assembled as a mapping of site-relative path -> bytes before anything is written, so the
manifest can hash every file and a failed build leaves the previous site in place. The folder is replaced
only when it is empty, missing, or a site this builder wrote (it holds :data:`MARKER`); any other folder is
refused, never overwritten.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .inputs import InputError, SiteInputs, collect, sha256

log = logging.getLogger(__name__)

MARKER = ".copybench-site"
MARKER_TEXT = "This folder is a site written by `copybench publish`; the next publish replaces it whole.\n"


class SiteError(ValueError):
    """The output folder cannot be written (it is not a site this builder wrote, or it is a file)."""


@dataclass
class SiteReport:
    """What a build wrote: the folder, its files, the boards and the files left out."""

    out: Path
    files: list[str]
    boards: list[str]
    excluded: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)


def check_out(out: Path) -> None:
    """Refuse an output path that is a file, or a non-empty folder without the site marker."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SiteError(
            f"--out {out} is a non-empty folder that copybench did not write (no {MARKER} in it): refusing to "
            "overwrite it; choose an empty or new folder"
        )


def publish(
    paths: list[str | Path], out: str | Path, *, examples: bool = True, verify: bool = True
) -> SiteReport:
    """Write the site of every result under ``paths`` into ``out``.

    Raises :class:`InputError` when the inputs hold no result file and :class:`SiteError` when ``out`` is not
    a folder this builder may replace. ``examples=False`` leaves out the contact sheets of example images
    (for sites that may not carry the dataset's pictures). ``verify=False`` skips the check of each accuracy
    result's metrics against its stored predictions (a result that fails it is left out, with the reason).
    """
    out = Path(out)
    check_out(out)
    for path in map(Path, paths):
        if path.is_dir() and out.resolve().is_relative_to(path.resolve()):
            raise SiteError(
                f"--out {out} is inside the input {path}: the site's copies would be read as results"
            )
    inputs = collect(paths, verify=verify)
    files, notes, boards = assemble(inputs, examples=examples)
    _write(out, files)
    return SiteReport(out, sorted(files), [b.slug for b in boards], [(e.label, e.reason) for e in inputs.excluded],
                      notes)  # fmt: skip


def assemble(inputs: SiteInputs, *, examples: bool = True) -> tuple[dict[str, bytes], list[str], list]:
    """Every file of the site (path -> bytes, manifest included), the notes shown on pages, and the boards."""
    from .boards import build_boards
    from .detectors import detector_pages
    from .pages import Pages
    from .speed import devices

    boards = build_boards(inputs.accuracy)
    pages = Pages(inputs, boards, detector_pages(boards, inputs.throughput), devices(inputs.throughput))
    files: dict[str, bytes] = {}
    files.update(pages.figures(examples=examples))
    files.update(downloads(inputs))
    files.update(pages.static())
    files.update(pages.render(files))
    files[MARKER] = MARKER_TEXT.encode()
    files["data/manifest.json"] = manifest(inputs, files)
    return files, pages.notes, boards


def _tidy(inputs: SiteInputs):
    """The tidy frames (accuracy: one row per result and group; throughput: one per measurement), each row
    naming its result by the raw copy on the site, so the table is the same on every machine."""
    import pandas as pd

    from copybench.report.tidy import accuracy_rows, throughput_rows

    acc = [{**row, "result_file": i.raw} for i in inputs.accuracy for row in accuracy_rows(i.result)]
    thr = [{**row, "result_file": i.raw} for i in inputs.throughput for row in throughput_rows(i.result)]
    return pd.DataFrame(acc), pd.DataFrame(thr)


def downloads(inputs: SiteInputs) -> dict[str, bytes]:
    """The tidy tables as CSV and Parquet, and a copy of every raw result file on the site."""
    import io

    files: dict[str, bytes] = {}
    for name, frame in zip(("accuracy", "throughput"), _tidy(inputs)):
        if frame.empty:
            continue
        files[f"data/{name}.csv"] = frame.to_csv(index=False).encode()
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False, engine="pyarrow")
        files[f"data/{name}.parquet"] = buf.getvalue()
    for item in inputs.included:
        files[item.raw] = Path(item.result.source).read_bytes()
    return files


def manifest(inputs: SiteInputs, files: dict[str, bytes]) -> bytes:
    """Each file's sha256 (the manifest itself aside), the builder's version, and the copybench version and git
    commit every result records (null where a result does not record it)."""
    from copybench import __version__

    results = [
        {"file": i.raw, "input": i.label, "kind": i.result.kind, "detector": i.result.detector_name,
         "weights": i.result.weights_status, "copybench": i.result.environment.get("copybench"),
         "git_commit": i.result.environment.get("git_commit"), "sha256": sha256(files[i.raw])}
        for i in inputs.included
    ]  # fmt: skip
    data = {
        "generator": {"name": "copybench publish", "copybench": __version__},
        "results": results,
        "not_included": [{"input": e.label, "reason": e.reason} for e in inputs.excluded],
        "files": {path: sha256(files[path]) for path in sorted(files)},
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _write(out: Path, files: dict[str, bytes]) -> None:
    """Write the files into a fresh sibling folder, then put it in place of ``out`` (no stale file survives)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a site is for reading
    try:
        for path, data in sorted(files.items()):
            target = tmp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        check_out(out)  # again: the folder may have changed while the site was computed
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["MARKER", "InputError", "SiteError", "SiteReport", "assemble", "check_out", "publish"]
