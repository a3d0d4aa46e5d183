"""The report's data layer on hand-made rows: axes, cells, aggregation (no training)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseflow.analysis import compare, kendall_table
from sparseflow.analysis.correlation import kendall_by_group
from sparseflow.report import ReportError
from sparseflow.report.data import (
    RunSeries,
    StudyData,
    choose_axes,
    choose_cell,
    figure_keys,
    label,
)
from sparseflow.report.series import (
    describe,
    difference_figure,
    kendall_width_figure,
    metric_axis,
    width_figure,
)
from sparseflow.report.series_runs import (
    curve_grid_figure,
    curves_figure,
    egf_training_figure,
    per_layer_figure,
)


def _row(kind: str, width: int, seed: int, acc: float | None, egf2: float | None,
         **cell: Any) -> dict[str, Any]:
    return {"kind": kind, "dense_width": width, "sparse_width": 40, "seed": seed,
            "status": "finished", "test_accuracy": acc, "egf2": egf2, **cell}


def _study(axes: dict[str, list[Any]], rows: list[dict[str, Any]]) -> StudyData:
    return StudyData(Path("."), "t", {}, axes, rows, {"finished": len(rows)})


def test_describe_mean_sd_and_geometric() -> None:
    assert describe([1.0, 2.0, 3.0]) == (2.0, 1.0, 3.0, 3)
    assert describe([5.0]) == (5.0, 5.0, 5.0, 1)
    centre, lo, hi, n = describe([1.0, 100.0, None, math.nan], log=True)
    spread = math.exp(math.log(100.0) / math.sqrt(2))  # sample sd of (0, ln 100)
    assert (centre, n) == (pytest.approx(10.0), 2)
    assert (lo, hi) == (pytest.approx(10.0 / spread), pytest.approx(10.0 * spread))
    assert describe([0.0, -1.0, None], log=True) is None


def test_metric_axis_units() -> None:
    assert metric_axis("test_accuracy") == ("test accuracy (%)", 100.0, False)
    assert metric_axis("val_loss") == ("validation loss (cross-entropy)", 1.0, False)
    assert metric_axis("egf2") == ("average EGF₂ (log scale)", 1.0, True)


def test_default_axes_follow_study_tests() -> None:
    two = _study({"optim.name": ["adam", "sgd"], "variant": ["NR", "BN"]}, [])
    assert choose_axes(two, None, None) == ("optim.name", "variant")
    assert figure_keys(two, "optim.name", "variant") == ("optim.name", "variant")
    # a plain key cannot colour a width figure: colour by variant, panels by the row axis
    assert figure_keys(two, "optim.name", "dense_width") == ("optim.name", "variant")
    only = _study({"variant": ["NR", "BN"]}, [])
    assert choose_axes(only, None, None) == ("variant", "dense_width")
    assert figure_keys(only, "variant", "dense_width") == (None, "variant")
    with pytest.raises(ReportError, match="not a swept axis"):
        choose_axes(two, "optim.lr", None)


def test_width_figure_pools_seeds_and_counts_undrawable() -> None:
    rows = [_row("dense", 8, s, acc, 0.5, **{"optim.name": "adam", "variant": "NR"})
            for s, acc in enumerate((0.5, 0.7))]
    rows += [_row("sparse", 8, 0, 0.9, 0.0, **{"optim.name": "adam", "variant": "NR"}),
             _row("sparse", 16, 0, None, 0.2, **{"optim.name": "adam", "variant": "NR"})]
    study = _study({"optim.name": ["adam", "sgd"], "variant": ["NR", "BN"]}, rows)
    colors = {"NR": "#000001", "BN": "#000002"}
    acc = width_figure(study, "test_accuracy", "optim.name", "variant", colors, name="a",
                       title="t")
    assert [p.title for p in acc.panels] == ["optim.name = adam", "optim.name = sgd"]
    dense, sparse = acc.panels[0].series
    assert (dense.kind, dense.x, dense.y, dense.n) == ("dense", [8.0], [pytest.approx(60.0)], [2])
    assert dense.hi[0] - dense.y[0] == pytest.approx(100 * math.sqrt(0.02))  # sd, in %
    assert (sparse.x, sparse.y) == ([8.0], [pytest.approx(90.0)])  # the None is not drawn
    assert acc.panels[1].series == [] and "1 finished run(s)" in acc.caption
    assert acc.xticks == [8.0, 16.0] and list(acc.colors) == ["NR", "BN"]
    egf = width_figure(study, "egf2", "optim.name", "variant", colors, name="e", title="t")
    assert egf.panels[0].series[1].x == [16.0]  # egf2 = 0 cannot sit on a log axis
    assert "non-positive" in egf.caption


def test_cell_defaults_and_matching() -> None:
    rows = [_row(k, 8, 0, 0.5, 0.1, **{"optim.lr": lr, "variant": v})
            for k in ("dense", "sparse") for lr in (0.01, 0.1) for v in ("NR", "BN")
            if not (lr == 0.01 and v == "NR")]
    study = _study({"optim.lr": [0.01, 0.1], "variant": ["NR", "BN"]}, rows)
    assert choose_cell(study, []) == {"optim.lr": 0.01, "variant": "BN"}  # first with runs
    assert choose_cell(study, ["variant=NR"]) == {"optim.lr": 0.1, "variant": "NR"}
    assert label(0.1) == "0.1" and label(True) == "true"
    with pytest.raises(ReportError, match="no finished runs in the cell"):
        choose_cell(study, ["variant=NR", "optim.lr=0.01"])
    with pytest.raises(ReportError, match="values: 0.01, 0.1"):
        choose_cell(study, ["optim.lr=1e-3"])


def test_curves_average_seeds_per_epoch() -> None:
    def run(kind: str, losses: list[float]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
        metrics = [{"epoch": e + 1, "train_loss": v, "val_loss": v, "test_accuracy": 0.5}
                   for e, v in enumerate(losses)]
        return kind, {"metrics": metrics, "gradflow": [{"epoch": 0, "egf2": 1.0}]}

    data = curves_figure({"variant": "BN"}, 16, [run("dense", [2.0, 1.0]),
                                                 run("dense", [4.0, 3.0]),
                                                 run("sparse", [1.0])],
                         "variant", "#123456", name="c")
    train = data.panels[0]
    dense, sparse = train.series
    assert dense.x == [1.0, 2.0] and dense.y == [3.0, 2.0] and dense.n == [2, 2]
    assert sparse.x == [1.0] and sparse.label == "BN" and data.colors == {"BN": "#123456"}
    assert data.panels[2].series[0].y == [50.0, 50.0]  # accuracy in %
    assert data.panels[3].log and data.panels[3].series[0].x == [0.0]


def test_significant_cell_is_bold_and_green() -> None:
    from sparseflow.analysis import pvalue_table
    from sparseflow.report.html import pvalue_html

    # Six pairs where sparse always wins: exact one-sided Wilcoxon p = 1/2⁶ = 0.016.
    rows = [_row(k, w, s, 0.9 if k == "sparse" else 0.5 + 0.01 * s, 0.1,
                 **{"optim.name": "adam", "variant": "BN"})
            for k in ("sparse", "dense") for w in (8, 16) for s in range(3)]
    page = pvalue_html(pvalue_table(rows, axes=["optim.name", "variant"]))
    assert '<td class="sig"' in page and "<b>p = 0.016</b>" in page and "n=6" in page


AXES = {"optim.name": ["adam", "sgd"], "variant": ["NR", "BN"]}
COLORS = {"NR": "#000001", "BN": "#000002"}


def _pair_rows() -> list[dict[str, Any]]:
    """adam × NR/BN × widths 8, 16 × 3 seeds, sparse and dense; accuracies and losses that
    differ per seed, so each pair's difference is its own."""
    rows = []
    for v in ("NR", "BN"):
        for w in (8, 16):
            for s in range(3):
                d_acc = 0.5 + 0.01 * w + 0.02 * s
                s_acc = d_acc + (0.05 if v == "BN" else -0.03) + 0.01 * s * s
                for kind, acc in (("dense", d_acc), ("sparse", s_acc)):
                    row = _row(kind, w, s, acc, 0.1 + acc, **{"optim.name": "adam", "variant": v})
                    rows.append({**row, "test_loss": 2 - acc})
    return rows


