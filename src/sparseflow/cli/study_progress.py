"""Rich progress display of a running study: runs done/total, failures, ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StudyProgress:
    """Callbacks for :func:`sparseflow.studies.run_study`."""

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console)
        self.task: Any = None
        self.failed = 0

    def start(self, total: int, done: int) -> None:
        """Begin with ``done`` of ``total`` runs already finished."""
        self.task = self.progress.add_task("runs", total=total, completed=done, failed="")
        self.progress.start()

    def advance(self, outcome: Any) -> None:
        """One run finished or failed."""
        if not outcome.ok:
            self.failed += 1
            self.progress.console.print(f"[red]failed[/] {outcome.run_key}: {outcome.error}")
        self.progress.update(self.task, advance=1,
                             failed=f"[red]{self.failed} failed[/]" if self.failed else "")

    def stop(self) -> None:
        """Stop the live display."""
        self.progress.stop()
