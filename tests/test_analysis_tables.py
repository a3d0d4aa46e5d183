"""pvalue_table / pair_up on synthetic study rows: matching, oracle p-values, layout, correction;
the cells' texts, verdicts, caption and summary sentences on hand-made cells."""

from __future__ import annotations

import csv
import io
import itertools
import math
import random
import re
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from sparseflow.analysis import correct, pair_up, pvalue_table
from sparseflow.analysis import table_text as tt

OPTS, VARIANTS, WIDTHS, SEEDS = ("adam", "sgd"), ("NR", "BN"), (16, 32, 64), range(4)
LRS = (0.1, 1e-3)
#: True improvement of sparse over dense accuracy per (optimizer, variant).
EFFECT = {("adam", "NR"): 0.02, ("adam", "BN"): -0.02, ("sgd", "NR"): 0.0, ("sgd", "BN"): 0.01}


def dense_acc(opt: str, var: str, width: int, seed: int, lr: float) -> float:
    # The configuration moves accuracy far more (0.2 for lr, 0.1 per width doubling) than the
    # sparse effect, so a sparse run matched with the wrong dense run gives a different answer.
    return 0.4 + 0.1 * math.log2(width / 16) + (0.2 if lr == 0.1 else 0.0) + 0.01 * seed


def sparse_acc(opt: str, var: str, width: int, seed: int, lr: float) -> float:
    noise = random.Random(f"{opt}{var}{width}{seed}{lr}").gauss(0, 0.005)
    return dense_acc(opt, var, width, seed, lr) + EFFECT.get((opt, var), 0.0) + noise


def run(kind: str, opt: str, var: str, width: int, seed: int, lr: float, **extra) -> dict:
    acc = (sparse_acc if kind == "sparse" else dense_acc)(opt, var, width, seed, lr)
    return {
        "kind": kind, "optim.name": opt, "variant": var, "optim.lr": lr, "dense_width": width,
        "sparse_width": 128, "seed": seed, "model.activation": "relu", "status": "finished",
        "test_accuracy": acc, "test_loss": 1.0 - acc, **extra,
    }  # fmt: skip


def study_rows() -> list[dict]:
    rows = [
        run(kind, opt, var, w, s, lr)
        for opt in OPTS for var in VARIANTS for w in WIDTHS for s in SEEDS for lr in LRS
        for kind in ("dense", "sparse")
    ]  # fmt: skip
    # Noise the table must ignore or report: a failed duplicate with a wild value, unfinished and
    # partnerless runs, a diverged run (no accuracy), and a cell with too few pairs.
    rows.append(run("sparse", "adam", "NR", 16, 0, 0.1, status="failed", test_accuracy=0.0))
    rows.append(run("sparse", "adam", "NR", 16, 0, 0.1, status="running", test_accuracy=0.0))
    rows.append(run("sparse", "adam", "NR", 16, 99, 0.1))  # no dense seed 99
    rows.append(run("dense", "adam", "NR", 999, 0, 0.1))  # no sparse width 999
    diverged = {"seed": 50, "test_accuracy": None, "test_loss": None}
    rows.append(run("sparse", "sgd", "BN", 16, 0, 1e-3) | diverged)
    rows.append(run("dense", "sgd", "BN", 16, 0, 1e-3) | {"seed": 50})
    rows += [run(k, "adam", "DA", 16, s, 0.1) for s in (0, 1) for k in ("sparse", "dense")]
    return rows


def expected_pairs(opt: str, var: str, wrong_lr: bool = False) -> tuple[list, list]:
    """The (sparse, dense) pairs of a cell by hand; ``wrong_lr`` pairs across learning rates."""
    keys = [(w, s, lr) for w in WIDTHS for s in SEEDS for lr in LRS]
    other = {0.1: 1e-3, 1e-3: 0.1}
    sp = [sparse_acc(opt, var, w, s, lr) for w, s, lr in keys]
    de = [dense_acc(opt, var, w, s, other[lr] if wrong_lr else lr) for w, s, lr in keys]
    return sp, de


