"""Query subsets as papers report them, selected by name before scoring (``copybench run --subset NAME``).

- Copydays (Jégou et al. 2008): ``strong`` (the 229 strong copies), ``crops``, ``jpeg``; SSCD and DINO report
  mAP on ``strong`` against the originals plus 10k distractor references.
- DISC21 (ISC 2021): ``dev25k``, the first 25,000 development queries (Q00000-Q24999), whose ground truth was
  public during the challenge (``public_ground_truth.csv``); ``dev50k`` all 50,000 development queries.

A subset keeps every reference (distractor references included) and only its queries; the dataset fingerprint
stays the whole dataset's, and the subset name goes into the result key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pandas as pd

from .dataset import CopyDataset
from .errors import SourceError


def _family(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda q: q["family"] == name


def _disc21_dev(n: int) -> Callable[[pd.DataFrame], pd.Series]:
    def pick(q: pd.DataFrame) -> pd.Series:
        num = q["query_id"].map(lambda i: int(m.group(1)) if (m := re.fullmatch(r"Q(\d+)", i)) else -1)
        return (num >= 0) & (num < n)

    return pick


SUBSETS: dict[str, dict[str, tuple[str, Callable[[pd.DataFrame], pd.Series]]]] = {
    "copydays": {
        "strong": ("the strong copies (family strong)", _family("strong")),
        "crops": ("the crops (family crop)", _family("crop")),
        "jpeg": ("the JPEG re-encodings (family jpeg)", _family("jpeg")),
    },
    "disc21": {
        "dev25k": ("the first 25,000 dev queries, Q00000-Q24999 (public ground truth)", _disc21_dev(25_000)),
        "dev50k": ("all 50,000 dev queries, Q00000-Q49999", _disc21_dev(50_000)),
    },
}


def dataset_format(ds: CopyDataset) -> str:
    """The benchmark a dataset is: its import format (disc21, copydays, folder, csv) or ``synthetic``."""
    return str(ds.meta.get("format") or ("synthetic" if "recipe" in ds.meta else "unknown"))


def list_subsets(fmt: str | None = None) -> list[tuple[str, str, str]]:
    """(format, subset, description) of every known subset, or of one format's."""
    return [(f, n, d) for f, named in SUBSETS.items() if fmt in (None, f) for n, (d, _) in named.items()]


def select_subset(ds: CopyDataset, name: str) -> CopyDataset:
    """The dataset with only the queries of subset ``name``; SourceError when the subset is unknown for
    this dataset's format or selects no query."""
    fmt = dataset_format(ds)
    named = SUBSETS.get(fmt, {})
    if name not in named:
        known = ", ".join(named) or "none"
        raise SourceError(f"unknown subset {name!r} for a {fmt} dataset ({ds.root}): known subsets: {known}")
    keep = named[name][1](ds.queries).to_numpy(bool)
    if not keep.any():
        raise SourceError(f"subset {name!r} selects no query of {ds.root} ({len(ds.queries)} queries)")
    queries = ds.queries.loc[keep].reset_index(drop=True)
    positives = {q: ds.positives[q] for q in queries["query_id"]}
    return dataclasses.replace(ds, meta={**ds.meta, "subset": name}, queries=queries, positives=positives)
