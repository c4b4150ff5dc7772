"""The core commands: ``demo``, ``list`` and ``run`` (thin wrappers over :mod:`copybench.demo`, the
registries and :func:`copybench.run.run_benchmark`; check and verify: :mod:`copybench.gate_commands`)."""

from __future__ import annotations

import argparse
import re

from .cliutil import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_RUNTIME,
    UsageError,
    add_decode_option,
    add_descriptor_dir,
    add_engine_options,
    add_top_k,
    err_console,
    expand_detectors,
    split_csv,
)
from .listing import add_format_option
from .protocols import PROTOCOLS


def weights_map(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--weights expects NAME=FILE, got {item!r}")
        out[name] = path
    return out


def cmd_list(args) -> int:
    pattern = args.pattern or "*"
    fmt = getattr(args, "format", "table")
    listing = {
        "detectors": _detectors_listing,
        "protocols": _protocols_listing,
        "subsets": _subsets_listing,
        "recipes": _recipes_listing,
    }[args.what]
    listing(pattern, fmt)
    return EXIT_OK


DETECTOR_COLUMNS = (  # drop order at narrow widths: source first; name and weights never
    ("name", 0), ("family", 5), ("params", 2), ("dims", 1), ("input", 3), ("output", 4), ("weights", 0),
    ("hash", 6), ("released", 7), ("license", 8), ("source", 9),
)  # fmt: skip


def _detectors_listing(pattern: str, fmt: str) -> None:
    from copybench.detectors import describe_detectors

    from .listing import Column, print_listing, short_source

    rows = describe_detectors(pattern)
    if not rows:
        raise UsageError(f"no detector matches {pattern!r} (`copybench list detectors` shows them all)")
    cells = []
    for d in rows:
        params = d["params"]
        cells.append(
            {
                "name": d["name"],
                "family": d["family"],
                "params": "?" if params is None else f"{params / 1e6:.1f}M" if params else "0",
                "dims": "?" if d["dims"] is None else str(d["dims"]),
                "input": "?" if d["input_size"] is None else f"{d['input_size']} {d['resize']}",
                "output": d["output"] or "?",
                "weights": d["weights"],
                "hash": d["weights_hash"][:12],
                # a parameter-free detector has no weights to date; "unknown" is for weights nobody dated
                "released": d["release_date"] or ("none" if d["weights"] == "none" else "unknown"),
                "license": d["license"],
                "source": short_source(d["source"]),
            }
        )
    columns = [Column(k, drop, fold=k in ("license", "source")) for k, drop in DETECTOR_COLUMNS]
    styles = [{"missing": "yellow", "real": "green"}.get(d["weights"]) for d in rows]
    title = (
        "registered detectors (weights: real = found offline, missing = needs a file, random = random init, "
        "none = parameter-free; hash: published or pinned sha256, or hub revision)"
    )
    print_listing(title, columns, cells, rows, fmt, styles)


def _subsets_listing(pattern: str, fmt: str) -> None:
    from fnmatch import fnmatch

    from copybench.datasets.subsets import list_subsets

    from .listing import Column, print_listing

    rows = [r for r in list_subsets() if fnmatch(r[1], pattern)]
    if not rows:
        raise UsageError(f"no subset matches {pattern!r} (`copybench list subsets` shows them all)")
    records = [dict(zip(("format", "subset", "queries"), row, strict=True)) for row in rows]
    columns = [Column("format"), Column("subset"), Column("queries", fold=True)]
    title = "query subsets of imported benchmarks (copybench run --subset NAME)"
    print_listing(title, columns, records, records, fmt)


def _recipes_listing(pattern: str, fmt: str) -> None:
    from fnmatch import fnmatch

    from copybench.datasets import list_recipes

    from .listing import Column, print_listing

    records = [{"recipe": n, "description": d} for n, d in list_recipes() if fnmatch(n, pattern)]
    if not records:
        raise UsageError(f"no recipe matches {pattern!r} (`copybench list recipes` shows them all)")
    columns = [Column("recipe"), Column("description", fold=True)]
    print_listing("dataset recipes (copybench data build RECIPE --out DIR)", columns, records, records, fmt)


def _protocols_listing(pattern: str, fmt: str) -> None:
    import fnmatch

    from .listing import Column, print_listing
    from .protocols import describe_protocols

    rows = [row for row in describe_protocols() if fnmatch.fnmatch(row["name"], pattern)]
    if not rows:
        raise UsageError(f"no protocol matches {pattern!r} (`copybench list protocols` shows them all)")
    # the settings are what a protocol listing is for: they wrap; none is left out before scan and metrics
    columns = [
        Column("name"),
        *(Column(c, fold=True) for c in ("preprocessing", "similarity", "whitening", "score_norm", "depth")),
        Column("metrics", drop=1, fold=True),
        Column("scan", drop=2, fold=True),
    ]
    title = "evaluation protocols (--protocol NAME; definitions in docs/PROTOCOLS.md)"
    print_listing(title, columns, rows, rows, fmt)


def settings_from_args(args):
    from .run import RunSettings

    return RunSettings(
        similarity=args.similarity,
        chunks=args.chunks,
        topk=args.topk,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        whitening=args.whitening,
        score_norm=args.score_norm,
        norm_set=args.norm_set,
        n_boot=args.n_boot,
        multiscale=_scales(args.multiscale),
        subset=getattr(args, "subset", None),
        protocol=args.protocol,
        decode=getattr(args, "decode", "auto"),
    )


def _scales(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(t) for t in split_csv(text))
    except ValueError as exc:
        raise UsageError(
            f"--multiscale expects comma-separated factors like 1,0.707,1.414, got {text!r}"
        ) from exc


def cmd_run(args) -> int:
    from copybench.datasets.dataset import load_dataset
    from copybench.scaling.engine import engine_from_args

    from .run import DEFAULT_CACHE, run_benchmark

    dataset = load_dataset(args.dataset)
    names = expand_detectors(args.detectors)
    with engine_from_args(args) as engine:
        outcomes = run_benchmark(
            dataset,
            names,
            settings_from_args(args),
            results=args.results,
            descriptor_dir=None if args.no_cache else (args.descriptor_dir or DEFAULT_CACHE),
            allow_random=args.allow_random,
            weights=weights_map(args.weights),
            skip_existing=not args.force,
            progress=not args.quiet,
            download=args.download,
            engine=engine,
            on_error="return",  # the outcomes are printed below, one line each
        )
    _print_outcomes(outcomes)
    from copybench.report.table import accuracy_frame, print_leaderboards

    done = [o.result for o in outcomes if o.result]
    if done:  # this run's dataset and detectors only; `copybench table` shows the whole folder
        print_leaderboards(accuracy_frame(done))
    failed = [o for o in outcomes if o.status == "failed"]
    if any(o.runtime for o in failed):
        return EXIT_RUNTIME
    return EXIT_BAD_INPUT if failed else EXIT_OK


MISSING = "WeightsMissingError: "


def _outcome_message(o, n_missing: int) -> str:
    """A failure the user can fix reads as a sentence, not an exception class; with several detectors missing
    weights, their lines point at the one fetch command printed below them."""
    if not o.message.startswith(MISSING):
        return o.message
    message = o.message.removeprefix(MISSING)
    if n_missing > 1:
        message = re.sub(r"`copybench weights fetch [^`]+`", "the command below", message)
    return message


def _print_outcomes(outcomes) -> None:
    console = err_console()
    missing = [o.detector for o in outcomes if o.message.startswith(MISSING)]
    for o in outcomes:
        colour = {"done": "green", "skipped": "cyan", "failed": "red"}[o.status]
        where = f" -> {o.path}" if o.path else ""
        text = f"{o.detector}{where} {_outcome_message(o, len(missing))}".rstrip()
        console.print(f"[{colour}]{o.status:8}[/{colour}] {text}")
        if o.result and o.result.skipped:
            console.print(
                f"          {len(o.result.skipped)} unreadable image(s) skipped: "
                + ", ".join(s["path"] for s in o.result.skipped[:5])
            )
    if len(missing) > 1:  # one command for everything missing, not one hunt per detector
        console.print(f"fetch the missing weights with: copybench weights fetch {' '.join(missing)}")


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(
        out=args.out,
        detectors=args.detectors,
        device=args.device,
        n_queries=args.n_queries,
        seed=args.seed,
        results=args.results,
        force=args.force,
        progress=not args.quiet,
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every `run` option except --dataset, --detectors and --subset, in the order --help lists them."""
    _add_similarity_options(p)
    _add_compute_options(p)
    _add_ranking_options(p)
    _add_weights_options(p)
    _add_cache_options(p)
    _add_normalisation_options(p)
    p.add_argument("--force", action="store_true", help="recompute results that already exist")
    add_engine_options(p)


def _add_similarity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--similarity",
        default="cosine",
        choices=("cosine", "split", "split_cross"),
        help="cosine on global descriptors, or the split product (per-token / per-chunk max)",
    )
    p.add_argument(
        "--chunks",
        type=int,
        default=None,
        help="split a global descriptor into this many chunks (split similarities; default 8, 1 under "
        "--protocol dcr as the study's code)",
    )


def _add_compute_options(p: argparse.ArgumentParser) -> None:
    """Where results go and how the models run."""
    p.add_argument("--results", default="runs/results", help="results folder (default: runs/results)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    add_decode_option(p)


def _add_ranking_options(p: argparse.ArgumentParser) -> None:
    """Ranking depth and the evaluation protocol that may fix it."""
    add_top_k(
        p,
        None,
        "references kept per query; metrics use this ranking (default 100; fixed by every --protocol but native; "
        "--topk is deprecated)",
    )
    p.add_argument(
        "--protocol",
        default="native",
        choices=tuple(PROTOCOLS),
        help="evaluation protocol (docs/PROTOCOLS.md; `copybench list protocols`): native (default), dcr, isc, "
        "sscd-copydays, dino",
    )


def _add_weights_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-random",
        action="store_true",
        help="run detectors with no weights found using random weights (marked 'random')",
    )
    p.add_argument(
        "--weights",
        action="append",
        metavar="NAME=FILE",
        help="explicit weights file for a detector (repeatable)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download missing official weights first (as `copybench weights fetch`; offline by default)",
    )


def _add_cache_options(p: argparse.ArgumentParser) -> None:
    add_descriptor_dir(p, None)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")


def _add_normalisation_options(p: argparse.ArgumentParser) -> None:
    """Whitening, score normalisation, multi-scale descriptors and the bootstrap behind the CIs."""
    p.add_argument(
        "--norm-set", default=None, help="separate image folder for whitening / score normalisation"
    )
    p.add_argument("--whitening", action="store_true", help="PCA-whitening learned on --norm-set")
    p.add_argument("--score-norm", action="store_true", help="SSCD score normalisation against --norm-set")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap samples for 95%% confidence intervals")
    p.add_argument(
        "--multiscale",
        default=None,
        metavar="S1,S2,...",
        help="average global descriptors over input scales, e.g. 1,0.707,1.414 (CNNs; not fixed-size ViTs)",
    )


def add_demo_and_list(sub) -> None:
    p = sub.add_parser(
        "demo", help="build the embedded default dataset, run the default detectors, print the leaderboard"
    )
    p.add_argument(
        "--out", default="runs/demo", help="folder for the dataset and results (default: runs/demo)"
    )
    p.add_argument(
        "--detectors",
        default=None,
        help="comma list (default: the offline detectors with real weights + pixel baselines)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--n-queries", type=int, default=None, help="queries in the default dataset (default: the recipe's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--results",
        default=None,
        help="results folder (default: OUT/results); `--results results/default` regenerates the published leaderboard",
    )
    p.add_argument("--force", action="store_true", help="recompute results that already exist")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("list", help="list registered detectors, dataset recipes or evaluation protocols")
    p.add_argument("what", choices=("detectors", "recipes", "protocols", "subsets"))
    p.add_argument("pattern", nargs="?", default=None, help="shell pattern, e.g. 'dino_*'")
    add_format_option(p)
    p.intermixed = True  # `list recipes -q PATTERN`: -q/-v anywhere, PATTERN still found
    p.set_defaults(func=cmd_list)


def add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="descriptors, retrieval and metrics: one result file per detector and dataset"
    )
    p.add_argument(
        "--dataset", required=True, help="dataset folder (from `copybench data build` or `data import`)"
    )
    p.add_argument(
        "--detectors", required=True, help="comma list of names, patterns (dino_*) or module:factory"
    )
    add_run_options(p)
    p.add_argument(
        "--subset",
        default=None,
        help="score only a named query subset of an imported benchmark: copydays strong|crops|jpeg, disc21 "
        "dev25k|dev50k (all references kept; recorded in the result key)",
    )
    p.set_defaults(func=cmd_run)
