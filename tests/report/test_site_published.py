"""The project's own leaderboard site (docs/leaderboard) is what `copybench publish` makes of the committed results
today: rebuilt into a temporary folder and compared file by file, so a stale site fails here.

Regenerate it with the command in docs/publish.md (and docs/README.md):

    copybench publish results/default results/throughput --out docs/leaderboard --no-examples

The PR curves are recomputed from the results' predictions and the default dataset's ground truth, so the test
needs that dataset: it reuses runs/demo/data when it is the right one, else builds it (about 10 s; the build
needs the U2-Netp masks model that .ci/setup.sh installs, or the fingerprint differs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from copybench.report.site.build import publish

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "docs" / "leaderboard"
INPUTS = ("default", "throughput")
COMMAND = "copybench publish results/default results/throughput --out docs/leaderboard --no-examples"


def _dataset_for(results: Path) -> None:
    """Put the dataset the default results were computed on where they record it (relative to the results)."""
    from copybench.datasets import build_dataset
    from copybench.datasets.dataset import DatasetError, load_dataset
    from copybench.results import read_results

    accuracy = [r for r in read_results(results / "default")[0] if r.kind == "accuracy"]
    want, where = accuracy[0].fingerprint, accuracy[0].dataset_root
    try:
        if load_dataset(REPO / "runs" / "demo" / "data").fingerprint == want:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.symlink_to(REPO / "runs" / "demo" / "data", target_is_directory=True)
            return
    except DatasetError:
        pass
    meta = accuracy[0].dataset
    built = build_dataset(meta["recipe"], where, seed=int(meta["name"].rsplit("seed", 1)[1]), progress=False)
    assert built.fingerprint == want, (
        f"the rebuilt default dataset has fingerprint {built.fingerprint[:12]}, the results {want[:12]}: is the "
        "U2-Netp model installed (.ci/setup.sh)?"
    )


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_leaderboard_site_is_current(tmp_path):
    results = tmp_path / "results"
    for name in INPUTS:
        shutil.copytree(REPO / "results" / name, results / name)
    _dataset_for(results)
    report = publish([results / name for name in INPUTS], tmp_path / "site", examples=False)
    assert not report.notes, report.notes  # every figure drawn: nothing missing from the rebuilt site
    fresh, committed = _files(tmp_path / "site"), _files(SITE)
    stale = sorted(p for p in fresh.keys() | committed.keys() if fresh.get(p) != committed.get(p))
    assert not stale, f"docs/leaderboard is stale ({len(stale)} files differ: {stale[:5]}); run `{COMMAND}`"
