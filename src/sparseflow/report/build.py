"""``sparseflow study report``: read the store, test, draw, and write the report's files.

Output (every file written atomically, so a reader never sees half a report): the page
``<out>`` (default ``DIR/report/report.html``) and each figure as ``<name>.png`` (the page's
image), ``<name>.pdf`` (7 in wide, a two-column paper's full width) and ``<name>-1col.pdf``
(3.5 in, one column), in :func:`figure_dir`: ``DIR/report/`` for the default page, else
``<stem>_files/`` next to the page, so that a second report never overwrites the first one's
figures. The figures, in page order: ``<metric>_vs_width``, ``<metric>_difference``,
``curves_grid``, ``curves``, ``egf2_vs_width``, ``egf2_training``, ``egf2_mask_updates`` (only
with dynamic-masker runs), ``egf2_per_layer``, ``layer_density_profile`` (only when a mask method
chose its own layer-wise densities) and ``kendall_by_width`` (each drawn once, also when
``metric`` is ``egf2``). A study with a sparse-only axis (``sparsity.masker``, ...) that
includes ``random`` also gets a method-vs-baseline p-value table: each value against random.
A study with a ``select`` rule gets a section on the values chosen, and its tables and figures
show the chosen runs only, the Kendall τ tables every run (:mod:`sparseflow.report.selection`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.analysis import CORRECTIONS, TESTS, PValueTable, kendall_table, pvalue_table
from sparseflow.analysis.correlation import kendall_by_group
from sparseflow.report import data as d
from sparseflow.report import figures, html
from sparseflow.report import selection as rs
from sparseflow.report.errors import ReportError
from sparseflow.report.palette import value_colors
from sparseflow.report.series import (
    FigureData,
    difference_figure,
    kendall_width_figure,
    metric_axis,
    width_figure,
)
from sparseflow.report.series_masks import (
    MASKER_AXIS,
    layer_density_figure,
    mask_updates_figure,
    masker_name,
    method_key,
    profiles_differ,
)
from sparseflow.report.series_runs import (
    curve_grid_figure,
    curves_figure,
    egf_training_figure,
    per_layer_figure,
)
from sparseflow.store.selection import SelectRule
from sparseflow.utils.atomic import atomic_write_bytes, write_output

REPORT_DIR = "report"
HTML_NAME = "report.html"
#: The mask method every other value of a sparse-only axis is tested against.
BASELINE = "random"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`build_report` wrote: the HTML page and every figure file (PNG and PDFs);
    ``figure_dir`` is None when no figure file was written (see :func:`figure_dir`)."""

    html: Path
    figures: tuple[Path, ...]
    figure_dir: Path | None = None


def _check_options(metric: str, test: str, correction: str, alpha: float) -> None:
    d.check_metric(metric)
    if test not in TESTS:
        raise ReportError(f"--test must be one of {', '.join(TESTS)}, not {test!r}")
    if correction not in CORRECTIONS:
        raise ReportError(f"--correction must be one of {', '.join(CORRECTIONS)}, "
                          f"not {correction!r}")
    if not 0 < alpha < 1:
        raise ReportError(f"--alpha must be in (0, 1), got {alpha}")


def figure_dir(directory: str | Path, out: str | Path | None) -> Path | None:
    """Where a report's figure files go: ``DIR/report/`` for the default page (also when
    ``out`` names it), ``<stem>_files/`` beside any other page (``elsewhere/x.html`` →
    ``elsewhere/x_files/``), and nowhere (None) when ``out`` is a character device or a FIFO
    (``/dev/null``, a pipe): the page embeds its images, and a stream has no "beside"."""
    default = Path(directory) / REPORT_DIR
    if out is None:
        return default
    target = Path(out)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return None
    if target.resolve() == (default / HTML_NAME).resolve():
        return default
    return target.parent / f"{target.stem}_files"


def _titled(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}"


def _mask_colors(study: d.StudyData, series: Sequence[d.RunSeries], key: str | None
                 ) -> dict[str, str]:
    """Colour of each mask method: by position in the ``key`` axis (as variants are), then
    any dynamic masker met only in the runs' ``dst.json``."""
    names = [d.label(v) for v in study.values(key)] if key else []
    names += [m for m in dict.fromkeys(masker_name(s) for s in series if s.dst is not None)
              if m not in names]
    return value_colors(names)


