"""Rich progress display for one training run (a hook; the loop itself prints nothing)."""

from __future__ import annotations

import math
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
from rich.table import Table


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * value:.2f}%" if pct else f"{value:.4f}"


class ProgressHook:
    """Advances a rich progress bar every step; shows epoch, loss, accuracy and ETA."""

    def __init__(self, console: Console, label: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.label = label
        self.task: Any = None

    def begin(self, state: Any) -> None:
        """Start the bar (resumed runs start where they left off)."""
        total = state.epochs * state.steps_per_epoch
        self.task = self.progress.add_task(self._desc(state), total=total,
                                           completed=state.step, metrics=self._metrics(state))
        self.progress.start()

    def after_step(self, state: Any) -> None:
        """One step done."""
        self.progress.advance(self.task)

    def end_epoch(self, state: Any) -> None:
        """Refresh the epoch label and metrics."""
        self.progress.update(self.task, description=self._desc(state),
                             metrics=self._metrics(state))

    def stop(self) -> None:
        """Stop the live display."""
        self.progress.stop()

    def _desc(self, state: Any) -> str:
        return f"{self.label} epoch {state.epoch}/{state.epochs}"

    @staticmethod
    def _metrics(state: Any) -> str:
        last = state.last
        if not last:
            return ""
        text = (f"loss {_fmt(last['train_loss'])} acc {_fmt(last['train_accuracy'], True)} "
                f"val {_fmt(last['val_accuracy'], True)}")
        egf = state.extra.get("latest_egf2")
        return text + (f" egf2 {egf:.3g}" if egf is not None else "")


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """A final table of one run's results."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("train", justify="right")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    for metric, pct in (("loss", False), ("accuracy", True)):
        table.add_row(metric, *(_fmt(summary.get(f"{s}_{metric}"), pct)
                                for s in ("train", "val", "test")))
    return table