def wilcoxon_p(sp: list, de: list) -> float:
    return float(stats.wilcoxon([a - b for a, b in zip(sp, de, strict=True)],
                                alternative="greater").pvalue)  # fmt: skip


@pytest.fixture(scope="module")
def table():
    return pvalue_table(study_rows(), n_resamples=999)


def test_pairs_are_matched_by_width_seed_and_every_other_axis(table) -> None:
    assert table.axes == ("model.activation", "optim.lr")
    assert table.row_values == ("adam", "sgd") and table.col_values == ("NR", "BN", "DA")
    assert (table.row_axis, table.col_axis) == ("optim.name", "variant")
    for opt in OPTS:
        for var in VARIANTS:
            cell = table.cell(opt, var)
            assert cell.result.n == 24
            assert cell.result.p_value == pytest.approx(wilcoxon_p(*expected_pairs(opt, var)))
    # Every sparse adam/NR run beats its dense twin (exact p = 1/2^24); matched across learning
    # rates half the differences would be about -0.18 and p would be ~10^5 times larger.
    assert table.cell("adam", "NR").result.p_value == pytest.approx(0.5**24)
    assert wilcoxon_p(*expected_pairs("adam", "NR", wrong_lr=True)) > 1e-3
    # Pairing on width and seed alone is ambiguous (two lrs): an error, not a silent guess.
    with pytest.raises(ValueError, match="add the axis that tells them apart"):
        pair_up(study_rows(), "test_accuracy")


def test_unmatched_unfinished_and_missing_runs_are_ignored_and_reported(table) -> None:
    note = table.cell("adam", "NR").result.note
    assert note == "ignored 1 sparse and 1 dense run(s) without a partner"
    cell = table.cell("sgd", "BN").result
    assert cell.n == 24 and cell.note.startswith("dropped 1 pair(s) with a missing value")
    assert table.cell("sgd", "NR").result.note == ""
    few, empty = table.cell("adam", "DA").result, table.cell("sgd", "DA").result
    assert (few.n, empty.n) == (2, 0) and math.isnan(few.p_value) and math.isnan(empty.p_value)
    assert few.note == "too few pairs (n=2 < 5)"


def test_markdown_bolds_exactly_the_significant_cells(table) -> None:
    md = table.to_markdown()
    caption, _, head, _, *body = md.splitlines()
    assert "Wilcoxon signed-rank" in caption and "H1: sparse > dense on test_accuracy" in caption
    assert "no correction" in caption and "p ≤ 0.05" in caption
    assert "n = 24 pairs per cell" in caption
    assert head == "| optim.name | NR | BN | DA |"
    bold = 0
    for r, line in zip(table.row_values, body, strict=False):
        texts = [t.strip() for t in line.strip("|").split("|")][1:]
        for c, text in zip(table.col_values, texts, strict=True):
            cell = table.cell(r, c)
            assert text.startswith("**") == (cell.p_adjusted <= 0.05)
            p_part, *rest = text.split(", ")
            if not math.isnan(cell.p_adjusted) and cell.p_adjusted >= 0.001:
                assert p_part.strip("*") == f"p = {cell.p_adjusted:.3f}"
            assert rest[-1].startswith(f"n={cell.result.n}") or rest[-2] == f"n={cell.result.n}"
            bold += text.startswith("**")
    assert bold == 2  # adam/NR and sgd/BN; adam/BN and sgd/NR are not significant
    assert table.cell("adam", "NR").significant and not table.cell("sgd", "NR").significant
    # adam/NR: p = 2^-24 and every pair won by about 2 points; adam/BN lost by about 2 points.
    assert re.search(r"\| adam \| \*\*p < 0\.001\*\*, \+1\.9 pts \[\+1\.\d, \+2\.\d\], "
                     r"n=24 \| p = 1\.000, −1\.9 pts \[−2\.\d, −1\.\d\], n=24 \| "
                     r"n<5, −0\.40 pts, n=2 \|", md)
    assert re.search(r"\| sgd \| p = 0\.\d{3}, .*n=24 \| \*\*p < 0\.001\*\*, .*"
                     r"n=24, 1 dropped \| –, n=0 \|", md)
    assert "- adam / DA: too few pairs (n=2 < 5)" in md
    assert "- Sparse better in 2 of 4 tested cells, dense better in 1, no clear difference in 1" \
        in md


