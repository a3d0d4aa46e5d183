"""Per-figure plain data: what each line of each panel shows, aggregated over seeds.

The aggregation is descriptive only (mean and standard deviation over the runs of a point,
computed with numpy); the few inferential numbers (the paired differences' confidence
intervals, Kendall τ) come from :mod:`sparseflow.analysis`, never from here. Figures of the
export rows live here; figures of the per-run series (curves, probe points, layers) live in
:mod:`sparseflow.report.series_runs`. On a log axis a point is the
geometric mean with a ×/÷ geometric-standard-deviation bar, which stays positive and symmetric
on that axis; non-positive and non-finite values cannot be drawn there and are counted instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparseflow.analysis import compare, pair_up
from sparseflow.analysis.correlation import CorrelationTable
from sparseflow.report.data import StudyData, label
from sparseflow.report.palette import PALETTE

KINDS: tuple[str, ...] = ("dense", "sparse")
_MEASURE_NAMES = {"egf1": "EGF₁", "egf2": "EGF₂", "gf1": "‖g‖₁", "gf2": "‖g‖₂",
                  "gf1_masked": "masked ‖g‖₁", "gf2_masked": "masked ‖g‖₂",
                  "egf1_per_weight": "EGF₁ per weight", "egf2_per_weight": "EGF₂ per weight"}


@dataclass(frozen=True)
class Series:
    """One line: a colour-axis value (``label``) and a kind; per point x, centre, bar ends, n."""

    label: str
    kind: str
    x: list[float]
    y: list[float]
    lo: list[float]
    hi: list[float]
    n: list[int]


@dataclass(frozen=True)
class Panel:
    """One axes of a figure: its title, its lines, and its own y label / scale."""

    title: str
    series: list[Series]
    ylabel: str
    log: bool = False
    #: Reference lines across the panel: (y, colour), e.g. the zero of a difference.
    hlines: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class FigureData:
    """Everything a figure draws, as plain values (see :func:`sparseflow.report.figures.draw`).

    ``colors`` maps each legend label to its colour (legend order); ``style`` is ``"errorbar"``
    (points with bars, the width figures) or ``"band"`` (lines with a shaded ±1 sd band, the
    training curves); ``xticks`` fixes the ticks (the dense widths) when given, with
    ``xticklabels`` as their text (default: the numbers). ``grid`` = (rows, cols) lays the
    panels out as small multiples in row-major order, headed by ``row_labels``/``col_labels``
    (shared axes, labels on the outer panels only). ``sharey``: one y scale for all panels
    (None: for the ``errorbar`` style). ``dodge``: draw the series of a panel a little apart
    along x, so that bars at one x do not hide each other. ``kind_title``: what the markers
    and line styles tell apart in the legend (the series' kinds); "" draws no kind legend.
    """

    name: str
    title: str
    xlabel: str
    panels: list[Panel]
    colors: dict[str, str]
    legend_title: str
    caption: str
    style: str = "errorbar"
    xticks: list[float] = field(default_factory=list)
    max_cols: int = 3
    xticklabels: list[str] = field(default_factory=list)
    grid: tuple[int, int] | None = None
    row_labels: list[str] = field(default_factory=list)
    col_labels: list[str] = field(default_factory=list)
    sharey: bool | None = None
    dodge: bool = False
    kind_title: str = "kind of run"


def describe(values: Sequence[float | None], log: bool = False
             ) -> tuple[float, float, float, int] | None:
    """(centre, low, high, n) of the drawable ``values``; None when none is drawable.

    Linear: mean ± sample standard deviation (0 for one value). ``log``: geometric mean ×/÷
    the geometric standard deviation, over the positive values only.
    """
    xs = np.array([float(v) for v in values if v is not None], dtype=float)
    xs = xs[np.isfinite(xs)]
    if log:
        xs = xs[xs > 0]
    if xs.size == 0:
        return None
    if log:
        logs = np.log(xs)
        centre, spread = float(np.exp(logs.mean())), float(np.exp(_sd(logs)))
        return centre, centre / spread, centre * spread, int(xs.size)
    centre, sd = float(xs.mean()), _sd(xs)
    return centre, centre - sd, centre + sd, int(xs.size)


def _sd(xs: np.ndarray) -> float:
    return float(xs.std(ddof=1)) if xs.size > 1 else 0.0


def metric_axis(metric: str) -> tuple[str, float, bool]:
    """(y label with unit, scale factor, log scale) of an export metric."""
    split, _, what = metric.partition("_")
    where = {"val": "validation"}.get(split, split)
    if what == "accuracy":
        return f"{where} accuracy (%)", 100.0, False
    if what == "loss":
        return f"{where} loss (cross-entropy)", 1.0, False
    return f"average {_MEASURE_NAMES.get(metric, metric)} (log scale)", 1.0, True


def _points(values_at: Mapping[float, list[Any]], scale: float, log: bool
            ) -> tuple[list[float], list[float], list[float], list[float], list[int]]:
    x: list[float] = []
    y: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    n: list[int] = []
    for at in sorted(values_at):
        scaled = [None if v is None else float(v) * scale for v in values_at[at]]
        d = describe(scaled, log)
        if d is not None:
            x.append(at)
            y.append(d[0])
            lo.append(d[1])
            hi.append(d[2])
            n.append(d[3])
    return x, y, lo, hi, n


def width_figure(study: StudyData, metric: str, panel_key: str | None, color_key: str,
                 colors: Mapping[str, str], *, name: str, title: str) -> FigureData:
    """``metric`` against dense width: one panel per ``panel_key`` value (one panel when None),
    one colour per ``color_key`` value, dense and sparse lines; pooled over every other axis."""
    ylabel, scale, log = metric_axis(metric)
    panels = []
    panel_values = study.values(panel_key) if panel_key else [None]
    hidden = 0
    for pv in panel_values:
        series = []
        for cv in study.values(color_key):
            for kind in KINDS:
                at: dict[float, list[Any]] = {}
                for r in study.finished:
                    if r["kind"] == kind and study.belongs(r, color_key, cv) and (
                            panel_key is None or study.belongs(r, panel_key, pv)):
                        at.setdefault(float(r["dense_width"]), []).append(r.get(metric))
                pts = _points(at, scale, log)
                hidden += sum(len(v) for v in at.values()) - sum(pts[4])
                if pts[0]:
                    series.append(Series(label(cv), kind, *pts))
        heading = f"{panel_key} = {label(pv)}" if panel_key else "all runs"
        panels.append(Panel(heading, series, ylabel, log))
    how = ("geometric mean ×/÷ geometric sd" if log else "mean ± sd")
    caption = (f"{ylabel} against the dense width W_D of each SC-SDC pair (sparse runs are drawn "
               f"at their twin's W_D); {how} over seeds and the values of the other axes. "
               "Dense: circles, solid line; sparse: crosses, dashed line.")
    if hidden:
        why = "a non-positive or missing value" if log else "a missing value"
        caption += f" {hidden} finished run(s) with {why} are not drawn."
    return FigureData(name, title, "dense width W_D (units)", panels,
                      {k: colors[k] for k in map(label, study.values(color_key))},
                      color_key, caption, "errorbar", [float(w) for w in study.widths()],
                      dodge=True)


def _difference_axis(metric: str, higher_is_better: bool) -> tuple[str, float]:
    """(y label, scale) of a sparse-vs-dense difference: better-oriented (> 0: sparse better)
    for accuracies and losses, plain sparse − dense for the gradient-flow measures."""
    ylabel, scale, log = metric_axis(metric)
    what = ylabel.removesuffix(" (log scale)").removeprefix("average ")
    if log:  # a measure: neither direction is "better"
        return f"sparse − dense, {what}", scale
    order = "sparse − dense" if higher_is_better else "dense − sparse"
    return f"{order}, {what}\n(> 0: sparse better)", scale


def difference_figure(study: StudyData, metric: str, panel_key: str | None, color_key: str,
                      colors: Mapping[str, str], *, test: str, name: str,
                      title: str) -> FigureData:
    """The paired sparse − dense difference of ``metric`` against dense width, with its 95% CI.

    Pairs are matched as in the p-value table (dense width, seed and every swept axis, see
    :func:`sparseflow.analysis.pair_up`); per (panel value, colour value, width) the mean
    difference and its bootstrap CI come from :func:`sparseflow.analysis.compare` (``test`` if
    paired, else the Wilcoxon test: the CI is the same bootstrap of the paired differences).
    The difference is better-oriented for losses (dense − sparse), so > 0 always means sparse
    better; a zero line is drawn.
    """
    higher = not metric.endswith("loss")
    ylabel, scale = _difference_axis(metric, higher)
    paired = test if test != "mannwhitney" else "wilcoxon"
    axes = list(study.axes)
    panels, no_ci, missing = [], 0, 0
    for pv in study.values(panel_key) if panel_key else [None]:
        series = []
        for cv in study.values(color_key):
            pts: list[tuple[float, float, float, float, int]] = []
            for w in study.widths():
                rows = [r for r in study.finished if int(r["dense_width"]) == w
                        and study.belongs(r, color_key, cv)
                        and (panel_key is None or study.belongs(r, panel_key, pv))]
                pairs = pair_up(rows, metric, within=axes, lower_is_better=not higher,
                                sparse_only=study.sparse_only)
                if not pairs.sparse:
                    continue
                # min_n=2: the figure shows the CI wherever a bootstrap is possible, even
                # where the table's test has too few pairs for a p-value.
                res = compare(pairs.sparse, pairs.dense, test=paired, higher_is_better=higher,
                              min_n=2)
                if not math.isfinite(res.mean_diff):
                    missing += 1
                    continue
                lo, hi = res.ci_low, res.ci_high
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    no_ci += 1
                    lo = hi = res.mean_diff
                pts.append((float(w), res.mean_diff * scale, lo * scale, hi * scale, res.n))
            if pts:
                x, y, lo_, hi_, n = (list(v) for v in zip(*pts, strict=True))
                series.append(Series(label(cv), "difference", x, y, lo_, hi_, n))
        heading = f"{panel_key} = {label(pv)}" if panel_key else "all runs"
        panels.append(Panel(heading, series, ylabel, hlines=((0.0, "0.2"),)))
    caption = (f"The paired difference in {metric_axis(metric)[0].removesuffix(' (log scale)')}"
               " against the dense width W_D: mean over the SC-SDC pairs (matched on dense "
               "width, seed and every swept axis, as in the table) with its 95% bootstrap CI; "
               "the dotted line is no difference.")
    caption += (" Above it sparse is better." if not metric_axis(metric)[2] else
                " Above it sparse has the larger value.")
    if no_ci:
        caption += f" {no_ci} point(s) have fewer than 2 pairs or non-finite values: no CI bar."
    if missing:
        caption += f" {missing} point(s) with a non-finite mean difference are not drawn."
    return FigureData(name, title, "dense width W_D (units)", panels,
                      {k: colors[k] for k in map(label, study.values(color_key))},
                      color_key, caption, "errorbar", [float(w) for w in study.widths()],
                      dodge=True)


_TARGET_TEXT = {"test_loss": "test loss", "test_accuracy": "test accuracy"}


def kendall_width_figure(pooled: CorrelationTable, by_width: Mapping[int, CorrelationTable],
                         *, name: str) -> FigureData:
    """Kendall τ within each dense width (points) and pooled over all widths (dotted lines),
    one panel per (kind, target), one colour per measure. Every τ comes from
    :mod:`sparseflow.analysis.correlation`; undefined τ are left out."""
    widths = sorted(by_width)
    measures = list(pooled.measures)
    colors = {_MEASURE_NAMES.get(m, m): PALETTE[10 + i % 10] for i, m in enumerate(measures)}
    panels = []
    for kind in pooled.kinds:
        for target in pooled.targets:
            series, refs = [], []
            for m in measures:
                cells = [(w, by_width[w].cell(m, kind, target)) for w in widths]
                cells = [(w, c) for w, c in cells if math.isfinite(c.tau)]
                lbl = _MEASURE_NAMES.get(m, m)
                if cells:
                    taus = [c.tau for _, c in cells]
                    series.append(Series(lbl, kind, [float(w) for w, _ in cells], taus, taus,
                                         taus, [c.n for _, c in cells]))
                whole = pooled.cell(m, kind, target).tau
                if math.isfinite(whole):
                    refs.append((whole, colors[lbl]))
            panels.append(Panel(f"{kind} runs, {_TARGET_TEXT.get(target, target)}", series,
                                "Kendall τ", hlines=((0.0, "0.2"), *refs)))
    caption = ("Kendall τ between each run's average measure and its test loss or accuracy, "
               "within each dense width W_D (markers) and pooled over all widths (dotted lines "
               "in the measure's colour). Pooled τ also ranks the widths' capacities against "
               "each other; where it is far from every within-width τ, capacity and not "
               "gradient flow drives it. For dense runs EGF₁ = ‖g‖₁ / L, so their τ "
               "coincide and one hides the other.")
    return FigureData(name, "Gradient flow and generalization within each dense width",
                      "dense width W_D (units)", panels, colors, "measure", caption,
                      "errorbar", [float(w) for w in widths], max_cols=2, sharey=True,
                      dodge=True)
