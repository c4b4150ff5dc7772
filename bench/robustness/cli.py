"""``copybench robustness RESULTS``: robustness profiles of the sweep results in a folder (a thin wrapper over
:func:`copybench.robustness.profile.load_profiles` and :mod:`copybench.robustness.tables`)."""

from __future__ import annotations

import sys

from copybench.cliutil import EXIT_OK, err_console, out_console


def cmd_robustness(args) -> int:
    from .profile import load_profiles
    from .tables import rich_tables, to_csv, to_json, write_report

    profiles = load_profiles(
        args.results, metric=args.metric, baseline=args.baseline, threshold=args.threshold
    )
    if args.format == "json":
        sys.stdout.write(to_json(profiles))
    elif args.format == "csv":
        sys.stdout.write(to_csv(profiles))
    else:
        console = out_console()
        for prof in profiles:
            for table in rich_tables(prof):
                console.print(table)
    if args.out:
        written = write_report(profiles, args.out)
        err_console().print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    return EXIT_OK


def register_cli(sub) -> None:
    p = sub.add_parser(
        "robustness",
        help="robustness profiles of sweep results: curves, breaking points, AUC, a summary score",
        description="Per axis of a sweep dataset (copybench data build sweep-all-xs), each detector's metric "
        "against severity; a table of breaking points (the lowest severity where R@1 < threshold, "
        "interpolated, or 'never') and normalised AUCs; one summary score per detector (mean AUC over axes) "
        "and its relative forms against a baseline detector (relative AUC, and rCE: ImageNet-C's mCE form).",
    )
    p.add_argument("results", help="a result file or a folder searched recursively (e.g. runs/results)")
    p.add_argument(
        "--metric",
        default="recall@1",
        choices=("recall@1", "micro_ap", "map"),
        help="metric of the curves and AUCs (default recall@1; breaking points always use R@1)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="detector the relative scores compare with (default: phash_64 when it was run)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="R@1 below which a detector counts as broken (default 0.5)",
    )
    p.add_argument(
        "--format",
        default="terminal",
        choices=("terminal", "json", "csv"),
        help="stdout format: rich tables (default), every number as JSON, or tidy CSV (one row per level)",
    )
    p.add_argument(
        "--out", default=None, help="folder for profiles.json, robustness.csv and one PNG per profile"
    )
    p.set_defaults(func=cmd_robustness)