def test_correction_spans_the_whole_table() -> None:
    raw = pvalue_table(study_rows(), n_resamples=99)
    ps = [raw.cell(r, c).result.p_value for r in raw.row_values for c in raw.col_values]
    for method in ("holm", "bh"):
        t = pvalue_table(study_rows(), correction=method, n_resamples=99)
        adj = [t.cell(r, c).p_adjusted for r in t.row_values for c in t.col_values]
        assert adj == pytest.approx(correct(ps, method), nan_ok=True)
        name = {"holm": "Holm", "bh": "Benjamini–Hochberg"}[method]
        assert f"{name} correction ({method}) across the 4 tested cells" in t.to_markdown()
    # The family is the 4 tested cells (NaN cells excluded): the smallest p is multiplied by 4.
    holm = pvalue_table(study_rows(), correction="holm", n_resamples=99)
    smallest = min(p for p in ps if not math.isnan(p))
    assert min(c.p_adjusted for c in holm.cells.values()) == pytest.approx(min(1, 4 * smallest))
    assert [c.result.p_value for c in holm.cells.values()] == pytest.approx(ps, nan_ok=True)


def test_loss_is_lower_is_better_and_gives_the_same_answer() -> None:
    rows = study_rows()
    acc, loss = pvalue_table(rows, n_resamples=99), pvalue_table(rows, "test_loss", n_resamples=99)
    assert acc.higher_is_better and not loss.higher_is_better
    assert "H1: sparse < dense on test_loss" in loss.caption()
    for key, cell in acc.cells.items():
        assert loss.cells[key].result.p_value == pytest.approx(cell.result.p_value, nan_ok=True)
        assert loss.cells[key].result.mean_diff == pytest.approx(cell.result.mean_diff, nan_ok=True)
    forced = pvalue_table(rows, "test_loss", higher_is_better=True, n_resamples=99)
    assert forced.cell("adam", "NR").result.p_value > 0.99


def test_orders_records_csv_rich_and_determinism(table) -> None:
    t = pvalue_table(study_rows(), row_order=["sgd", "adam"], col_order=["BN", "NR"],
                     n_resamples=999)  # fmt: skip
    assert (t.row_values, t.col_values) == (("sgd", "adam"), ("BN", "NR"))
    assert [r.split("|")[1].strip() for r in t.to_markdown().splitlines()[4:6]] == ["sgd", "adam"]
    assert t.cell("adam", "NR") == table.cell("adam", "NR")  # same seed per cell
    records = table.to_records()
    assert len(records) == 6 and (records[0]["optim.name"], records[0]["variant"]) == ("adam", "NR")
    fields = {"p_value", "p_adjusted", "significant", "ci_low", "effect_size", "note", "n_dense"}
    assert fields <= set(records[0])
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(parsed) == 6 and parsed[1]["variant"] == "BN" and parsed[0]["significant"] == "True"
    assert float(parsed[0]["p_value"]) == table.cell("adam", "NR").result.p_value
    assert pvalue_table(study_rows(), n_resamples=999).to_csv() == table.to_csv()
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table.to_rich())
    text = console.file.getvalue()
    assert table.to_rich().renderables[0].row_count == 2
    assert "n=24" in text and "n<5" in text and "n=2" in text and "p < 0.001" in text