def test_difference_figure_is_the_paired_mean_with_the_compare_ci() -> None:
    rows = _pair_rows()
    study = _study(AXES, rows)
    fig = difference_figure(study, "test_accuracy", "optim.name", "variant", COLORS,
                            test="wilcoxon", name="d", title="t")
    adam, sgd = fig.panels
    assert sgd.series == [] and adam.hlines == ((0.0, "0.2"),)
    nr, bn = adam.series
    assert (nr.label, nr.kind, nr.x, nr.n) == ("NR", "difference", [8.0, 16.0], [3, 3])
    for series, v in ((nr, "NR"), (bn, "BN")):
        for i, w in enumerate((8, 16)):
            pick = {k: [r["test_accuracy"] for r in rows if r["kind"] == k
                        and r["variant"] == v and r["dense_width"] == w]
                    for k in ("sparse", "dense")}
            diff = np.subtract(pick["sparse"], pick["dense"])  # seeds in the same order
            assert series.y[i] == pytest.approx(100 * diff.mean())
            ref = compare(pick["sparse"], pick["dense"], min_n=2)
            assert (series.lo[i], series.hi[i]) == (pytest.approx(100 * ref.ci_low),
                                                    pytest.approx(100 * ref.ci_high))
            assert series.lo[i] <= series.y[i] <= series.hi[i]
    assert bn.y[0] > 0 > nr.y[0]
    # A loss is better-oriented (dense − sparse): sparse better is still above zero.
    loss = difference_figure(study, "test_loss", None, "variant", COLORS, test="mannwhitney",
                             name="l", title="t")
    (panel,) = loss.panels
    assert panel.series[1].y == pytest.approx([y / 100 for y in bn.y])  # loss = 2 − acc
    assert "dense − sparse" in panel.ylabel


