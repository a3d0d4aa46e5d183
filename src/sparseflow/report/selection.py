"""The report of a study with a ``select`` rule: which runs it shows, and what was chosen.

The p-value tables compare only the runs the rule chose by validation
(:mod:`sparseflow.store.selection`), and the figures draw those same runs
(:func:`selected_study`: the export's ``selected`` rows, the select axis tuned away), so every
figure shows what the tests compare. The Kendall τ tables correlate gradient flow with test
metrics over *every* run, all values of the select axis included: a correlation over
configurations, which more configurations serve, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from html import escape

from sparseflow.analysis import PValueTable
from sparseflow.analysis import table_select as sel
from sparseflow.report.data import StudyData, label
from sparseflow.report.errors import ReportError
from sparseflow.report.series import FigureData
from sparseflow.store.selection import SelectRule, rule_from_spec


def study_rule(study: StudyData) -> SelectRule | None:
    """The study's select rule (from its stored spec), or None."""
    return rule_from_spec(study.spec)


def selected_study(study: StudyData, rule: SelectRule) -> StudyData:
    """``study`` as its figures show it under ``rule``: only the chosen runs (the export's
    ``selected`` rows), and the select axis no longer an axis (it is tuned away). ReportError
    when no group has chosen yet (every run of a group must finish first)."""
    rows = [r for r in study.rows if r.get("selected") is True]
    if not rows:
        raise ReportError(f"no run is selected yet in {study.directory}: a group chooses its "
                          f"{rule.axis} only when all its {rule.axis} runs have finished; run "
                          "`sparseflow study run` first")
    axes = {k: v for k, v in study.axes.items() if k != rule.axis}
    return replace(study, rows=rows, axes=axes)


def check_keys(rule: SelectRule | None, keys: Sequence[tuple[str, str | None]]) -> None:
    """ReportError when ``--rows``, ``--cols`` or a ``--cell`` key (``keys``: (flag, key))
    names the tuned-away axis."""
    if rule is None:
        return
    for flag, key in keys:
        if key == rule.axis:
            raise ReportError(f"{flag} {key!r}: {key} is tuned away by the study's select rule "
                              f"(each group keeps its best {key} by {rule.metric}); the "
                              "report shows the chosen runs, choose another axis")


#: The figure drawn from every run (τ over configurations), not from the chosen ones.
EVERY_RUN_FIGURES = ("kendall_by_width",)


def captioned(fd: FigureData, rule: SelectRule) -> FigureData:
    """``fd`` with its caption saying which runs it draws: the chosen ones, or every run for
    the τ figure."""
    if fd.name in EVERY_RUN_FIGURES:
        note = f" τ over every finished run, each {rule.axis} included."
    else:
        note = (f" Drawn: only the runs chosen by validation ({rule.axis} by {rule.metric}, per "
                "kind and group), the runs the tests compare.")
    return replace(fd, caption=fd.caption + note)


def summary_text(rule: SelectRule, table: PValueTable, n_selected: int, n_finished: int) -> str:
    """The report summary's line on the selection."""
    left = sum(table.select_incomplete)
    incomplete = f"; {left} group(s) incomplete (not tested)" if left else ""
    return (f"{rule.axis} by {rule.metric}, per kind and group: {n_selected} of {n_finished} "
            f"finished runs chosen and compared{incomplete}; figures draw the chosen runs, "
            "Kendall τ uses every run")


def selection_html(table: PValueTable) -> str:
    """The report's selection section: the rule, one table of the values chosen per cell and
    kind (rows × columns as the p-value table), the incomplete groups, and what uses which
    runs."""
    rule = table.select
    assert rule is not None
    head = "".join(f"<th>{escape(label(c))}</th>" for c in table.col_values)
    lines = [f'<table class="selection"><tr><th class="key">{escape(table.row_axis)} \\ '
             f"{escape(table.col_axis)}</th>{head}</tr>"]
    for r in table.row_values:
        tds = "".join(_choice_td(rule, table, table.cell(r, c).choices)
                      for c in table.col_values)
        lines.append(f'<tr><th class="key">{escape(label(r))}</th>{tds}</tr>')
    lines.append("</table>")
    a, b = table.sides
    lines.append(f'<p class="caption">The rule: {escape(rule.text())}. Each cell counts the '
                 f"groups (one per dense width, seed and value of the axes the cell pools) "
                 f"that chose each {escape(rule.axis)}, for {a} and {b} runs separately.</p>")
    if any(table.select_incomplete):
        lines.append(f'<p class="caption">In all, '
                     f"{escape(sel.incomplete_text(rule, *table.select_incomplete, table.sides))}"
                     ".</p>")
    lines.append(f'<p class="caption">The p-value tables and the figures use the chosen runs '
                 f"only. The Kendall τ tables use every finished run, each {escape(rule.axis)} "
                 "included: τ is a correlation over configurations (each run's gradient flow "
                 "against its own test metric), not a comparison of tuned networks, and more "
                 "configurations serve it.</p>")
    return "\n".join(lines)


def _choice_td(rule: SelectRule, table: PValueTable, choices: sel.CellChoices | None) -> str:
    c = choices or sel.CellChoices()
    a, b = table.sides
    parts = [f"{a}: {sel.counts_text(c.sparse)}", f"{b}: {sel.counts_text(c.dense)}"]
    n_a, n_b = c.incomplete_sparse, c.incomplete_dense
    if n_a or n_b:
        parts.append(f"incomplete: {n_a} {a}, {n_b} {b}")
    return '<td class="key">' + "<br>".join(escape(p) for p in parts) + "</td>"
