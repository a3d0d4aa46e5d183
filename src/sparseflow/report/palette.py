"""Stable colours: one per value of the colour axis (usually the regularization variant).

A value's colour is fixed by its **position in the study spec's list** (``variants``, or the
axis' values when the colour axis is another swept axis), never by which runs happen to have
finished, so BN is the same colour in every figure of a report and in every report of the same
spec. The palette is matplotlib's ``tab10`` (written out, so a matplotlib release cannot change
it) followed by the darker ``tab20b`` tones; past 20 values it cycles.
"""

from __future__ import annotations

from collections.abc import Sequence

PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
)  # fmt: skip


def color_at(index: int) -> str:
    """The colour of the ``index``-th value of the colour axis (cycles past the palette)."""
    if index < 0:
        raise ValueError(f"a palette index is ≥ 0, got {index}")
    return PALETTE[index % len(PALETTE)]


def value_colors(labels: Sequence[str]) -> dict[str, str]:
    """Label → colour for the colour axis' values in spec order: ``value_colors(["NR", "BN"])``
    gives NR the first palette colour and BN the second, whatever else the study holds."""
    return {str(v): color_at(i) for i, v in enumerate(labels)}
