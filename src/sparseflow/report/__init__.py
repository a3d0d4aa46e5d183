"""The study report: figures (matplotlib, Agg) and one self-contained HTML page.

``report`` draws and assembles; it never computes a statistic itself (p-values and Kendall τ
come from :mod:`sparseflow.analysis`) and never imports ``sparseflow.train``.

- :func:`build_report`: the whole ``sparseflow study report`` (store → files).
- ``data``: the study as read from its store, the choice of axes and cell, the summary.
- ``series`` and ``series_runs``: per-figure plain data (descriptive means and spreads over
  seeds; CIs and τ from :mod:`sparseflow.analysis`).
- ``figures``: plain data → matplotlib Figure (screen PNG, two- and one-column PDF);
  ``html``: the page; ``palette``: colours.
"""

from __future__ import annotations

from sparseflow.report.build import HTML_NAME, REPORT_DIR, ReportFiles, build_report
from sparseflow.report.errors import ReportError
from sparseflow.report.figures import draw, render
from sparseflow.report.palette import PALETTE, color_at, value_colors
from sparseflow.report.series import FigureData, Panel, Series

__all__ = [
    "HTML_NAME",
    "PALETTE",
    "REPORT_DIR",
    "FigureData",
    "Panel",
    "ReportError",
    "ReportFiles",
    "Series",
    "build_report",
    "color_at",
    "draw",
    "render",
    "value_colors",
]
