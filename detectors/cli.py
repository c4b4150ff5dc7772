"""``copybench weights``: fetch the official weights of detectors and list the files with their checks.

Thin wrappers over :func:`copybench.detectors.fetch.fetch_weights` and :func:`~copybench.detectors.fetch.list_weights`.
"""

from __future__ import annotations

from copybench.cliutil import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME
from copybench.listing import add_format_option


def register_cli(sub) -> None:
    """Add ``weights fetch`` and ``weights list`` to the CLI's subparsers."""
    weights = sub.add_parser("weights", help="fetch and list detector weights files").add_subparsers(
        dest="weights_command", required=True, metavar="ACTION"
    )
    p = weights.add_parser(
        "fetch",
        help="download the official weights of detectors (resumable, sha256 checked or pinned)",
        description="Download each detector's official file once (into torch hub's checkpoints folder, or "
        "the Hugging Face cache for hub names), resuming a partial download. A published sha256 is checked; "
        "otherwise the sha256 is pinned in the lock file on first download and checked by every later use.",
    )
    p.add_argument(
        "patterns",
        nargs="+",
        metavar="PATTERN",
        help="detector names, shell patterns ('dino_*'), 'baselines' (the ten baselines) or hub names "
        "(timm:NAME, open_clip:ARCH/TAG, hf-hub:ORG/NAME, hf:ORG/NAME)",
    )
    p.add_argument("--force", action="store_true", help="download again even when the file is present")
    p.set_defaults(func=cmd_weights_fetch)
    p = weights.add_parser("list", help="each detector's weights file: status, size, sha256, source, license")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'dino_*'")
    add_format_option(p)
    p.set_defaults(func=cmd_weights_list)


def cmd_weights_fetch(args) -> int:
    from copybench.detectors.fetch import fetch_weights
    from copybench.progress import console

    outcomes = fetch_weights(args.patterns, force=args.force, progress=not args.quiet, on_error="return")
    err = console(stderr=True)  # status lines: stderr, like every other command's
    colours = {"fetched": "green", "present": "cyan", "skipped": "dim", "failed": "red"}
    for o in outcomes:
        detail = f"{o.path} sha256 {o.sha256[:16]} {o.message}" if o.path else o.message
        err.print(f"[{colours[o.status]}]{o.status:8}[/] {o.detector}: {detail}", highlight=False)
    failed = [o for o in outcomes if o.status == "failed"]
    if any(o.runtime for o in failed):  # network or disk: exit 3, as `run --download` for the same failure
        return EXIT_RUNTIME
    return EXIT_BAD_INPUT if failed else EXIT_OK


WEIGHTS_COLUMNS = (  # drop order at narrow widths: source first; detector and status never
    ("detector", 0), ("file", 4), ("status", 0), ("size", 2), ("sha256", 3), ("check", 1), ("license", 5),
    ("source", 6),
)  # fmt: skip


def cmd_weights_list(args) -> int:
    from dataclasses import asdict

    from copybench.detectors.fetch import list_weights
    from copybench.listing import Column, print_listing, short_source

    rows = list_weights(args.pattern)
    cells = [
        {
            "detector": r.detector,
            "file": r.file,
            "status": r.status,
            "size": "-" if r.size is None else f"{r.size / 1e6:,.1f} MB",
            "sha256": r.sha256[:16],
            "check": r.check,
            "license": r.license,
            "source": short_source(r.source),
        }
        for r in rows
    ]
    columns = [Column(k, drop, fold=k in ("check", "license", "source")) for k, drop in WEIGHTS_COLUMNS]
    styles = [
        {"missing": "yellow", "modified": "red", "present": "green", "package": "green"}.get(r.status)
        for r in rows
    ]
    title = "detector weights (sha256: first 16 hex digits; fetch missing ones with: copybench weights fetch NAME)"
    print_listing(title, columns, cells, [asdict(r) for r in rows], getattr(args, "format", "table"), styles)
    return EXIT_OK
