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
