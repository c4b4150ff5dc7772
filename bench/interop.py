"""Interoperability with the ISC 2021 (DISC21) tooling: predictions/ground-truth CSVs and HDF5 descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .results import read_result


def export_isc(result_file: str | Path, out: str | Path) -> list[Path]:
    """Write ``predictions.csv`` (query_id,reference_id,score) and ``ground_truth.csv`` (query_id,reference_id;
    empty reference for a distractor) so the official ISC evaluation can score a result."""
    from copybench.datasets.dataset import atomic_write_text, load_dataset

    from .run import predictions_path

    result_file = Path(result_file)
    result = read_result(result_file)
    if result["kind"] != "accuracy":
        raise ValueError(f"{result_file}: only accuracy results have predictions to export")
    pred_file = result_file.parent / result.get("predictions_file", predictions_path(result_file).name)
    if not pred_file.is_file():
        raise FileNotFoundError(f"predictions of {result_file} not found: {pred_file}")
    dataset = load_dataset(result["dataset"]["path"])
    if dataset.fingerprint != result["dataset"]["fingerprint"]:
        raise ValueError(f"dataset at {dataset.root} changed since {result_file} was computed (fingerprint differs)")
    preds = pd.read_csv(pred_file, dtype={"query_id": str, "reference_id": str})
    out = Path(out)
    p_path, g_path = out / "predictions.csv", out / "ground_truth.csv"
    atomic_write_text(p_path, preds[["query_id", "reference_id", "score"]].to_csv(index=False))
    rows = [(q, r) for q in dataset.query_ids for r in (sorted(dataset.positives[q]) or [""])]
    atomic_write_text(g_path, pd.DataFrame(rows, columns=["query_id", "reference_id"]).to_csv(index=False))
    return [p_path, g_path]


def read_isc_h5(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Descriptors in ISC's HDF5 layout: datasets ``vectors`` (N, D) and ``image_names`` (N,)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "vectors" not in f or "image_names" not in f:
                raise ValueError(f"{path}: ISC descriptor files hold 'vectors' and 'image_names'; found {sorted(f)}")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["image_names"][:]]
            vectors = np.asarray(f["vectors"][:], dtype=np.float32)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if vectors.ndim != 2 or len(names) != len(vectors):
        raise ValueError(f"{path}: {len(names)} names for vectors of shape {vectors.shape}")
    return names, vectors


def write_isc_h5(path: str | Path, names: list[str], vectors: np.ndarray) -> Path:
    """Write descriptors in ISC's HDF5 layout."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("vectors", data=np.asarray(vectors, dtype=np.float32))
        f.create_dataset("image_names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
    return Path(path)