def _mask_figures(study: d.StudyData, series: Sequence[d.RunSeries], narrowest: int
                  ) -> tuple[list[tuple[str, FigureData]], list[tuple[str, FigureData]], str]:
    """The figures of the mask methods: (EGF at the mask updates, after egf2_training),
    (the layer-wise density profile, after egf2_per_layer), and the one line said instead of
    the profile when every method kept the same per-layer densities ("" otherwise)."""
    key = method_key(study)
    masker_key = MASKER_AXIS if MASKER_AXIS in study.axes else None
    updates = mask_updates_figure(study, series, _mask_colors(study, series, masker_key),
                                  name="egf2_mask_updates")
    first = [("EGF at the mask updates of dynamic sparse training", updates)] if updates else []
    if key is None:
        return first, [], ""
    if not profiles_differ(study, series, key):
        return first, [], (f"Every {key} value gave the initial masks the same per-layer "
                           "densities (the per-layer counts were fixed by the matching), so "
                           "no layer-wise density profile is drawn.")
    profile = layer_density_figure(study, series, narrowest, key,
                                   _mask_colors(study, series, key),
                                   name="layer_density_profile")
    return first, [("Layer-wise density of the initial mask", profile)], ""


def _figures(study: d.StudyData, metric: str, rows: str, cols: str, test: str,
             curve_cell: dict[str, Any], kendall: Any, by_width: Any
             ) -> tuple[list[tuple[str, FigureData]], str]:
    """(section heading, figure data) of every figure, in page order, each name once; and the
    line said instead of the layer-wise density profile ("" when drawn or not applicable)."""
    finished = study.finished
    panel_key, color_key = d.figure_keys(study, rows, cols)
    colors = value_colors([d.label(v) for v in study.values(color_key)])
    ylabel = metric_axis(metric)[0]
    sparse_w = ", ".join(str(w) for w in sorted({r["sparse_width"] for r in finished
                                                  if r.get("sparse_width") is not None}))
    widest, narrowest = max(study.widths()), min(study.widths())
    # One store session for every series: the EGF-over-training grid shows every width.
    series = d.load_series(study, finished)
    cell_width = max(int(r["dense_width"]) for r in d.cell_runs(study, curve_cell))
    cell_runs = [s for s in series if int(s.row["dense_width"]) == cell_width
                 and all(d.freeze(s.row.get(k)) == v for k, v in curve_cell.items())]
    updates, profile, no_profile = _mask_figures(study, series, narrowest)
    out = [
        (f"{_titled(ylabel.removesuffix(' (log scale)'))} against dense width", width_figure(
            study, metric, panel_key, color_key, colors, name=f"{metric}_vs_width",
            title=f"{_titled(ylabel)} against dense width (sparse width {sparse_w})")),
        ("How large is the difference? Sparse vs dense, paired, with 95% CIs",
         difference_figure(study, metric, panel_key, color_key, colors, test=test,
                           name=f"{metric}_difference",
                           title=f"Sparse vs same-capacity dense: paired difference in "
                                 f"{ylabel.removesuffix(' (log scale)')}")),
        ("Training in every cell of the table", curve_grid_figure(
            study, series, metric, rows, cols, widest, color_key, colors,
            name="curves_grid")),
        ("Training curves of one cell", curves_figure(
            curve_cell, cell_width,
            [(s.row["kind"], {"metrics": s.metrics, "gradflow": s.gradflow})
             for s in cell_runs],
            color_key, colors.get(d.label(curve_cell.get(color_key)), "0.3"), name="curves")),
        ("Average EGF against dense width", width_figure(
            study, "egf2", panel_key, color_key, colors, name="egf2_vs_width",
            title=f"Average EGF₂ against dense width (sparse width {sparse_w})")),
        ("EGF over training: does BatchNorm change sparse networks' gradient flow more?",
         egf_training_figure(study, series,
                             value_colors([d.label(v) for v in study.values("variant")]),
                             name="egf2_training")),
        *updates,
        # The narrowest twin pairs with the sparsest net: where sparse and dense layers differ.
        ("Gradient flow per layer", per_layer_figure(study, series, narrowest, color_key,
                                                     colors, name="egf2_per_layer")),
        *profile,
        ("Kendall τ within each dense width", kendall_width_figure(kendall, by_width,
                                                                   name="kendall_by_width")),
    ]
    seen: set[str] = set()
    unique = []
    for heading, fd in out:  # --metric egf2 names egf2_vs_width twice: draw it once
        if fd.name not in seen:
            seen.add(fd.name)
            unique.append((heading, fd))
    return unique, no_profile


