"""Published figures are shown beside a run only under the same protocol, settings and query/reference counts
(issues 22.2, 22.3, 22.4); every other figure of the run's benchmark and detector is listed apart with why."""

from __future__ import annotations

import pytest

from copybench.report.published import (
    PublishedFigure,
    compare_published,
    load_published,
    pair_published,
    render_published,
)
from copybench.results import Result


def _result(protocol: str, queries: int, references: int, *, benchmark="disc21", detector="sscd_disc_mixup",
            whitening=False, metrics=None, groups=None) -> Result:  # fmt: skip
    return Result(
        kind="accuracy",
        key={
            "detector": detector,
            "protocol": protocol,
            "similarity": "cosine",
            "whitening": whitening,
            "score_norm": False,
        },
        detector={"name": detector, "weights": {"status": "official"}},
        dataset={"name": f"{benchmark}:x", "counts": {"queries": queries, "references": references}},
        metrics=metrics or {"micro_ap": 0.44, "recall_at_p90": 0.2},
        groups=groups or {},
        settings={"protocol": protocol, "similarity": "cosine", "whitening": whitening, "score_norm": False},
    )


def _sscd_disc(whitening: bool = False, score_norm: bool = False, metric: str = "micro_ap"):
    return next(
        f for f in load_published()
        if f.benchmark == "disc21" and f.detector == "sscd_disc_mixup" and f.metric == metric
        and (f.whitening, f.score_norm) == (whitening, score_norm) and "docs/Evaluation.md (disc" in f.source
    )  # fmt: skip


def test_a_small_disc21_import_is_not_paired_with_the_validation_figure():
    fig = _sscd_disc()
    assert (fig.n_queries, fig.n_references) == (25_000, 1_000_000)
    small = pair_published(_result("isc", 188, 1_000_000), fig)
    assert not small.paired and small.measured == 0.44
    assert "queries: yours 188, published 25,000" in small.reason
    full = pair_published(_result("isc", 25_000, 1_000_000), fig)
    assert full.paired and full.reason == "" and full.measured == 0.44


def test_a_random_weight_run_is_never_paired():
    run = _result("isc", 25_000, 1_000_000)
    run = Result(**{**run.__dict__, "detector": {"name": "sscd_disc_mixup", "weights": {"status": "random"}}})
    got = pair_published(run, _sscd_disc())
    assert not got.paired and "random weights" in got.reason


def test_another_protocol_or_setting_is_listed_apart_with_the_reason():
    fig = _sscd_disc()
    native = pair_published(_result("native", 25_000, 1_000_000), fig)
    assert not native.paired and native.reason == "published under protocol isc, this run under native"
    white = pair_published(_result("isc", 25_000, 1_000_000, whitening=True), fig)
    assert not white.paired and "without whitening" in white.reason


def test_isc_baselines_name_what_their_source_ran():
    rows = [f for f in load_published() if f.detector in ("gist_pca", "multigrain", "how_r50")]
    assert rows and all(f.protocol.startswith("isc2021-500k") for f in rows)
    how_norm = [f for f in rows if f.detector == "how_r50" and f.score_norm]
    assert how_norm and {f.protocol for f in how_norm} == {"isc2021-500k-how-norm"}
    # an isc run of the same detector and counts is never shown beside them
    run = _result("isc", 25_000, 1_000_000, detector="gist_pca")
    assert all(not pair_published(run, f).paired for f in rows if f.detector == "gist_pca")


def test_sscd_copydays_figures_pair_only_with_sscd_copydays_runs():
    cd = [f for f in load_published() if f.benchmark == "copydays" and f.detector == "sscd_disc_mixup"]
    assert {f.protocol for f in cd} == {"sscd-copydays"}
    assert {f.metric for f in cd} == {"strong_map", "overall_uap"}
    metrics = {"strong_map": 0.86, "overall_uap": 0.98, "micro_ap": 0.97, "map": 0.9}
    mine = _result("sscd-copydays", 3055, 10_157, benchmark="copydays", whitening=True, metrics=metrics)
    isc = _result("isc", 3055, 10_157, benchmark="copydays", whitening=True, metrics=metrics)
    assert all(pair_published(mine, f).paired for f in cd)
    assert not any(pair_published(isc, f).paired for f in cd)
    frame = compare_published([mine, isc])
    beside = frame[frame["paired"]]
    assert set(beside["protocol"]) == {"sscd-copydays"}
    assert beside["difference"].tolist() == pytest.approx(
        [m - p for m, p in zip(beside.measured, beside.published)]
    )
    assert frame[~frame["paired"]]["difference"].isna().all()


def test_a_figure_of_a_subset_compares_the_subset_query_count():
    fig = PublishedFigure(
        "copydays", "strong", "dino", "dino_vitb8.cls_gem", True, False, "map", 0.858, 229, 10157, "x"
    )
    groups = {"strong": {"map": 0.8, "n_queries": 229}}
    run = _result("dino", 3055, 10_157, benchmark="copydays", detector="dino_vitb8.cls_gem", whitening=True,
                  groups=groups)  # fmt: skip
    got = pair_published(run, fig)
    assert got.paired and got.read_from == "group strong" and got.measured == 0.8
    groups["strong"]["n_queries"] = 12
    assert "queries: yours 12, published 229" in pair_published(run, fig).reason


def test_the_table_shows_paired_and_apart_figures_separately(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "a.json").write_text(_result("isc", 188, 1_000_000).to_json())
    text = render_published(folder, fmt="md")
    assert "listed apart" in text and "queries: yours 188, published 25,000" in text
    assert "measured beside published" not in text  # nothing is comparable here
