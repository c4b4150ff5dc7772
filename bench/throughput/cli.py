"""``copybench throughput``: a thin command over :func:`copybench.throughput.throughput`."""

from __future__ import annotations

import argparse

from ..decode import DECODES
from .settings import CAVEAT, ThroughputSettings


def _fmt(value, iqr=None) -> str:
    """A rate with its interquartile range; below 100/s the range keeps a decimal (0.7 (0.6-0.8), not (1-1))."""
    if value is None:
        return "-"
    text = f"{value:,.1f}"
    spec = ",.1f" if value < 100 else ",.0f"
    return text + (f" ({iqr[0]:{spec}}-{iqr[1]:{spec}})" if iqr else "")


def _ratio(m: dict, key: str) -> str:
    """Median of the per-round ratios and their range."""
    if m.get(key) is None:
        return "-"
    lo, hi = m.get(f"{key}_range") or (m[key], m[key])
    return f"{m[key]:.2f} ({lo:.2f}-{hi:.2f})"


def _print_results(results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    devices = sorted({r.environment["device_name"] for r in results})
    table = Table(
        title="throughput: median (IQR); ratios: median of interleaved rounds (range)",
        caption=f"{CAVEAT}: {'; '.join(devices)}",
    )
    for col in (
        "detector",
        "weights",
        "dtype",
        "batch",
        "model img/s",
        "e2e img/s",
        "decode",
        "e2e/model",
        "retrieval q/s",
        "ref e2e img/s",
        "e2e x ref",
        "retrieval x ref",
    ):
        table.add_column(col, no_wrap=col == "detector")  # a name split over two lines reads as two rows
    for r in results:
        m = r.measurements[0]
        table.add_row(
            r.detector_name + (" (random weights)" if r.is_random else ""),
            r.weights_status,
            m["dtype"],
            str(m["batch_size"]),
            _fmt(m["model_ips"], m["model_ips_iqr"]),
            _fmt(m["e2e_ips"], m["e2e_ips_iqr"]),
            m["e2e_decode"],
            _ratio(m, "e2e_over_model"),
            _fmt(m["retrieval_qps"]),
            _fmt(m.get("reference_e2e_ips")),
            _ratio(m, "e2e_speedup_vs_reference"),
            _ratio(m, "retrieval_speedup_vs_reference"),
            style="red" if r.is_random else None,
        )
    console = Console()
    if not console.is_terminal:  # logs and captured output: keep the whole table readable
        console.width = 260
    console.print(table)
    if any(r.measurements[0].get("stages") for r in results):
        console.print(_stages_table(results))
    err = Console(stderr=True)
    for r in results:
        err.print(f"wrote {r.source}", highlight=False)


def _stages_table(results: list):
    """One row per result measured with --stages: each stage's rate alone, end to end, and the slowest stage."""
    from rich.table import Table

    from .stages import STAGES

    table = Table(title="--stages: img/s of each stage alone, median (IQR); end to end from the same run")
    for col in ("detector", "decode", *(s.replace("_", " ") for s in STAGES), "e2e", "slowest stage"):
        table.add_column(col, no_wrap=col == "detector")
    for r in results:
        m = r.measurements[0]
        stages = m.get("stages") or {}
        cells = [_fmt(stages[s]["ips"], stages[s]["ips_iqr"]) if s in stages else "-" for s in STAGES]
        slowest = min(stages, key=lambda s: stages[s]["ips"]) if stages else "-"
        table.add_row(
            r.detector_name + (" (random weights)" if r.is_random else ""),
            m["e2e_decode"],
            *cells,
            _fmt(m["e2e_ips"], m["e2e_ips_iqr"]),
            slowest.replace("_", " "),
            style="red" if r.is_random else None,
        )
    return table


def cmd_throughput(args) -> int:
    """``copybench throughput``: a thin wrapper over :func:`throughput`."""
    from ..cliutil import expand_detectors
    from .measure import throughput

    settings = ThroughputSettings(
        device=args.device,
        dtype=args.dtype,
        batch_sizes=tuple(args.batch_size),
        channels_last=args.channels_last,
        compile=args.compile,
        n_images=args.n_images,
        n_references=args.n_references,
        topk=args.topk,
        num_workers=args.workers,
        decode=args.decode,
        decode_ahead=args.decode_ahead,
        stages=args.stages,
        reference=args.reference,
        repeats=args.repeats,
        min_time=args.min_time,
        seed=args.seed,
    )
    results = throughput(
        expand_detectors(args.detectors),
        settings=settings,
        images=args.images,
        results=args.results,
        allow_random=args.allow_random,
    )
    _print_results(results)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``throughput`` subcommand."""
    d = ThroughputSettings()
    p = subparsers.add_parser(
        "throughput", help="images/s per detector (model-only, end-to-end) and retrieval queries/s"
    )
    p.add_argument("--detectors", required=True, help="comma list of names or patterns")
    p.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default=d.dtype, choices=("fp32", "bf16", "fp16"))
    p.add_argument(
        "--batch-size", type=int, nargs="+", default=list(d.batch_sizes), help="one or more batch sizes"
    )
    p.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (always on for CUDA)"
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time is in the warm-up)"
    )
    p.add_argument("--images", default=None, help="image folder (default: temporary synthetic 512x384 JPEGs)")
    p.add_argument(
        "--n-images", type=int, default=d.n_images, help=f"images per end-to-end pass (default {d.n_images})"
    )
    p.add_argument("--results", default="runs/throughput", help="results folder (default: runs/throughput)")
    p.add_argument(
        "--allow-random",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random weights when none are found (default on: speed does not depend on weights)",
    )
    p.add_argument(
        "--reference", action="store_true", help="also time the straightforward reference pipeline"
    )
    p.add_argument("--n-references", type=int, default=d.n_references, help="synthetic reference set size")
    p.add_argument("--topk", type=int, default=d.topk)
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: all cores but one)"
    )
    _add_decode_options(p, d)
    p.add_argument(
        "--repeats", type=int, default=d.repeats, help="interleaved timed rounds after the warm-up round"
    )
    p.add_argument("--min-time", type=float, default=d.min_time, help="seconds of timed rounds, at least")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=cmd_throughput)


def _add_decode_options(p, d: ThroughputSettings) -> None:
    """--decode, --decode-ahead and --stages: how the end-to-end pass is fed, and whether each stage is timed."""
    p.add_argument(
        "--decode",
        default=d.decode,
        choices=DECODES,
        help="the Extractor's decode strategy: workers (CPU), device (nvjpeg), nvimgcodec, nvimgcodec-hw (its "
        "hardware JPEG decoders only); auto = device on CUDA",
    )
    p.add_argument(
        "--decode-ahead",
        type=int,
        default=d.decode_ahead,
        help=f"batches the GPU decoders work ahead of the model, one side stream each (default {d.decode_ahead})",
    )
    p.add_argument(
        "--stages",
        action="store_true",
        help="also time each stage alone (read, route, hand-off, feed, decode, resize, model, copy back)",
    )
