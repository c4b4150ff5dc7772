"""Progress bars for weights downloads, on stderr: a rich transfer bar for copybench's own HTTP downloads and a
tqdm class that draws huggingface_hub's bars as rows of one rich display. Both are no-ops when progress is off."""

from __future__ import annotations


class byte_bar:
    """A rich transfer bar on stderr (bytes, speed, time left); a no-op when progress is off."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self.progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
        columns += [TransferSpeedColumn(), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=Console(stderr=True), transient=False)
        self.progress.__enter__()
        task = self.progress.add_task(self.label, total=self.total, completed=self.done)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _bar_columns() -> list:
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

    return [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}")] + [
        TimeRemainingColumn()
    ]


class hub_bars:
    """A tqdm class for huggingface_hub's downloads whose bars are rows of one rich display on stderr, like
    copybench's own downloads (huggingface_hub draws tqdm bars only on a terminal); with ``enabled=False`` a
    silent one. ``with hub_bars(progress) as tqdm_class: snapshot_download(..., tqdm_class=tqdm_class)``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.progress = enabled, None

    def __enter__(self) -> type:
        import io

        from tqdm.std import tqdm

        if not self.enabled:
            return type("QuietTqdm", (tqdm,), {"__init__": _quiet_init})
        from rich.progress import Progress

        from copybench.progress import console

        self.progress = Progress(*_bar_columns(), console=console(stderr=True))
        self.progress.__enter__()
        board = self.progress

        class RichTqdm(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)  # huggingface_hub's bar group, which plain tqdm rejects
                super().__init__(*args, **{**kwargs, "file": io.StringIO(), "disable": False})

            def display(self, msg=None, pos=None):  # tqdm's drawing call: update this bar's rich row
                if not hasattr(self, "_row"):
                    self._row = board.add_task(self.desc or "", total=self.total, amount="")
                board.update(self._row, completed=self.n, total=self.total, description=self.desc or "",
                             amount=_amount(self.n, self.total, self.unit))  # fmt: skip
                return True

        return RichTqdm

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _quiet_init(self, *args, **kwargs) -> None:
    from tqdm.std import tqdm

    kwargs.pop("name", None)
    tqdm.__init__(self, *args, **{**kwargs, "disable": True})


def _amount(n: float, total: float | None, unit: str) -> str:
    """``12.3MB/45.0MB`` for bytes, ``3/7 files`` otherwise, as tqdm states them."""
    from tqdm.std import tqdm

    if unit == "B":
        size = tqdm.format_sizeof
        return f"{size(n)}B/{size(total)}B" if total else f"{size(n)}B"
    return f"{n:g}/{total:g} {unit}" if total else f"{n:g} {unit}"