def test_kendall_width_figure_draws_the_analysis_tau() -> None:
    rows = _pair_rows()
    for i, r in enumerate(rows):
        r.update(gf1=float(i % 5), gf2=float(i % 7), egf1=float(i % 4), egf2=float(i % 3))
    pooled, by_width = kendall_table(rows), kendall_by_group(rows)
    fig = kendall_width_figure(pooled, by_width, name="k")
    assert [p.title for p in fig.panels] == ["sparse runs, test loss", "sparse runs, test "
                                             "accuracy", "dense runs, test loss",
                                             "dense runs, test accuracy"]
    panel = fig.panels[1]
    egf2 = next(s for s in panel.series if s.label == "EGF₂")
    assert egf2.kind == "sparse" and egf2.x == [8.0, 16.0]
    assert egf2.y == [by_width[w].cell("egf2", "sparse", "test_accuracy").tau for w in (8, 16)]
    assert egf2.n == [6, 6]
    tau = pooled.cell("egf2", "sparse", "test_accuracy").tau
    assert (tau, fig.colors["EGF₂"]) in panel.hlines and (0.0, "0.2") in panel.hlines


def _series(kind: str, width: int, variant: str, cell: dict[str, Any], losses: list[float],
            egf: list[float], layers: list[dict[str, float]]) -> RunSeries:
    row = {"kind": kind, "dense_width": width, "variant": variant, "status": "finished", **cell}
    metrics = [{"epoch": e + 1, "test_accuracy": v} for e, v in enumerate(losses)]
    flow = [{"epoch": 5 * e, "egf2": v,
             "per_layer": {n: {"norm2": x} for n, x in layers[e].items()}}
            for e, v in enumerate(egf)]
    return RunSeries(row, metrics, flow)


LAYERS = ("hidden.0.linear.weight", "hidden.1.linear.weight", "out.weight")


def _run_series() -> list[RunSeries]:
    runs = []
    for v in ("NR", "BN"):
        for opt in ("adam", "sgd"):
            for kind in ("dense", "sparse"):
                for s in range(2):
                    for w in (8, 16):
                        k = 1 + s + (kind == "sparse") + 2 * (v == "BN") + (opt == "sgd")
                        layers = [{n: k * (i + 1) * (e + 1) for i, n in enumerate(LAYERS)}
                                  for e in range(2)]
                        runs.append(_series(kind, w, v, {"optim.name": opt}, [0.1 * k, 0.2 * k],
                                            [float(k), 2.0 * k], layers))
    return runs


