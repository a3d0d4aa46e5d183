"""Figures stay legible at paper sizes: epoch ticks and column headers of small multiples do
not overlap in the one-column PDF size (3.5 in for a 3-column grid)."""

from __future__ import annotations

import pytest

from sparseflow.report.figures import SIZES, draw
from sparseflow.report.series import FigureData, Panel, Series


def _grid(ncols: int) -> FigureData:
    epochs = [float(e) for e in range(31)]
    series = [Series("NR", kind, epochs, [0.5] * 31, [0.4] * 31, [0.6] * 31, [5] * 31)
              for kind in ("dense", "sparse")]
    panels = [Panel("", series, "test accuracy (%)") for _ in range(2 * ncols)]
    return FigureData("g", "grid", "epoch", panels, {"NR": "#1f77b4"}, "variant", "", "band",
                      grid=(2, ncols), row_labels=["variant = NR", "variant = BN"],
                      col_labels=[f"dense_width = {w}" for w in (26, 77, 128, 230)[:ncols]],
                      sharey=True)


def _overlaps(boxes: list, gap_px: float) -> bool:
    """Whether two labels (window extents) touch or come closer than ``gap_px``."""
    boxes = sorted(boxes, key=lambda b: b.x0)
    return any(a.x1 + gap_px > b.x0 for a, b in zip(boxes, boxes[1:], strict=False))


@pytest.mark.parametrize("size", list(SIZES))
def test_epoch_ticks_and_column_headers_do_not_overlap(size: str) -> None:
    fig = draw(_grid(3), size)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    bottom = axes[-1]  # a panel of the last row: the one that shows epoch tick labels
    lo, hi = bottom.get_xlim()
    ticks = [t.get_window_extent(renderer) for t in bottom.get_xticklabels()
             if t.get_text() and lo <= t.get_position()[0] <= hi]
    gap = 0.04 * fig.dpi  # a visible space between two numbers: 0.04 in
    assert len(ticks) >= 2 and not _overlaps(ticks, gap)
    heads = [ax.title.get_window_extent(renderer) for ax in axes[:3]]
    assert not _overlaps(heads, gap)
