"""Shared fixtures: a tiny hand-made copy dataset (independent of the recipe code) in a temp folder.

Tests never touch the user's caches: before copybench is imported, every cache location copybench and its
libraries read (COPYBENCH_CACHE, HF_HOME, TORCH_HOME, XDG_CACHE_HOME, ...) points into one temporary folder
for the whole session, removed at its end. A guard (an audit hook) then fails any test that still opens a file
for writing, creates, renames or removes something under the real home cache (~/.cache, or a cache the user
configured): a code path with a hard-coded ~/.cache is caught, not silently written to.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Set before copybench is imported: copybench.run reads COPYBENCH_CACHE once, at import.
CACHE_VARS = {
    "COPYBENCH_CACHE": "copybench",
    "COPYBENCH_META_CACHE": "copybench/detector_params.json",
    "COPYBENCH_WEIGHTS_LOCK": "copybench/weights.lock.json",
    "HF_HOME": "huggingface",
    "HF_HUB_CACHE": "huggingface/hub",
    "TORCH_HOME": "torch",
    "XDG_CACHE_HOME": "xdg-cache",
    "MPLCONFIGDIR": "matplotlib",
}
# what the session would otherwise have written to: the real home cache and any cache the user configured
REAL_CACHES = tuple(
    dict.fromkeys(
        os.path.abspath(os.path.expanduser(p))
        for p in [
            "~/.cache",
            os.environ.get("COPYBENCH_CACHE_DIR"),
            *(os.environ.get(v) for v in CACHE_VARS if v != "MPLCONFIGDIR"),
        ]
        if p
    )
)
TEST_CACHE = Path(tempfile.mkdtemp(prefix="copybench-test-cache-"))
os.environ.pop("COPYBENCH_CACHE_DIR", None)  # the older variable: the cache root again if a test unsets ours
for _var, _rel in CACHE_VARS.items():
    os.environ[_var] = str(TEST_CACHE / _rel)
# Plugins the user installed never load in tests (here and in every child process): only the suite's own
# example plugin (tests/plugin_example, installed into a temp folder by tests/detectors/test_plugin.py) may.
os.environ["COPYBENCH_PLUGINS"] = "copybench-plugin-example"

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from copybench.datasets.dataset import compute_fingerprint, write_dataset_index


class HomeCacheGuard:
    """Records writes under ``roots`` seen by a Python audit hook (open for writing, mkdir, rename, remove).

    Audit hooks cannot be removed: ``active`` switches this one off. Writes from subprocesses and from C code
    that bypasses Python's I/O are not seen; the redirected environment covers those."""

    _EVENTS = frozenset(
        {
            "open",
            "os.mkdir",
            "os.rename",
            "os.remove",
            "os.rmdir",
            "os.symlink",
            "os.link",
            "os.truncate",
        }
    )
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self, roots) -> None:
        self.roots = tuple(os.path.abspath(os.fspath(r)) for r in roots)
        self.hits: list[str] = []
        self.active = True

    def install(self) -> HomeCacheGuard:
        sys.addaudithook(self._audit)
        return self

    def _audit(self, event: str, args: tuple) -> None:
        if not self.active or event not in self._EVENTS:
            return
        if event == "open":
            path, mode, flags = args
            if not (any(c in (mode or "") for c in "wax+") or (flags or 0) & self._WRITE_FLAGS):
                return
            paths = (path,)
        else:
            paths = args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]
        for path in paths:
            if self._under_root(path):
                self.hits.append(f"{event} {os.fsdecode(path)}")

    def _under_root(self, path) -> bool:
        if isinstance(path, int) or path is None:  # a file descriptor: its opening was checked
            return False
        p = os.path.abspath(os.fsdecode(os.fspath(path)))
        return any(p == r or p.startswith(r + os.sep) for r in self.roots)


HOME_CACHE_GUARD = HomeCacheGuard(REAL_CACHES).install()


@pytest.fixture(autouse=True)
def _never_write_to_the_home_cache():
    """Fails the test (at teardown) that wrote under the real home cache, naming what it wrote."""
    HOME_CACHE_GUARD.hits.clear()
    yield
    hits, HOME_CACHE_GUARD.hits[:] = list(HOME_CACHE_GUARD.hits), []
    if hits:
        pytest.fail(
            "wrote under the user's cache (tests must use the session's temporary cache):\n"
            + "\n".join(hits[:20])
        )


@pytest.fixture
def session_cache() -> Path:
    """The temporary folder every cache variable points into for this session."""
    return TEST_CACHE


@pytest.fixture
def home_cache_guard() -> HomeCacheGuard:
    """The session's installed guard (its class tests the guard itself on a fake home)."""
    return HOME_CACHE_GUARD


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


def _texture(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A distinct image: smooth random colour field plus a few bright rectangles."""
    low = rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
    arr = np.asarray(img).copy()
    for _ in range(3):
        x, y = rng.integers(0, size - 20, size=2)
        arr[y : y + 16, x : x + 16] = rng.integers(0, 256, size=3)
    return Image.fromarray(arr)


def make_tiny_dataset(
    root: Path, n_refs: int = 8, n_distractors: int = 3, seed: int = 0, corrupt: bool = False
) -> Path:
    """References, one blurred+cropped copy of each, and distractors from unrelated images."""
    rng = np.random.default_rng(seed)
    (root / "references").mkdir(parents=True, exist_ok=True)
    (root / "queries").mkdir(parents=True, exist_ok=True)
    refs, queries = [], []
    for i in range(n_refs):
        img = _texture(rng)
        img.save(root / "references" / f"R{i:03d}.png")
        refs.append((f"R{i:03d}", f"references/R{i:03d}.png"))
        copy = img.crop((6, 6, 90, 90)).resize((96, 96)).filter(ImageFilter.GaussianBlur(1))
        copy.save(root / "queries" / f"Q{i:03d}.png")
        queries.append((f"Q{i:03d}", f"queries/Q{i:03d}.png", f"R{i:03d}", "crop", "light"))
    for j in range(n_distractors):
        _texture(rng).save(root / "queries" / f"D{j:03d}.png")
        queries.append((f"D{j:03d}", f"queries/D{j:03d}.png", "", "distractor", ""))
    if corrupt:
        (root / "queries" / "BAD.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        queries.append(("BAD", "queries/BAD.png", "R000", "crop", "light"))
    ref_df = pd.DataFrame(refs, columns=["reference_id", "path"])
    q_df = pd.DataFrame(queries, columns=["query_id", "path", "reference_id", "family", "tier"]).assign(
        params="{}"
    )
    identity = {"recipe": "tiny-handmade", "seed": seed, "n": [n_refs, n_distractors, corrupt]}
    fp = compute_fingerprint(identity, ref_df, q_df, {})
    meta = {
        "name": "tiny",
        "recipe": "tiny-handmade",
        "seed": seed,
        "fingerprint": fp,
        "images_root": ".",
        "counts": {"references": n_refs, "queries": len(q_df)},
    }
    write_dataset_index(root, meta, ref_df, q_df)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "tiny")


@pytest.fixture(scope="module")
def tiny_dataset_module(tmp_path_factory) -> Path:
    """The tiny dataset shared by a module's tests (they must not modify it)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_module") / "tiny")


@pytest.fixture
def tiny_dataset_corrupt(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "tiny_bad", corrupt=True)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
