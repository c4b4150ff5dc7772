"""Hub names are checked before anything uses them (length, characters, revisions), and every path a hub name
resolves to stays inside the Hugging Face cache: no file name is made from an unchecked name (#27.4, #29.5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.detectors import UnknownDetectorError
from copybench.detectors.hub import cached_snapshot, check_hub_name, shards, split_repo
from copybench.results import safe_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"

GOOD = [
    "timm:vit_small_patch16_224.augreg_in21k",
    "timm:resnet18",
    "open_clip:ViT-B-32/laion2b_s34b_b79k",
    "hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "hf:facebook/dinov2-small",
    "hf:facebook/dinov2-small@main",
    "hf:org/model@v1.0",
    "hf:org/model@release/2024-01",
    "hf:org/model@refs/pr/3",
    f"hf:org/model@{COMMIT}",
]
BAD = {
    "timm:" + "a" * 500: "too long",
    "timm:../../etc": "character",
    "timm:a b": "character",
    "open_clip:ViT-B-32/../../x": "ARCH/TAG",
    "open_clip:ViT-B-32": "ARCH/TAG",
    "hf:org/name@../../..": "revision",
    "hf:org/name@main/../x": "revision",
    "hf:org/name@.hidden": "revision",
    "hf:org/name@x.lock": "revision",
    "hf:org/name@": "revision",
    "hf:org/name@a//b": "revision",
    "hf:org/name@-x": "revision",
    "hf:org/../name": "ORG/NAME",
    "hf:org/name/extra": "ORG/NAME",
    "hf-hub:org--x/name": "ORG/NAME",
    "hf:org/" + "n" * 97: "ORG/NAME",
}


@pytest.mark.parametrize("name", GOOD)
def test_well_formed_hub_names_pass(name):
    check_hub_name(name)


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_hub_names_are_refused_naming_what_is_wrong(name):
    with pytest.raises(UnknownDetectorError) as err:
        check_hub_name(name)
    assert BAD[name] in str(err.value)
    assert len(str(err.value)) < 400  # a 500-character name is not echoed whole


def test_split_repo_refuses_a_revision_that_climbs_out():
    with pytest.raises(UnknownDetectorError, match="revision"):
        split_repo("org/name@../../..")


@pytest.mark.parametrize("name", ["timm:" + "a" * 500, "hf:org/name@../../..", "open_clip:A/../../b"])
def test_run_refuses_a_bad_hub_name_up_front(name, tiny_dataset, tmp_path, capsys):
    code = main(
        ["run", "--dataset", str(tiny_dataset), "--detectors", name, "--results", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "OSError" not in err and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*"))


def test_weights_fetch_refuses_a_bad_hub_name(capsys):
    assert main(["weights", "fetch", "hf:org/name@../../.."]) == 2
    assert "revision" in capsys.readouterr().err


def test_long_names_make_bounded_distinct_file_names():
    a, b = safe_name("x:" + "a" * 500), safe_name("x:" + "a" * 499 + "b")
    assert len(a) <= 120 and len(b) <= 120 and a != b
    assert (
        safe_name("timm:resnet18") == "timm-resnet18"
    )  # short names as before (result files keep their names)


# --- every resolved path confined to the Hugging Face cache --------------------------------------------------
@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _repo_root(cache: Path, repo: str = "org/model") -> Path:
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    return root


def test_a_ref_that_is_not_a_commit_is_refused(hf_cache, tmp_path):
    root = _repo_root(hf_cache)
    (tmp_path / "outside").mkdir()
    (root / "snapshots").mkdir()
    (root / "refs" / "main").write_text("../../../outside")
    with pytest.raises(UnknownDetectorError, match="not a commit"):
        cached_snapshot("org/model")


def test_a_snapshot_linked_outside_the_cache_is_refused(hf_cache, tmp_path):
    root = _repo_root(hf_cache)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "snapshots").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "snapshots" / COMMIT)
    with pytest.raises(UnknownDetectorError, match="outside the Hugging Face cache"):
        cached_snapshot("org/model")


def test_a_snapshot_inside_the_cache_is_found(hf_cache):
    root = _repo_root(hf_cache)
    (root / "refs" / "main").write_text(COMMIT + "\n")
    (root / "snapshots" / COMMIT).mkdir(parents=True)
    assert cached_snapshot("org/model") == root / "snapshots" / COMMIT
    assert cached_snapshot("org/model", COMMIT) == root / "snapshots" / COMMIT


def test_a_shard_index_naming_a_file_outside_the_cache_is_refused(hf_cache, tmp_path):
    snap = _repo_root(hf_cache) / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    index = snap / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "../../../../secret.safetensors"}}))
    with pytest.raises(UnknownDetectorError, match="outside"):
        shards(index)