def baseline_axes(study: d.StudyData) -> list[str]:
    """The sparse-only axes whose values include :data:`BASELINE` and at least one other."""
    return [a for a in study.sparse_only
            if BASELINE in study.values(a) and len(study.values(a)) > 1]


def _baseline_cols(axis: str, rows: str, cols: str) -> str:
    """The columns of a baseline table on ``axis``: the main table's other key."""
    if cols != axis:
        return cols
    return rows if rows != axis else "dense_width"


def baseline_tables(study: d.StudyData, metric: str, rows: str, cols: str, test: str,
                    correction: str, alpha: float, *, select: SelectRule | None = None,
                    runs: Sequence[dict[str, Any]] | None = None,
                    ) -> list[tuple[str, PValueTable | str]]:
    """(axis, table) of each method-vs-baseline table (:func:`baseline_axes`): every other
    value of the axis against ``random``, sparse runs on both sides, paired on dense width,
    seed and every other axis; H1 the method better (``pvalue_table(..., baseline=...)``).
    Where the analysis refuses (no finished random run yet) its reason replaces the table.
    With a ``select`` rule the tables compare the chosen runs of ``runs`` (every run of the
    study; ``study`` is then the chosen runs' view, which lays the tables out)."""
    out: list[tuple[str, PValueTable | str]] = []
    for axis in baseline_axes(study):
        by = _baseline_cols(axis, rows, cols)
        try:
            table = pvalue_table(study.rows if runs is None else runs, metric=metric, rows=axis,
                                 cols=by, test=test, correction=correction, alpha=alpha,
                                 axes=[*study.axes, *([select.axis] if select else [])],
                                 baseline=(axis, BASELINE), select=select,
                                 row_order=[v for v in study.values(axis) if v != BASELINE],
                                 col_order=study.values(by))
        except ValueError as exc:
            out.append((axis, str(exc)))
            continue
        out.append((axis, table))
    return out


def _baseline_sections(tables: Sequence[tuple[str, PValueTable | str]], metric: str
                       ) -> list[tuple[str, str]]:
    sections = []
    for axis, table in tables:
        heading = f"Is each {axis} better than {axis}={BASELINE}? ({metric})"
        body = (html.pvalue_html(table, "pvalues-baseline") if isinstance(table, PValueTable)
                else f'<p class="caption">No table: {html.escape(table)}.</p>')
        sections.append((heading, body))
    return sections


def _write_figures(datas: Sequence[FigureData], folder: Path | None, prefix: str
                   ) -> tuple[dict[str, str], list[Path]]:
    """Render every figure; write its files into ``folder`` (unless None). Returns the page
    HTML of each figure by name and the paths written."""
    by_name, written = {}, []
    for fd in datas:
        files = figures.render_files(fd)
        names = []
        for suffix, content in files.items():
            if folder is not None:
                path = folder / f"{fd.name}{suffix}"
                try:
                    atomic_write_bytes(path, content)
                except OSError as exc:
                    raise ReportError(f"cannot write {exc.filename or path}: "
                                      f"{exc.strerror or exc}; name another --out file") from exc
                written.append(path)
                names.append(f"{prefix}{fd.name}{suffix}")
        by_name[fd.name] = html.figure_html(
            html.FigureBlock(fd.name, fd.title, fd.caption, files[".png"], tuple(names)))
    return by_name, written


