"""The ``copybench`` command line: thin wrappers over library functions with the same argument names.

Exit codes: 0 success, 1 a check failed, 2 bad usage or input (the message names the bad value), 3 a runtime
failure (disk full, a crash; one line naming the cause, the traceback with -v).
"""

from __future__ import annotations

import argparse
import logging
import sys

from .options import ENGINES, RAY_SHARD_ROWS
from .protocols import PROTOCOLS

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_RUNTIME = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def _console():
    """stdout: results only (tables, CSV, the gate's verdict)."""
    from .progress import console

    return console()


def _err():
    """stderr: status lines, "wrote FILE", warnings and errors."""
    from .progress import console

    return console(stderr=True)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _expand_detectors(spec: str) -> list[str]:
    """Comma list of names, shell patterns (``dino_*``) or ``module:factory`` plugins."""
    from copybench.detectors import get_spec, list_detectors

    names: list[str] = []
    for item in _csv(spec):
        if any(ch in item for ch in "*?[") and ":" not in item:
            found = list_detectors(item)
            if not found:
                raise UsageError(
                    f"detector pattern {item!r} matches nothing (see `copybench list detectors`)"
                )
            names += found
        elif item.startswith(("timm:", "open_clip:", "hf-hub:", "hf:")):
            names.append(item)  # hub names resolve when built (a --download run fetches them first)
        elif item == "baselines":
            from copybench.detectors.fetch import BASELINES

            names += BASELINES
        else:
            get_spec(item)  # raises UnknownDetectorError naming it
            names.append(item)
    if not names:
        raise UsageError("--detectors is empty")
    return list(dict.fromkeys(names))


