"""The gate's commands: ``check`` (the regression gate over two result folders, :mod:`copybench.check`) and
``verify`` (every stored metric recomputed from its predictions, :mod:`copybench.verify`), and the
``--no-verify`` flag of every command that reads results."""

from __future__ import annotations

import argparse

from .cliutil import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    UsageError,
    err_console,
    out_console,
    split_csv,
)


def cmd_check(args) -> int:
    from .check import GATED_METRICS, compare, failed

    metrics = tuple(split_csv(args.metrics)) if args.metrics else GATED_METRICS
    changes = compare(
        args.baseline,
        args.results,
        tolerance=args.tolerance,
        metrics=metrics,
        allow_weights_change=args.allow_weights_change,
        verify=not args.no_verify,
    )
    if args.robustness_tolerance is not None:  # AUC per axis of sweep results (copybench.robustness.gate)
        from .robustness.gate import auc_changes

        changes += auc_changes(args.baseline, args.results, tolerance=args.robustness_tolerance)
    console = out_console()
    table = _check_table(changes, args.tolerance, args.verbose)
    if table.row_count:
        console.print(table)
    bad = failed(changes)
    console.print(check_summary(changes))
    return EXIT_CHECK_FAILED if bad else EXIT_OK


def _check_table(changes, tolerance: float, verbose: bool):
    from rich.table import Table

    table = Table(title=f"regression check (tolerance {tolerance})")
    noted = any(c.note for c in changes if c.status != "ok" or verbose)
    for col in ("detector", "dataset", "metric", "baseline", "new", "delta", "status", *(("note",) * noted)):
        table.add_column(col)
    colours = {"dropped": "red", "missing": "red", "improved": "green", "ok": ""}
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for c in changes:
        if c.status != "ok" or verbose:
            delta = "-" if c.delta is None else f"{c.delta:+.4f}"
            cells = [c.detector, c.dataset, c.metric, fmt(c.baseline), fmt(c.new), delta, c.status]
            table.add_row(*cells, *((c.note,) * noted), style=colours[c.status])
    return table


def check_summary(changes) -> str:
    """``FAILED: 1 of 28 comparisons (1 dropped, 0 missing)`` or ``passed: 28 comparisons ...``."""
    count = lambda status: sum(1 for c in changes if c.status == status)
    dropped, missing = count("dropped"), count("missing")
    if dropped or missing:
        return (
            f"[red]FAILED[/]: {dropped + missing} of {len(changes)} comparisons ({dropped} dropped, "
            f"{missing} missing)"
        )
    n_keys = len({(c.detector, c.dataset) for c in changes})
    return (
        f"[green]passed[/]: {len(changes)} comparisons over {n_keys} results ({count('improved')} improved)"
    )


def add_check(sub) -> None:
    p = sub.add_parser("check", help="regression gate: exit 1 when a metric drops by more than the tolerance")
    p.add_argument("--baseline", required=True, help="baseline result file or folder")
    p.add_argument("--results", required=True, help="new result file or folder")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed absolute drop (default 0.01)")
    p.add_argument(
        "--metrics", default=None, help="comma list (default: micro_ap,map,recall@1,recall_at_p90)"
    )
    p.add_argument(
        "--allow-weights-change",
        action="store_true",
        help="compare results computed with different weights files (refused by default: other weights, "
        "other numbers)",
    )
    p.add_argument(
        "--robustness-tolerance",
        type=float,
        default=None,
        metavar="T",
        help="also gate robustness profiles: fail when the normalised R@1 AUC of any sweep axis drops by more "
        "than T (the baseline must hold sweep results; see `copybench robustness`)",
    )
    add_no_verify(p)
    p.set_defaults(func=cmd_check)


def add_no_verify(p: argparse.ArgumentParser) -> None:
    """--no-verify: skip the check of every result's metrics against its stored predictions."""
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not recompute each result's metrics from its stored predictions first (by default a "
        "result whose numbers its predictions do not give is refused; `copybench verify` checks in full)",
    )


def cmd_verify(args) -> int:
    from .verify import verify_results

    checks = verify_results(args.results, full=True, dataset=args.dataset)
    if not checks:
        raise UsageError(f"no accuracy results under {args.results} (write some with `copybench run`)")
    console = out_console()
    for c in checks:
        if c.disagreements:
            console.print(f"[red]DISAGREES[/] {c.path}: " + "; ".join(c.disagreements), highlight=False)
        elif c.unverified:
            err_console().print(f"[red]error:[/] {c.path}: not verified: {c.unverified}", highlight=False)
        elif args.verbose:
            console.print(f"[green]ok[/] {c.path}", highlight=False)
    bad = sum(1 for c in checks if c.disagreements)
    unverified = sum(1 for c in checks if c.unverified)
    console.print(
        f"{len(checks)} result(s): {len(checks) - bad - unverified} agree with their predictions, {bad} "
        f"disagree, {unverified} could not be verified"
    )
    return EXIT_CHECK_FAILED if bad else EXIT_BAD_INPUT if unverified else EXIT_OK


def add_verify(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="recompute every metric of result files from their stored predictions and the dataset's ground "
        "truth; exit 1 when a stored number disagrees",
    )
    p.add_argument("results", help="a result file or a folder searched recursively")
    p.add_argument(
        "--dataset",
        default=None,
        help="the dataset folder to check against (default: the one each result records; needed when the "
        "results were moved without it)",
    )
    p.set_defaults(func=cmd_verify)
