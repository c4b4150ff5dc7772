"""The ``copybench`` command line, assembled: each feature registers its own commands, this module only puts
them in order, parses, and maps exceptions to exit codes.

Exit codes: 0 success, 1 a check failed, 2 bad usage or input (the message names the bad value), 3 a runtime
failure (disk full, a crash; one line naming the cause, the traceback with -v).

A new command goes in its feature's ``cli`` module as a function ``add(subparsers)``; list it in
:data:`COMMANDS` at the place ``copybench --help`` should show it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rich.markup import escape

from .cliutil import (
    EXIT_BAD_INPUT,
    EXIT_RUNTIME,
    Parser,
    UsageError,
    add_global_flags,
    add_global_flags_to_subcommands,
    err_console,
)

# (module, function adding its subcommands), in the order `copybench --help` lists the commands. Building the
# parser imports these modules only: none of them imports numpy, pandas or torch at module level.
COMMANDS = (
    ("copybench.commands", "add_demo_and_list"),  # demo, list
    ("copybench.datasets.cli", "register_cli"),  # data build | import | verify
    ("copybench.commands", "add_run"),  # run
    ("copybench.report.cli", "add_table"),  # table
    ("copybench.gate_commands", "add_check"),  # check
    ("copybench.gate_commands", "add_verify"),  # verify
    ("copybench.report.cli", "add_score_h5"),  # score-h5
    ("copybench.report.cli", "add_plot"),  # plot
    ("copybench.robustness.cli", "register_cli"),  # robustness
    ("copybench.report.cli", "add_export"),  # export
    ("copybench.report.site.cli", "register_cli"),  # publish
    ("copybench.throughput.cli", "register_cli"),  # throughput
    ("copybench.scan.cli", "register_cli"),  # scan
    ("copybench.detectors.cli", "register_cli"),  # weights list | fetch
    ("copybench.study.cli", "register_cli"),  # study data-size | demo | report
)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: global flags, then every feature's subcommands."""
    from ._version import __version__

    parser = Parser(
        prog="copybench",
        description="Benchmark image copy detectors; scan generated images for training-set replication.",
    )
    parser.add_argument("--version", action="version", version=f"copybench {__version__}")
    add_global_flags(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, function in COMMANDS:
        getattr(importlib.import_module(module), function)(sub)
    add_global_flags_to_subcommands(parser)
    return parser


def _detector_errors() -> tuple[type[Exception], ...]:
    """The registry's bad-input errors, when the registry was imported: importing it here would import torch
    for every command (table, check and list recipes never need it)."""
    registry = sys.modules.get("copybench.detectors.registry")
    return (registry.UnknownDetectorError, registry.WeightsMissingError) if registry else ()


def _missing_module(exc: ModuleNotFoundError) -> int:
    """Exit 2 naming the extra that installs a missing optional library; any other missing module is a
    runtime failure (a broken install), reported as such."""
    from .extras import missing_extra_message

    hint = missing_extra_message(exc.name) if exc.name else None
    if hint is None:
        logging.getLogger(__name__).debug("runtime failure", exc_info=exc)
        err_console().print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with -v for the traceback)")
        return EXIT_RUNTIME
    err_console().print(f"[red]error:[/red] {escape(hint)}", highlight=False)  # [h5] is not markup
    return EXIT_BAD_INPUT


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
        err_console().print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:  # an optional library the command needs: name the extra to install
        return _missing_module(exc)
    except KeyboardInterrupt:
        err_console().print("[yellow]interrupted[/yellow]: finished results are kept; rerun to resume")
        return 130
    except Exception as exc:
        logging.getLogger(__name__).debug("runtime failure", exc_info=True)
        err_console().print(
            f"[red]error:[/red] {type(exc).__name__}: {exc} (run with -v for the traceback)", highlight=False
        )
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
