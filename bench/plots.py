"""Plots a person would rather see than read: precision-recall curves and per-family micro-AP bars (PNG).

PR curves are recomputed from each result's raw predictions and its dataset's ground truth, so they never
depend on anything the result file summarised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .results import Result, read_results
from .table import settings_label


def predictions_arrays(result: Result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, hits, n_pos) rebuilt from a result's predictions file and its dataset's ground truth."""
    from copybench.datasets.dataset import load_dataset

    dataset = load_dataset(result.dataset["path"])
    if dataset.fingerprint != result.fingerprint:
        raise ValueError(f"{result.source}: dataset {dataset.root} changed since the result was computed")
    preds = pd.read_csv(result.predictions_path, dtype={"query_id": str, "reference_id": str})
    skipped = {s["path"] for s in result.skipped if s.get("role") == "query"}
    qids = [q for q, p in zip(dataset.query_ids, dataset.queries["path"]) if p not in skipped]
    k = int(result.settings["topk"])
    row = {q: i for i, q in enumerate(qids)}
    scores = np.full((len(qids), k), -np.inf, dtype=np.float64)
    hits = np.zeros((len(qids), k), dtype=bool)
    r, c = preds["query_id"].map(row).to_numpy(), preds["rank"].to_numpy()
    scores[r, c] = preds["score"].to_numpy()
    hits[r, c] = [ref in dataset.positives[q] for q, ref in zip(preds["query_id"], preds["reference_id"])]
    n_pos = np.array([len(dataset.positives[q]) for q in qids])
    return scores, hits, n_pos


def _label(result: Result) -> str:
    return result.detector_name + (" (random weights)" if result.is_random else "")


def plot_results(results_dir: str | Path, out: str | Path) -> list[Path]:
    """Write pr_<dataset>.png and families_<dataset>.png for every dataset under ``results_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import pr_curve

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = [r for r in read_results(results_dir)[0] if r.kind == "accuracy"]
    written = []
    by_dataset: dict[str, list[Result]] = {}
    for r in results:
        by_dataset.setdefault(f"{r.dataset_name}-{r.fingerprint[:12]}", []).append(r)
    for key, group in sorted(by_dataset.items()):
        fig, ax = plt.subplots(figsize=(7, 5))
        for r in sorted(group, key=lambda r: -(r.metrics.get("micro_ap") or 0)):
            precision, recall, _ = pr_curve(*predictions_arrays(r))
            ax.plot(
                recall,
                precision,
                label=f"{_label(r)} ({settings_label(r)}) µAP={r.metrics['micro_ap']:.3f}",
            )
        ax.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title=f"pooled precision-recall: {key}",
        )
        ax.legend(fontsize=7, loc="lower left")
        written.append(_save(fig, out / f"pr_{key}.png"))
        written.append(_family_bars(group, key, out))
    return written


def _family_bars(group: list[Result], key: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    table = pd.DataFrame(
        {
            f"{_label(r)} ({settings_label(r)})": {
                g: (m or {}).get("micro_ap") for g, m in r.groups.items() if "/" not in g
            }
            for r in group
        }
    ).astype(float)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(table)), 5))
    table.plot.bar(ax=ax, width=0.8)
    ax.set(ylabel="micro-AP", ylim=(0, 1.05), title=f"micro-AP per recipe family: {key}")
    ax.legend(fontsize=7)
    return _save(fig, out / f"families_{key}.png")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
