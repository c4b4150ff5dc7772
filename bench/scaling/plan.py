"""Scaling plan for scans on N GPUs, from measured rates, and a Ray simulation that checks its model.

The model (``plan_scan``): a scan of ``n_generated`` images against ``n_train`` training images on N workers
takes ``startup + (n_train + n_generated) / (N * extract_rate) + pairs / (N * pair_rate)`` seconds, where
``pairs = (n_generated + baseline) * n_train`` query-reference dot products of exact search (the
train-vs-train baseline adds ``baseline`` queries) and both rates are per device, taken from ``copybench
throughput`` result files (end-to-end extraction images/s; retrieval queries/s x its reference count).
Work is split evenly (Ray Data hands batches to whichever actor is free; search is one task per reference
shard), so time falls as 1/N after a fixed start-up. Descriptors are stored in fp16: ``dims * 2`` bytes each.
With shard inputs the plan also gives the input volume and the read bandwidth that keeps N devices busy (bytes
per image measured on the user's shards), the descriptor store's read volume, and the opt-in IVF index
(:class:`AnnPlan`: the probed share of the search and the index's size).

``simulate`` checks that claim on one machine: the same images extracted by K = 1, 2, ... detector actors
(each a CPU slice, each given a share of the batches), with per-worker busy rates and wall times; the K = 1
run gives the start-up and the per-worker rate, from which the model predicts the wall time at larger K.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from copybench.scaling.records import LOCAL_NODE_IP

SCALING_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DeviceRates:
    """Per-device rates measured by ``copybench throughput`` (one result file)."""

    device: str
    detector: str
    dims: int
    extract_ips: float  # end-to-end images/s (files -> descriptors)
    pairs_per_s: float  # exact-search query x reference dot products per second
    source: str


@dataclass(frozen=True)
class AnnPlan:
    """The opt-in IVF index: lists, lists probed per query, and bytes per vector (0: IVF-Flat, fp32)."""

    nlist: int
    nprobe: int = 16
    pq_m: int = 0

    def visited(self, n_train: int) -> float:
        """Share of the training set one query compares with (probed lists of an even split)."""
        return min(1.0, self.nprobe / self.nlist) if n_train else 0.0

    def index_gb(self, n_train: int, dims: int) -> float:
        """The index in memory: codes (or fp32 vectors) plus the 8-byte ids, and the centroids."""
        per = (self.pq_m if self.pq_m else 4 * dims) + 8
        return (n_train * per + self.nlist * dims * 4) / 1e9


@dataclass(frozen=True)
class ScanPlan:
    """Predicted wall time, device hours, descriptor storage and data volumes of one scan on ``n_workers``."""

    n_train: int
    n_generated: int
    n_workers: int
    extract_h: float
    search_h: float
    wall_h: float
    device_hours: float
    storage_gb: float
    input_gb: float = float("nan")  # shard bytes read (bytes per image x images); NaN: not given
    input_gbps: float = float("nan")  # read bandwidth that keeps n_workers extracting at their rate
    store_read_gb: float = 0.0  # descriptor store read back: the search, the baseline (and the ANN build)
    index_gb: float = 0.0  # ANN index size (0: exact search)


def read_rates(path: str | Path) -> DeviceRates:
    """The extraction and search rates of one throughput result file (its fastest measured batch size)."""
    data = json.loads(Path(path).read_text())
    if data.get("kind") != "throughput":
        raise ValueError(f"{path}: not a throughput result (kind {data.get('kind')!r})")
    best = max(data["measurements"], key=lambda m: m.get("e2e_ips") or 0.0)
    n_refs = int(data["settings"]["n_references"])
    return DeviceRates(
        device=data["environment"].get("device_name") or data["settings"]["device"],
        detector=data["key"]["detector"],
        dims=int(data["detector"]["spec"]["dims"]),
        extract_ips=float(best["e2e_ips"]),
        pairs_per_s=float(best["retrieval_qps"]) * n_refs,
        source=str(path),
    )


def plan_scan(
    rates: DeviceRates,
    n_train: int,
    n_generated: int,
    n_workers: int,
    *,
    baseline: int = 10_000,
    startup_s: float = 0.0,
    bytes_per_image: float | None = None,
    ann: AnnPlan | None = None,
) -> ScanPlan:
    """The model's prediction for one scan (see the module docstring). With ``ann`` the generated images
    compare with the probed share of the training set (plus the centroids); the baseline stays exact."""
    extract_s = (n_train + n_generated) / (n_workers * rates.extract_ips)
    base = min(baseline, n_train)
    gen_pairs = n_generated * (n_train if ann is None else n_train * ann.visited(n_train) + ann.nlist)
    search_s = (gen_pairs + base * n_train) / (n_workers * rates.pairs_per_s)
    wall_s = startup_s + extract_s + search_s
    store_gb = n_train * rates.dims * 2 / 1e9
    bpi = float("nan") if bytes_per_image is None else bytes_per_image
    return ScanPlan(
        n_train=n_train,
        n_generated=n_generated,
        n_workers=n_workers,
        extract_h=extract_s / 3600,
        search_h=search_s / 3600,
        wall_h=wall_s / 3600,
        device_hours=n_workers * wall_s / 3600,
        storage_gb=(n_train + n_generated) * rates.dims * 2 / 1e9,
        input_gb=(n_train + n_generated) * bpi / 1e9,
        input_gbps=n_workers * rates.extract_ips * bpi / 1e9,
        # each search reads every reference shard once (all query blocks per task); the ANN build once more
        store_read_gb=store_gb * (2 + (ann is not None)),
        index_gb=ann.index_gb(n_train, rates.dims) if ann else 0.0,
    )


# ---------------------------------------------------------------------------------------------- simulation
def simulate(
    dataset_dir: str | Path,
    detector: str,
    *,
    workers: tuple[int, ...] = (1, 2),
    batch_size: int = 8,
    repeats: int = 1,
) -> dict:
    """Extract one dataset's images with K Ray actors for each K; wall, per-worker rates and the model's check."""
    import ray

    from copybench.datasets.dataset import load_dataset
    from copybench.detectors import create_detector
    from copybench.scaling.engine import RayEngine

    ds = load_dataset(dataset_dir)
    paths = ds.references["path"].tolist() + ds.queries["path"].tolist()
    det = create_detector(detector)
    runs = []

    def engine(k: int) -> RayEngine:
        return RayEngine(workers=k, cpus_per_worker=1.0, progress=False)

    # one logical CPU more than the actors hold, for the read tasks (I/O) beside them
    ray.init(
        num_cpus=max(workers) + 1,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address=LOCAL_NODE_IP,
    )
    try:
        for k in workers:
            for rep in range(repeats):
                runs.append(_one_run(engine(k), det, paths, k, rep, batch_size))
    finally:
        ray.shutdown()
    return _summarise(runs, detector, len(paths), workers, batch_size)


def _one_run(engine, det, paths: list[str], k: int, rep: int, batch_size: int) -> dict:
    t0 = time.perf_counter()
    ext = engine.extractor(det, batch_size=batch_size, cache_dir=None, progress=False)
    ext.run(paths, label=f"K={k}")
    wall = time.perf_counter() - t0
    [report] = engine.reports
    return {
        "workers": k,
        "repeat": rep,
        "images": report.images,
        "wall_s": wall,
        "per_worker": [
            {"worker": w.worker, "images": w.images, "busy_s": w.busy_s, "images_per_s": w.images_per_s}
            for w in report.workers
        ],
        "busy_s": sum(w.busy_s for w in report.workers),
    }


def _summarise(
    runs: list[dict], detector: str, n_images: int, workers: tuple[int, ...], batch_size: int
) -> dict:
    """Fit start-up and per-worker rate on K = min(workers); predict the others' wall times."""
    from copybench.env import environment

    k0 = min(workers)
    base = [r for r in runs if r["workers"] == k0]
    busy = sum(r["busy_s"] for r in base) / len(base)  # summed over the k0 workers
    wall = sum(r["wall_s"] for r in base) / len(base)
    rate = n_images / busy  # images/s of one worker while it has a batch
    startup = max(0.0, wall - busy / k0)  # what does not shrink with workers: actor start, model load, driver
    checks = []
    for k in workers:
        mine = [r for r in runs if r["workers"] == k]
        measured = sum(r["wall_s"] for r in mine) / len(mine)
        predicted = startup + n_images / (k * rate)
        # the same model fed with this K's own per-worker rates: separates "work splits evenly" from "a
        # worker's rate does not depend on K" (true for one GPU per worker, not for CPU slices of busy cores)
        rates_k = sum(n_images / r["busy_s"] * k for r in mine) / len(mine)
        checks.append(
            {
                "workers": k,
                "measured_wall_s": measured,
                "predicted_wall_s": predicted,
                "per_worker_images_per_s": rates_k / k,
                "predicted_with_own_rates_s": startup + n_images / rates_k,
            }
        )
    return {
        "schema_version": SCALING_SCHEMA_VERSION,
        "kind": "scaling_simulation",
        "detector": detector,
        "images": n_images,
        "batch_size": batch_size,
        "model": {"startup_s": startup, "per_worker_images_per_s": rate},
        "checks": checks,
        "runs": runs,
        "environment": environment("cpu", "fp32"),
    }