def test_mannwhitney_uses_every_finished_run_of_the_cell() -> None:
    rows = study_rows()
    t = pvalue_table(rows, test="mannwhitney", n_resamples=99)
    done = [r for r in rows if r["status"] == "finished" and r["optim.name"] == "adam"
            and r["variant"] == "NR"]  # fmt: skip
    sp = [r["test_accuracy"] for r in done if r["kind"] == "sparse"]
    de = [r["test_accuracy"] for r in done if r["kind"] == "dense"]
    cell = t.cell("adam", "NR").result
    assert (cell.n_sparse, cell.n_dense) == (25, 25)
    assert cell.p_value == pytest.approx(stats.mannwhitneyu(sp, de, alternative="greater").pvalue)
    assert "runs in the smaller group" in t.caption()


def test_pair_up_directly() -> None:
    rows = [
        {"kind": "sparse", "dense_width": 8, "seed": 0, "acc": 0.9, "m.h": [4, 4]},
        {"kind": "sparse", "dense_width": 8, "seed": 1, "acc": 0.8, "m.h": [4, 4]},
        {"kind": "dense", "dense_width": 8, "seed": 1, "acc": 0.7, "m.h": [4, 4]},
        {"kind": "dense", "dense_width": 8, "seed": 0, "acc": 0.6, "m.h": [4, 4], "x": math.nan},
        {"kind": "dense", "dense_width": 8, "seed": 2, "acc": 0.5, "m.h": [4, 4]},
        {"kind": "baseline", "dense_width": 8, "seed": 0, "acc": 0.1},
    ]
    sparse, dense, keys = pair_up(rows, "acc", within=("m.h", "x"))
    assert sparse == (0.9, 0.8) and dense == (0.6, 0.7)
    assert keys == ((8, 0, (4, 4), None), (8, 1, (4, 4), None))
    pairs = pair_up(rows, "acc")
    assert (pairs.unmatched_sparse, pairs.unmatched_dense) == (0, 1)
    with pytest.raises(ValueError, match="row 0 has no 'kind'"):
        pair_up([{"seed": 0}], "acc")
    with pytest.raises(ValueError, match="row 0 has a non-numeric 'acc'"):
        pair_up([{"kind": "dense", "acc": "oops"}], "acc")
    with pytest.raises(ValueError, match="unknown correction 'sidak'"):
        pvalue_table(rows, "acc", correction="sidak")


def test_default_axes() -> None:
    from sparseflow.analysis.tables import default_axes

    assert default_axes(["optim.name", "variant"], {"variant": 8}) == ("optim.name", "variant")
    # One variant: the columns follow the next swept axis instead of pooling it.
    assert default_axes(["optim.name", "model.activation", "variant"],
                        {"variant": 1}) == ("optim.name", "model.activation")
    assert default_axes(["variant"], {"variant": 3}) == ("variant", "dense_width")
    assert default_axes(["optim.name", "variant"], {"variant": 1}) == ("optim.name",
                                                                        "dense_width")


# Cells in the metric's units, both orientations ------------------------------------------------
def test_diff_and_ci_are_sparse_minus_dense_for_accuracy_and_loss() -> None:
    rows = study_rows()
    acc = pvalue_table(rows, n_resamples=999)
    loss = pvalue_table(rows, "test_loss", n_resamples=999)
    for opt, var in (("adam", "NR"), ("adam", "BN")):
        sp, de = expected_pairs(opt, var)
        gap = float(np.mean(np.subtract(sp, de)))  # accuracy: sparse − dense
        a, lo = acc.cell(opt, var).result, loss.cell(opt, var).result
        assert a.diff == pytest.approx(gap) and lo.diff == pytest.approx(-gap)  # loss = 1 − acc
        # The loss CI is the accuracy CI mirrored (bootstrap on the negated differences).
        assert (lo.diff_ci_low, lo.diff_ci_high) == pytest.approx(
            (-a.diff_ci_high, -a.diff_ci_low), abs=1e-9)
        assert a.diff_ci_low < a.diff < a.diff_ci_high
    # adam/BN: sparse 2 points lower in accuracy, so 0.02 higher in loss; dense better in both.
    assert acc.cell("adam", "BN").result.diff == pytest.approx(-0.02, abs=0.003)
    assert acc.verdict("adam", "BN").word == loss.verdict("adam", "BN").word == "dense better"
    rec = {(r["optim.name"], r["variant"]): r for r in loss.to_records()}
    assert rec[("adam", "BN")]["diff"] == pytest.approx(0.02, abs=0.003)
    assert rec[("adam", "BN")]["diff_ci_low"] > 0 and rec[("adam", "BN")]["verdict"] == \
        "dense better"
    md = loss.to_markdown()
    assert "test_loss units" in md and re.search(r"\| adam \| \*\*p < 0\.001\*\*, −0\.019 ", md)