def build_report(directory: str | Path, *, out: str | Path | None = None,
                 metric: str = "test_accuracy", rows: str | None = None,
                 cols: str | None = None, cell: Sequence[str] = (), test: str = "wilcoxon",
                 correction: str = "none", alpha: float = 0.05,
                 all_runs: bool = False) -> ReportFiles:
    """Write the HTML report of the study in ``directory`` and its figures; see the module
    docstring for the files.

    Args:
        out: the page (default ``DIR/report/report.html``); its figures go to
            :func:`figure_dir`.
        metric: compared in the p-value table, drawn in the first width figure, the
            difference figure and the small multiples of training.
        rows, cols: the table's axes (default: the first swept axis × ``variant``, as
            ``study tests``); the width figures draw one panel per row value and one colour per
            column value (see :func:`sparseflow.report.data.figure_keys`); the small multiples
            of training draw one panel per cell.
        cell: ``KEY=VALUE`` items naming the cell whose four training curves are drawn in
            detail (default: the first cell, in spec order, that has finished runs).
        test, correction, alpha: passed to :func:`sparseflow.analysis.pvalue_table`.
        all_runs: cover every stored run, not only the latest plan's (see
            :func:`sparseflow.store.scope.plan_scope`).

    Raises:
        ReportError: no study, no finished runs, an unknown metric/axis/cell, a bad option.
    """
    _check_options(metric, test, correction, alpha)
    study = d.load_study(directory, all_runs)
    rule = rs.study_rule(study)
    rs.check_keys(rule, [("--rows", rows), ("--cols", cols),
                         *(("--cell", item.partition("=")[0].strip()) for item in cell)])
    # Under a select rule the tables and figures show the chosen runs; τ uses every run.
    shown = study if rule is None else rs.selected_study(study, rule)
    rows, cols = d.choose_axes(shown, rows, cols)
    curve_cell = d.choose_cell(shown, cell)
    table = pvalue_table(study.rows, metric=metric, rows=rows, cols=cols, test=test,
                         correction=correction, alpha=alpha, axes=list(study.axes),
                         row_order=shown.values(rows), col_order=shown.values(cols),
                         select=rule)
    finished = study.finished
    kendall = kendall_table(finished)
    by_width = kendall_by_group(finished, "dense_width")
    kinds = {k: sum(r["kind"] == k for r in finished) for k in ("sparse", "dense")}

    target = Path(out) if out is not None else Path(directory) / REPORT_DIR / HTML_NAME
    folder = figure_dir(directory, out)
    prefix = "" if folder is None or folder == target.parent else f"{folder.name}/"
    datas, no_profile = _figures(shown, metric, rows, cols, test, curve_cell, kendall, by_width)
    if rule is not None:
        datas = [(h, rs.captioned(fd, rule)) for h, fd in datas]
    by_name, written = _write_figures([fd for _, fd in datas], folder, prefix)
    heading = dict((fd.name, h) for h, fd in datas)
    names = [fd.name for _, fd in datas]
    sections = [(f"Is sparse better than same-capacity dense? ({metric})",
                 html.pvalue_html(table))]
    if rule is not None:
        sections.append((f"Which {rule.axis} was chosen? Selection by {rule.metric}",
                         rs.selection_html(table)))
    sections += _baseline_sections(baseline_tables(shown, metric, rows, cols, test, correction,
                                                   alpha, select=rule, runs=study.rows), metric)
    sections += [(heading[n], by_name[n]) for n in names if n != "kendall_by_width"]
    if no_profile:
        sections.append(("Layer-wise density of the initial mask",
                         f'<p class="caption">{html.escape(no_profile)}</p>'))
    every = "" if rule is None else (
        f'<p class="caption">τ is computed over every finished run, each {html.escape(rule.axis)}'
        " included, not only the runs the selection chose (a correlation over "
        "configurations).</p>")
    sections += [("Gradient flow and generalization: Kendall τ",
                  html.kendall_html(kendall, kinds) + every),
                 (heading["kendall_by_width"],
                  html.kendall_width_html(kendall, by_width) + by_name["kendall_by_width"])]
    failed = [(r["run_key"], str(r.get("error") or "")) for r in study.rows
              if r.get("status") == "failed"]
    summary = d.summary_items(study, table)
    if rule is not None:
        at = next(i for i, (k, _) in enumerate(summary) if k == "statistics") + 1
        summary.insert(at, ("selection", rs.summary_text(rule, table, len(shown.rows),
                                                          len(finished))))
    text = html.page(f"sparseflow study report: {study.name}", summary, sections, failed)
    try:  # a special file (/dev/null) is written through, never replaced
        write_output(target, text.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot write {exc.filename or target}: {exc.strerror or exc}; "
                          "name another --out file") from exc
    return ReportFiles(target, tuple(written), folder if written else None)