def _weights_map(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--weights expects NAME=FILE, got {item!r}")
        out[name] = path
    return out


# ----------------------------------------------------------------------------------------------- commands
def cmd_list(args) -> int:
    from rich.table import Table

    pattern = args.pattern or "*"
    if args.what == "detectors":
        from copybench.detectors import describe_detectors

        rows = describe_detectors(pattern)
        if not rows:
            raise UsageError(f"no detector matches {pattern!r} (`copybench list detectors` shows them all)")
        table = Table(
            title="registered detectors (weights: real = found offline, missing = needs a file, random = "
            "random init, none = parameter-free; hash: published or pinned sha256, or hub revision)"
        )
        # names are what users copy into --detectors: never wrapped or cut; the other columns give way
        table.add_column("name", no_wrap=True, min_width=max(len(d["name"]) for d in rows))
        for col in ("family", "params", "dims", "input", "output", "weights", "hash", "released"):
            table.add_column(col, no_wrap=col != "input")
        table.add_column("license", overflow="fold")
        table.add_column("source", overflow="fold")
        for d in rows:
            style = {"missing": "yellow", "real": "green"}.get(d["weights"])
            table.add_row(
                d["name"],
                d["family"],
                "?" if d["params"] is None else f"{d['params'] / 1e6:.1f}M",
                str(d["dims"]),
                f"{d['input_size']} {d['resize']}",
                d["output"],
                d["weights"],
                d["weights_hash"][:12],
                d["release_date"] or "unknown",
                d["license"],
                d["source"],
                style=style,
            )
    elif args.what == "protocols":
        table = _protocols_table(pattern)
    elif args.what == "subsets":
        table = _subsets_table(pattern)
    else:
        from fnmatch import fnmatch

        from copybench.datasets import list_recipes

        rows = [(name, desc) for name, desc in list_recipes() if fnmatch(name, pattern)]
        if not rows:
            raise UsageError(f"no recipe matches {pattern!r} (`copybench list recipes` shows them all)")
        table = Table(title="dataset recipes (copybench data build RECIPE --out DIR)")
        table.add_column("recipe", no_wrap=True, min_width=max(len(name) for name, _ in rows))
        table.add_column("description")
        for name, desc in rows:
            table.add_row(name, desc)
    _console().print(table)
    return EXIT_OK


def _subsets_table(pattern: str):
    from fnmatch import fnmatch

    from rich.table import Table

    from copybench.datasets.subsets import list_subsets

    rows = [r for r in list_subsets() if fnmatch(r[1], pattern)]
    if not rows:
        raise UsageError(f"no subset matches {pattern!r} (`copybench list subsets` shows them all)")
    table = Table(title="query subsets of imported benchmarks (copybench run --subset NAME)")
    for col in ("format", "subset", "queries"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _protocols_table(pattern: str):
    import fnmatch

    from rich.table import Table

    from .protocols import describe_protocols

    rows = [row for row in describe_protocols() if fnmatch.fnmatch(row["name"], pattern)]
    if not rows:
        raise UsageError(f"no protocol matches {pattern!r} (`copybench list protocols` shows them all)")
    table = Table(title="evaluation protocols (--protocol NAME; definitions in docs/PROTOCOLS.md)")
    cols = ("name", "preprocessing", "similarity", "whitening", "score_norm", "depth", "metrics", "scan")
    for col in cols:
        table.add_column(col, no_wrap=col == "name")
    for row in rows:
        table.add_row(*(row[c] for c in cols))
    return table


def cmd_data_build(args) -> int:
    from copybench.datasets import build_dataset

    ds = build_dataset(
        args.recipe,
        args.out,
        sources=args.sources,
        n_queries=args.n_queries,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        cache_dir=args.cache_dir,
    )
    _report_dataset(ds)
    return EXIT_OK


def cmd_data_import(args) -> int:
    from copybench.datasets import import_dataset

    ds = import_dataset(
        args.format, args.src, args.out, progress=not args.quiet, distractors=args.distractors or ()
    )
    _report_dataset(ds)
    return EXIT_OK


def cmd_data_verify(args) -> int:
    from copybench.datasets.integrity import verify_dataset

    report = verify_dataset(args.path)
    console = _console()
    for problem in report.problems:
        console.print(f"[red]changed[/red] {problem}", highlight=False)
    state = "[green]intact[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
    console.print(f"{state}: {report.root}, {report.n_files} image files hashed", highlight=False)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _report_dataset(ds) -> None:
    c = ds.counts()
    _err().print(
        f"[green]dataset[/green] {ds.name} at {ds.root}: {c['references']} references"
        + (f" ({c['distractor_references']} distractor references)" if c.get("distractor_references") else "")
        + f", {c['queries']} queries ({c['distractors']} distractors), fingerprint {ds.fingerprint[:12]}"
    )


def _settings(args):
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
        return tuple(float(t) for t in _csv(text))
    except ValueError as exc:
        raise UsageError(
            f"--multiscale expects comma-separated factors like 1,0.707,1.414, got {text!r}"
        ) from exc


def cmd_run(args) -> int:
    from copybench.datasets.dataset import load_dataset

    from .distributed import engine_from_args
    from .run import DEFAULT_CACHE, run_benchmark

    dataset = load_dataset(args.dataset)
    names = _expand_detectors(args.detectors)
    with engine_from_args(args) as engine:
        outcomes = run_benchmark(
            dataset,
            names,
            _settings(args),
            results=args.results,
            descriptor_dir=None if args.no_cache else (args.descriptor_dir or DEFAULT_CACHE),
            allow_random=args.allow_random,
            weights=_weights_map(args.weights),
            skip_existing=not args.force,
            progress=not args.quiet,
            download=args.download,
            engine=engine,
        )
    _print_outcomes(outcomes)
    from .table import accuracy_frame, print_leaderboards

    done = [o.result for o in outcomes if o.result]
    if done:  # this run's dataset and detectors only; `copybench table` shows the whole folder
        print_leaderboards(accuracy_frame(done))
    failed = [o for o in outcomes if o.status == "failed"]
    if any(o.runtime for o in failed):
        return EXIT_RUNTIME
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _print_outcomes(outcomes) -> None:
    console = _err()
    for o in outcomes:
        colour = {"done": "green", "skipped": "cyan", "failed": "red"}[o.status]
        where = f" -> {o.path}" if o.path else ""
        console.print(f"[{colour}]{o.status:8}[/{colour}] {o.detector}{where} {o.message}".rstrip())
        if o.result and o.result.skipped:
            console.print(
                f"          {len(o.result.skipped)} unreadable image(s) skipped: "
                + ", ".join(s["path"] for s in o.result.skipped[:5])
            )
    missing = [o.detector for o in outcomes if o.message.startswith("WeightsMissingError")]
    if missing:  # one command for everything missing, not one hunt per detector
        console.print(f"fetch the missing weights with: copybench weights fetch {' '.join(missing)}")


def cmd_table(args) -> int:
    from .results import iter_result_files
    from .table import render_table

    if not any(True for _ in iter_result_files(args.results_dir)):
        raise UsageError(f"no result files under {args.results_dir} (write some with `copybench run`)")
    if args.published:
        from .published import render_published

        text = render_published(args.results_dir, fmt=args.format, out=args.out, subset=args.subset)
    elif args.subset:
        raise UsageError("table --subset selects rows of the --published comparison; add --published")
    else:
        text = render_table(args.results_dir, fmt=args.format, out=args.out)
    if text and not args.out:
        sys.stdout.write(text)
    elif args.out:
        _err().print(f"wrote {args.out}")
    return EXIT_OK


def cmd_check(args) -> int:
    from rich.table import Table

    from .check import GATED_METRICS, compare, failed

    metrics = tuple(_csv(args.metrics)) if args.metrics else GATED_METRICS
    changes = compare(args.baseline, args.results, tolerance=args.tolerance, metrics=metrics)
    table = Table(title=f"regression check (tolerance {args.tolerance})")
    for col in ("detector", "dataset", "metric", "baseline", "new", "delta", "status"):
        table.add_column(col)
    colours = {"dropped": "red", "missing": "red", "improved": "green", "ok": ""}
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for c in changes:
        if c.status != "ok" or args.verbose:
            table.add_row(
                c.detector,
                c.dataset,
                c.metric,
                fmt(c.baseline),
                fmt(c.new),
                "-" if c.delta is None else f"{c.delta:+.4f}",
                c.status,
                style=colours[c.status],
            )
    console = _console()
    if table.row_count:
        console.print(table)
    bad = failed(changes)
    n_keys = len({(c.detector, c.dataset) for c in changes})
    console.print(
        f"[{'red' if bad else 'green'}]{'FAILED' if bad else 'passed'}[/]: {len(changes)} comparisons "
        f"over {n_keys} (detector, dataset) results"
    )
    return EXIT_CHECK_FAILED if bad else EXIT_OK


def cmd_plot(args) -> int:
    from .plots import plot_results
    from .speed_plot import plot_accuracy_speed_dirs

    written = plot_results(args.results_dir, args.out)
    written += plot_accuracy_speed_dirs(args.results_dir, args.out, throughput_dir=args.throughput)
    _err().print("wrote " + ", ".join(str(p) for p in written) if written else "no accuracy results to plot")
    return EXIT_OK


def cmd_score_h5(args) -> int:
    from .interop import score_isc_h5
    from .run import RunSettings

    path = score_isc_h5(
        args.dataset,
        args.queries,
        args.references,
        args.name,
        results=args.results,
        settings=RunSettings(topk=args.topk, n_boot=args.n_boot),
    )
    from .table import render_table

    render_table(path)
    _err().print(f"wrote {path}")
    return EXIT_OK


def cmd_export(args) -> int:
    from .interop import export_isc

    out = export_isc(args.result_file, args.out)
    _err().print(f"wrote {', '.join(str(p) for p in out)}")
    return EXIT_OK


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


# ----------------------------------------------------------------------------------------------- parser
def _add_decode_option(p: argparse.ArgumentParser) -> None:
    from .decode import DECODES

    p.add_argument(
        "--decode",
        default="auto",
        choices=DECODES,
        help="how files are decoded: workers (CPU), device (nvjpeg on the GPU), nvimgcodec; auto: device on CUDA",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Every `run` option except --dataset, --detectors and --subset, in the order --help lists them."""
    _add_similarity_options(p)
    _add_compute_options(p)
    _add_ranking_options(p)
    _add_weights_options(p)
    _add_cache_options(p)
    _add_normalisation_options(p)
    p.add_argument("--force", action="store_true", help="recompute results that already exist")
    add_engine_options(p)


def add_engine_options(parser) -> None:
    """``--engine``, ``--address`` and ``--workers``, shared by ``copybench run`` and ``copybench scan``."""
    parser.add_argument(
        "--engine",
        default="local",
        choices=ENGINES,
        help="local: this process (default); ray: extraction and search on a Ray cluster (the `ray` extra)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. 10.0.0.1:6379 or auto); default: start a local one (--engine ray)",
    )
    parser.add_argument(
        "--shard-rows",
        type=int,
        default=RAY_SHARD_ROWS,
        help=f"descriptors per cache shard written during --engine ray extraction (default {RAY_SHARD_ROWS}); "
        "a killed run resumes from the last finished shard",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="detector actors (--engine ray; default: one per GPU with --device cuda, else one per CPU but one)",
    )


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
        help="split a global descriptor into this many chunks (split similarities)",
    )


def _add_compute_options(p: argparse.ArgumentParser) -> None:
    """Where results go and how the models run."""
    p.add_argument("--results", default="runs/results", help="results folder (default: runs/results)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    _add_decode_option(p)


def _add_ranking_options(p: argparse.ArgumentParser) -> None:
    """Ranking depth and the evaluation protocol that may fix it."""
    add_top_k(
        p,
        None,
        "references kept per query; metrics use this ranking (default 100; fixed by --protocol dcr/isc/dino; "
        "--topk is deprecated)",
    )
    p.add_argument(
        "--protocol",
        default="native",
        choices=tuple(PROTOCOLS),
        help="evaluation protocol (docs/PROTOCOLS.md; `copybench list protocols`): native (default), dcr, isc, dino",
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


def add_descriptor_dir(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--descriptor-dir``: the descriptor cache folder itself, where $COPYBENCH_CACHE is the root of every
    cache (descriptors in its descriptors/). The old ``--cache-dir`` of run, scan and study named the same
    folder; it still works, with a deprecation warning (data build's --cache-dir is a cache root, unchanged)."""
    parser.add_argument(
        "--descriptor-dir",
        "--cache-dir",
        dest="descriptor_dir",
        default=default,
        action=_DeprecatedAlias,
        new="--descriptor-dir",
        metavar="DIR",
        help="descriptor cache folder (default: $COPYBENCH_CACHE/descriptors, ~/.cache/copybench/descriptors; "
        "--cache-dir is its deprecated old name)",
    )


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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with intermixed parsing for subcommands that ask for it (``intermixed = True``).

    Plain argparse matches an optional positional (``list KIND [PATTERN]``) together with the one before it,
    so an option between them (``list recipes -q 'crop*'``) leaves PATTERN unmatched: "unrecognized
    arguments". Intermixed parsing reads the options first, then the positionals. Subparsers of every depth
    are made with this class (argparse's default for them is the parent's class).
    """

    intermixed = False
    _in_intermixed = False  # parse_known_intermixed_args calls parse_known_args itself

    def parse_known_args(self, args=None, namespace=None):
        if not self.intermixed or self._in_intermixed:
            return super().parse_known_args(args, namespace)
        self._in_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._in_intermixed = False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="copybench",
        description="Benchmark image copy detectors; scan generated images for training-set replication.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"copybench {__version__}")
    _add_global_flags(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo_and_list(sub)
    _add_data(sub)
    _add_run_and_results(sub)
    for module in ("throughput", "scan_cli", "weights", "study_cli"):
        _register_optional(sub, module)
    _add_global_flags_to_subcommands(parser)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")


def _add_global_flags_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """-q/-v are accepted before or after any subcommand (``copybench demo -q``), at every depth. Subcommands
    default to SUPPRESS so a flag given before the subcommand is not reset by the subcommand's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                known = {opt for a in child._actions for opt in a.option_strings}
                if "--quiet" not in known:
                    _add_global_flags(child, argparse.SUPPRESS)
                _add_global_flags_to_subcommands(child)


class _DeprecatedAlias(argparse.Action):
    """Stores like the new option; using the old spelling logs a deprecation warning naming the new one."""

    def __init__(self, *args, new: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string and option_string != self.new:
            logging.getLogger("copybench.cli").warning(
                "%s is deprecated; use %s (same meaning)", option_string, self.new
            )
        setattr(namespace, self.dest, values)


def add_top_k(parser: argparse.ArgumentParser, default: int | None, help: str, dest: str = "topk") -> None:
    """``--top-k`` everywhere; the old ``--topk`` still works, with a deprecation warning."""
    parser.add_argument(
        "--top-k",
        "--topk",
        dest=dest,
        type=int,
        default=default,
        action=_DeprecatedAlias,
        new="--top-k",
        help=help,
    )


def _add_demo_and_list(sub) -> None:
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
    p.intermixed = True  # `list recipes -q PATTERN`: -q/-v anywhere, PATTERN still found
    p.set_defaults(func=cmd_list)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="build or import datasets").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    p = data.add_parser("build", help="build a synthetic copy dataset from a recipe")
    p.add_argument(
        "recipe", help="FAMILY[.TIER]-SIZE, e.g. crop-xs or crop.strong-m (see `copybench list recipes`)"
    )
    p.add_argument(
        "--out", required=True, help="dataset folder to write (an existing dataset there is replaced)"
    )
    p.add_argument(
        "--sources",
        default=None,
        help="image folder, cutouts:DIR, voc:DIR or coco:ANN.json:IMAGES (default: embedded photos)",
    )
    p.add_argument(
        "--n-queries", type=int, default=None, help="number of queries (default: the recipe size's)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="dataset seed (default 0): same recipe and seed, same dataset"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N for rendering the queries")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="cache root for computed saliency masks, in DIR/u2netp-masks (default: $COPYBENCH_CACHE, "
        "~/.cache/copybench)",
    )
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser(
        "import",
        help="import a real dataset layout (disc21, copydays, folder, csv manifest)",
        description="Index a real dataset in place (images are not copied). disc21: a queries folder (name "
        "containing 'quer'), a references folder ('ref') and a ground-truth CSV (*ground_truth*.csv or "
        "*gt*.csv) with columns query_id,reference_id; ids are file stems, an empty reference_id is a "
        "distractor. copydays: originals BBBB00.jpg in a folder named like 'original', copies with the "
        "same 4-digit block id in crops/<percent>/, jpegqual/<quality>/, strong/ (copy type = family, "
        "subfolder = tier). folder: every image is a reference, no queries. csv: a manifest with columns "
        "query,reference[,family], one row per pair, an empty reference for a query without a match, paths "
        "relative to the manifest. --distractors DIR adds every image under DIR as a distractor reference.",
    )
    p.add_argument("format", choices=("disc21", "copydays", "folder", "csv"), help="dataset layout")
    p.add_argument("src", help="the dataset's root folder (csv: the manifest file)")
    p.add_argument(
        "--distractors",
        action="append",
        metavar="DIR",
        help="folder of distractor reference images (recursive; repeatable), e.g. Copydays + 10k distractors",
    )
    p.add_argument(
        "--out", required=True, help="folder for the index (dataset.json, queries.csv, references.csv)"
    )
    p.set_defaults(func=cmd_data_import)
    _add_data_verify(data)


def _add_data_verify(data) -> None:
    p = data.add_parser(
        "verify",
        help="hash every manifest and image of a dataset and compare with what it was written with",
        description="Exit 0 when every file matches its record, 1 when one differs (each named).",
    )
    p.add_argument("path", help="dataset folder")
    p.set_defaults(func=cmd_data_verify)


def _add_run_and_results(sub) -> None:
    """`run` and the commands that read its results."""
    _add_run(sub)
    _add_table(sub)
    _add_check(sub)
    _add_score_h5(sub)
    _add_plot(sub)
    _add_export(sub)


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="descriptors, retrieval and metrics: one result file per detector and dataset"
    )
    p.add_argument(
        "--dataset", required=True, help="dataset folder (from `copybench data build` or `data import`)"
    )
    p.add_argument(
        "--detectors", required=True, help="comma list of names, patterns (dino_*) or module:factory"
    )
    _add_run_options(p)
    p.add_argument(
        "--subset",
        default=None,
        help="score only a named query subset of an imported benchmark: copydays strong|crops|jpeg, disc21 "
        "dev25k|dev50k (all references kept; recorded in the result key)",
    )
    p.set_defaults(func=cmd_run)


def _add_table(sub) -> None:
    p = sub.add_parser("table", help="leaderboard of the results in a folder")
    p.add_argument("results_dir", help="a result file or a folder searched recursively (e.g. runs/results)")
    p.add_argument(
        "--format",
        default="terminal",
        choices=("terminal", "md", "csv", "html", "parquet"),
        help="default terminal (with --out: the same tables as plain text); csv and parquet are tidy: one row "
        "per (result, group), identifier headers, CIs as two columns (parquet needs --out)",
    )
    p.add_argument("--out", default=None, help="write to this file instead of printing")
    p.add_argument(
        "--published",
        action="store_true",
        help="compare each result with the published figures of the same benchmark, subset, protocol, "
        "detector and whitening/score-norm settings (difference = measured - published; terminal, md, csv)",
    )
    p.add_argument(
        "--subset",
        default=None,
        help="with --published: only this subset's rows (a Copydays family subset is read from a "
        "whole-dataset result's per-family metrics)",
    )
    p.set_defaults(func=cmd_table)


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="regression gate: exit 1 when a metric drops by more than the tolerance")
    p.add_argument("--baseline", required=True, help="baseline result file or folder")
    p.add_argument("--results", required=True, help="new result file or folder")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed absolute drop (default 0.01)")
    p.add_argument(
        "--metrics", default=None, help="comma list (default: micro_ap,map,recall@1,recall_at_p90)"
    )
    p.set_defaults(func=cmd_check)


