"""What every command's parser and wrapper share: exit codes, the stdout/stderr consoles, the parser class,
global flags and the options several commands take (``--top-k``, ``--decode``, ``--engine``,
``--descriptor-dir``). Imports no feature module, so every feature's ``cli`` can import it.

Exit codes: 0 success, 1 a check failed, 2 bad usage or input (the message names the bad value), 3 a runtime
failure (disk full, a crash; one line naming the cause, the traceback with -v).
"""

from __future__ import annotations

import argparse
import logging

from .options import ENGINES, RAY_SHARD_ROWS

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_RUNTIME = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def out_console():
    """stdout: results only (tables, CSV, the gate's verdict)."""
    from .progress import console

    return console()


def err_console():
    """stderr: status lines, "wrote FILE", warnings and errors."""
    from .progress import console

    return console(stderr=True)


def split_csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def expand_detectors(spec: str) -> list[str]:
    """Comma list of names, shell patterns (``dino_*``) or ``module:factory`` plugins."""
    from copybench.detectors import get_spec, list_detectors

    names: list[str] = []
    for item in split_csv(spec):
        if any(ch in item for ch in "*?[") and ":" not in item:
            found = list_detectors(item)
            if not found:
                raise UsageError(
                    f"detector pattern {item!r} matches nothing (see `copybench list detectors`)"
                )
            names += found
        elif item.startswith(("timm:", "open_clip:", "hf-hub:", "hf:")):
            from copybench.detectors.hub import check_hub_name

            check_hub_name(item)  # malformed: refused now, before a file name is made from it
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


def add_decode_option(p: argparse.ArgumentParser) -> None:
    from .decode import DECODES

    p.add_argument(
        "--decode",
        default="auto",
        choices=DECODES,
        help="how files are decoded: workers (CPU), device (nvjpeg on the GPU), nvimgcodec; auto: device on CUDA",
    )


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


def add_descriptor_dir(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--descriptor-dir``: the descriptor cache folder itself, where $COPYBENCH_CACHE is the root of every
    cache (descriptors in its descriptors/). The old ``--cache-dir`` of run, scan and study named the same
    folder; it still works, with a deprecation warning (data build's --cache-dir is a cache root, unchanged)."""
    parser.add_argument(
        "--descriptor-dir",
        "--cache-dir",
        dest="descriptor_dir",
        default=default,
        action=DeprecatedAlias,
        new="--descriptor-dir",
        metavar="DIR",
        help="descriptor cache folder (default: $COPYBENCH_CACHE/descriptors, ~/.cache/copybench/descriptors; "
        "--cache-dir is its deprecated old name)",
    )


class Parser(argparse.ArgumentParser):
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
            known, extra = super().parse_known_args(args, namespace)
        else:
            self._in_intermixed = True
            try:
                known, extra = self.parse_known_intermixed_args(args, namespace)
            finally:
                self._in_intermixed = False
        if extra and " " in self.prog and not self._in_intermixed:
            # a subcommand's own usage for its wrong flag (argparse would print the top-level usage)
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return known, extra


def add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")


def add_global_flags_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """-q/-v are accepted before or after any subcommand (``copybench demo -q``), at every depth. Subcommands
    default to SUPPRESS so a flag given before the subcommand is not reset by the subcommand's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                known = {opt for a in child._actions for opt in a.option_strings}
                if "--quiet" not in known:
                    add_global_flags(child, argparse.SUPPRESS)
                add_global_flags_to_subcommands(child)


class DeprecatedAlias(argparse.Action):
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
        action=DeprecatedAlias,
        new="--top-k",
        help=help,
    )
