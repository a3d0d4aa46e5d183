"""pvalue_table / pair_up on synthetic study rows: matching, oracle p-values, layout, correction."""

from __future__ import annotations

import csv
import io
import math
import random
import re

import pytest
from rich.console import Console
from scipy import stats

from sparseflow.analysis import correct, pair_up, pvalue_table

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
