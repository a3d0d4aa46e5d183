"""Figures: plain data in (:class:`~sparseflow.report.series.FigureData`), a matplotlib Figure out.

Plots only draw: every number they show was computed before (``series*.py``), and no function
here computes a statistic. Figures are built as ``matplotlib.figure.Figure`` objects rendered by
the Agg canvas, without pyplot: that needs no display, keeps no global figure registry (nothing
leaks across a long study), and never switches the backend of a user's notebook that imports
the report package.

Conventions (the paper's): one panel per row-axis value, one colour per variant (the stable
palette of ``palette.py``), dense runs as circles joined by a solid line, sparse runs as crosses
joined by a dashed line, bars over seeds; the legend sits below the panels, outside the data.

Every figure is drawn at three sizes (:data:`SIZES`): ``screen`` for the PNG in the page, and
the two widths of a two-column paper, 7 in (``<name>.pdf``) and 3.5 in (``<name>-1col.pdf``).
PDFs embed their fonts as TrueType (``pdf.fonttype`` 42), never as Type 3, which journals and
arXiv reject and which do not copy as text. The paper sizes carry no title: a paper puts the
figure's caption under it.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, MaxNLocator

from sparseflow.report.series import FigureData, Panel, Series

DPI = 120
#: Marker and line style of each kind of line (the paper: dense circles, sparse crosses).
KIND_STYLE: dict[str, dict[str, Any]] = {
    "dense": {"marker": "o", "linestyle": "-", "markersize": 5.5},
    "sparse": {"marker": "x", "linestyle": "--", "markersize": 7.0, "markeredgewidth": 1.8},
    "difference": {"marker": "s", "linestyle": "-", "markersize": 5.0},
    # A mask update: the measure just before it (as dense: solid) and just after (dashed).
    "before": {"marker": "o", "linestyle": "-", "markersize": 4.5},
    "after": {"marker": "x", "linestyle": "--", "markersize": 6.0, "markeredgewidth": 1.6},
}
#: How each kind is named in the legend.
KIND_LABEL = {"dense": "dense", "sparse": "sparse", "difference": "sparse vs dense (95% CI)",
              "before": "just before the update", "after": "just after the update"}
#: Up to this many points a band line marks each point; longer curves are lines only.
_MARK_UP_TO = 25


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers (``0.2``, ``1``, ``1e-05``) instead of
    ``2×10⁻¹``; minor ticks get labels only where the axis spans about a decade or less."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:.3g}"


@dataclass(frozen=True)
class Size:
    """One rendering size: the figure width (inches; None = as wide as the panels need), the
    base font size (pt), the most panel columns, and the panel height per inch of panel width."""

    width: float | None
    font: float
    max_cols: int
    aspect: float
    title: bool
    file_suffix: str


#: ``screen`` (the PNG) and the paper sizes (the PDFs); see the module docstring.
SIZES: dict[str, Size] = {
    "screen": Size(None, 10.0, 3, 0.77, True, ".png"),
    "2col": Size(7.0, 8.0, 3, 0.78, False, ".pdf"),
    "1col": Size(3.5, 7.0, 2, 0.85, False, "-1col.pdf"),
}


def _rc(font: float) -> dict[str, Any]:
    return {"font.size": font, "axes.titlesize": font + 1, "axes.labelsize": font,
            "xtick.labelsize": font - 1, "ytick.labelsize": font - 1,
            "legend.fontsize": font - 1, "legend.title_fontsize": font - 1,
            "figure.titlesize": font + 3, "axes.grid": True, "grid.alpha": 0.3,
            # TrueType in PDFs (see the module docstring); also for PostScript.
            "pdf.fonttype": 42, "ps.fonttype": 42}


def _layout(data: FigureData, size: Size) -> tuple[int, int, float, float]:
    """(rows, cols, figure width, figure height) in panels and inches."""
    n = max(1, len(data.panels))
    if data.grid is not None:
        nrows, ncols = data.grid
    else:
        ncols = min(n, max(1, data.max_cols), size.max_cols)
        nrows = math.ceil(n / ncols)
    if size.width is None:  # screen: at least 7 in wide, so one panel still fits its legend
        panel_w = 4.3 if data.grid is None else 2.6
        width = max(panel_w * ncols + 0.4, 7.0)
    else:
        width = size.width
    panel_w = (width - 0.5) / ncols
    legend = 0.45 + 0.2 * size.font / 8 * math.ceil(_n_handles(data) / _legend_cols(data, size))
    title = 0.5 if size.title else 0.0
    # A panel is never flatter than 1.1 in: its title, ticks and label need the room.
    height = nrows * max(panel_w * size.aspect, 1.1 + 0.08 * size.font) + legend + title
    return nrows, ncols, width, height


def draw(data: FigureData, size: str = "screen") -> Figure:
    """The figure of ``data`` at one of :data:`SIZES`: its panels in a grid (``data.grid``, or
    at most ``max_cols`` columns), a title (screen only), and one legend below (colours by
    ``data.legend_title``, markers and lines by kind)."""
    sz = SIZES[size]
    nrows, ncols, width, height = _layout(data, sz)
    with matplotlib.rc_context(_rc(sz.font)):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        share = data.style == "errorbar" if data.sharey is None else data.sharey
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=share,
                            sharex=data.grid is not None)
        flat = [ax for row in axes for ax in row]
        # A title wraps where it would run into the next panel (~0.6 em per character).
        chars = max(12, int((width - 0.9) / ncols * 72 / (0.6 * (sz.font + 1))))
        for i, (ax, panel) in enumerate(zip(flat, data.panels, strict=False)):
            _panel(ax, panel, data, chars, sz.font / 10, _epoch_bins(width / ncols, sz.font))
            if data.grid is not None:
                _grid_labels(ax, i, nrows, ncols, data, chars)
            elif share and i % ncols:  # one y label per row of panels that share the y axis
                ax.set_ylabel("")
        for ax in flat[len(data.panels):]:
            ax.set_visible(False)
        if sz.title:
            fig.suptitle(textwrap.fill(data.title, int(width * 9)))  # ~9 characters/inch
        handles = _legend_handles(data)
        fig.legend(handles=handles, loc="outside lower center",
                   ncols=_legend_cols(data, sz), title=_legend_title(data, sz), frameon=False)
    return fig


def _legend_cols(data: FigureData, size: Size) -> int:
    per_row = 6 if size.width is None or size.width > 5 else 3
    return max(1, min(_n_handles(data), per_row))


def _n_handles(data: FigureData) -> int:
    return len(data.colors) + (len(_kinds(data)) if data.kind_title else 0)


def _legend_title(data: FigureData, size: Size) -> str:
    if _kinds(data) == ["difference"] or not data.kind_title:  # the marker tells nothing more
        return f"colour: {data.legend_title}"
    title = f"colour: {data.legend_title}; marker and line: {data.kind_title}"
    return title if size.width is None or size.width > 5 else title.replace("; ", "\n")


def _kinds(data: FigureData) -> list[str]:
    """The kinds drawn in ``data`` (legend order of :data:`KIND_STYLE`)."""
    found = {s.kind for p in data.panels for s in p.series}
    return [k for k in KIND_STYLE if k in found] or ["dense", "sparse"]


def _grid_labels(ax: Axes, i: int, nrows: int, ncols: int, data: FigureData,
                 chars: int = 80) -> None:
    """Small multiples: column headers (wrapped at ``chars``) on the top row, row headers on
    the left column, tick labels and axis labels on the outer panels only."""
    r, c = divmod(i, ncols)
    head_c = data.col_labels[c] if r == 0 and c < len(data.col_labels) else ""
    # Break at " = " first: "dense_width =\n26" reads better than a split name.
    ax.set_title(textwrap.fill(head_c, chars, break_long_words=False))
    ylabel = ax.get_ylabel()
    head = data.row_labels[r] if r < len(data.row_labels) else ""
    ax.set_ylabel(f"{head}\n{ylabel}" if c == 0 else "")
    if r != nrows - 1:
        ax.set_xlabel("")


def _dodge(data: FigureData, panel: Panel) -> dict[int, float]:
    """x offset of each series so that bars at the same x do not hide each other: a few
    per cent of the x range, centred on the true x (drawing only; the data keep their x)."""
    if not data.dodge or len(panel.series) < 2:
        return {}
    xs = [x for s in panel.series for x in s.x]
    span = (max(xs) - min(xs)) if len(set(xs)) > 1 else 1.0
    step = 0.1 * span / len(panel.series)
    mid = (len(panel.series) - 1) / 2
    return {i: (i - mid) * step for i in range(len(panel.series))}


def _epoch_bins(panel_in: float, font: float) -> int:
    """How many epoch ticks fit a panel ``panel_in`` inches wide at ``font`` pt: a two-digit
    label and its gap take ~0.05 in per pt, less the ~0.6 in of the y axis's labels."""
    return max(2, min(10, int((panel_in - 0.6) / (0.05 * font))))


