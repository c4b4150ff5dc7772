"""Real benchmark layouts as papers run them: distractor references, CSV manifests, named subsets, and the
published figures beside a run's rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from copybench.cli import main
from copybench.datasets import SourceError, import_dataset, load_dataset, select_subset
from copybench.report.published import PublishedFigure, compare_published, load_published
from copybench.results import read_result
from copybench.run import RunSettings, run_benchmark


def _img(path, seed: int, base=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) if base is None else base
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


@pytest.fixture(scope="module")
def copydays(tmp_path_factory):
    """Copydays naming: originals BBBB00.jpg; crops/<pct>/, jpegqual/<q>/, strong/ copies BBBBNN.jpg; plus two
    distractor folders (one nested) in the YFCC style of file names."""
    root = tmp_path_factory.mktemp("cd")
    for b in range(4):
        orig = _img(root / "copydays" / "original" / f"{2000 + b:04d}00.jpg", b)
        _img(root / "copydays" / "crops" / "50" / f"{2000 + b:04d}01.jpg", 0, orig[2:22, 3:29].copy())
        _img(root / "copydays" / "jpegqual" / "30" / f"{2000 + b:04d}02.jpg", 0, orig)
        for k in (3, 4):
            _img(root / "copydays" / "strong" / f"{2000 + b:04d}{k:02d}.jpg", 0, (255 - orig)[:, ::-1].copy())
    for i in range(6):
        _img(root / "distractors_a" / f"yfcc_{i:05d}.jpg", 100 + i)
    for i in range(3):
        _img(root / "distractors_b" / "part1" / f"yfcc_{i:05d}.jpg", 200 + i)
    return root


def test_copydays_with_distractors(copydays, tmp_path):
    src = copydays / "copydays"
    plain = import_dataset("copydays", src, tmp_path / "plain", progress=False)
    dirs = [copydays / "distractors_a", copydays / "distractors_b"]
    ds = import_dataset("copydays", src, tmp_path / "d", progress=False, distractors=dirs)
    assert plain.counts() == {"references": 4, "queries": 16, "distractors": 0}
    assert ds.counts() == {"references": 13, "queries": 16, "distractors": 0, "distractor_references": 9}
    assert [s["count"] for s in ds.meta["distractor_sets"]] == [6, 3]
    assert "yfcc_00000" in ds.reference_ids and "part1__yfcc_00000" in ds.reference_ids
    assert ds.fingerprint != plain.fingerprint  # distractors are part of what the dataset is
    assert not any(ds.positives[q] & {r for r in ds.reference_ids if "yfcc" in r} for q in ds.query_ids)
    again = import_dataset("copydays", src, tmp_path / "again", progress=False, distractors=dirs)
    assert again.fingerprint == ds.fingerprint
    strong = select_subset(ds, "strong")
    assert set(strong.queries["family"]) == {"strong"} and strong.counts()["queries"] == 8
    assert strong.counts()["references"] == 13 and strong.fingerprint == ds.fingerprint
    assert len(select_subset(ds, "crops").queries) == 4 and len(select_subset(ds, "jpeg").queries) == 4


def test_distractor_errors(copydays, tmp_path):
    src = copydays / "copydays"
    with pytest.raises(SourceError, match="distractor folder not found"):
        import_dataset("copydays", src, tmp_path / "x", progress=False, distractors=[tmp_path / "nope"])
    clash = tmp_path / "clash"
    _img(clash / "200000.jpg", 9)  # the same id as a Copydays original
    with pytest.raises(SourceError, match="200000"):
        import_dataset("copydays", src, tmp_path / "y", progress=False, distractors=[clash])
    ds = import_dataset("copydays", src, tmp_path / "z", progress=False)
    with pytest.raises(SourceError, match="known subsets: strong, crops, jpeg"):
        select_subset(ds, "dev25k")


@pytest.fixture(scope="module")
def disc21(tmp_path_factory):
    """DISC21 layout: dev_queries/, references/, a ground-truth CSV (with a query without a match, and query
    ids on both sides of Q25000), and a second reference folder given as distractors (1M split in parts)."""
    root = tmp_path_factory.mktemp("disc")
    refs = {f"R{i:06d}": _img(root / "disc" / "references" / f"R{i:06d}.jpg", i) for i in range(4)}
    gt = []
    for n, (qid, rid) in enumerate([("Q00001", "R000000"), ("Q24999", "R000001"), ("Q25000", "R000002"),
                                    ("Q30000", ""), ("Q00002", "R000003")]):  # fmt: skip
        base = refs[rid][:, ::-1].copy() if rid else None
        _img(root / "disc" / "dev_queries" / f"{qid}.jpg", 50 + n, base)
        gt.append({"query_id": qid, "reference_id": rid})
    pd.DataFrame(gt).to_csv(root / "disc" / "dev_ground_truth.csv", index=False)
    for i in range(4, 9):
        _img(root / "references_1" / f"R{i:06d}.jpg", i)
    return root


def test_disc21_with_distractor_references_and_dev25k(disc21, tmp_path):
    ds = import_dataset(
        "disc21", disc21 / "disc", tmp_path / "d", progress=False, distractors=[disc21 / "references_1"]
    )
    assert ds.counts() == {"references": 9, "queries": 5, "distractors": 1, "distractor_references": 5}
    assert "R000008" in ds.reference_ids  # stems kept: ISC exports name the files
    dev = select_subset(ds, "dev25k")
    assert sorted(dev.query_ids) == ["Q00001", "Q00002", "Q24999"]
    assert sorted(select_subset(ds, "dev50k").query_ids) == sorted(ds.query_ids)


def test_csv_manifest(tmp_path):
    root = tmp_path / "mine"
    a = _img(root / "refs" / "a.jpg", 1)
    _img(root / "refs" / "b.png", 2)
    _img(root / "q" / "qa.jpg", 0, a[::-1].copy())
    _img(root / "q" / "qab.jpg", 3)
    _img(root / "q" / "none.jpg", 4)
    rows = [("q/qa.jpg", "refs/a.jpg", "flip"), ("q/qab.jpg", "refs/a.jpg", "mix"), ("q/qab.jpg", "refs/b.png", "mix"),
            ("q/none.jpg", "", "noise"), ("", "refs/b.png", "")]  # fmt: skip
    manifest = root / "manifest.csv"
    pd.DataFrame(rows, columns=["query", "reference", "family"]).to_csv(manifest, index=False)
    ds = import_dataset("csv", manifest, tmp_path / "d", progress=False)
    assert ds.counts() == {"references": 2, "queries": 3, "distractors": 1}
    assert ds.positives["q__qab"] == {"refs__a", "refs__b"} and ds.positives["q__qa"] == {"refs__a"}
    assert dict(zip(ds.queries["query_id"], ds.queries["family"]))["q__none"] == "noise"
    assert load_dataset(tmp_path / "d").fingerprint == ds.fingerprint
    (root / "bad.csv").write_text("query,ref\nq/qa.jpg,refs/a.jpg\n")
    with pytest.raises(SourceError, match="missing reference"):
        import_dataset("csv", root / "bad.csv", tmp_path / "e", progress=False)
    (root / "gone.csv").write_text("query,reference\nq/qa.jpg,refs/zzz.jpg\n")
    with pytest.raises(SourceError, match="zzz.jpg"):
        import_dataset("csv", root / "gone.csv", tmp_path / "f", progress=False)


def test_published_table_is_sourced():
    figs = load_published()
    assert {f.benchmark for f in figs} == {"disc21", "copydays"}
    assert all(f.source and 0 < f.value <= 1 for f in figs)
    sscd: dict[tuple, set[float]] = {}
    for f in figs:
        if f.detector == "sscd_disc_mixup":
            sscd.setdefault((f.subset, f.metric, f.whitening, f.score_norm), set()).add(f.value)
    # SSCD docs/Evaluation.md (the released model) and the paper's Table 2 and 3 figures
    assert sscd[("all", "micro_ap", True, True)] == {0.7242754343531326, 0.725}
    assert sscd[("all", "micro_ap", False, False)] == {0.6093859526781344}
    # Copydays: as SSCD's copydays_eval.py computes them (--protocol sscd-copydays)
    assert sscd[("all", "strong_map", True, False)] == {0.865810403059819, 0.866}
    assert any(f.detector == "dino_vitb8.cls_gem" and f.value == 0.858 for f in figs)  # DINO README


def test_run_subset_and_published_row_lines_up(copydays, tmp_path, capsys):
    ds = import_dataset(
        "copydays",
        copydays / "copydays",
        tmp_path / "d",
        progress=False,
        distractors=[copydays / "distractors_a"],
    )
    common = {"results": tmp_path / "r", "descriptor_dir": None, "progress": False}
    whole = run_benchmark(ds, ["pixel_gray_8"], RunSettings(n_boot=0), **common)[0].result
    sub = run_benchmark(ds, ["pixel_gray_8"], RunSettings(n_boot=0, subset="strong"), **common)[0].result
    assert sub.key["subset"] == "strong" and "subset" not in whole.key
    assert sub.dataset["counts"]["queries"] == 8 and sub.dataset["counts"]["distractor_references"] == 6
    # the subset run scores exactly the strong family of the whole run
    assert sub.metrics["map"] == pytest.approx(whole.groups["strong"]["map"], abs=1e-6)
    # a figure of the strong subset lines up with the subset run and with the whole run's strong group
    as_sscd = lambda r: dataclasses.replace(
        r, key={**r.key, "detector": "sscd_disc_mixup", "protocol": "isc", "whitening": True},
        detector={**r.detector, "name": "sscd_disc_mixup"},
    )  # fmt: skip
    fig = PublishedFigure("copydays", "strong", "isc", "sscd_disc_mixup", True, False, "map", 0.8, 8, 10, "x")
    rows = compare_published([as_sscd(whole), as_sscd(sub)], [fig])
    assert rows["paired"].all(), rows["reason"].tolist()
    assert set(rows["read_from"]) == {"result", "group strong"}
    row = rows.iloc[0]
    assert row["difference"] == pytest.approx(row["measured"] - row["published"])
    # SSCD's own Copydays figures are computed by its Copydays script: listed apart from an isc run
    shipped = compare_published([as_sscd(whole)])
    cd = shipped[shipped["published_protocol"] == "sscd-copydays"]
    assert len(cd) == 4 and not cd["paired"].any()
    mine = PublishedFigure(
        "copydays", "strong", "native", "pixel_gray_8", False, False, "map", 0.5, None, None, "x"
    )
    own = compare_published([whole], [mine]).iloc[0]
    assert own["difference"] == pytest.approx(whole.groups["strong"]["map"] - 0.5)
    assert main(["list", "subsets"]) == 0 and "dev25k" in capsys.readouterr().out
    # the CLI: a detector nobody published says so
    assert main(["table", str(tmp_path / "r"), "--published", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "pixel_gray_8" in out and "no published figure matches" in out
    sub_file = next((tmp_path / "r").rglob("*subset*.json"))
    assert read_result(sub_file).key["subset"] == "strong"
    from copybench.report.interop import export_isc

    _, gt = export_isc(sub_file, tmp_path / "isc")  # the subset's ground truth only
    assert sorted(pd.read_csv(gt, dtype=str)["query_id"]) == sorted(select_subset(ds, "strong").query_ids)