@pytest.mark.parametrize("metric", ["test_accuracy", "test_loss"])
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_table_alternative_matches_scipy(metric: str, alternative: str) -> None:
    rows = study_rows()
    t = pvalue_table(rows, metric, alternative=alternative, n_resamples=99)
    assert t.alternative == alternative
    flip = {"greater": "less", "less": "greater", "two-sided": "two-sided"}
    for opt, var in (("adam", "NR"), ("sgd", "NR"), ("adam", "BN")):
        sp, de = expected_pairs(opt, var)
        if metric == "test_accuracy":
            diffs, alt = np.subtract(sp, de), alternative
        else:  # losses 1 − acc: scipy tests sparse − dense with the flipped alternative
            diffs, alt = np.subtract(1 - np.array(sp), 1 - np.array(de)), flip[alternative]
        ref = stats.wilcoxon(np.round(diffs, 12), alternative=alt)
        assert t.cell(opt, var).result.p_value == pytest.approx(ref.pvalue)
    # adam/NR: sparse wins every pair; adam/BN: dense does.
    sig = {k: t.cell(*k).significant for k in (("adam", "NR"), ("adam", "BN"))}
    assert sig == {"greater": {("adam", "NR"): True, ("adam", "BN"): False},
                   "less": {("adam", "NR"): False, ("adam", "BN"): True},
                   "two-sided": {("adam", "NR"): True, ("adam", "BN"): True}}[alternative]


def test_two_sided_needs_six_pairs_in_a_table() -> None:
    rows = [run(k, "adam", "NR", w, s, 0.1) for w in (16, 32, 64, 128, 256) for s in (0,)
            for k in ("sparse", "dense")]
    one = pvalue_table(rows, n_resamples=99).cell("adam", "NR")
    two = pvalue_table(rows, alternative="two-sided", n_resamples=99).cell("adam", "NR")
    assert one.result.p_value == pytest.approx(1 / 32) and one.significant
    assert math.isnan(two.p_adjusted) and two.result.note == "too few pairs (n=5 < 6)"
    assert pvalue_table(rows, alternative="two-sided").to_markdown().count("n<6") == 1
    with pytest.raises(ValueError, match="unknown alternative 'up'"):
        pvalue_table(rows, alternative="up")


# Hand-made cells: texts, verdicts, sentences --------------------------------------------------
def _result(diff: float, low: float, high: float, p: float, *, n: int = 9,
            higher_is_better: bool = True, alternative: str = "greater",
            effect: float | None = None, n_dropped: int = 0):
    """A TestResult whose sparse − dense (metric units) is ``diff`` with CI [low, high]."""
    from sparseflow.analysis import TestResult

    sign = 1 if higher_is_better else -1
    lo, hi = sorted((sign * low, sign * high))
    return TestResult(
        test="wilcoxon", n=n, n_sparse=n, n_dense=n, mean_sparse=0.5 + diff, mean_dense=0.5,
        mean_diff=sign * diff, ci_low=lo, ci_high=hi,
        effect_size=sign * diff if effect is None else effect, effect_name="rank-biserial",
        statistic=0.0, p_value=p, higher_is_better=higher_is_better, min_n=5,
        alternative=alternative, n_dropped=n_dropped,
    )  # fmt: skip


