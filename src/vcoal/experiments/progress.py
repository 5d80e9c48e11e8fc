"""Progress reporting for sweeps: a protocol, a silent default and a rich bar on stderr."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SweepProgress(Protocol):
    """What the runner reports while a sweep runs."""

    def start(self, total: int, skipped: int, engine: str) -> None: ...

    def note(self, text: str) -> None: ...

    def running(self, label: str) -> None: ...

    def finished(self, label: str, ok: bool) -> None: ...

    def stop(self) -> None: ...


class NoProgress:
    """Reports nothing (library default)."""

    def start(self, total: int, skipped: int, engine: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def running(self, label: str) -> None:
        pass

    def finished(self, label: str, ok: bool) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    """A rich progress bar on stderr: done/total, failed, ETA and the trial being run."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.fields[engine]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=self.console,
            transient=False,
        )
        self._task = None
        self._failed = 0

    def start(self, total: int, skipped: int, engine: str) -> None:
        if skipped:
            self.console.print(f"resuming: {skipped} of {total + skipped} trials already stored, skipped")
        self._progress.start()
        self._task = self._progress.add_task("sweep", total=total, engine=engine, failed=0, current="")

    def note(self, text: str) -> None:
        """One line on stderr (above the bar while it shows)."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def running(self, label: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, current=label[:60])

    def finished(self, label: str, ok: bool) -> None:
        if self._task is None:
            return
        self._failed += 0 if ok else 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        self._progress.stop()
