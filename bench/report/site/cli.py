"""``copybench publish``: a thin command over :func:`copybench.report.site.build.publish`."""

from __future__ import annotations

import argparse

from copybench.cliutil import EXIT_BAD_INPUT, EXIT_OK


def cmd_publish(args) -> int:
    """Build the site; the summary goes to stdout, a warning per file left out and per note to stderr."""
    import sys

    from .build import publish

    report = publish(args.results, args.out, examples=args.examples, verify=not args.no_verify)
    for label, reason in report.excluded:
        print(f"warning: not included: {label}: {reason}", file=sys.stderr)
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    pages = [f for f in report.files if f.endswith(".html")]
    print(
        f"wrote {report.out}: {len(report.boards)} boards, {len(pages)} pages, {len(report.files)} files; "
        f"{len(report.excluded)} input files not included (listed in not-included.html)"
    )
    return EXIT_BAD_INPUT if args.strict and report.excluded else EXIT_OK


def register_cli(subparsers) -> None:
    """Add the ``publish`` subcommand."""
    p = subparsers.add_parser(
        "publish",
        help="a static leaderboard site (HTML, SVG, downloads) from result folders",
        description="Write a static site from result files: one leaderboard per dataset and protocol, a page per "
        "dataset and per detector, accuracy against speed per device, downloads and a manifest. It works from "
        "file:// and any static host; the same inputs give byte-identical files.",
    )
    p.add_argument(
        "results", nargs="+", metavar="RESULTS", help="result folders (searched recursively) or files"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="SITE",
        help="site folder: new, empty, or a site written by publish (then replaced)",
    )
    p.add_argument(
        "--examples",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="contact sheets of example queries from each dataset (default on; --no-examples for a site that may "
        "not carry the dataset's pictures)",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit 2 when any input file is left out of the site (the site is "
        "still written)"
    )  # fmt: skip
    from copybench.gate_commands import add_no_verify

    add_no_verify(p)
    p.set_defaults(func=cmd_publish)
