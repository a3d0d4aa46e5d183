"""Pure statistics over finished runs (read-only; never imports ``sparseflow.train``).

- :func:`kendall_table` / :class:`CorrelationTable`: Kendall τ between gradient-flow measures and
  test loss / accuracy, per kind of run (sparse, dense), in the paper's table layout.
- :func:`compare` / :class:`TestResult` / :func:`correct`: one-sided tests of H1 "sparse better
  than same-capacity dense" (Wilcoxon, paired t, Mann-Whitney), effect sizes, bootstrap CIs and
  multiple-comparison correction (Holm, Benjamini–Hochberg).
- :func:`pair_up` / :func:`pvalue_table` / :class:`PValueTable`: the paper's p-value table from
  exported run rows (markdown, CSV, records, rich).
"""

from __future__ import annotations

from sparseflow.analysis.correlation import Cell, CorrelationTable, kendall_table
from sparseflow.analysis.stats import CORRECTIONS, MIN_N, TESTS, TestResult, compare, correct
from sparseflow.analysis.tables import Pairs, PValueCell, PValueTable, pair_up, pvalue_table

__all__ = [
    "CORRECTIONS",
    "MIN_N",
    "TESTS",
    "Cell",
    "CorrelationTable",
    "PValueCell",
    "PValueTable",
    "Pairs",
    "TestResult",
    "compare",
    "correct",
    "kendall_table",
    "pair_up",
    "pvalue_table",
]
