"""Per-figure plain data of the mask methods: what each masker did to the mask.

As in :mod:`sparseflow.report.series`, a point is a mean ± sd over the runs it pools (on a log
axis the geometric mean ×/÷ the geometric sd); nothing here tests anything.

- :func:`mask_updates_figure`: EGF₂ just before and just after each mask update of the
  dynamic-masker runs (their ``dst.json``), against the training step.
- :func:`layer_density_figure`: each layer's density of the initial mask per masker (the
  summary's ``layer_densities``) — the profile a pruning-at-initialization method chose;
  :func:`profiles_differ` says whether any masker chose a profile of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from sparseflow.report.data import RunSeries, StudyData, freeze, label
from sparseflow.report.series import FigureData, Panel, Series, _points, metric_axis
from sparseflow.report.series_runs import _short

#: The axis whose values are the mask methods (preferred as the colour of these figures).
MASKER_AXIS = "sparsity.masker"
#: The two moments of an update (the ``dst.json`` record keys), as the figure's kinds.
MOMENTS: tuple[str, ...] = ("before", "after")
#: Two initial-mask densities closer than this are the same (densities are count / numel).
_SAME = 1e-9


def method_key(study: StudyData) -> str | None:
    """The axis the mask figures colour by: ``sparsity.masker`` when swept, else the first
    sparse-only axis (``sparsity.distribution``, ...), else None (no mask methods compared)."""
    if MASKER_AXIS in study.axes:
        return MASKER_AXIS
    return next(iter(study.sparse_only), None)


def masker_name(run: RunSeries) -> str:
    """The dynamic masker of a run: its ``dst.json`` says (also when no axis sweeps it)."""
    return label((run.dst or {}).get("masker") or run.row.get(MASKER_AXIS) or "?")


def dynamic_runs(runs: Sequence[RunSeries]) -> list[RunSeries]:
    """The finished sparse runs with a mask-update series (``dst.json``); a run whose schedule
    made no update still counts (its panel is empty rather than missing)."""
    return [r for r in runs if r.dst is not None and r.row.get("kind") == "sparse"]


def _other_cells(study: StudyData, runs: Sequence[RunSeries], skip: str | None
                 ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(keys, value tuples in spec order) of the cells of every swept axis but ``skip``
    that ``runs`` occupy."""
    keys = [k for k in study.axes if k != skip]
    seen = {tuple(freeze(r.row.get(k)) for k in keys) for r in runs}
    cells = [c for c in itertools.product(*(study.values(k) for k in keys)) if c in seen]
    return keys, cells


def _cell_label(keys: Sequence[str], cell: Sequence[Any]) -> str:
    return ", ".join(f"{k} = {label(v)}" for k, v in zip(keys, cell, strict=True))


def mask_updates_figure(study: StudyData, runs: Sequence[RunSeries],
                        colors: Mapping[str, str], *, name: str,
                        measure: str = "egf2") -> FigureData | None:
    """``measure`` (``egf1``/``egf2``) on the probe set just before (solid, circles) and just
    after (dashed, crosses) each mask update, against the update's training ``step`` (batches
    seen), one colour per dynamic masker: one row of panels per cell of the axes other than
    ``sparsity.masker`` and one column per dense width, geometric mean ×/÷ geometric sd over
    seeds. None when no run has a ``dst.json``. Updates without a measurement
    (``sparsity.dst.measure: false``, or no gradient flow) are counted in the caption."""
    dyn = dynamic_runs(runs)
    if not dyn:
        return None
    keys, cells = _other_cells(study, dyn, MASKER_AXIS)
    widths = sorted({int(r.row["dense_width"]) for r in dyn})
    maskers = list(dict.fromkeys(masker_name(r) for r in dyn))
    shown = [m for m in colors if m in maskers] + [m for m in maskers if m not in colors]
    what = metric_axis(measure)[0].removeprefix("average ").removesuffix(" (log scale)")
    panels, unmeasured = [], 0
    for cell in cells:
        for w in widths:
            chosen = [r for r in dyn if int(r.row["dense_width"]) == w
                      and tuple(freeze(r.row.get(k)) for k in keys) == cell]
            series = []
            for m in shown:
                for moment in MOMENTS:
                    at: dict[float, list[Any]] = {}
                    for r in chosen:
                        if masker_name(r) != m:
                            continue
                        for u in r.dst.get("updates", []) if r.dst else []:
                            value = (u.get(moment) or {}).get(measure)
                            unmeasured += value is None and moment == "before"
                            at.setdefault(float(u["step"]), []).append(value)
                    pts = _points(at, 1.0, True)
                    if pts[0]:
                        series.append(Series(m, moment, *pts))
            panels.append(Panel("", series, f"{what} (log scale)", True))
    n_seeds = len({r.row["seed"] for r in dyn})
    caption = (f"{what} on the probe set just before (solid line, circles) and just after "
               "(dashed line, crosses) each mask update of the dynamic-masker runs, against "
               "the training step of the update (batches seen), one colour per masker; one "
               "row per cell of the other axes and one column per dense width W_D, geometric "
               f"mean ×/÷ geometric sd over {n_seeds} seed(s); one y scale for all panels. "
               "A jump from the solid to the dashed line is what the update itself did to the "
               "gradient flow: grown weights start at zero, so they carry gradient but no "
               "signal yet.")
    if unmeasured:
        caption += (f" {unmeasured} update(s) were made without a measurement "
                    "(sparsity.dst.measure false, or gradient flow off) and are not drawn.")
    return FigureData(name, f"{what} just before and after each mask update", "training step "
                      "(batches seen)", panels, {m: colors.get(m, "0.3") for m in shown},
                      "dynamic masker", caption, "band", grid=(len(cells), len(widths)),
                      row_labels=[_cell_label(keys, c) for c in cells],
                      col_labels=[f"W_D = {w}" for w in widths], sharey=True,
                      kind_title="moment of the update")


