"""Progress display of one training run (a hook; the loop itself prints nothing).

On a terminal: a two-line live display that fits 80 columns (line 1: run, epoch, bar, percent,
elapsed, ETA; line 2: the latest probe's EGF₂ and the last epoch's loss and accuracies). Without
one (stdout piped, a batch log): one complete plain line per epoch, no ANSI codes, no redraws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text


def fmt_metric(value: float | None, pct: bool = False) -> str:
    """A loss in 4 decimals, or (``pct``) an accuracy in percent; '–' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * value:.2f}%" if pct else f"{value:.4f}"


def fmt_egf(value: float | None) -> str:
    """An EGF value in 4 significant digits ('–' when missing or not finite)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def clock(seconds: float | None) -> str:
    """Seconds as 'H:MM:SS' ('?' when unknown), as rich's time columns show them."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


#: The most columns the run label takes on the live display ('sparse <12 hex>-s<seed>' fits).
LABEL_WIDTH = 24


class TwoLineProgress(Progress):
    """A rich Progress whose tasks each show a second line (the task field ``line2``), cut
    with an ellipsis rather than wrapped when the terminal is narrow."""

    def get_renderables(self) -> Iterable[RenderableType]:
        """The bars, then each task's second line."""
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield Text(str(task.fields.get("line2", "")), no_wrap=True, overflow="ellipsis")


def bar_columns(*head: ProgressColumn) -> list[ProgressColumn]:
    """``head`` columns, then a bar that takes the remaining width, elapsed time and ETA.

    The fixed columns never wrap, so at 80 columns the bar shrinks, not the ETA."""
    fixed = {"no_wrap": True}
    return [*head, BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
            TaskProgressColumn(table_column=Column(**fixed)),
            TimeElapsedColumn(table_column=Column(**fixed)),
            TextColumn("ETA", table_column=Column(**fixed)),
            TimeRemainingColumn(table_column=Column(**fixed))]


def plain(console: Console, line: str) -> None:
    """One complete line: no markup, no highlighting, no wrapping at the console width."""
    console.out(line, highlight=False)


class ProgressHook:
    """Shows a run's progress: a live display on a terminal, a plain line per epoch otherwise
    (decided by ``console.is_terminal``)."""

    def __init__(self, console: Console, label: str) -> None:
        self.console, self.label = console, label
        self.live = console.is_terminal
        self.progress = TwoLineProgress(
            *bar_columns(TextColumn("[bold]{task.fields[label]}", table_column=Column(
                no_wrap=True, overflow="ellipsis", max_width=LABEL_WIDTH)),
                TextColumn("{task.description}", table_column=Column(no_wrap=True))),
            console=console, transient=False, expand=True)
        self.task: Any = None
        self._t0 = time.monotonic()
        self._printed_egf_epoch: int | None = None

    def begin(self, state: Any) -> None:
        """Start the display (a resumed run starts where it left off)."""
        self._t0 = time.monotonic()
        total = state.epochs * state.steps_per_epoch
        self.task = self.progress.add_task(self._desc(state), total=total, completed=state.step,
                                           label=self.label, line2=self.metrics_line(state))
        if self.live:
            self.progress.start()
        else:
            resumed = f", resuming after epoch {state.epoch}" if state.epoch else ""
            plain(self.console, f"{self.label}: {state.epochs} epochs of {state.steps_per_epoch} "
                                f"steps{resumed}")

    def after_step(self, state: Any) -> None:
        """One step done."""
        if self.live:
            self.progress.advance(self.task)

    def end_epoch(self, state: Any) -> None:
        """Refresh the display, or print the epoch's line."""
        if self.live:
            self.progress.update(self.task, completed=state.step, description=self._desc(state),
                                 line2=self.metrics_line(state))
        else:
            plain(self.console, self.epoch_line(state))

    def end(self, state: Any) -> None:
        """After the last epoch: early stopping may have probed the stop epoch just now."""
        point = _probe_at(state, state.epoch)
        if self.live:
            self.progress.update(self.task, line2=self.metrics_line(state))
        elif point is not None and self._printed_egf_epoch != state.epoch:
            plain(self.console, f"epoch {state.epoch}/{state.epochs} egf2 "
                                f"{fmt_egf(point.get('egf2'))} (probe at the stop epoch)")

    def stop(self) -> None:
        """Stop the live display."""
        if self.live:
            self.progress.stop()

    def epoch_line(self, state: Any) -> str:
        """The plain line of the epoch just done."""
        last = state.last
        parts = [f"epoch {state.epoch}/{state.epochs}",
                 f"train loss {fmt_metric(last.get('train_loss'))} acc "
                 f"{fmt_metric(last.get('train_accuracy'), True)}"]
        if last.get("val_loss") is not None:  # None: not evaluated this epoch (train.eval_val)
            parts.append(f"val loss {fmt_metric(last.get('val_loss'))} acc "
                         f"{fmt_metric(last.get('val_accuracy'), True)}")
        point = _probe_at(state, state.epoch)
        if point is not None:
            parts.append(f"egf2 {fmt_egf(point.get('egf2'))}")
            self._printed_egf_epoch = state.epoch
        parts.append(f"elapsed {clock(time.monotonic() - self._t0)}")
        return f"{self.label} " + "  ".join(parts)

    @staticmethod
    def metrics_line(state: Any) -> str:
        """The live display's second line: EGF₂ first (it must not be cut), then the metrics."""
        egf = state.extra.get("latest_egf2")
        points = state.extra.get("gradflow") or []
        at = f" (epoch {points[-1]['epoch']})" if egf is not None and points else ""
        text = f"egf2 {fmt_egf(egf)}{at}"
        last = state.last
        if last:
            text += (f"  loss {fmt_metric(last['train_loss'])}  acc "
                     f"{fmt_metric(last['train_accuracy'], True)}  val acc "
                     f"{fmt_metric(last['val_accuracy'], True)}")
        return text

    @staticmethod
    def _desc(state: Any) -> str:
        return f"epoch {state.epoch}/{state.epochs}"


def _probe_at(state: Any, epoch: int) -> dict[str, Any] | None:
    """The gradient-flow point measured after ``epoch``, if the probe measured then."""
    points = state.extra.get("gradflow") or []
    return points[-1] if points and points[-1].get("epoch") == epoch else None


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """A final table of one run's results."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("train", justify="right")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    for metric, pct in (("loss", False), ("accuracy", True)):
        table.add_row(metric, *(fmt_metric(summary.get(f"{s}_{metric}"), pct)
                                for s in ("train", "val", "test")))
    return table
