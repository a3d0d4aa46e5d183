"""``sparseflow study report``: read the store, test, draw, and write the report's files.

Output (every file written atomically, so a reader never sees half a report):
``<out>`` (default ``DIR/report/report.html``) and each figure as ``DIR/report/<name>.png`` and
``.pdf``: ``<metric>_vs_width``, ``egf2_vs_width`` and ``curves``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.analysis import CORRECTIONS, TESTS, kendall_table, pvalue_table
from sparseflow.report import data as d
from sparseflow.report import figures, html
from sparseflow.report.errors import ReportError
from sparseflow.report.palette import value_colors
from sparseflow.report.series import FigureData, curves_figure, metric_axis, width_figure
from sparseflow.store import StoreError, StudyStore
from sparseflow.utils.atomic import atomic_write_bytes, write_output

REPORT_DIR = "report"
HTML_NAME = "report.html"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`build_report` wrote: the HTML page and every figure file (PNG and PDF)."""

    html: Path
    figures: tuple[Path, ...]


def _check_options(metric: str, test: str, correction: str, alpha: float) -> None:
    d.check_metric(metric)
    if test not in TESTS:
        raise ReportError(f"--test must be one of {', '.join(TESTS)}, not {test!r}")
    if correction not in CORRECTIONS:
        raise ReportError(f"--correction must be one of {', '.join(CORRECTIONS)}, "
                          f"not {correction!r}")
    if not 0 < alpha < 1:
        raise ReportError(f"--alpha must be in (0, 1), got {alpha}")


def _curve_runs(study: d.StudyData, cell: dict[str, Any]
                ) -> tuple[int, list[tuple[str, dict[str, list[dict[str, Any]]]]]]:
    """(widest dense width of the cell, its runs' per-epoch metrics and probe points)."""
    runs = d.cell_runs(study, cell)
    width = max(int(r["dense_width"]) for r in runs)
    chosen = [r for r in runs if int(r["dense_width"]) == width]
    try:
        with StudyStore(study.directory, readonly=True) as store:
            return width, [(r["kind"], {"metrics": store.metrics(r["run_key"]),
                                        "gradflow": store.gradflow(r["run_key"])})
                           for r in chosen]
    except StoreError as exc:
        raise ReportError(str(exc)) from None


def build_report(directory: str | Path, *, out: str | Path | None = None,
                 metric: str = "test_accuracy", rows: str | None = None,
                 cols: str | None = None, cell: Sequence[str] = (), test: str = "wilcoxon",
                 correction: str = "none", alpha: float = 0.05,
                 all_runs: bool = False) -> ReportFiles:
    """Write the HTML report of the study in ``directory`` and its figures; see the module
    docstring for the files.

    Args:
        metric: compared in the p-value table and drawn in the first width figure.
        rows, cols: the table's axes (default: the first swept axis × ``variant``, as
            ``study tests``); the width figures draw one panel per row value and one colour per
            column value (see :func:`sparseflow.report.data.figure_keys`).
        cell: ``KEY=VALUE`` items naming the training-curves cell (default: the first cell,
            in spec order, that has finished runs).
        test, correction, alpha: passed to :func:`sparseflow.analysis.pvalue_table`.
        all_runs: cover every stored run, not only the latest plan's (see
            :func:`sparseflow.store.scope.plan_scope`).

    Raises:
        ReportError: no study, no finished runs, an unknown metric/axis/cell, a bad option.
    """
    _check_options(metric, test, correction, alpha)
    study = d.load_study(directory, all_runs)
    rows, cols = d.choose_axes(study, rows, cols)
    curve_cell = d.choose_cell(study, cell)
    table = pvalue_table(study.rows, metric=metric, rows=rows, cols=cols, test=test,
                         correction=correction, alpha=alpha, axes=list(study.axes),
                         row_order=study.values(rows), col_order=study.values(cols))
    finished = study.finished
    kendall = kendall_table(finished)
    kinds = {k: sum(r["kind"] == k for r in finished) for k in ("sparse", "dense")}

    panel_key, color_key = d.figure_keys(study, rows, cols)
    colors = value_colors([d.label(v) for v in study.values(color_key)])
    ylabel = metric_axis(metric)[0]
    sparse_w = ", ".join(str(w) for w in sorted({r["sparse_width"] for r in finished
                                                  if r.get("sparse_width") is not None}))
    datas: list[FigureData] = [width_figure(
        study, metric, panel_key, color_key, colors, name=f"{metric}_vs_width",
        title=f"{ylabel[0].upper()}{ylabel[1:]} against dense width (sparse width {sparse_w})")]
    if metric != "egf2":
        datas.append(width_figure(study, "egf2", panel_key, color_key, colors,
                                  name="egf2_vs_width",
                                  title=f"Average EGF₂ against dense width (sparse width "
                                        f"{sparse_w})"))
    width, runs = _curve_runs(study, curve_cell)
    datas.append(curves_figure(curve_cell, width, runs, color_key,
                               colors.get(d.label(curve_cell.get(color_key)), "0.3"),
                               name="curves"))

    report_dir = Path(directory) / REPORT_DIR
    blocks, written = [], []
    for fd in datas:
        png, pdf = figures.render(figures.draw(fd))
        for suffix, content in ((".png", png), (".pdf", pdf)):
            path = report_dir / f"{fd.name}{suffix}"
            atomic_write_bytes(path, content)
            written.append(path)
        blocks.append(html.FigureBlock(fd.name, fd.title, fd.caption, png))

    by_name = {b.name: html.figure_html(b) for b in blocks}
    sections = [(f"Is sparse better than same-capacity dense? ({metric})",
                 html.pvalue_html(table)),
                (f"{ylabel[0].upper()}{ylabel[1:]} against dense width",
                 by_name[f"{metric}_vs_width"])]
    if "egf2_vs_width" in by_name:
        sections.append(("Average EGF against dense width", by_name["egf2_vs_width"]))
    sections += [("Gradient flow and generalization: Kendall τ",
                  html.kendall_html(kendall, kinds)),
                 ("Training curves", by_name["curves"])]
    failed = [(r["run_key"], str(r.get("error") or "")) for r in study.rows
              if r.get("status") == "failed"]
    text = html.page(f"sparseflow study report: {study.name}", d.summary_items(study, table),
                     sections, failed)
    target = Path(out) if out is not None else report_dir / HTML_NAME
    try:  # a special file (/dev/null) is written through, never replaced
        write_output(target, text.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot write {exc.filename or target}: {exc.strerror or exc}; "
                          "name another --out file") from exc
    return ReportFiles(target, tuple(written))
