"""Copy-detection datasets: synthetic recipes (segmix family, augmentations, overlays, distractors) and imports.

Public API (heavy libraries load inside the functions, so ``import copybench.datasets`` stays cheap):

- :func:`build_dataset` builds a recipe such as ``default-s``, ``segmix_hard-s`` or ``crop.strong-m``;
- :func:`list_recipes` names every recipe with a one-line description; :data:`DEFAULT_RECIPE` is the demo one;
- :func:`import_dataset` indexes a real dataset laid out as DISC21, Copydays, a plain image folder or a CSV
  manifest, with optional distractor reference folders; :func:`select_subset` keeps a paper's query subset;
- :func:`replay_query` regenerates one built query from its seed, pixel for pixel;
- :func:`load_dataset` reads any dataset folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MaskError, RecipeError, SourceError
from .recipes import DEFAULT_RECIPE, list_recipes

if TYPE_CHECKING:
    import numpy as np

    from .dataset import CopyDataset, DatasetError, load_dataset

# pandas-backed names load on first use, so importing the package (the `data` command's parser does) stays cheap
_LAZY = {"CopyDataset": "dataset", "DatasetError": "dataset", "load_dataset": "dataset"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_RECIPE", "CopyDataset", "DatasetError", "MaskError", "RecipeError", "SourceError",
    "build_dataset", "import_dataset", "list_recipes", "load_dataset", "replay_query", "select_subset",
]  # fmt: skip


def build_dataset(
    recipe: str,
    out: str | Path,
    *,
    sources: str | None = None,
    n_queries: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    cache_dir: str | Path | None = None,
    levels: int | None = None,
    severities: Sequence[float] | None = None,
) -> CopyDataset:
    """Build ``recipe`` from ``sources`` (None: the embedded photos; a folder; cutouts:/voc:/coco:) into ``out``;
    computed saliency masks are cached under ``cache_dir`` (default: $COPYBENCH_CACHE or ~/.cache/copybench).
    A sweep recipe (``sweep-AXIS-SIZE``) takes ``levels`` (default 8) or explicit ``severities``."""
    from .build import build_dataset as _build

    return _build(
        recipe,
        out,
        sources=sources,
        n_queries=n_queries,
        seed=seed,
        device=device,
        progress=progress,
        cache_dir=cache_dir,
        levels=levels,
        severities=None if severities is None else list(severities),
    )


def import_dataset(
    fmt: str,
    src: str | Path,
    out: str | Path,
    progress: bool = True,
    distractors: Sequence[str | Path] = (),
    allow_outside_links: bool = False,
) -> CopyDataset:
    """Index a real dataset (``fmt``: disc21, copydays, folder or csv manifest) at ``src`` into a dataset folder
    ``out``; every image under each ``distractors`` folder is added as a distractor reference. Symbolic links
    are followed and recorded (links.csv); one resolving outside ``src`` and the distractor folders is refused
    unless ``allow_outside_links``."""
    from .importers import import_dataset as _import

    return _import(
        fmt, src, out, progress=progress, distractors=distractors, allow_outside_links=allow_outside_links
    )


def select_subset(dataset: CopyDataset, name: str) -> CopyDataset:
    """Only the queries of a named subset (copydays strong/crops/jpeg, disc21 dev25k/dev50k)."""
    from .subsets import select_subset as _select

    return _select(dataset, name)


def replay_query(dataset: str | Path | CopyDataset, query_id: str, device: str = "cpu") -> np.ndarray:
    """Regenerate one built query (uint8 (h, w, 3)) from the dataset seed and its index."""
    from .build import replay_query as _replay

    return _replay(dataset, query_id, device=device)