def test_curve_grid_is_one_panel_per_cell_at_the_width() -> None:
    runs = _run_series()
    study = _study(AXES, [r.row for r in runs])
    fig = curve_grid_figure(study, runs, "test_accuracy", "optim.name", "variant", 16,
                            "variant", COLORS, name="g")
    assert fig.grid == (2, 2) and len(fig.panels) == 4 and fig.sharey
    assert fig.row_labels == ["optim.name = adam", "optim.name = sgd"]
    assert fig.col_labels == ["variant = NR", "variant = BN"]
    # panel (sgd, BN): dense k = 1 + s + 2 + 1 for s = 0, 1 → mean 4.5; accuracy in %
    dense, sparse = fig.panels[3].series
    assert dense.label == "BN" and dense.x == [1.0, 2.0] and dense.n == [2, 2]
    assert dense.y == pytest.approx([100 * 0.1 * 4.5, 100 * 0.2 * 4.5])
    assert sparse.y == pytest.approx([100 * 0.1 * 5.5, 100 * 0.2 * 5.5])
    # a gradient-flow measure is drawn at its probe points on a log axis
    egf = curve_grid_figure(study, runs, "egf2", "optim.name", "variant", 16, "variant",
                            COLORS, name="g")
    assert egf.panels[0].log and egf.panels[0].series[0].x == [0.0, 5.0]
    # with dense width as an axis each panel holds its own width's runs
    by_w = curve_grid_figure(study, runs, "test_accuracy", "variant", "dense_width", 16,
                             "variant", COLORS, name="g")
    assert by_w.col_labels == ["dense_width = 8", "dense_width = 16"]
    assert by_w.panels[0].series[0].n == [4, 4]  # NR dense at width 8: 2 optimizers × 2 seeds


def test_egf_training_is_a_variant_by_width_grid_of_geometric_means() -> None:
    runs = _run_series()
    study = _study(AXES, [r.row for r in runs])
    fig = egf_training_figure(study, runs, COLORS, name="e")
    assert fig.grid == (2, 2) and fig.sharey and len(fig.panels) == 4
    assert fig.row_labels == ["variant = NR", "variant = BN"]
    assert fig.col_labels == ["W_D = 8", "W_D = 16"]
    dense, sparse = fig.panels[3].series  # BN at width 16 (the widths give equal k here)
    ks = [1 + s + 2 + o for o in (0, 1) for s in (0, 1)]  # dense BN: both optimizers, seeds
    assert dense.x == [0.0, 5.0] and dense.n == [4, 4]
    geo = math.exp(np.mean(np.log(ks)))
    assert dense.y == pytest.approx([geo, 2 * geo])
    assert sparse.y[0] == pytest.approx(math.exp(np.mean(np.log([k + 1 for k in ks]))))
    nr_narrow = fig.panels[0].series[0]  # NR dense at width 8 holds only width-8 runs
    assert nr_narrow.label == "NR" and nr_narrow.n == [4, 4]
    assert "optim.name and seeds" in fig.caption and "dense width" in fig.caption


def test_per_layer_figure_first_and_last_probe_point() -> None:
    runs = _run_series()
    study = _study(AXES, [r.row for r in runs])
    fig = per_layer_figure(study, runs, 16, "variant", COLORS, name="p")
    first, last = fig.panels
    assert "epoch 0" in first.title and "epoch 5" in last.title
    assert fig.xticks == [0.0, 1.0, 2.0] and fig.xticklabels == ["hidden.0", "hidden.1", "out"]
    nr_dense = first.series[0]
    assert (nr_dense.label, nr_dense.kind) == ("NR", "dense")
    ks = [1 + s + o for o in (0, 1) for s in (0, 1)]
    geo = math.exp(np.mean(np.log(ks)))
    assert nr_dense.y == pytest.approx([geo, 2 * geo, 3 * geo]) and nr_dense.n == [4, 4, 4]
    assert last.series[0].y == pytest.approx([2 * geo, 4 * geo, 6 * geo])
