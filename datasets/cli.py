"""``copybench data build | import | verify``: thin wrappers over :func:`copybench.datasets.build_dataset`,
:func:`copybench.datasets.import_dataset` and :func:`copybench.datasets.integrity.verify_dataset`."""

from __future__ import annotations

from rich.markup import escape

from copybench.cliutil import EXIT_CHECK_FAILED, EXIT_OK, UsageError, err_console, out_console


def cmd_data_build(args) -> int:
    import time

    from copybench.datasets import build_dataset
    from copybench.datasets.render import build_threads, stage_profile

    stage_profile(reset=True)
    t0 = time.perf_counter()
    ds = build_dataset(
        args.recipe,
        args.out,
        sources=args.sources,
        n_queries=args.n_queries,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        cache_dir=args.cache_dir,
        levels=args.levels,
        severities=_severities(args.severities),
    )
    _report_dataset(ds)
    if args.profile:
        _print_profile(stage_profile(), time.perf_counter() - t0, build_threads())
    return EXIT_OK


def _print_profile(stages: dict, wall: float, threads: int) -> None:
    """Where a build spent its time: seconds per stage (per-image stages summed over their threads)."""
    err = err_console()
    n = max((v["images"] for v in stages.values()), default=0)
    err.print(f"build profile: {n} queries in {wall:.2f} s ({n / wall:.1f} queries/s), {threads} CPU threads")
    for stage, v in stages.items():
        rate = v["images"] / v["seconds"] if v["seconds"] else float("inf")
        err.print(
            f"  {stage:8} {v['seconds']:8.2f} s  {v['images']:6d} images  {rate:9.1f} images/s",
            highlight=False,
        )


def _severities(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--severities expects a comma list of numbers, got {text!r}") from None


def cmd_data_import(args) -> int:
    from copybench.datasets import import_dataset

    ds = import_dataset(
        args.format,
        args.src,
        args.out,
        progress=not args.quiet,
        distractors=args.distractors or (),
        allow_outside_links=args.allow_outside_links,
    )
    _report_dataset(ds)
    return EXIT_OK


def cmd_data_verify(args) -> int:
    from copybench.datasets.integrity import verify_dataset

    report = verify_dataset(args.path)
    console = out_console()
    for problem in report.problems:
        console.print(f"[red]changed[/red] {problem}", highlight=False)
    state = "[green]intact[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"
    console.print(f"{state}: {report.root}, {report.n_files} image files hashed", highlight=False)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _report_dataset(ds) -> None:
    c = ds.counts()
    err_console().print(
        f"[green]dataset[/green] {ds.name} at {ds.root}: {c['references']} references"
        + (f" ({c['distractor_references']} distractor references)" if c.get("distractor_references") else "")
        + f", {c['queries']} queries ({c['distractors']} distractors), fingerprint {ds.fingerprint[:12]}"
        + _import_notes(ds.meta)
    )


def _import_notes(meta: dict) -> str:
    """What an import found worth a second look: near-duplicate distractors, links it followed."""
    notes = []
    if meta.get("near_duplicates"):
        notes.append(
            f"[yellow]{len(meta['near_duplicates'])} near-duplicate distractor(s)[/yellow] (dataset.json)"
        )
    if meta.get("links"):
        notes.append(f"{meta['links']['count']} symbolic link(s) followed (links.csv)")
    if meta.get("shards"):
        notes.append(f"{len(meta['shards'])} shard(s), images in {meta.get('images_root')}")
    if meta.get("shard_problems"):
        shown = "; ".join(escape(p) for p in meta["shard_problems"][:5])
        more = len(meta["shard_problems"]) - 5
        notes.append(
            f"[yellow]{len(meta['shard_problems'])} shard problem(s)[/yellow]: {shown}"
            + (f"; {more} more in dataset.json" if more > 0 else "")
        )
    return "; " + "; ".join(notes) if notes else ""


def register_cli(sub) -> None:
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
    p.add_argument(
        "--profile",
        action="store_true",
        help="print seconds per copy-generation stage (kornia, overlay, jpeg, write) and queries/s to stderr",
    )
    _add_sweep_options(p)
    p.set_defaults(func=cmd_data_build)
    _add_data_import(data)
    _add_data_verify(data)


def _add_data_import(data) -> None:
    p = data.add_parser(
        "import",
        help="import a real dataset layout (disc21, copydays, folder, csv manifest)",
        description="Index a real dataset in place (images are not copied). disc21: a queries folder (name "
        "containing 'quer'), a references folder ('ref') and a ground-truth CSV (*ground_truth*.csv or "
        "*gt*.csv) with columns query_id,reference_id; ids are file stems, an empty reference_id is a "
        "distractor. copydays: originals BBBB00.jpg in a folder named like 'original', copies with the "
        "same 4-digit block id in crops/<percent>/, jpegqual/<quality>/, strong/ (copy type = family, "
        "subfolder = tier). folder: every image is a reference, no queries; SRC may also name WebDataset "
        "tar or Parquet shards "
        "(a .tar/.parquet file, a folder of them, a brace pattern like 'shards/{00000..00127}.tar' or a URI): "
        "their images are written once to OUT.images/<shard>/<key>.<ext> and indexed there. csv: a manifest "
        "with columns "
        "query,reference[,family], one row per pair, an empty reference for a query without a match, paths "
        "relative to the manifest. --distractors DIR adds every image under DIR as a distractor reference. "
        "Byte-identical references (distractors included), or a query identical to a reference it is not paired "
        "with, are refused with both files named; distractors within 10 bits (64-bit pHash) of a reference are "
        "reported and listed in dataset.json. Symbolic links are followed and recorded in links.csv.",
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
        "--allow-outside-links",
        action="store_true",
        help="index files behind symbolic links that resolve outside SRC and the --distractors folders "
        "(refused by default; links inside them are always followed); every link is recorded in links.csv",
    )
    p.add_argument(
        "--out", required=True, help="folder for the index (dataset.json, queries.csv, references.csv)"
    )
    p.set_defaults(func=cmd_data_import)


def _add_sweep_options(p) -> None:
    p.add_argument(
        "--levels",
        type=int,
        default=None,
        help="sweep recipes: number of severity levels, evenly spaced over each axis's span (default 8)",
    )
    p.add_argument(
        "--severities",
        default=None,
        metavar="V1,V2,...",
        help="sweep-AXIS recipes: explicit severities in the axis's unit, e.g. 95,50,20,5 for jpeg",
    )


def _add_data_verify(data) -> None:
    p = data.add_parser(
        "verify",
        help="hash every manifest and image of a dataset and compare with what it was written with",
        description="Exit 0 when every file matches its record, 1 when one differs (each named).",
    )
    p.add_argument("path", help="dataset folder")
    p.set_defaults(func=cmd_data_verify)