def _table(results: dict, metric: str = "test_accuracy", alternative: str = "greater",
           alpha: float = 0.05):
    from sparseflow.analysis import PValueCell, PValueTable

    cells = {k: PValueCell(k[0], k[1], r, r.p_value,
                           not math.isnan(r.p_value) and r.p_value <= alpha)
             for k, r in results.items()}
    rows = tuple(dict.fromkeys(k[0] for k in results))
    cols = tuple(dict.fromkeys(k[1] for k in results))
    return PValueTable(metric=metric, row_axis="optim.name", col_axis="variant",
                       test="wilcoxon", correction="none", alpha=alpha,
                       higher_is_better=not metric.endswith("loss"), row_values=rows,
                       col_values=cols, cells=cells, alternative=alternative)


def test_cell_texts_by_hand() -> None:
    t = _table({("adam", "NR"): _result(-0.0923, -0.1131, -0.0712, 0.982, n_dropped=1)})
    cell = t.cell("adam", "NR")
    assert tt.p_text(cell) == "p = 0.982"
    assert tt.gap_text(cell.result, "test_accuracy") == "−9.2 pts [−11.3, −7.1]"
    assert tt.n_text(cell) == "n=9, 1 dropped"
    # A loss in its own units; the precision follows the CI (half-width 0.011 → 3 places).
    loss = _result(0.0412, 0.0301, 0.0523, 0.001, higher_is_better=False)
    assert tt.gap_text(loss, "test_loss") == "+0.041 [+0.030, +0.052]"
    assert loss.mean_diff < 0 < loss.diff  # better-oriented: dense ahead on a loss
    # A wide CI rounds a tiny gap away rather than print false precision.
    assert tt.gap_text(_result(0.00012, -0.025, 0.026, 0.4), "test_accuracy") == \
        "0.0 pts [−2.5, +2.6]"
    assert tt.p_text(_table({("a", "b"): _result(0.1, 0.05, 0.2, 2e-5)}).cell("a", "b")) == \
        "p < 0.001"
    assert tt.signed(math.inf, 2) == "+inf" and tt.signed(-3.14159, 2) == "−3.14"


@pytest.mark.parametrize("alternative,diff,ci,p,effect,expected", [
    # H1 sparse better: dense clearly ahead is read off the CI (the test cannot see it).
    ("greater", -9.2, (-11, -7), 0.99, None, "dense better"),
    ("greater", 2.0, (1, 3), 0.01, None, "sparse better"),
    ("greater", 2.0, (1, 3), 0.20, None, "no clear difference (CI excludes 0 but p > 0.05)"),
    ("greater", 0.5, (-1, 2), 0.04, None, "no clear difference (CI includes 0)"),
    ("greater", -1.0, (-2, -0.5), 0.03, None, "no clear difference (the test and the CI "
                                              "disagree)"),
    # H1 sparse worse: the mirror image.
    ("less", -9.2, (-11, -7), 0.001, None, "dense better"),
    ("less", -9.2, (-11, -7), 0.30, None, "no clear difference (CI excludes 0 but p > 0.05)"),
    ("less", 2.0, (1, 3), 0.99, None, "sparse better"),
    # Two-sided: either side needs p ≤ alpha; the side of a significant test is the effect's.
    ("two-sided", -3.0, (-4, -2), 0.002, -0.8, "dense better"),
    ("two-sided", 3.0, (2, 4), 0.002, 0.8, "sparse better"),
    ("two-sided", 3.0, (2, 4), 0.08, 0.8, "no clear difference (CI excludes 0 but p > 0.05)"),
    # No CI (diverged losses): only a significant test decides.
    ("greater", 2.0, (math.nan, math.nan), 0.01, None, "sparse better"),
    ("greater", -2.0, (math.nan, math.nan), 0.99, None, "no clear difference (p > 0.05; no CI)"),
    ("greater", 1.0, (math.nan, math.nan), math.nan, None, "not tested (too few pairs: n=9 < "
                                                           "5)"),
])  # fmt: skip
def test_verdicts_by_hand(alternative, diff, ci, p, effect, expected) -> None:
    for metric, hib in (("test_accuracy", True), ("test_loss", False)):
        # The same verdict for a loss whose sparse − dense is the mirror image.
        sign = 1 if hib else -1
        res = _result(sign * diff / 100, sign * ci[0] / 100, sign * ci[1] / 100, p,
                      higher_is_better=hib, alternative=alternative,
                      effect=effect)  # fmt: skip
        if math.isnan(p):
            res = replace(res, min_n=12)
            expected = expected.replace("n=9 < 5", "n=9 < 12")
        t = _table({("adam", "NR"): res}, metric, alternative)
        assert t.verdict("adam", "NR").text == expected


