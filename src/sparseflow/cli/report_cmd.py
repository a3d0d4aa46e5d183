"""``sparseflow study report``: the study's HTML report and figures."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sparseflow.cli.study_cmd import ALL_RUNS, ALPHA


def report(
    directory: Path = typer.Argument(..., help="Study directory."),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default "
                                    "DIR/report/report.html, figures in DIR/report/; any "
                                    "other page gets its figures in <stem>_files/ beside it)."),
    metric: str = typer.Option("test_accuracy", help="Metric of the p-value table, the "
                               "first figures and the training small multiples (losses: "
                               "lower is better)."),
    rows: str | None = typer.Option(None, help="Row axis of the table, one figure panel per "
                                    "value (default: the first swept axis)."),
    cols: str | None = typer.Option(None, help="Column axis of the table, one figure colour "
                                    "per value (default: variant)."),
    cell: list[str] = typer.Option([], "--cell", help="KEY=VALUE naming the cell whose four "
                                   "training curves are drawn in detail (repeat; default: the "
                                   "first cell)."),
    test: str = typer.Option("wilcoxon", help="wilcoxon (paired), ttest (paired), mannwhitney."),
    correction: str = typer.Option("none", help="Multiple comparisons: none, holm, bh."),
    alpha: float = ALPHA,
    all_runs: bool = ALL_RUNS,
) -> None:
    """One self-contained HTML report: summary, p-values, figures, Kendall τ, curves."""
    from sparseflow.report import build_report
    from sparseflow.utils.atomic import check_output_file

    if out is not None:
        check_output_file(out)  # before the figures are drawn and written
    files = build_report(directory, out=out, metric=metric, rows=rows, cols=cols, cell=cell,
                         test=test, correction=correction, alpha=alpha,
                         all_runs=all_runs)
    console = Console()
    console.print(f"wrote {files.html}")
    if files.figure_dir is None:
        console.print("no figure files written (the page embeds its figures)")
    else:
        console.print(f"figures ({len(files.figures)} files: PNG, two- and one-column PDF) "
                      f"in {files.figure_dir}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``study`` sub-app (``app`` is the root app, already holding it)."""
    from sparseflow.cli.study_cmd import study_app

    del app  # the command lives under `study`, which study_cmd.register attached to the app
    study_app.command("report")(report)