def write_simulation(summary: dict, out: str | Path) -> Path:
    """The simulation's measurements as a JSON result file."""
    from copybench.io import atomic_write_text

    out = Path(out)
    atomic_write_text(out, json.dumps(summary, indent=1, sort_keys=True))
    return out


def plan_table(
    rates: DeviceRates,
    sizes: dict[str, int],
    n_generated: int,
    gpus: tuple[int, ...],
    *,
    price: float | None = None,
    startup_s: float = 0.0,
    bytes_per_image: float | None = None,
    ann: AnnPlan | None = None,
) -> str:
    """Markdown table of ``plan_scan`` over training-set sizes and device counts (cost when ``price`` per
    device-hour is given; input volume and bandwidth when ``bytes_per_image`` is; the index with ``ann``)."""
    head = "| training set | devices | extraction | search | wall time | device-hours | descriptors (fp16) |"
    head += " store read | input read | input GB/s needed |" + (" ANN index |" if ann else "")
    lines = [head + (" cost |" if price else ""), "|---" * (10 + bool(ann) + bool(price)) + "|"]
    for name, n in sizes.items():
        for g in gpus:
            p = plan_scan(
                rates, n, n_generated, g, startup_s=startup_s, bytes_per_image=bytes_per_image, ann=ann
            )
            row = (
                f"| {name} | {g} | {_hm(p.extract_h)} | {_hm(p.search_h)} | {_hm(p.wall_h)} | "
                f"{p.device_hours:,.1f} | {p.storage_gb:,.1f} GB | {p.store_read_gb:,.1f} GB | "
                f"{_gb(p.input_gb)} | {_gb(p.input_gbps, '/s')} |"
                + (f" {p.index_gb:,.1f} GB |" if ann else "")
            )
            lines.append(row + (f" ${p.device_hours * price:,.0f} |" if price else ""))
    return "\n".join(lines)


