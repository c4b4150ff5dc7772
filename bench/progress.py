"""rich progress bars for long steps; silent when disabled so the library stays quiet in tests and pipelines.

Progress, status lines and errors go to stderr; only results (tables, CSV) go to stdout, so
``copybench table DIR --format csv > out.csv`` never captures anything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass


class _Bar:
    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[_Bar | _NullBar]:
    """A rich progress bar over ``total`` items (spinner when None); a no-op when not enabled."""
    if not enabled:
        yield _NullBar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False, console=console(stderr=True)) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))


PIPE_WIDTH = 160  # tables written to a pipe or a CI log, unless COLUMNS says otherwise


def console(stderr: bool = False):
    """A rich console on stdout (results) or stderr (progress, status, errors).

    On a terminal rich measures it. On a pipe or a CI log, tables are laid out at ``$COLUMNS`` (default
    :data:`PIPE_WIDTH`, wide enough for leaderboards), and stderr's messages are never hard-wrapped: one line
    stays one line for whoever greps the log.
    """
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=stderr)
