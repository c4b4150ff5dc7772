"""``copybench scan``: its options and the thin wrapper over :func:`copybench.scan.scan`.

Apart from :mod:`copybench.scan` (numpy at the top) so that building the parser imports nothing heavy.
"""

from __future__ import annotations

from copybench.cliutil import add_decode_option, add_descriptor_dir, add_engine_options, add_top_k
from copybench.options import SCAN_SIMILARITIES, default_descriptor_dir


def register_cli(subparsers) -> None:
    """Add ``copybench scan`` to the CLI."""
    p = subparsers.add_parser(
        "scan", help="replication scan: find training images replicated in generated images"
    )
    _add_scan_inputs(p)
    _add_scan_model_options(p)
    _add_scan_statistics_options(p)
    _add_ann_options(p)
    add_engine_options(p)
    p.set_defaults(func=cmd_scan)


def _add_scan_inputs(p) -> None:
    """What is scanned against what, how similarity is scored and thresholded, where outputs go."""
    p.add_argument(
        "--generated",
        required=True,
        help="folder of generated images (searched recursively), or shards as --train takes them",
    )
    p.add_argument(
        "--train",
        required=True,
        help="folder of training images (searched recursively), or WebDataset .tar / Parquet shards: a path, "
        "a folder of shards, a brace pattern (shards/{00000..00127}.tar) or a URI (s3://, gs://, file://)",
    )
    p.add_argument(
        "--detector", required=True, help="registered detector name (see `copybench list detectors`)"
    )
    p.add_argument(
        "--similarity",
        default="cosine",
        choices=SCAN_SIMILARITIES,
        help="cosine on global descriptors, or split (per-token max; token-output detectors)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="flag top-1 similarity >= this (> under --protocol dcr); required unless --calibrate or --protocol dcr",
    )
    p.add_argument(
        "--protocol",
        default="native",
        choices=("native", "dcr", "isc", "dino"),
        help="evaluation protocol (docs/PROTOCOLS.md): dcr = the study's preprocessing and its > 0.5 threshold",
    )
    add_top_k(p, 5, "training matches kept per generated image (default 5)", dest="top_k")
    p.add_argument(
        "--out", required=True, help="output folder (summary.json, matches.csv, PNGs, report.html)"
    )


def _add_scan_model_options(p) -> None:
    """How the detector runs: device, batching, decoding, precision, weights."""
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32)
    add_decode_option(p)
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="autocast precision for torch models (refused for ONNX models, where it changes nothing)",
    )
    p.add_argument("--weights", default=None, metavar="FILE", help="explicit weights file for --detector")
    p.add_argument(
        "--allow-random",
        action="store_true",
        help="run a detector without weights on random ones (stated in every output)",
    )


def _add_scan_statistics_options(p) -> None:
    """Baseline sample, calibration, descriptor cache, seed and weight downloads."""
    p.add_argument(
        "--baseline-sample",
        type=int,
        default=10000,
        help="training images sampled (seeded) for the train-vs-train baseline (default 10000)",
    )
    p.add_argument(
        "--calibrate",
        default=None,
        metavar="DATASET_DIR",
        help="calibrate the threshold at 90%% precision on a labelled copybench dataset",
    )
    add_descriptor_dir(p, str(default_descriptor_dir()))
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline sample")
    p.add_argument(
        "--download", action="store_true", help="download the detector's missing official weights first"
    )


def _add_ann_options(p) -> None:
    """The opt-in approximate index (shard inputs only); exact search stays the default."""
    p.add_argument(
        "--ann",
        default=None,
        choices=("ivf-flat", "ivf-pq"),
        help="search shard inputs with a faiss IVF index instead of exactly; its recall@k and the exact "
        "replication rate on --ann-sample generated images are reported beside it",
    )
    p.add_argument("--ann-nlist", type=int, default=None, help="IVF lists (default 4 sqrt(N))")
    p.add_argument("--ann-nprobe", type=int, default=16, help="IVF lists searched per query (default 16)")
    p.add_argument("--ann-pq-m", type=int, default=32, help="IVF-PQ bytes per descriptor (default 32)")
    p.add_argument(
        "--ann-sample",
        type=int,
        default=1000,
        help="generated images also searched exactly to measure the index (default 1000)",
    )


def _scan_function(args):
    """``scan``, or ``scan_shards`` when an input names shards (with the ANN options, which need them)."""
    from copybench.scaling.shards import is_shard_spec

    if not (is_shard_spec(args.train) or is_shard_spec(args.generated)):
        if args.ann:
            raise ValueError("--ann needs shard inputs (--train as .tar / Parquet shards)")
        from copybench.scan.pipeline import scan

        return scan
    if not is_shard_spec(args.train):
        raise ValueError(f"--train {args.train}: shard --generated inputs need shard --train inputs too")
    from functools import partial

    from copybench.scaling.webscan import scan_shards

    ann = None
    if args.ann:
        from copybench.scaling.ann import AnnOptions

        ann = AnnOptions(args.ann, args.ann_nlist, args.ann_nprobe, args.ann_pq_m, None, args.ann_sample)
    return partial(scan_shards, ann=ann)


def cmd_scan(args) -> int:
    """Run the scan and print its summary."""
    from copybench.scaling.engine import engine_from_args

    scan = _scan_function(args)
    with engine_from_args(args) as engine:
        summary = scan(
            args.generated,
            args.train,
            args.detector,
            similarity=args.similarity,
            threshold=args.threshold,
            top_k=args.top_k,
            out=args.out,
            device=args.device,
            batch_size=args.batch_size,
            decode=args.decode,
            allow_random=args.allow_random,
            baseline_sample=args.baseline_sample,
            calibrate=args.calibrate,
            descriptor_dir=None if args.no_cache else args.descriptor_dir,
            progress=not args.quiet,
            seed=args.seed,
            download=args.download,
            weights=args.weights,
            dtype=args.dtype,
            protocol=args.protocol,
            engine=engine,
        )
    from rich.console import Console

    from copybench.scan.report import print_summary

    print_summary(summary, Console())
    return 0