def _add_score_h5(sub) -> None:
    p = sub.add_parser(
        "score-h5", help="score descriptors computed elsewhere (ISC HDF5: vectors, image_names)"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--queries", required=True, help="HDF5 file of query descriptors")
    p.add_argument("--references", required=True, help="HDF5 file of reference descriptors")
    p.add_argument("--name", required=True, help="detector name to report the result under")
    p.add_argument("--results", default="runs/results")
    add_top_k(p, 100, "references kept per query (default 100)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.set_defaults(func=cmd_score_h5)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="precision-recall curves and per-family bars (PNG) from result files")
    p.add_argument("results_dir", help="a result file or a folder searched recursively")
    p.add_argument(
        "--out",
        required=True,
        help="folder for the PNGs (pr_<dataset>.png, families_<dataset>.png, accuracy_speed_<dataset>__<device>.png)",
    )
    p.add_argument(
        "--throughput",
        default=None,
        metavar="DIR",
        help="throughput results to plot accuracy against speed with (default: those under RESULTS, if any)",
    )
    p.set_defaults(func=cmd_plot)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a result's predictions in the ISC format (predictions.csv, ground_truth.csv)"
    )
    p.add_argument("result_file", help="one accuracy result JSON (its predictions file must lie beside it)")
    p.add_argument("--format", default="isc", choices=("isc",), help="isc: the ISC 2021 evaluation's CSVs")
    p.add_argument("--out", required=True, help="folder for predictions.csv and ground_truth.csv")
    p.set_defaults(func=cmd_export)


def _register_optional(sub, module: str) -> None:
    """Subcommands whose modules define ``register_cli(subparsers)``."""
    import importlib

    try:
        mod = importlib.import_module(f"copybench.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"copybench.{module}":
            raise
        return
    mod.register_cli(sub)


def _detector_errors() -> tuple[type[Exception], ...]:
    """The registry's bad-input errors, when the registry was imported: importing it here would import torch
    for every command (table, check and list recipes never need it)."""
    registry = sys.modules.get("copybench.detectors.registry")
    return (registry.UnknownDetectorError, registry.WeightsMissingError) if registry else ()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if getattr(args, "device", None):
            from .env import check_device

            check_device(args.device)  # before any work: every command with --device fails the same clear way
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, *_detector_errors()) as exc:
        _err().print(f"[red]error:[/red] {exc}", highlight=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err().print("[yellow]interrupted[/yellow]: finished results are kept; rerun to resume")
        return 130
    except Exception as exc:
        logging.getLogger(__name__).debug("runtime failure", exc_info=True)
        _err().print(
            f"[red]error:[/red] {type(exc).__name__}: {exc} (run with -v for the traceback)", highlight=False
        )
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
