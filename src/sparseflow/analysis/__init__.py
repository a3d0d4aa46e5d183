"""Pure statistics over finished runs (read-only; never imports ``sparseflow.train``).

- :func:`kendall_table` / :class:`CorrelationTable`: Kendall τ between gradient-flow measures and
  test loss / accuracy, per kind of run (sparse, dense), in the paper's table layout.
- :func:`compare` / :class:`TestResult` / :func:`correct`: tests of sparse against same-capacity
  dense (Wilcoxon, paired t, Mann-Whitney; H1 sparse better by default, or worse, or two-sided),
  effect sizes, bootstrap CIs and multiple-comparison correction (Holm, Benjamini–Hochberg).
- :func:`pair_up` / :func:`pvalue_table` / :class:`PValueTable`: the paper's p-value table from
  exported run rows (markdown, CSV, records, rich), each cell with p, sparse − dense and its CI,
  and n; its caption and summary sentences come from :mod:`~sparseflow.analysis.table_text`.
- :func:`~sparseflow.analysis.lift.lift_table`: does a treatment (BatchNorm) lift sparse nets
  more than their dense twins? The interaction behind the paper's finding 1.
"""

from __future__ import annotations

from sparseflow.analysis.correlation import Cell, CorrelationTable, kendall_table
from sparseflow.analysis.stats import (
    ALTERNATIVES,
    CORRECTIONS,
    MIN_N,
    TESTS,
    TestResult,
    compare,
    correct,
)
from sparseflow.analysis.tables import Pairs, PValueCell, PValueTable, pair_up, pvalue_table

__all__ = [
    "ALTERNATIVES",
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
