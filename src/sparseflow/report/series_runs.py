"""Per-figure plain data from each run's series: per-epoch metrics and gradient-flow points.

As in :mod:`sparseflow.report.series`, a point is a mean ± sd over the runs it pools (on a log
axis the geometric mean ×/÷ the geometric sd); nothing here tests anything.

- :func:`curves_figure`: the four training curves of one cell (``--cell``).
- :func:`curve_grid_figure`: one training curve for every cell of the table (small multiples).
- :func:`egf_training_figure`: EGF₂ over training, one panel per variant (the BatchNorm figure).
- :func:`per_layer_figure`: each layer's masked gradient norm at initialization and at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sparseflow.report.data import RunSeries, StudyData, freeze, label
from sparseflow.report.series import KINDS, FigureData, Panel, Series, _points, metric_axis

#: Metrics recorded every epoch (the store's metric rows); every other metric is a
#: gradient-flow measure, recorded at the probe points.
PER_EPOCH: tuple[str, ...] = ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                              "test_loss", "test_accuracy")

#: The training-curve panels: (title, y label, source, key, scale, log).
CURVES: tuple[tuple[str, str, str, str, float, bool], ...] = (
    ("training loss", "loss (cross-entropy)", "metrics", "train_loss", 1.0, False),
    ("validation loss", "loss (cross-entropy)", "metrics", "val_loss", 1.0, False),
    ("test accuracy", "accuracy (%)", "metrics", "test_accuracy", 100.0, False),
    ("EGF₂ at the probe points", "EGF₂ (log scale)", "gradflow", "egf2", 1.0, True),
)


def _kind_series(runs: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], key: str,
                 scale: float, log: bool, lbl: str) -> list[Series]:
    """Dense and sparse lines of ``key`` against ``epoch`` over ``(kind, rows)`` pairs."""
    runs = list(runs)
    out = []
    for kind in KINDS:
        at: dict[float, list[Any]] = {}
        for run_kind, rows in runs:
            if run_kind == kind:
                for row in rows:
                    if row.get("epoch") is not None:
                        at.setdefault(float(row["epoch"]), []).append(row.get(key))
        pts = _points(at, scale, log)
        if pts[0]:
            out.append(Series(lbl, kind, *pts))
    return out


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
    panels = [Panel(title, _kind_series(((k, s[source]) for k, s in runs), key, scale, log,
                                        ckey), ylabel, log)
              for title, ylabel, source, key, scale, log in CURVES]
    seeds = {k: sum(1 for kk, _ in runs if kk == k) for k in KINDS}
    shown = ", ".join(f"{k} = {label(v)}" for k, v in cell.items())
    caption = (f"All four curves of the one cell {shown} at dense width W_D = {width} (choose "
               f"it with --cell): mean over {seeds['dense']} dense and {seeds['sparse']} sparse "
               "seed(s), band ±1 sd (EGF₂: geometric mean ×/÷ geometric sd). Losses and "
               "accuracy per epoch; EGF₂ at the probe points (epoch 0 = before the first "
               "update).")
    return FigureData(name, f"Training curves: {shown}, W_D = {width}", "epoch", panels,
                      {ckey: color}, color_key, caption, "band", max_cols=2)


def _source(metric: str) -> tuple[str, str, float, bool]:
    """(store series, y label, scale, log) of ``metric`` over training."""
    ylabel, scale, log = metric_axis(metric)
    source = "metrics" if metric in PER_EPOCH else "gradflow"
    return source, ylabel.removeprefix("average "), scale, log


def _of(runs: Sequence[RunSeries], source: str) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(r.row["kind"], r.metrics if source == "metrics" else r.gradflow) for r in runs]


def curve_grid_figure(study: StudyData, runs: Sequence[RunSeries], metric: str, rows: str,
                      cols: str, width: int, color_key: str, colors: Mapping[str, str], *,
                      name: str) -> FigureData:
    """``metric`` over training for every cell of the table: one panel per (row value, column
    value) in a rows × cols grid, dense and sparse means over seeds at dense width ``width``
    (or at the panel's own width when ``dense_width`` is a table axis), pooled over any other
    axis. Per-epoch metrics per epoch; gradient-flow measures at the probe points."""
    source, ylabel, scale, log = _source(metric)
    row_vals, col_vals = study.values(rows), study.values(cols)
    at_width = "dense_width" not in (rows, cols)
    panels = []
    for rv in row_vals:
        for cv in col_vals:
            chosen = [r for r in runs if freeze(r.row.get(rows)) == rv
                      and freeze(r.row.get(cols)) == cv
                      and (not at_width or int(r.row["dense_width"]) == width)]
            lbl = label(cv if color_key == cols else rv if color_key == rows else None)
            panels.append(Panel("", _kind_series(_of(chosen, source), metric, scale, log, lbl),
                                ylabel, log))
    used = {s.label for p in panels for s in p.series}
    shown = {k: c for k, c in colors.items() if k in used} or {"all": "0.3"}
    where = f"at dense width W_D = {width}" if at_width else "at each panel's dense width"
    when = "per epoch" if source == "metrics" else "at the probe points (epoch 0 = init)"
    caption = (f"{ylabel[0].upper()}{ylabel[1:]} {when} in every cell of the table (rows: "
               f"{rows}, columns: {cols}) {where}: mean over seeds, band ±1 sd"
               f"{' (geometric)' if log else ''}; one y scale for all panels. Look for cells "
               "where the dashed sparse curve ends above the solid dense one, and for cells "
               "that have not converged yet.")
    return FigureData(name, f"{ylabel[0].upper()}{ylabel[1:]} over training in every cell",
                      "epoch", panels, shown, color_key if used else "all runs", caption,
                      "band", grid=(len(row_vals), len(col_vals)),
                      row_labels=[f"{rows} = {label(v)}" for v in row_vals],
                      col_labels=[f"{cols} = {label(v)}" for v in col_vals], sharey=True)


def egf_training_figure(study: StudyData, runs: Sequence[RunSeries],
                        colors: Mapping[str, str], *, name: str,
                        measure: str = "egf2") -> FigureData:
    """``measure`` at the probe points (epoch 0 = initialization) as small multiples: one row
    per variant, one column per dense width, dense and sparse runs pooled over seeds and every
    other axis; one y scale for all panels, so variants and widths compare directly.

    Every width is shown because the sparse/dense gap in gradient flow is a function of it:
    the narrowest dense twin pairs with the sparsest net, where the gap is largest.
    """
    source, ylabel, scale, log = _source(measure)
    variants, widths = study.values("variant"), study.widths()
    panels = []
    for v in variants:
        for w in widths:
            chosen = [r for r in runs if freeze(r.row.get("variant")) == v
                      and int(r.row["dense_width"]) == w]
            panels.append(Panel("", _kind_series(_of(chosen, source), measure, scale, log,
                                                 label(v)), ylabel, log))
    pooled = [k for k in study.axes if k != "variant"]
    over = f"{', '.join(pooled)} and seeds" if pooled else "seeds"
    what = ylabel.removesuffix(" (log scale)")
    caption = (f"{what} at the probe points (epoch 0 = initialization), one row per variant "
               f"and one column per dense width W_D, pooled over {over}: geometric mean ×/÷ "
               "geometric sd. One y scale for all panels: compare how far the dashed sparse "
               "line lies below the solid dense one at each width, and how much BatchNorm "
               "(or any variant) closes that gap.")
    return FigureData(name, f"{what} over training by variant and dense width", "epoch",
                      panels, {label(v): colors[label(v)] for v in variants}, "variant",
                      caption, "band", grid=(len(variants), len(widths)),
                      row_labels=[f"variant = {label(v)}" for v in variants],
                      col_labels=[f"W_D = {w}" for w in widths], sharey=True)


def _layer_order(runs: Sequence[RunSeries]) -> list[str]:
    """Layer names in model order: those of the deepest run, then any others as met."""
    lists = [list(p.get("per_layer") or {}) for r in runs for p in r.gradflow[:1]]
    order = list(max(lists, key=len, default=[]))
    for names in lists:
        order += [n for n in names if n not in order]
    return order


def _short(layer: str) -> str:
    """``hidden.0.linear.weight`` → ``hidden.0``: the tick label of a layer."""
    return layer.removesuffix(".weight").removesuffix(".linear")


def _epochs(points: Iterable[Mapping[str, Any]]) -> str:
    found = sorted({int(p["epoch"]) for p in points if p.get("epoch") is not None})
    return "–".join(map(str, sorted({found[0], found[-1]}))) if found else "?"


def per_layer_figure(study: StudyData, runs: Sequence[RunSeries], width: int, color_key: str,
                     colors: Mapping[str, str], *, name: str) -> FigureData:
    """Each weight layer's masked gradient L2 norm (``per_layer[...]["norm2"]``, the term EGF₂
    averages) at the first and at the last probe point, one colour per ``color_key`` value,
    dense and sparse runs at dense width ``width``, pooled over seeds and the other axes."""
    chosen = [r for r in runs if int(r.row["dense_width"]) == width and r.gradflow]
    order = _layer_order(chosen)
    pos = {n: float(i) for i, n in enumerate(order)}
    panels = []
    for which, title in ((0, "first probe point"), (-1, "last probe point")):
        points = [r.gradflow[which] for r in chosen]
        series = []
        for cv in study.values(color_key):
            for kind in KINDS:
                at: dict[float, list[Any]] = {}
                for r, p in zip(chosen, points, strict=True):
                    if r.row["kind"] == kind and study.belongs(r.row, color_key, cv):
                        for layer, vals in (p.get("per_layer") or {}).items():
                            if layer in pos:  # a layer only later points name: not drawn
                                at.setdefault(pos[layer], []).append(vals.get("norm2"))
                pts = _points(at, 1.0, True)
                if pts[0]:
                    series.append(Series(label(cv), kind, *pts))
        panels.append(Panel(f"{title} (epoch {_epochs(points)})", series,
                            "masked gradient ‖g_l‖₂ (log scale)", True))
    caption = (f"Each weight layer's masked gradient norm ‖g_l‖₂ (EGF₂ is their mean) at "
               f"initialization and at the end of training, runs at dense width W_D = {width}, "
               "geometric mean ×/÷ geometric sd over seeds and the other axes. Look for the "
               "layers where sparse and dense differ, and whether that gap opens or closes "
               "with training.")
    return FigureData(name, f"Per-layer gradient flow at initialization and at the end "
                      f"(W_D = {width})", "weight layer (input → output)", panels,
                      {k: colors[k] for k in map(label, study.values(color_key))}, color_key,
                      caption, "errorbar", [pos[n] for n in order],
                      xticklabels=[_short(n) for n in order], sharey=True, dodge=True)
