"""Interoperability with the ISC 2021 (DISC21) tooling: predictions/ground-truth CSVs and HDF5 descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from copybench.results import load_result_dataset, read_result


def export_isc(result_file: str | Path, out: str | Path) -> list[Path]:
    """Write ``predictions.csv`` (query_id,reference_id,score) and ``ground_truth.csv`` (query_id,reference_id;
    empty reference for a distractor) so the official ISC evaluation can score a result."""
    from copybench.io import atomic_write_text
    from copybench.run import predictions_path

    result_file = Path(result_file)
    result = read_result(result_file)
    if result.kind != "accuracy":
        raise ValueError(f"{result_file}: only accuracy results have predictions to export")
    pred_file = result.predictions_path or predictions_path(result_file)
    if not pred_file.is_file():
        raise FileNotFoundError(f"predictions of {result_file} not found: {pred_file}")
    dataset = load_result_dataset(result)
    if result.key.get("subset"):  # the ground truth of the queries that were scored, not the whole set's
        from copybench.datasets.subsets import select_subset

        dataset = select_subset(dataset, result.key["subset"])
    # pandas >= 3 parses floats back exactly (round trip), so the scores stay at full precision end to end
    preds = pd.read_csv(pred_file, dtype={"query_id": str, "reference_id": str})
    out = Path(out)
    p_path, g_path = out / "predictions.csv", out / "ground_truth.csv"
    atomic_write_text(p_path, preds[["query_id", "reference_id", "score"]].to_csv(index=False))
    rows = [(q, r) for q in dataset.query_ids for r in (sorted(dataset.positives[q]) or [""])]
    atomic_write_text(g_path, pd.DataFrame(rows, columns=["query_id", "reference_id"]).to_csv(index=False))
    return [p_path, g_path]


def read_isc_h5(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Descriptors in ISC's HDF5 layout: datasets ``vectors`` (N, D) and ``image_names`` (N,)."""
    from copybench.extras import require

    h5py = require("h5py")

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "vectors" not in f or "image_names" not in f:
                raise ValueError(
                    f"{path}: ISC descriptor files hold 'vectors' and 'image_names'; found {sorted(f)}"
                )
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["image_names"][:]]
            vectors = np.asarray(f["vectors"][:], dtype=np.float32)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if vectors.ndim != 2 or len(names) != len(vectors):
        raise ValueError(f"{path}: {len(names)} names for vectors of shape {vectors.shape}")
    return names, vectors


def write_isc_h5(path: str | Path, names: list[str], vectors: np.ndarray) -> Path:
    """Write descriptors in ISC's HDF5 layout."""
    from copybench.extras import require

    h5py = require("h5py")

    with h5py.File(path, "w") as f:
        f.create_dataset("vectors", data=np.asarray(vectors, dtype=np.float32))
        f.create_dataset("image_names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
    return Path(path)


def _descriptors_for(ids: list[str], paths: list[str], names: list[str], vectors: np.ndarray, source: Path):
    """Align HDF5 rows to dataset ids; ids absent from the file become failed rows (reported, not fatal)."""
    from copybench.evaluate import NO_DESCRIPTOR
    from copybench.extract import Descriptors

    row = {n: i for i, n in enumerate(names)}
    if len(row) < len(names):  # which row would be meant is a guess: refused, never the last one taken
        seen: set[str] = set()
        twice = sorted({n for n in names if n in seen or seen.add(n)})
        raise ValueError(f"{source}: image_names holds {', '.join(map(repr, twice[:5]))} more than once")
    out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
    failed = {}
    for i, ident in enumerate(ids):
        if ident not in row:
            failed[i] = f"{source}: {NO_DESCRIPTOR} {ident!r}"
        elif not np.isfinite(vectors[row[ident]]).all():  # a failed extraction: counted, never searched
            failed[i] = f"{source}: non-finite descriptor for {ident!r}"
        else:
            out[i] = vectors[row[ident]]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return Descriptors(list(paths), out, None, failed)


def score_isc_h5(
    dataset_dir: str | Path,
    queries: str | Path,
    references: str | Path,
    name: str,
    *,
    results: str | Path,
    settings=None,
) -> Path:
    """Score externally computed descriptors (ISC HDF5 layout) on a dataset; writes a normal result file.

    ``image_names`` must be the dataset's query and reference ids (file stems for imported DISC21 data).
    """
    from copybench.datasets.dataset import load_dataset
    from copybench.results import result_path
    from copybench.run import RunSettings, save_result, score_descriptors

    settings = settings or RunSettings()
    if settings.similarity != "cosine":
        raise ValueError("imported descriptors are global vectors: only --similarity cosine applies")
    dataset = load_dataset(dataset_dir)
    qn, qv = read_isc_h5(queries)
    rn, rv = read_isc_h5(references)
    if qv.shape[1] != rv.shape[1]:
        raise ValueError(
            f"descriptor sizes differ: {queries} has {qv.shape[1]}, {references} has {rv.shape[1]}"
        )
    qd = _descriptors_for(dataset.query_ids, dataset.queries["path"].tolist(), qn, qv, Path(queries))
    rd = _descriptors_for(
        dataset.reference_ids, dataset.references["path"].tolist(), rn, rv, Path(references)
    )
    # file names only: result files are published, local absolute paths are not
    weights = {
        "status": "external",
        "source": f"{Path(queries).name}, {Path(references).name}",
        "sha256": None,
    }
    result, preds = score_descriptors(
        dataset, qd, rd, settings, detector_name=name, spec=None, weights=weights
    )
    path = result_path(results, name, dataset.name, dataset.fingerprint, settings.key_settings())
    from copybench.io import file_lock

    with file_lock(path.with_name(f".{path.name}.lock"), waiting=f"another process is writing {path}"):
        save_result(
            path, dataset, result, preds
        )  # the same lock as `run`: two writers of one result take turns
    return path
