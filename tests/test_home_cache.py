"""Tests never write to the user's caches: conftest.py points every cache variable into a session temp folder
and fails a test that writes under the real ~/.cache anyway. These tests check both halves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def test_every_cache_location_resolves_into_the_session_cache(session_cache: Path):
    from copybench.detectors import hub, meta
    from copybench.detectors.fetch import checkpoints_dir, lock_path
    from copybench.io import cache_root
    from copybench.run import DEFAULT_CACHE

    locations = {
        "cache_root": cache_root(),
        "run.DEFAULT_CACHE (read at import)": DEFAULT_CACHE,
        "hugging face hub": hub.hf_cache_dir(),
        "torch hub checkpoints": checkpoints_dir(),
        "weights lock": lock_path(),
        "parameter counts": meta._cache_path(),
    }
    home_cache = Path.home() / ".cache"
    for what, path in locations.items():
        assert Path(path).is_relative_to(session_cache), (what, path)
        assert not Path(path).is_relative_to(home_cache), (what, path)


def test_subprocesses_inherit_the_session_cache(session_cache: Path):
    import subprocess
    import sys

    code = "from copybench.io import cache_root; print(cache_root())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).is_relative_to(session_cache)


def test_the_session_guard_watches_the_real_home_cache(home_cache_guard):
    assert os.path.abspath(Path.home() / ".cache") in home_cache_guard.roots
    assert home_cache_guard.active


def test_the_guard_records_every_kind_of_write_under_a_watched_root(tmp_path, home_cache_guard):
    fake_cache = tmp_path / "home" / ".cache"
    fake_cache.mkdir(parents=True)
    (fake_cache / "old.txt").write_text("kept")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    guard = type(home_cache_guard)([fake_cache]).install()
    try:
        (fake_cache / "old.txt").read_text()  # reading is fine
        (elsewhere / "a.txt").write_text("x")  # writing outside is fine
        os.close(os.open(fake_cache / "old.txt", os.O_RDONLY))
        assert guard.hits == []
        (fake_cache / "copybench").mkdir()
        (fake_cache / "copybench" / "b.json").write_text("{}")
        np.save(fake_cache / "c.npy", np.zeros(2))
        os.close(os.open(fake_cache / "d.bin", os.O_WRONLY | os.O_CREAT))
        os.replace(elsewhere / "a.txt", fake_cache / "moved.txt")
        (fake_cache / "old.txt").unlink()
    finally:
        guard.active = False  # audit hooks cannot be removed
    events = [h.split(" ", 1) for h in guard.hits]
    assert [e for e, _ in events] == ["os.mkdir", "open", "open", "open", "os.rename", "os.remove"]
    assert [Path(p).name for _, p in events] == [
        "copybench",
        "b.json",
        "c.npy",
        "d.bin",
        "moved.txt",
        "old.txt",
    ]


_CACHE_PATHS = """
import json
from copybench.datasets import masks
from copybench.detectors import meta
from copybench.detectors.fetch import lock_path
from copybench.io import cache_root
from copybench.run import DEFAULT_CACHE
print(json.dumps({"root": str(cache_root()), "descriptors": str(DEFAULT_CACHE),
                  "masks": str(masks.cache_dir() / "u2netp-masks"), "parameter counts": str(meta._cache_path()),
                  "weights lock": str(lock_path())}))
"""


def _docs_cache_section() -> str:
    page = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    start = page.index("All caches live under one folder")
    return page[start : page.index("\n\n", start)]


def test_every_default_cache_location_derives_from_the_one_root(tmp_path):
    """Only $COPYBENCH_CACHE set: every cache copybench writes lands under it (and the docs list each)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COPYBENCH_META_CACHE", "COPYBENCH_WEIGHTS_LOCK")}
    env.pop("COPYBENCH_CACHE_DIR", None)
    env["COPYBENCH_CACHE"] = str(tmp_path / "root")
    out = subprocess.run(
        [sys.executable, "-c", _CACHE_PATHS], env=env, capture_output=True, text=True, check=True
    )
    paths = {what: Path(p) for what, p in json.loads(out.stdout).items()}
    root = paths.pop("root")
    assert root == tmp_path / "root"
    section = _docs_cache_section()
    for what, path in paths.items():
        assert path.parent == root, (what, path)
        name = path.name + ("/" if path.suffix == "" else "")
        assert f"`{name}`" in section, f"docs/running.md's cache section does not list {name} ({what})"


def test_the_specific_cache_variables_still_override_the_root(tmp_path, monkeypatch):
    from copybench.detectors import meta
    from copybench.detectors.fetch import lock_path

    monkeypatch.setenv("COPYBENCH_CACHE", str(tmp_path / "root"))
    monkeypatch.setenv("COPYBENCH_META_CACHE", str(tmp_path / "elsewhere" / "params.json"))
    monkeypatch.setenv("COPYBENCH_WEIGHTS_LOCK", str(tmp_path / "elsewhere" / "lock.json"))
    assert meta._cache_path() == tmp_path / "elsewhere" / "params.json"
    assert lock_path() == tmp_path / "elsewhere" / "lock.json"
    monkeypatch.delenv("COPYBENCH_META_CACHE")
    monkeypatch.delenv("COPYBENCH_WEIGHTS_LOCK")
    assert meta._cache_path() == tmp_path / "root" / "detector_params.json"
    assert lock_path() == tmp_path / "root" / "weights.lock.json"


def test_no_module_spells_the_cache_root_itself():
    """The root is spelled once, in copybench.io.cache_root; a module with its own ~/.cache/copybench default
    would ignore $COPYBENCH_CACHE."""
    import re

    pkg = Path(__file__).resolve().parents[1]
    spelled = re.compile(r"""["']\.cache["']\s*[/,]\s*["']copybench|Path\(\s*["']~/\.cache/copybench""")
    offenders = [
        str(f.relative_to(pkg))
        for folder in ("bench", "detectors", "datasets")
        for f in sorted((pkg / folder).rglob("*.py"))
        if spelled.search(f.read_text()) and f.relative_to(pkg).as_posix() != "bench/io.py"
    ]
    assert offenders == []
