"""Pure statistics over finished runs (read-only; never imports ``sparseflow.train``).

- :func:`kendall_table` / :class:`CorrelationTable`: Kendall τ between gradient-flow measures and
  test loss / accuracy, per kind of run (sparse, dense), in the paper's table layout.
"""

from __future__ import annotations

from sparseflow.analysis.correlation import Cell, CorrelationTable, kendall_table

__all__ = ["Cell", "CorrelationTable", "kendall_table"]
