"""Figures: plain data in (:class:`~sparseflow.report.series.FigureData`), a matplotlib Figure out.

Plots only draw: every number they show was computed before (``series.py``), and no function
here computes a statistic. Figures are built as ``matplotlib.figure.Figure`` objects rendered by
the Agg canvas, without pyplot: that needs no display, keeps no global figure registry (nothing
leaks across a long study), and never switches the backend of a user's notebook that imports
the report package.

Conventions (the paper's): one panel per row-axis value, one colour per variant (the stable
palette of ``palette.py``), dense runs as circles joined by a solid line, sparse runs as crosses
joined by a dashed line, bars over seeds; the legend sits below the panels, outside the data.
"""

from __future__ import annotations

import io
import math
import textwrap
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from sparseflow.report.series import FigureData, Panel

DPI = 120
#: Marker and line style of each kind of run (the paper: dense circles, sparse crosses).
KIND_STYLE: dict[str, dict[str, Any]] = {
    "dense": {"marker": "o", "linestyle": "-", "markersize": 5.5},
    "sparse": {"marker": "x", "linestyle": "--", "markersize": 7.0, "markeredgewidth": 1.8},
}
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
       "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 13,
       "axes.grid": True, "grid.alpha": 0.3}
#: Up to this many points a band line marks each point; longer curves are lines only.
_MARK_UP_TO = 25


def draw(data: FigureData) -> Figure:
    """The figure of ``data``: its panels in a grid of at most three columns, a title, and one
    legend below (colours by ``data.legend_title``, markers and lines by kind)."""
    n = max(1, len(data.panels))
    ncols = min(n, max(1, data.max_cols))
    nrows = math.ceil(n / ncols)
    with matplotlib.rc_context(_RC):
        # At least 7 in wide, so a one-panel figure still fits its title and legend.
        width = max(4.3 * ncols + 0.4, 7.0)
        fig = Figure(figsize=(width, 3.3 * nrows + 1.1), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        share = data.style == "errorbar"  # the width panels compare one quantity: one y scale
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=share)
        flat = [ax for row in axes for ax in row]
        for i, (ax, panel) in enumerate(zip(flat, data.panels, strict=False)):
            _panel(ax, panel, data)
            if share and i % ncols:  # one y label per row of panels that share the y axis
                ax.set_ylabel("")
        for ax in flat[len(data.panels):]:
            ax.set_visible(False)
        fig.suptitle(textwrap.fill(data.title, int(width * 9)))  # ~9 title characters/inch
        handles = _legend_handles(data)
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
                   title=f"colour: {data.legend_title}; marker and line: kind of run",
                   frameon=False)
    return fig


def _panel(ax: Axes, panel: Panel, data: FigureData) -> None:
    """Draw one panel's series."""
    ax.set_title(panel.title)
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.log:
        ax.set_yscale("log")
    if not panel.series:
        ax.text(0.5, 0.5, "no finished runs with a value here", ha="center",
                va="center", transform=ax.transAxes, color="0.4")
    for s in panel.series:
        color = data.colors.get(s.label, "0.3")
        style = KIND_STYLE[s.kind]
        if data.style == "band":
            marker = style["marker"] if len(s.x) <= _MARK_UP_TO else ""
            ax.plot(s.x, s.y, color=color, **{**style, "marker": marker, "markersize": 4})
            ax.fill_between(s.x, s.lo, s.hi, color=color,
                            alpha=0.12 if s.kind == "dense" else 0.22, linewidth=0)
        else:
            err = [[y - lo for y, lo in zip(s.y, s.lo, strict=True)],
                   [hi - y for y, hi in zip(s.y, s.hi, strict=True)]]
            ax.errorbar(s.x, s.y, yerr=err, color=color, capsize=3,
                        elinewidth=1, **style)
    if data.style == "band":  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if data.xticks:
        ax.set_xticks(data.xticks)
        ax.set_xticklabels([f"{t:g}" for t in data.xticks],
                           rotation=45 if len(data.xticks) > 6 else 0)


def _legend_handles(data: FigureData) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [Patch(facecolor=c, edgecolor=c, label=lbl)
                             for lbl, c in data.colors.items()]
    for kind, style in KIND_STYLE.items():
        handles.append(Line2D([], [], color="0.15", label=kind, **style))
    return handles


def render(fig: Figure) -> tuple[bytes, bytes]:
    """(PNG bytes, PDF bytes) of ``fig``; the PDF carries no creation date, so the same study
    gives the same file."""
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None})
    return png.getvalue(), pdf.getvalue()
