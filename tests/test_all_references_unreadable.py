"""A run in which no reference decodes ends with one clear line per detector naming the cause (exit 2, as any
unreadable input), never an IndexError from inside the search."""

from __future__ import annotations

import json

import pandas as pd

from copybench.cli import main
from copybench.datasets.dataset import write_dataset_index


def test_every_reference_undecodable_says_so(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset
    for path in (root / "references").iterdir():
        path.write_bytes(b"not an image")
    meta = json.loads((root / "dataset.json").read_text())
    meta.pop("integrity")  # indexed as it is now: the files are what the dataset holds, not edits
    write_dataset_index(root, meta, pd.read_csv(root / "references.csv"), pd.read_csv(root / "queries.csv"))
    args = ["-q", "run", "--dataset", str(root), "--detectors", "pixel_gray_8,phash_64", "--no-cache"]
    assert main([*args, "--results", str(tmp_path / "res")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "IndexError" not in err
    for name in ("pixel_gray_8", "phash_64"):  # each detector reported, none lost to the first
        assert f"failed {name} ValueError: none of the 8 references could be read (first: " in err
    assert "R000.png: cannot decode image" in err and "nothing to search against" in err
