"""Progress display of a running study: runs done/total, failures, ETA, the latest result.

On a terminal: a two-line live display that fits 80 columns (line 1: study, bar, runs done,
failures, elapsed, ETA; line 2: the latest finished run's kind, key, test accuracy and EGF₂).
Without one (stdout piped, a batch log): one complete plain line per finished or failed run,
no ANSI codes, no redraws.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import MofNCompleteColumn, TextColumn
from rich.table import Column
from rich.text import Text

from sparseflow.cli.progress import (
    LABEL_WIDTH,
    TwoLineProgress,
    bar_columns,
    clock,
    fmt_egf,
    fmt_metric,
    plain,
)

#: The longest error text a plain line shows (``study status`` shows it whole).
ERROR_CHARS = 200


class StudyProgress:
    """Callbacks for :func:`sparseflow.studies.run_study`.

    Args:
        console: where to show progress; ``console.is_terminal`` picks the live display or
            plain lines.
        name: the study's name.
        runs: the planned runs (``Plan.runs``), for the kind and cell of each outcome.
    """

    def __init__(self, console: Console, name: str, runs: Sequence[Any] = ()) -> None:
        self.console, self.name = console, name
        self.live = console.is_terminal
        self.runs = {r.run_key: r for r in runs}
        no_wrap = {"no_wrap": True}
        self.progress = TwoLineProgress(
            *bar_columns(
                TextColumn("[bold]{task.fields[name]}", table_column=Column(
                    no_wrap=True, overflow="ellipsis", max_width=LABEL_WIDTH)),
                MofNCompleteColumn(table_column=Column(**no_wrap)),
                TextColumn("{task.fields[failed]}", table_column=Column(**no_wrap))),
            console=console, expand=True)
        self.task: Any = None
        self.failed = 0
        self.total = self.done = self.done_here = 0
        self._t0 = time.monotonic()

    def start(self, total: int, done: int) -> None:
        """Begin with ``done`` of ``total`` runs already finished."""
        self.total, self.done, self._t0 = total, done, time.monotonic()
        self.task = self.progress.add_task("runs", total=total, completed=done, failed="",
                                           name=self.name, line2="latest: –")
        if self.live:
            self.progress.start()
        else:
            plain(self.console, f"study {self.name}: {total - done} of {total} runs to train")

    def advance(self, outcome: Any) -> None:
        """One run finished or failed."""
        self.done += 1
        self.done_here += 1
        if not outcome.ok:
            self.failed += 1
        if not self.live:
            plain(self.console, self.outcome_line(outcome))
            return
        if not outcome.ok:
            line = Text.assemble(("failed", "red"), f" {outcome.run_key}: {outcome.error}")
            self.progress.console.print(line, soft_wrap=True)
        latest = {"line2": self.latest_line(outcome)} if outcome.ok else {}
        self.progress.update(self.task, advance=1,
                             failed=f"[red]{self.failed} failed[/]" if self.failed else "",
                             **latest)

    def stop(self) -> None:
        """Stop the live display."""
        if self.live:
            self.progress.stop()

    def eta_seconds(self) -> float | None:
        """Seconds left at this invocation's pace (None before its first outcome)."""
        if not self.done_here:
            return None
        pace = (time.monotonic() - self._t0) / self.done_here
        return pace * max(0, self.total - self.done)

    def _where(self, run_key: str) -> tuple[str, str]:
        """(kind, 'axis=value … dense_width=W') of a planned run ('?' when unknown)."""
        run = self.runs.get(run_key)
        if run is None:
            return "?", "?"
        cell = " ".join(f"{k}={v}" for k, v in run.cell.items())
        return run.kind, f"{cell} dense_width={run.dense_width}".strip()

    def outcome_line(self, outcome: Any) -> str:
        """The plain line of one finished or failed run."""
        kind, cell = self._where(outcome.run_key)
        s = outcome.summary or {}
        head = f"[{self.done}/{self.total}] {'finished' if outcome.ok else 'FAILED'} {kind} " \
               f"{outcome.run_key} {{{cell}}}"
        if outcome.ok:
            seconds = s.get("duration_s")
            took = "–" if seconds is None else f"{seconds:.3g} s"
            body = (f"test acc {fmt_metric(s.get('test_accuracy'), True)}  egf2 "
                    f"{fmt_egf(s.get('egf2'))}  {took}")
        else:
            error = " ".join(str(outcome.error).split())
            body = f"error: {error[:ERROR_CHARS]}{'…' if len(error) > ERROR_CHARS else ''}"
        return f"{head}  {body}  ETA {clock(self.eta_seconds())}"

    def latest_line(self, outcome: Any) -> str:
        """The live display's second line: the latest finished run, EGF₂ and accuracy first."""
        kind, cell = self._where(outcome.run_key)
        s = outcome.summary or {}
        return (f"latest: egf2 {fmt_egf(s.get('egf2'))}  test "
                f"{fmt_metric(s.get('test_accuracy'), True)}  {kind} {outcome.run_key}  {cell}")
