"""The evaluation pipeline: retrieval exactness, resumable extraction, result files, the gate, tables, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.results import Result, read_result, write_result
from copybench.retrieval import search, search_split
from copybench.run import RunSettings, run_benchmark


def _unit(rng, *shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_search_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    q, r = _unit(rng, 20, 16), _unit(rng, 130, 16)
    scores, idx = search(q, r, 7, block=32)  # several reference blocks merged
    full = q @ r.T
    expect = np.argsort(-full, axis=1)[:, :7]
    np.testing.assert_array_equal(idx, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expect, 1), atol=1e-5)


def test_search_pads_when_fewer_references_than_k():
    rng = np.random.default_rng(1)
    scores, idx = search(_unit(rng, 3, 8), _unit(rng, 2, 8), 5)
    assert (idx[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    assert (idx[:, :2] >= 0).all()


def test_search_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="shapes do not match"):
        search(np.zeros((2, 4), np.float32), np.zeros((3, 5), np.float32), 1)


@pytest.mark.parametrize("cross", [False, True])
def test_split_product_is_exact(cross):
    rng = np.random.default_rng(2)
    q, r = (
        rng.standard_normal((9, 5, 6)).astype(np.float32),
        rng.standard_normal((40, 5, 6)).astype(np.float32),
    )
    scores, idx = search_split(q, r, 4, cross=cross, query_block=4)
    # brute force straight from the definition: normalise the whole descriptor, max over chunk (pairs)
    qn = q / np.linalg.norm(q.reshape(9, -1), axis=1)[:, None, None]
    rn = r / np.linalg.norm(r.reshape(40, -1), axis=1)[:, None, None]
    if cross:
        full = np.einsum("qid,rjd->qrij", qn, rn).reshape(9, 40, -1).max(-1)
    else:
        full = np.einsum("qcd,rcd->qrc", qn, rn).max(-1)
    expect = np.argsort(-full, axis=1)[:, :4]
    np.testing.assert_array_equal(idx, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expect, 1), atol=1e-5)


def test_split_on_global_vectors_needs_dividing_chunks():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="--chunks must divide"):
        search_split(_unit(rng, 2, 10), _unit(rng, 4, 10), 2, chunks=3)


def test_chunks_must_be_positive_and_need_a_split_similarity():
    with pytest.raises(ValueError, match="--chunks must be a positive"):
        RunSettings(similarity="split", chunks=0)  # was taken as "no chunks" and reused the __split result
    with pytest.raises(ValueError, match="needs --similarity split"):
        RunSettings(chunks=4)  # was silently ignored
    assert RunSettings(similarity="split", chunks=4).key_settings()["chunks"] == 4


def test_run_writes_results_skips_finished_and_reports_corrupt(tiny_dataset_corrupt, tmp_path):
    ds = load_dataset(tiny_dataset_corrupt)
    settings = RunSettings(n_boot=50)
    out = run_benchmark(
        ds,
        ["pixel_gray_16", "no_such_detector"],
        settings,
        results=tmp_path / "res",
        descriptor_dir=tmp_path / "cache",
        progress=False,
    )
    assert [o.status for o in out] == ["done", "failed"]
    assert "no_such_detector" in out[1].message
    result = read_result(out[0].path)
    assert [s["path"].endswith("BAD.png") for s in result.skipped] == [True]
    # the corrupt query (a copy of R000) counts as a miss, the rest complete: was left out (11 queries, mAP 1)
    assert result.metrics["n_queries"] == 12 and result.metrics["n_queries_undecodable"] == 1
    assert result.metrics["map"] == pytest.approx(8 / 9)  # pixels find a mild blur+crop of a texture
    assert result.weights_status == "none"
    assert result.predictions_path.is_file()
    again = run_benchmark(ds, ["pixel_gray_16"], settings, results=tmp_path / "res", progress=False)
    assert again[0].status == "skipped"


def test_topk_is_part_of_the_result_key(tiny_dataset, tmp_path):
    ds, res = load_dataset(tiny_dataset), tmp_path / "res"
    shallow = run_benchmark(
        ds,
        ["pixel_gray_16"],
        RunSettings(n_boot=10, topk=1),
        results=res,
        descriptor_dir=None,
        progress=False,
    )[0]
    deep = run_benchmark(
        ds, ["pixel_gray_16"], RunSettings(n_boot=10), results=res, descriptor_dir=None, progress=False
    )[0]
    assert deep.status == "done" and deep.path != shallow.path  # was "skipped" with the top-1 numbers
    assert shallow.path.name == "pixel_gray_16__top1.json" and deep.path.name == "pixel_gray_16.json"
    assert deep.result.settings["topk"] > 1 and "topk" not in deep.result.key
    # a stored result whose key disagrees with the settings is recomputed, never served as "already computed"
    stale = json.loads(deep.path.read_text())
    stale["key"]["dtype"] = "bf16"
    deep.path.write_text(json.dumps(stale))
    again = run_benchmark(
        ds, ["pixel_gray_16"], RunSettings(n_boot=10), results=res, descriptor_dir=None, progress=False
    )
    assert again[0].status == "done" and again[0].result.key["dtype"] == "fp32"


def test_same_dataset_same_metrics(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    a = run_benchmark(
        ds,
        ["pixel_rgb_16"],
        RunSettings(n_boot=50),
        results=tmp_path / "a",
        descriptor_dir=None,
        progress=False,
    )
    b = run_benchmark(
        ds,
        ["pixel_rgb_16"],
        RunSettings(n_boot=50),
        results=tmp_path / "b",
        descriptor_dir=None,
        progress=False,
    )
    assert a[0].result.metrics == b[0].result.metrics
    assert a[0].result.groups == b[0].result.groups


def test_random_weights_need_permission_and_are_marked(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    os.environ.pop("COPYBENCH_WEIGHTS_DIR", None)
    settings = RunSettings(n_boot=20, batch_size=4)
    refused = run_benchmark(
        ds, ["resnet50.tv_in1k"], settings, results=tmp_path / "r", progress=False, descriptor_dir=None
    )
    assert refused[0].status == "failed" and "--allow-random" in refused[0].message
    ok = run_benchmark(
        ds,
        ["resnet50.tv_in1k"],
        settings,
        results=tmp_path / "r",
        progress=False,
        descriptor_dir=None,
        allow_random=True,
    )
    assert ok[0].result.is_random
    md = subprocess_table(tmp_path / "r")
    assert "resnet50.tv_in1k (random weights)" in md


_BROKEN_PLUGIN = textwrap.dedent(
    """
    import torch
    from copybench.detectors import DetectorSpec, register_detector

    class NaNs(torch.nn.Module):
        def forward(self, x):
            out = x.flatten(1)[:, :32].clone()
            out[:, 0] = float("nan")
            return out

    class Short(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :48]

    @register_detector(DetectorSpec(name="qa_nan_32", dims=32, input_size=64, mean=(0, 0, 0), std=(1, 1, 1)))
    def qa_nan_32(path):
        return NaNs()

    @register_detector(DetectorSpec(name="qa_short_64", dims=64, input_size=64, mean=(0, 0, 0), std=(1, 1, 1)))
    def qa_short_64(path):
        return Short()
    """
)


def test_plugin_with_nan_or_wrong_dims_fails_by_name_and_keeps_the_others(
    tiny_dataset, tmp_path, monkeypatch
):
    from copybench.detectors.registry import unregister_detector

    (tmp_path / "qa_broken_plugin.py").write_text(_BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["qa_broken_plugin:qa_nan_32", "pixel_gray_8", "qa_broken_plugin:qa_short_64"]
    try:
        out = run_benchmark(
            load_dataset(tiny_dataset),
            names,
            RunSettings(n_boot=20),
            results=tmp_path / "r",
            descriptor_dir=tmp_path / "cache",
            progress=False,
        )
    finally:
        unregister_detector("qa_nan_32")
        unregister_detector("qa_short_64")
    assert [o.status for o in out] == [
        "failed",
        "done",
        "failed",
    ]  # were all "done", NaN scoring 0 everywhere
    assert "'qa_nan_32' returned" in out[0].message and "non-finite" in out[0].message
    assert "'qa_short_64' returned shape" in out[2].message and "dims=64" in out[2].message
    assert sorted(p.name for p in (tmp_path / "r").rglob("*.json")) == ["pixel_gray_8.json"]


def test_editing_a_plugin_changes_its_descriptor_cache_key(tmp_path, monkeypatch):
    from copybench.cache import cache_key
    from copybench.detectors import create_detector
    from copybench.detectors.load import plugin_code_digest
    from copybench.detectors.registry import unregister_detector

    plugin = tmp_path / "qa_edited_plugin.py"
    plugin.write_text(
        _BROKEN_PLUGIN.replace("qa_nan_32", "qa_edit_32").replace("qa_short_64", "qa_edit_short")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        det = create_detector("qa_edited_plugin:qa_edit_32")
        before = cache_key(det, ["a.png"], dtype="fp32", tokens=False)
        plugin.write_text(plugin.read_text() + "\n# edited: forward changed\n")
        det.code = plugin_code_digest(sys.modules["qa_edited_plugin"].qa_edit_32)
        assert (
            cache_key(det, ["a.png"], dtype="fp32", tokens=False) != before
        )  # was equal: stale descriptors reused
    finally:
        unregister_detector("qa_edit_32")
        unregister_detector("qa_edit_short")
    assert create_detector("pixel_gray_8").code is None  # built-in keys (and caches) are unchanged


def subprocess_table(results: Path) -> str:
    from copybench.report.render import render_table

    return render_table(results, fmt="md")


def _cli(*args) -> int:
    return main(["--quiet", *map(str, args)])


def test_cli_run_table_check_export_end_to_end(tiny_dataset, tmp_path, capsys):
    res, base = tmp_path / "res", tmp_path / "baseline"
    assert (
        _cli(
            "run",
            "--dataset",
            tiny_dataset,
            "--detectors",
            "pixel_gray_*",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "50",
        )
        == 0
    )
    files = sorted(res.rglob("*.json"))
    assert len(files) == 3  # gray 8, 16, 32
    for fmt in ("md", "csv", "html"):
        assert _cli("table", res, "--format", fmt, "--out", tmp_path / f"board.{fmt}") == 0
    assert "pixel_gray_16" in (tmp_path / "board.md").read_text()
    assert "<table" in (tmp_path / "board.html").read_text()
    # the gate: a rerun of the same run passes
    base.mkdir()
    for f in files:
        (base / f.name).write_text(f.read_text())
    assert _cli("check", "--baseline", base, "--results", res) == 0
    # a planted drop is caught
    planted = json.loads(files[0].read_text())
    planted["metrics"]["micro_ap"] -= 0.2
    files[0].write_text(json.dumps(planted))
    capsys.readouterr()
    assert _cli("check", "--baseline", base, "--results", res, "--tolerance", "0.05") == 2
    assert "predictions do not give" in capsys.readouterr().err  # a hand-edited number is never gated
    assert _cli("check", "--baseline", base, "--results", res, "--tolerance", "0.05", "--no-verify") == 1
    assert "dropped" in capsys.readouterr().out
    # a misspelt metric compares nothing: refused, never a silent pass over the planted drop
    assert _cli("check", "--baseline", base, "--results", res, "--metrics", "micro_AP") == 2
    assert "unknown metric(s) 'micro_AP'" in capsys.readouterr().err
    assert _cli("check", "--baseline", base, "--results", res, "--metrics", "map_ci") == 2
    (base / files[0].name).write_text(files[0].read_text())
    # ISC export
    assert _cli("export", files[0], "--out", tmp_path / "isc") == 0
    preds = (tmp_path / "isc" / "predictions.csv").read_text().splitlines()
    gt = (tmp_path / "isc" / "ground_truth.csv").read_text().splitlines()
    assert preds[0] == "query_id,reference_id,score" and len(preds) > 1
    assert "D000," in gt  # a distractor has an empty reference


def test_cli_bad_input_exit_code_2(tmp_path, capsys):
    assert _cli("run", "--dataset", tmp_path / "nowhere", "--detectors", "pixel_gray_16") == 2
    assert "not a copybench dataset" in capsys.readouterr().err
    assert _cli("check", "--baseline", tmp_path / "nope", "--results", tmp_path) == 2
    (tmp_path / "no_results").mkdir()
    capsys.readouterr()
    assert _cli("table", tmp_path / "no_results") == 2  # was a blank line and exit 0
    assert "no result files under" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["run", "--dataset", "{ds}", "--detectors", "pixel_gray_16"],
        ["data", "build", "crop-xs", "--out", "{tmp}/ds"],
        [
            "scan",
            "--generated",
            "{ds}/queries",
            "--train",
            "{ds}/references",
            "--detector",
            "pixel_gray_16",
            "--out",
            "{tmp}/scan",
        ],
    ],
)
def test_cli_cuda_without_cuda_exit_code_2(command, tiny_dataset, tmp_path, capsys):
    args = [a.format(ds=tiny_dataset, tmp=tmp_path) for a in command]
    assert _cli(*args, "--device", "cuda") == 2
    assert "'cuda' asked for, but CUDA is not available" in capsys.readouterr().err
    assert _cli(*args, "--device", "gpu") == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_cli_run_on_a_dataset_without_queries_exit_code_2(tiny_dataset, tmp_path, capsys):
    from copybench.datasets import import_dataset

    import_dataset("folder", tiny_dataset / "references", tmp_path / "refs_only", progress=False)
    assert (
        _cli(
            "run",
            "--dataset",
            tmp_path / "refs_only",
            "--detectors",
            "pixel_gray_8",
            "--results",
            tmp_path / "r",
        )
        == 2
    )
    assert "has no queries" in capsys.readouterr().err
    assert not list(
        (tmp_path / "r").rglob("*.json")
    )  # was an all-null result that then counted in the mean rank


def test_cli_unknown_detector_exit_code_2(tiny_dataset, capsys):
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "sscd_nope") == 2
    assert "sscd_nope" in capsys.readouterr().err


_KILLABLE = textwrap.dedent(
    """
    import sys, time, torch
    import copybench.cache
    import copybench.extract as ex
    from copybench.detectors import create_detector
    from copybench.datasets.dataset import load_dataset
    copybench.cache.SHARD_IMAGES = 2
    det = create_detector("pixel_rgb_8")
    forward = det.model.forward
    def slow(x):
        time.sleep(float(sys.argv[3]))
        return forward(x)
    det.model.forward = slow
    ds = load_dataset(sys.argv[1])
    d = ex.Extractor(det, batch_size=2, num_workers=0, cache_dir=sys.argv[2], progress=False)
    d.run(ds.queries["path"].tolist(), fingerprint=ds.fingerprint)
    """
)


@pytest.mark.parametrize("shard_seconds", [1e9, 0.0])
def test_ctrl_c_and_slow_batches_keep_finished_rows(shard_seconds, tiny_dataset, tmp_path, monkeypatch):
    import copybench.cache
    import copybench.extract as ex
    from copybench.detectors import create_detector

    monkeypatch.setattr(
        copybench.cache, "SHARD_SECONDS", shard_seconds
    )  # 0: every batch is "slow" and flushed at once
    paths = load_dataset(tiny_dataset).queries["path"].tolist()
    det = create_detector("pixel_rgb_8")
    forward, calls = det.model.forward, []

    def interrupted_on_third_batch(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(x)

    det.model.forward = interrupted_on_third_batch
    extractor = ex.Extractor(det, batch_size=2, num_workers=0, cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(KeyboardInterrupt):
        extractor.run(paths)
    shards = list((tmp_path / "cache").rglob("shard-*.npz"))
    assert len(shards) == (2 if shard_seconds == 0 else 1)  # Ctrl-C flushed what was done (was: nothing kept)
    det.model.forward = forward
    resumed = extractor.run(paths)
    assert len(calls) == 3 and resumed.seconds > 0
    clean = ex.Extractor(det, batch_size=2, num_workers=0, cache_dir=None, progress=False).run(paths)
    np.testing.assert_allclose(np.asarray(resumed.vectors), np.asarray(clean.vectors), atol=1e-6)


def test_extraction_resumes_after_kill_9(tiny_dataset, tmp_path):
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    script, cache = tmp_path / "extract.py", tmp_path / "cache"
    script.write_text(_KILLABLE)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_dataset), str(cache), "0.5"])
    deadline = time.time() + 60
    while not list(cache.rglob("shard-*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shards = list(cache.rglob("shard-*.npz"))
    assert shards and not list(cache.rglob("done.json")), "the kill should land mid-extraction"
    ds = load_dataset(tiny_dataset)
    paths = ds.queries["path"].tolist()
    resumed = Extractor(create_detector("pixel_rgb_8"), num_workers=0, cache_dir=cache, progress=False)
    out = resumed.run(paths, fingerprint=ds.fingerprint)
    fresh = Extractor(create_detector("pixel_rgb_8"), num_workers=0, cache_dir=None, progress=False).run(
        paths
    )
    np.testing.assert_array_equal(np.asarray(out.vectors), np.asarray(fresh.vectors))
    assert list(cache.rglob("done.json"))


def test_isc_h5_descriptors_score_like_the_detector(tiny_dataset, tmp_path):
    """Descriptors exported to ISC's HDF5 layout and scored back give the detector's own metrics."""
    from copybench.detectors import create_detector
    from copybench.extract import Extractor
    from copybench.report.interop import read_isc_h5, write_isc_h5

    ds = load_dataset(tiny_dataset)
    ext = Extractor(create_detector("pixel_gray_16"), num_workers=0, progress=False)
    q = ext.run(ds.queries["path"].tolist())
    r = ext.run(ds.references["path"].tolist())
    write_isc_h5(tmp_path / "q.h5", ds.query_ids[1:], np.asarray(q.vectors)[1:])  # one query left out
    write_isc_h5(tmp_path / "r.h5", ds.reference_ids, np.asarray(r.vectors))
    names, vecs = read_isc_h5(tmp_path / "r.h5")
    assert names == ds.reference_ids and vecs.shape == (8, 256)
    assert (
        _cli(
            "score-h5",
            "--dataset",
            tiny_dataset,
            "--queries",
            tmp_path / "q.h5",
            "--references",
            tmp_path / "r.h5",
            "--name",
            "gray16_h5",
            "--results",
            tmp_path / "res",
            "--n-boot",
            "20",
        )
        == 0
    )
    res = read_result(next((tmp_path / "res").rglob("gray16_h5.json")))
    # the left-out query (it has a match) counts as a miss: was n_queries 10 and mAP 1.0
    assert res.metrics["n_queries"] == 11 and res.metrics["n_queries_missing"] == 1
    assert res.metrics["map"] == pytest.approx(7 / 8)
    assert res.skipped[0]["error"].endswith("no descriptor for 'Q000'")
    (tmp_path / "bad.h5").write_bytes(b"nope")
    assert (
        _cli(
            "score-h5",
            "--dataset",
            tiny_dataset,
            "--queries",
            tmp_path / "bad.h5",
            "--references",
            tmp_path / "r.h5",
            "--name",
            "x",
            "--results",
            tmp_path / "res",
        )
        == 2
    )


def test_plots_from_raw_predictions(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    run_benchmark(
        ds,
        ["pixel_gray_8"],
        RunSettings(n_boot=10),
        results=tmp_path / "res",
        descriptor_dir=None,
        progress=False,
    )
    run_benchmark(
        ds,
        ["color_hist_512"],
        RunSettings(n_boot=10),
        results=tmp_path / "res",
        descriptor_dir=None,
        progress=False,
    )
    assert _cli("plot", tmp_path / "res", "--out", tmp_path / "plots") == 0
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert [p.split("_")[0] for p in pngs] == ["families", "pr", "scores"]
    from copybench.report.plots import colours, predictions_arrays
    from copybench.results import read_results

    results, _ = read_results(tmp_path / "res")
    assert colours(results) == colours(results[::-1])  # a detector's colour does not depend on order
    assert len(set(colours(results).values())) == len(results)
    for r in results:  # a gallery exactly when some query with a copy has a wrong rank-1 reference
        _, hits, n_pos = predictions_arrays(r)
        gallery = list((tmp_path / "plots").glob(f"missed_*__{r.detector_name}.jpg"))
        assert len(gallery) == int(bool(((n_pos > 0) & ~hits[:, 0]).any()))


def test_table_shows_accuracy_beside_throughput(tiny_dataset, tmp_path):
    from copybench.report.render import render_table

    ds = load_dataset(tiny_dataset)
    run_benchmark(
        ds,
        ["pixel_gray_8"],
        RunSettings(n_boot=10),
        results=tmp_path / "res",
        descriptor_dir=None,
        progress=False,
    )
    write_result(
        tmp_path / "res" / "speed" / "pixel_gray_8.json",
        Result(
            kind="throughput",
            key={"detector": "pixel_gray_8"},
            detector={"name": "pixel_gray_8", "weights": {"status": "none"}},
            environment={"device_name": "Test CPU"},
            measurements=[{"dtype": "fp32", "batch_size": 8, "model_ips": 900.0, "e2e_ips": 450.0}],
        ),
    )
    md = render_table(tmp_path / "res", fmt="md")
    assert "e2e img/s (Test CPU)" in md and "450.0" in md


def test_multiscale_is_the_mean_of_per_scale_descriptors(tiny_dataset, tmp_path):
    import torch

    from copybench.detectors import create_detector
    from copybench.extract import Extractor
    from copybench.preprocess import Preprocess, pil_to_tensor, read_image

    ds = load_dataset(tiny_dataset)
    paths = ds.references["path"].tolist()[:3]
    det = create_detector("pixel_rgb_8")
    got = Extractor(det, num_workers=0, progress=False, scales=(1.0, 0.5)).run(paths).vectors
    pre = Preprocess(det.spec)
    x = torch.stack([pre(pil_to_tensor(read_image(p))) for p in paths])
    half = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    norm = torch.nn.functional.normalize
    expect = norm(norm(det(x), dim=-1) + norm(det(half), dim=-1), dim=-1)
    np.testing.assert_allclose(np.asarray(got), expect.numpy(), atol=1e-5)
    assert (
        _cli(
            "run",
            "--dataset",
            tiny_dataset,
            "--detectors",
            "pixel_rgb_8",
            "--results",
            tmp_path / "r",
            "--no-cache",
            "--n-boot",
            "10",
            "--multiscale",
            "1,0.5",
        )
        == 0
    )
    result = read_result(next((tmp_path / "r").rglob("pixel_rgb_8__ms1-0.5.json")))
    assert result.key["multiscale"] == [1.0, 0.5]
    # other scales are another result, not "already computed" (both were pixel_rgb_8__ms.json)
    assert (
        _cli(
            "run",
            "--dataset",
            tiny_dataset,
            "--detectors",
            "pixel_rgb_8",
            "--results",
            tmp_path / "r",
            "--no-cache",
            "--n-boot",
            "10",
            "--multiscale",
            "1,2",
        )
        == 0
    )
    assert read_result(next((tmp_path / "r").rglob("pixel_rgb_8__ms1-2.json"))).key["multiscale"] == [
        1.0,
        2.0,
    ]
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_rgb_8", "--multiscale", "0") == 2
    assert _cli("run", "--dataset", tiny_dataset, "--detectors", "pixel_rgb_8", "--multiscale", "1,big") == 2