def _densities(run: RunSeries) -> dict[str, float]:
    found = run.summary.get("layer_densities") or {}
    return {str(k): float(v) for k, v in found.items() if v is not None}


def _profiled(runs: Sequence[RunSeries], width: int) -> list[RunSeries]:
    return [r for r in runs if r.row.get("kind") == "sparse"
            and int(r.row["dense_width"]) == width and _densities(r)]


def profiles_differ(study: StudyData, runs: Sequence[RunSeries], key: str) -> bool:
    """Whether two values of ``key`` gave different per-layer densities to the initial masks
    of two runs that differ in nothing else (same dense width, seed and every other axis).
    False when every method keeps the same per-layer counts (``matching: per_layer``, or a
    masker that only picks weights inside fixed counts)."""
    others = [k for k in study.axes if k != key]
    groups: dict[tuple[Any, ...], list[dict[str, float]]] = {}
    for r in runs:
        if r.row.get("kind") == "sparse" and _densities(r):
            at = (int(r.row["dense_width"]), r.row["seed"],
                  *(freeze(r.row.get(k)) for k in others))
            groups.setdefault(at, []).append(_densities(r))
    for profiles in groups.values():
        first = profiles[0]
        for p in profiles[1:]:
            if set(p) != set(first) or any(abs(p[n] - first[n]) > _SAME for n in first):
                return True
    return False


def _layer_order(runs: Sequence[RunSeries]) -> list[str]:
    """Layer names in model order (a summary's ``layer_densities`` are in layer order)."""
    lists = [list(_densities(r)) for r in runs]
    order = list(max(lists, key=len, default=[]))
    for names in lists:
        order += [n for n in names if n not in order]
    return order


def layer_density_figure(study: StudyData, runs: Sequence[RunSeries], width: int, key: str,
                         colors: Mapping[str, str], *, name: str) -> FigureData:
    """Each weight layer's density of the initial mask (active / weights, in %) for every
    value of ``key`` (the mask methods), sparse runs at dense width ``width``: one panel per
    variant, mean ± sd over seeds and the other axes."""
    chosen = _profiled(runs, width)
    order = _layer_order(chosen)
    pos = {n: float(i) for i, n in enumerate(order)}
    panels = []
    for v in study.values("variant"):
        series = []
        for mv in study.values(key):
            at: dict[float, list[Any]] = {}
            for r in chosen:
                if freeze(r.row.get("variant")) == v and freeze(r.row.get(key)) == mv:
                    for layer, density in _densities(r).items():
                        at.setdefault(pos[layer], []).append(density)
            pts = _points(at, 100.0, False)
            if pts[0]:
                series.append(Series(label(mv), "sparse", *pts))
        panels.append(Panel(f"variant = {label(v)}", series, "density of the initial mask (%)"))
    caption = (f"Each weight layer's density of the initial mask (active weights / weights, "
               f"the summary's layer_densities) for every {key} value, sparse runs at the "
               f"narrowest dense width W_D = {width} (the sparsest nets), mean ± sd over seeds "
               "and the other axes. The per-layer profile is what a pruning-at-initialization "
               "method chooses besides which weights (Frankle et al. 2021: it is largely what "
               "matters); a dynamic masker starts from its sparsity.dst.init_masker's mask.")
    return FigureData(name, f"Layer-wise density of the initial mask by {key} "
                      f"(W_D = {width})", "weight layer (input → output)", panels,
                      {k: colors.get(k, "0.3") for k in map(label, study.values(key))}, key,
                      caption, "errorbar", [pos[n] for n in order],
                      xticklabels=[_short(n) for n in order], sharey=True, dodge=True,
                      kind_title="")