def test_summary_sentences_by_hand() -> None:
    # The brief's example: dense ahead by 3.9–9.2 points in all 4 cells, every CI below 0.
    gaps = {("adam", "NR"): -9.2, ("adam", "BN"): -3.9, ("sgd", "NR"): -5.0, ("sgd", "BN"): -7.0}
    t = _table({k: _result(g / 100, (g - 2) / 100, (g + 2) / 100, 0.98) for k, g in gaps.items()})
    lines = t.summary_lines()
    assert lines[0].startswith("Dense better in 4 of 4 tested cells, sparse better in none, "
                               "no clear difference in none")
    assert lines[1] == ("Largest gap: −9.2 pts [−11.2, −7.2] at optim.name=adam / "
                        "variant=NR; dense better.")
    assert lines[2] == "optim.name=adam: dense better at NR (−9.2 pts), BN (−3.9 pts)."
    assert lines[3] == "optim.name=sgd: dense better at NR (−5.0 pts), BN (−7.0 pts)."
    assert len(lines) == 4
    # Mixed, with an untested cell: counts by verdict, the most common first.
    t = _table({("adam", "NR"): _result(0.02, 0.01, 0.03, 0.01),
                ("adam", "BN"): _result(0.01, -0.01, 0.03, 0.20),
                ("sgd", "NR"): _result(0.005, -0.01, 0.02, 0.30),
                ("sgd", "BN"): _result(0.01, math.nan, math.nan, math.nan, n=2)})
    lines = t.summary_lines()
    assert lines[0].startswith("No clear difference in 2 of 3 tested cells, sparse better in 1, "
                               "dense better in none")
    assert lines[1].startswith("Largest gap: +2.0 pts [+1.0, +3.0] at optim.name=adam / "
                               "variant=NR; sparse better")
    assert lines[2] == ("optim.name=adam: sparse better at NR (+2.0 pts); no clear difference "
                        "(CI includes 0) at BN (+1.0 pts).")
    assert lines[-1] == "Not tested: optim.name=sgd / variant=BN (too few pairs: n=2 < 5)."
    # Nothing testable: one sentence that says why.
    t = _table({("adam", "NR"): _result(0.01, math.nan, math.nan, math.nan, n=2)})
    assert t.summary_lines() == ["No cell could be tested (too few pairs: n=2 < 5)."]


@pytest.mark.parametrize("alternative,p_words,console,markdown", [
    ("greater", "p near 0 is evidence that sparse beats dense; p near 1: dense is ahead",
     "bold green: p ≤ 0.05, evidence that sparse beats dense",
     "bold: p ≤ 0.05, evidence that sparse beats dense"),
    ("less", "p near 0 is evidence that dense beats sparse; p near 1: sparse is ahead",
     "bold red: p ≤ 0.05, evidence that dense beats sparse",
     "bold: p ≤ 0.05, evidence that dense beats sparse"),
    ("two-sided", "either way",
     "bold green: p ≤ 0.05 with sparse ahead; bold red: p ≤ 0.05 with dense ahead",
     "bold: p ≤ 0.05 (the sign of sparse − dense says who is ahead)"),
])
def test_caption_says_what_p_and_the_marks_mean(alternative, p_words, console, markdown) -> None:
    t = _table({("adam", "NR"): _result(0.02, 0.01, 0.03, 0.01, alternative=alternative)},
               alternative=alternative)
    caption = t.caption()
    assert p_words in caption and console in caption and markdown in t.caption("markdown")
    h1 = {"greater": "sparse > dense", "less": "sparse < dense", "two-sided": "sparse ≠ dense"}
    assert f"H1: {h1[alternative]} on test_accuracy" in caption
    assert ("two-sided" in caption) == (alternative == "two-sided")
    assert "percentage points (pts)" in caption and "95% bootstrap CI" in caption
    assert "bold on green" in t.caption("html") or alternative == "less"


