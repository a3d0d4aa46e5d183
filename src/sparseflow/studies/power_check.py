"""Before anything trains: can each cell of a study's default p-value table reach α at all?

A cell of the default table (:func:`sparseflow.analysis.tables.default_axes`: the first swept
axis × variant, …) pools every dense width, seed and value of the other axes, so it holds
seeds × dense widths × (product of the other axes' sizes) pairs — fewer where two cells share a
run (the plan holds it once, under its first cell). The pairs are counted from the plan's runs
exactly as :func:`~sparseflow.analysis.tables.pvalue_table` will pair the finished runs. With a
``select`` rule a cell counts the **selected** pairs (one per group of runs that differ only in
the select axis), and the select axis, tuned away, lays out no table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sparseflow.analysis import table_select
from sparseflow.analysis.power import min_pairs
from sparseflow.analysis.tables import default_axes, layout, pair_up
from sparseflow.store.selection import SelectRule
from sparseflow.studies.plan import Plan

_TEST_TEXT = {"wilcoxon": "Wilcoxon test", "ttest": "paired t-test",
              "mannwhitney": "Mann-Whitney test"}


@dataclass(frozen=True)
class CellPairs:
    """One cell of the default table and the pairs (mannwhitney: runs per group) it will hold."""

    row_key: str
    row: Any
    col_key: str
    col: Any
    n: int

    @property
    def label(self) -> str:
        """``optim.name=adam / variant=NR``."""
        return f"{self.row_key}={self.row} / {self.col_key}={self.col}"


def _rule(plan: Plan) -> SelectRule | None:
    """The plan's select rule, or None."""
    sel = plan.spec.select
    if sel is None:
        return None
    return SelectRule(sel.axis, sel.metric, tuple(plan.spec.axes[sel.axis]))


def _rows(plan: Plan) -> list[dict[str, Any]]:
    """The plan's runs as the export will list them (a placeholder metric); with a select rule
    the runs it will compare: one per group (which one cannot matter to the counts)."""
    rows = [{"kind": r.kind, "dense_width": r.dense_width, "seed": r.seed, **r.cell, "m": 0.0}
            for r in plan.runs]
    rule = _rule(plan)
    if rule is None:
        return rows
    chosen, _ = table_select.apply(rows, rule, plan.axes())  # all tie: the first value wins
    return chosen


def cell_pairs(plan: Plan, test: str = "wilcoxon") -> list[CellPairs]:
    """Every cell of the plan's default p-value table with its number of pairs (for the
    unpaired ``mannwhitney``: the runs of its smaller group), in table order. The cells are
    laid out as :func:`~sparseflow.analysis.tables.pvalue_table` lays them out: a dense twin
    shared across a sparse-only axis counts in every row of it."""
    rule = _rule(plan)
    axes = [a for a in plan.axes() if rule is None or a != rule.axis]
    rows = _rows(plan)
    only = tuple(plan.sparse_only_axes())
    n_values = {a: len({repr(r.get(a)) for r in rows if a not in only or r["kind"] == "sparse"})
                for a in axes}
    row_key, col_key = default_axes(axes, n_values)
    lay = layout(rows, row_key, col_key, axes, sparse_only=only)
    out = []
    for row in lay.row_values:
        for col in lay.col_values:
            runs = lay.groups.get((row, col), [])
            if not any(r["kind"] == "sparse" for r in runs):
                continue  # no cell of the table (e.g. an axis value of no run)
            if test == "mannwhitney":
                n = min(sum(r["kind"] == k for r in runs) for k in ("sparse", "dense"))
            else:
                n = len(pair_up(runs, "m", within=lay.within, sparse_only=only).sparse)
            out.append(CellPairs(row_key, row, col_key, col, n))
    return out


def too_few_pairs(plan: Plan, test: str = "wilcoxon", alpha: float = 0.05,
                  alternative: str = "greater") -> list[str]:
    """One line per cell of the default table whose test cannot reach p ≤ ``alpha`` with the
    pairs the plan gives it, naming the fix (the seeds that would suffice)."""
    need = min_pairs(test, alpha, alternative)
    seeds = len(plan.spec.seed_list())
    sided = "one-sided" if alternative != "two-sided" else "two-sided"
    unit = "runs per group" if test == "mannwhitney" else "pairs"
    if plan.spec.select is not None:
        unit = f"selected {unit}"
    lines = []
    for cell in cell_pairs(plan, test):
        if cell.n >= need:
            continue
        # A cell pools the dense widths unless they are the table's rows or columns.
        widths = "" if "dense_width" in (cell.row_key, cell.col_key) else " or dense widths"
        fix = f"add seeds{widths}"
        if cell.n:  # pairs grow in proportion to the seeds
            fix = f"add seeds (seeds: {math.ceil(need * seeds / cell.n)}){widths}"
        lines.append(f"cell {cell.label} has {cell.n} {unit}: a {sided} {_TEST_TEXT[test]} "
                     f"needs ≥ {need} to reach p ≤ {alpha}; {fix}")
    return lines