def _panel(ax: Axes, panel: Panel, data: FigureData, chars: int, marker: float,
           epoch_bins: int = 10) -> None:
    """Draw one panel's series and reference lines; the title wrapped at ``chars``, markers
    scaled by ``marker``, at most ``epoch_bins`` intervals between epoch ticks."""
    ax.set_title(textwrap.fill(panel.title, chars))
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PlainLog())
        ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))
    if not panel.series:
        ax.text(0.5, 0.5, "no finished runs\nwith a value here", ha="center",
                va="center", transform=ax.transAxes, color="0.4")
    for y, color in panel.hlines:
        ax.axhline(y, color=color, linewidth=1.0, linestyle=":", zorder=1)
    shift = _dodge(data, panel)
    for i, s in enumerate(panel.series):
        _series(ax, s, data, shift.get(i, 0.0), marker)
    if data.style == "band" and not data.xticklabels:  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(nbins=epoch_bins, integer=True))
    if data.xticks:
        ax.set_xticks(data.xticks)
        labels = data.xticklabels or [f"{t:g}" for t in data.xticks]
        ax.set_xticklabels(labels, rotation=45 if len(data.xticks) > 6 else 0)


def _series(ax: Axes, s: Series, data: FigureData, shift: float, scale: float) -> None:
    color = data.colors.get(s.label, "0.3")
    style = {**KIND_STYLE[s.kind]}
    style["markersize"] *= scale
    if data.style == "band":
        marker = style["marker"] if len(s.x) <= _MARK_UP_TO else ""
        ax.plot(s.x, s.y, color=color, **{**style, "marker": marker, "markersize": 4 * scale})
        ax.fill_between(s.x, s.lo, s.hi, color=color,
                        alpha=0.12 if s.kind == "dense" else 0.22, linewidth=0)
        return
    # A degenerate interval (equal paired differences: CI [5, 5]) can sit a few ulps inside its
    # mean (5.000000000000002); matplotlib refuses negative bars, and 0 is what it means.
    err = [[max(0.0, y - lo) for y, lo in zip(s.y, s.lo, strict=True)],
           [max(0.0, hi - y) for y, hi in zip(s.y, s.hi, strict=True)]]
    ax.errorbar([x + shift for x in s.x], s.y, yerr=err, color=color, capsize=3 * scale,
                elinewidth=1, **style)


