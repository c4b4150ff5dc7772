"""``copybench table | plot | score-h5 | export``: the commands that read result files (thin wrappers over
:mod:`.table`, :mod:`.published`, :mod:`.plots`, :mod:`.speed_plot` and :mod:`.interop`)."""

from __future__ import annotations

import sys

from copybench.cliutil import EXIT_BAD_INPUT, EXIT_OK, UsageError, add_top_k, err_console


def cmd_table(args) -> int:
    from copybench.report.render import render_table
    from copybench.results import iter_result_files
    from copybench.verify import table_flags

    if not any(True for _ in iter_result_files(args.results_dir)):
        raise UsageError(f"no result files under {args.results_dir} (write some with `copybench run`)")
    flags, errors = ({}, []) if args.no_verify else table_flags(args.results_dir)
    for error in errors:  # the rows stay in the table, marked; exit 2 once it is printed
        err_console().print(f"[red]error:[/red] {error}", highlight=False)
    if args.published:
        from copybench.report.published import render_published

        text = render_published(args.results_dir, fmt=args.format, out=args.out, subset=args.subset)
    elif args.subset:
        raise UsageError("table --subset selects rows of the --published comparison; add --published")
    else:
        text = render_table(
            args.results_dir,
            fmt=args.format,
            out=args.out,
            columns=args.columns,
            protocol=args.protocol,
            flags=flags,
        )
    if text and not args.out:
        sys.stdout.write(text)
    elif args.out:
        err_console().print(f"wrote {args.out}")
    return EXIT_BAD_INPUT if flags else EXIT_OK


def cmd_plot(args) -> int:
    from copybench.report.plots import plot_results
    from copybench.report.speed_plot import plot_accuracy_speed_dirs

    written = plot_results(args.results_dir, args.out)
    written += plot_accuracy_speed_dirs(args.results_dir, args.out, throughput_dir=args.throughput)
    err_console().print(
        "wrote " + ", ".join(str(p) for p in written) if written else "no accuracy results to plot"
    )
    return EXIT_OK


def cmd_score_h5(args) -> int:
    from copybench.report.interop import score_isc_h5
    from copybench.run import RunSettings

    path = score_isc_h5(
        args.dataset,
        args.queries,
        args.references,
        args.name,
        results=args.results,
        settings=RunSettings(topk=args.topk, n_boot=args.n_boot),
    )
    from copybench.report.render import render_table

    render_table(path)
    err_console().print(f"wrote {path}")
    return EXIT_OK


def cmd_export(args) -> int:
    from copybench.report.interop import export_isc

    out = export_isc(args.result_file, args.out)
    err_console().print(f"wrote {', '.join(str(p) for p in out)}")
    return EXIT_OK


def add_table(sub) -> None:
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
        "--columns",
        default="headline",
        choices=("headline", "all"),
        help="headline (default): each protocol's headline metrics with 95%% CIs; all: every metric it reports",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="only the results of this protocol (csv with several protocols needs it, or --out: one file each)",
    )
    p.add_argument(
        "--published",
        action="store_true",
        help="compare each result with the published figures of the same benchmark, subset, protocol, "
        "detector, whitening/score-norm settings and query/reference counts (difference = measured - "
        "published; the others listed apart with the reason; terminal, md, csv)",
    )
    p.add_argument(
        "--subset",
        default=None,
        help="with --published: only this subset's rows (a Copydays family subset is read from a "
        "whole-dataset result's per-family metrics)",
    )
    from copybench.gate_commands import add_no_verify

    add_no_verify(p)
    p.set_defaults(func=cmd_table)


def add_score_h5(sub) -> None:
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


def add_plot(sub) -> None:
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


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a result's predictions in the ISC format (predictions.csv, ground_truth.csv)"
    )
    p.add_argument("result_file", help="one accuracy result JSON (its predictions file must lie beside it)")
    p.add_argument("--format", default="isc", choices=("isc",), help="isc: the ISC 2021 evaluation's CSVs")
    p.add_argument("--out", required=True, help="folder for predictions.csv and ground_truth.csv")
    p.set_defaults(func=cmd_export)
