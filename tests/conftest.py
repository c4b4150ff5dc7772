"""Shared fixtures: a tiny hand-made copy dataset (independent of the recipe code) in a temp folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from copybench.datasets.dataset import compute_fingerprint, write_dataset_index


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