def _legend_handles(data: FigureData) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [Patch(facecolor=c, edgecolor=c, label=lbl)
                                     for lbl, c in data.colors.items()]
    for kind in _kinds(data) if data.kind_title else ():
        handles.append(Line2D([], [], color="0.15", label=KIND_LABEL[kind], **KIND_STYLE[kind]))
    return handles


def _save(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    # pdf.fonttype is read when the PDF is written, not when the figure is drawn.
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        fig.savefig(buf, format=fmt, dpi=DPI,
                    **({"metadata": {"CreationDate": None}} if fmt == "pdf" else {}))
    return buf.getvalue()


def render(fig: Figure) -> tuple[bytes, bytes]:
    """(PNG bytes, PDF bytes) of ``fig``; the PDF carries no creation date, so the same study
    gives the same file, and embeds TrueType fonts."""
    return _save(fig, "png"), _save(fig, "pdf")


def render_files(data: FigureData) -> dict[str, bytes]:
    """File suffix → bytes of every file of ``data``: the screen PNG (``.png``) and the PDFs at
    the paper sizes (``.pdf`` two-column, ``-1col.pdf`` one-column); see :data:`SIZES`."""
    return {size.file_suffix: _save(draw(data, name), "png" if name == "screen" else "pdf")
            for name, size in SIZES.items()}
