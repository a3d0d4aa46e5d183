"""The report's data layer on hand-made rows: axes, cells, aggregation (no training)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from sparseflow.report import ReportError
from sparseflow.report.data import StudyData, choose_axes, choose_cell, figure_keys, label
from sparseflow.report.series import curves_figure, describe, metric_axis, width_figure


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