def _gb(v: float, unit: str = "") -> str:
    return "not measured" if math.isnan(v) else f"{v:,.2f} GB{unit}"


def shard_bytes_per_image(spec: str, max_shards: int = 4) -> tuple[float, int]:
    """Measured input volume: bytes per sample over the first ``max_shards`` shards (read whole), and the
    samples counted."""
    from copybench.scaling.shards import list_shards, read_shard

    refs = list_shards(spec)[:max_shards]
    n = sum(len(read_shard(r).keys) for r in refs)
    if n == 0:
        raise ValueError(f"{spec}: no readable sample in the first {len(refs)} shard(s)")
    return sum(r.size for r in refs) / n, n


def _hm(hours: float) -> str:
    """Hours as ``H h MM min`` (or seconds under a minute)."""
    if hours * 60 < 1:
        return f"{hours * 3600:.0f} s"
    h, m = divmod(round(hours * 60), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def main(argv: list[str] | None = None) -> int:
    """``python -m copybench.scaling simulate|plan``: run the simulation, or print the plan table."""
    parser = argparse.ArgumentParser(prog="python -m copybench.scaling")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("simulate", help="extract a dataset with K Ray actors for each K; write a result file")
    p.add_argument("--dataset", required=True)
    p.add_argument("--detector", default="sscd_distilled.onnx")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("plan", help="the scan plan table from a throughput result file")
    p.add_argument("throughput_file")
    p.add_argument("--generated", type=int, default=10_000)
    p.add_argument("--gpus", default="1,8,64,256")
    p.add_argument("--price", type=float, default=None, help="price of one device-hour, for a cost column")
    p.add_argument("--simulation", default=None, help="a simulation result: its measured start-up is added")
    p.add_argument("--shards", default=None, help="training shards: bytes per image measured on the first 4")
    p.add_argument("--bytes-per-image", type=float, default=None, help="input bytes per image, if known")
    p.add_argument("--ann-nlist", type=int, default=None, help="plan the ANN option with this many IVF lists")
    p.add_argument("--ann-nprobe", type=int, default=16)
    p.add_argument("--ann-pq-m", type=int, default=0, help="IVF-PQ bytes per vector (0: IVF-Flat)")
    _add_measure_parsers(sub)
    args = parser.parse_args(argv)
    if args.what in ("measure-driver", "measure-driver-one"):
        return _measure(args)
    if args.what == "simulate":
        workers = tuple(int(w) for w in args.workers.split(","))
        summary = simulate(args.dataset, args.detector, workers=workers, repeats=args.repeats)
        print(json.dumps({"model": summary["model"], "checks": summary["checks"]}, indent=1))
        write_simulation(summary, args.out)
        return 0
    rates = read_rates(args.throughput_file)
    print(json.dumps(asdict(rates), indent=1))
    gpus = tuple(int(g) for g in args.gpus.split(","))
    startup = json.loads(Path(args.simulation).read_text())["model"]["startup_s"] if args.simulation else 0.0
    sizes = {"12M": 12_000_000, "2B": 2_000_000_000}
    bpi = args.bytes_per_image
    if args.shards:
        bpi, n = shard_bytes_per_image(args.shards)
        print(f"input: {bpi:,.0f} bytes per image, measured on {n} samples of {args.shards}")
    ann = AnnPlan(args.ann_nlist, args.ann_nprobe, args.ann_pq_m) if args.ann_nlist else None
    print(
        plan_table(
            rates,
            sizes,
            args.generated,
            gpus,
            price=args.price,
            startup_s=startup,
            bytes_per_image=bpi,
            ann=ann,
        )
    )
    return 0


def _add_measure_parsers(sub) -> None:
    p = sub.add_parser("measure-driver", help="driver peak RSS at several synthetic training-set sizes")
    p.add_argument("--rows", default="100000,1000000", help="descriptor counts, comma-separated")
    p.add_argument("--store", required=True, help="descriptor store folder (or URI) for the synthetic shards")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--rows-per-shard", type=int, default=50_000)
    p.add_argument("--out", required=True, help="result file (JSON)")
    p = sub.add_parser("measure-driver-one", help="one size of measure-driver (run by it in a fresh process)")
    p.add_argument("rows", type=int)
    p.add_argument("store")
    p.add_argument("--options", default="{}")


def _measure(args) -> int:
    from copybench.scaling.measure import measure_driver, measure_sizes

    if args.what == "measure-driver-one":
        print(json.dumps(measure_driver(args.rows, args.store, **json.loads(args.options))))
        return 0
    options = {"workers": args.workers, "queries": args.queries, "rows_per_shard": args.rows_per_shard}
    summary = measure_sizes([int(r) for r in args.rows.split(",")], args.store, args.out, **options)
    for r in summary["runs"]:
        print(f"{r['rows']:>12,d} descriptors: driver peak {r['driver_rss_mb']['peak_after_search']:.0f} MB")
    print(f"peak spread {summary['peak_spread_mb']:.0f} MB (target < {summary['target_mb']} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
