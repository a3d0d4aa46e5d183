"""Per-figure plain data: what each line of each panel shows, aggregated over seeds.

The aggregation is descriptive only (mean and standard deviation over the runs of a point,
computed with numpy); no test statistic is computed here. On a log axis a point is the
geometric mean with a ×/÷ geometric-standard-deviation bar, which stays positive and symmetric
on that axis; non-positive and non-finite values cannot be drawn there and are counted instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparseflow.report.data import StudyData, freeze, label

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


@dataclass(frozen=True)
class FigureData:
    """Everything a figure draws, as plain values (see :func:`sparseflow.report.figures.draw`).

    ``colors`` maps each legend label to its colour (legend order); ``style`` is ``"errorbar"``
    (points with bars, the width figures) or ``"band"`` (lines with a shaded ±1 sd band, the
    training curves); ``xticks`` fixes the ticks (the dense widths) when given.
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
                    if r["kind"] == kind and freeze(r.get(color_key)) == cv and (
                            panel_key is None or freeze(r.get(panel_key)) == pv):
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
                      color_key, caption, "errorbar", [float(w) for w in study.widths()])


#: The training-curve panels: (title, y label, source, key, scale, log).
CURVES: tuple[tuple[str, str, str, str, float, bool], ...] = (
    ("training loss", "loss (cross-entropy)", "metrics", "train_loss", 1.0, False),
    ("validation loss", "loss (cross-entropy)", "metrics", "val_loss", 1.0, False),
    ("test accuracy", "accuracy (%)", "metrics", "test_accuracy", 100.0, False),
    ("EGF₂ at the probe points", "EGF₂ (log scale)", "gradflow", "egf2", 1.0, True),
)


def curves_figure(cell: Mapping[str, Any], width: int,
                  runs: Sequence[tuple[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
                  color_key: str, color: str, *, name: str) -> FigureData:
    """Per-epoch curves of one cell at dense width ``width``: one panel per :data:`CURVES`
    entry, dense and sparse means over seeds.

    ``runs`` holds ``(kind, {"metrics": rows, "gradflow": points})`` per run, as the store
    returns them (metric rows keyed by ``epoch``; probe points by ``epoch``, 0 = before
    training).
    """
    ckey = label(cell.get(color_key))
    panels = []
    for title, ylabel, source, key, scale, log in CURVES:
        series = []
        for kind in KINDS:
            at: dict[float, list[Any]] = {}
            for run_kind, series_of in runs:
                if run_kind == kind:
                    for row in series_of[source]:
                        if row.get("epoch") is not None:
                            at.setdefault(float(row["epoch"]), []).append(row.get(key))
            pts = _points(at, scale, log)
            if pts[0]:
                series.append(Series(ckey, kind, *pts))
        panels.append(Panel(title, series, ylabel, log))
    seeds = {k: sum(1 for kk, _ in runs if kk == k) for k in KINDS}
    shown = ", ".join(f"{k} = {label(v)}" for k, v in cell.items())
    caption = (f"Training curves of the cell {shown} at dense width W_D = {width}: mean over "
               f"{seeds['dense']} dense and {seeds['sparse']} sparse seed(s), band ±1 sd (EGF₂: "
               "geometric mean ×/÷ geometric sd). Losses and accuracy per epoch; EGF₂ at the "
               "probe points (epoch 0 = before the first update).")
    return FigureData(name, f"Training curves: {shown}, W_D = {width}", "epoch", panels,
                      {ckey: color}, color_key, caption, "band", max_cols=2)