def test_console_fits_80_columns_and_keeps_every_number_whole(table) -> None:
    def shown(t, width: int = 80) -> str:
        console = Console(file=io.StringIO(), width=width, color_system=None)
        console.print(t.to_rich(width=width))
        return console.file.getvalue()

    text = shown(table)
    assert "Is sparse better than dense on test_accuracy?" in text
    lines = text.splitlines()
    # The grid: each cell's p, gap + CI and n on lines of their own, none broken by wrapping.
    for cell in table.ordered():
        gap = tt.gap_text(cell.result, table.metric)
        assert any(gap in ln for ln in lines), gap
        assert any(tt.p_text(cell) in ln for ln in lines)
    assert text.count("│ adam ") == 1  # one grid row per optimizer (cells of several lines)
    assert "Sparse better in 2 of 4 tested cells" in " ".join(text.split())
    # Eight columns do not fit as a grid: one line per cell, still whole at 80 columns.
    wide = [run(k, "adam", v, w, s, 0.1) for v in "ABCDEFGH" for w in WIDTHS for s in SEEDS
            for k in ("sparse", "dense")]
    t = pvalue_table(wide, n_resamples=99)
    text = shown(t)
    assert all(len(ln) <= 80 for ln in text.splitlines())
    for cell in t.ordered():
        gap, ci = tt.gap_parts(cell.result, t.metric)
        assert re.search(rf"│ adam +│ {cell.col} +│ .*{re.escape(gap)} │ +{re.escape(ci)} │",
                         text), (gap, ci)


def test_console_marks_follow_the_side_and_values_are_never_markup() -> None:
    rows = [r | {"variant": "[bold]"} if r["variant"] == "BN" else r for r in study_rows()]
    t = pvalue_table(rows, alternative="two-sided", n_resamples=99)
    grid = t.to_rich().renderables[0]
    styles = {str(col.header): [str(c.style) for c in col._cells] for col in grid.columns}
    # adam/NR: sparse wins every pair; adam/BN: dense does; sgd/NR: no difference.
    assert styles["NR"][:2] == ["bold green", ""] and styles["[bold]"][0] == "bold red"
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(t.to_rich(width=120))
    assert "[bold]" in console.file.getvalue()


def test_a_cell_pooling_a_sparse_only_axis_says_its_pairs_share_twins() -> None:
    """Two maskers share each dense twin: pooled in one cell, the pairs are not independent."""
    rows = []
    for w, s in itertools.product([8, 16], range(3)):
        rows.append({"kind": "dense", "dense_width": w, "seed": s, "variant": "NR",
                     "test_accuracy": 0.5 + 0.01 * s})
        for i, m in enumerate(["random", "snip"]):
            rows.append({"kind": "sparse", "dense_width": w, "seed": s, "variant": "NR",
                         "sparsity.masker": m, "test_accuracy": 0.52 + 0.01 * (s + i)})
    pooled = pvalue_table(rows, rows="variant", cols="dense_width")
    for cell in pooled.ordered():
        assert cell.result.n == 6  # 3 seeds × 2 maskers, each paired with the same 3 twins
        assert "up to 2 pairs share one partner run" in cell.result.note
    split = pvalue_table(rows, rows="sparsity.masker", cols="dense_width")
    assert all("share" not in c.result.note for c in split.ordered())
