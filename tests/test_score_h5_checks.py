"""score-h5 counts a non-finite descriptor as a failed query (reported, scored as a miss) and refuses a file
naming one image twice (which row was meant would be a guess)."""

from __future__ import annotations

import numpy as np

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.report.interop import write_isc_h5
from copybench.results import read_result


def _score(tiny_dataset, tmp_path, queries, name: str) -> int:
    args = ["-q", "score-h5", "--dataset", str(tiny_dataset), "--queries", str(queries)]
    args += ["--references", str(tmp_path / "r.h5"), "--name", name, "--results", str(tmp_path / "res")]
    return main([*args, "--n-boot", "0"])


def test_non_finite_descriptors_fail_and_duplicate_ids_are_refused(tiny_dataset, tmp_path, capsys):
    ds = load_dataset(tiny_dataset)
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(len(ds.reference_ids), 16)).astype(np.float32)
    write_isc_h5(tmp_path / "r.h5", ds.reference_ids, refs)
    queries = refs[[int(q[1:]) % len(refs) for q in ds.query_ids]] + 0.01  # Q00i is a copy of R00i
    queries[0] = np.nan  # Q000's extraction failed
    write_isc_h5(tmp_path / "q.h5", ds.query_ids, queries)
    assert _score(tiny_dataset, tmp_path, tmp_path / "q.h5", "h5") == 0
    result = read_result(next((tmp_path / "res").rglob("h5.json")))
    # was dropped silently: 0 missing, 0 undecodable
    assert result.metrics["n_queries_undecodable"] == 1 and result.metrics["n_queries_missing"] == 0
    assert result.skipped[0]["error"].endswith("non-finite descriptor for 'Q000'")
    assert result.metrics["n_queries"] == len(ds.query_ids)  # still scored: a miss

    write_isc_h5(tmp_path / "dup.h5", [*ds.query_ids, "Q001"], np.vstack([queries, refs[:1]]))
    capsys.readouterr()
    assert _score(tiny_dataset, tmp_path, tmp_path / "dup.h5", "dup") == 2  # was the last row, exit 0
    err = " ".join(capsys.readouterr().err.split())
    assert "dup.h5" in err and "'Q001' more than once" in err
    assert not list((tmp_path / "res").rglob("dup.json"))
