"""kendall_table against scipy and a hand count of concordant/discordant pairs."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from scipy import stats

from sparseflow.analysis import CorrelationTable, kendall_table
from sparseflow.analysis.correlation import kendall_by_group


def hand_tau_b(xs: list[float], ys: list[float]) -> float:
    """τ_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) by enumerating all pairs."""
    c = d = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(xs)), 2):
        dx, dy = xs[i] - xs[j], ys[i] - ys[j]
        ties_x += dx == 0
        ties_y += dy == 0
        if dx * dy > 0:
            c += 1
        elif dx * dy < 0:
            d += 1
    n0 = len(xs) * (len(xs) - 1) // 2
    return (c - d) / math.sqrt((n0 - ties_x) * (n0 - ties_y))


def test_hand_counted_small_examples() -> None:
    # x = 1,2,3,4 vs y = 1,3,2,4: 5 concordant pairs, 1 discordant (the 2<->3 swap) → 4/6.
    pairs = zip([1, 2, 3, 4], [1, 3, 2, 4], strict=True)
    runs = [{"kind": "sparse", "egf1": x, "test_loss": y} for x, y in pairs]
    table = kendall_table(runs, measures=["egf1"], targets=["test_loss"], kinds=["sparse"])
    assert table.cell("egf1", "sparse", "test_loss").tau == pytest.approx(4 / 6)
    # With ties: x = 1,2,2,3 vs y = 1,2,3,3: C = 4, D = 0, one tie in each → 4/sqrt(5·5) = 0.8.
    xs, ys = [1, 2, 2, 3], [1, 2, 3, 3]
    assert hand_tau_b(xs, ys) == pytest.approx(0.8)
    runs = [{"kind": "dense", "gf2": x, "test_accuracy": y} for x, y in zip(xs, ys, strict=True)]
    cell = kendall_table(runs, ["gf2"], ["test_accuracy"], ["dense"]).cell(
        "gf2", "dense", "test_accuracy"
    )
    assert cell.tau == pytest.approx(0.8) and cell.n == 4


def _random_runs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        loss = rng.uniform(0.2, 2.0)
        runs.append({
            "kind": "sparse" if i % 2 else "dense",
            "gf1": rng.uniform(0, 10), "gf2": round(rng.uniform(0, 3), 1),  # ties
            "egf1": loss + rng.gauss(0, 0.3), "egf2": -loss + rng.gauss(0, 0.5),
            "test_loss": loss, "test_accuracy": 1 - loss / 2 + rng.gauss(0, 0.05),
        })  # fmt: skip
    return runs


def test_every_cell_matches_scipy_and_the_hand_count() -> None:
    runs = _random_runs(40, seed=0)
    table = kendall_table(runs)
    assert len(table.cells) == 4 * 2 * 2
    for m, k, t in itertools.product(table.measures, table.kinds, table.targets):
        xs = [r[m] for r in runs if r["kind"] == k]
        ys = [r[t] for r in runs if r["kind"] == k]
        ref = stats.kendalltau(xs, ys)
        cell = table.cell(m, k, t)
        assert cell.tau == pytest.approx(ref.statistic, abs=1e-12)
        assert cell.p_value == pytest.approx(ref.pvalue, abs=1e-12)
        assert cell.tau == pytest.approx(hand_tau_b(xs, ys), abs=1e-12)
        assert cell.n == 20 and cell.note == ""
    # Signs: egf1 rises with loss, egf2 falls with it.
    assert table.cell("egf1", "sparse", "test_loss").tau > 0.5
    assert table.cell("egf1", "sparse", "test_accuracy").tau < -0.3
    assert table.cell("egf2", "dense", "test_loss").tau < -0.3
    assert table.best("sparse", "test_loss") in ("egf1", "egf2")


def test_missing_values_are_dropped_per_cell() -> None:
    runs = [{"kind": "sparse", "egf1": float(i), "test_loss": float(i % 4), "test_accuracy": -i}
            for i in range(8)]  # fmt: skip
    runs[0]["egf1"] = None
    runs[1]["egf1"] = float("nan")
    del runs[2]["test_loss"]
    runs.append({"kind": "dense", "egf1": 1.0, "test_loss": 1.0})  # other kind: not counted
    table = kendall_table(runs, ["egf1"], kinds=["sparse"])
    loss = table.cell("egf1", "sparse", "test_loss")
    acc = table.cell("egf1", "sparse", "test_accuracy")
    assert (loss.n, acc.n) == (5, 6)
    kept = runs[3:8]
    ref = stats.kendalltau([r["egf1"] for r in kept], [r["test_loss"] for r in kept])
    assert loss.tau == pytest.approx(ref.statistic)
    assert acc.tau == pytest.approx(-1.0)


def test_too_few_runs_and_constant_values_give_nan_with_a_note() -> None:
    runs = [{"kind": "sparse", "egf1": 1.0, "test_loss": 2.0},
            {"kind": "sparse", "egf1": 2.0, "test_loss": 3.0},
            {"kind": "dense", "egf1": 1.0, "test_loss": 1.0},
            {"kind": "dense", "egf1": 1.0, "test_loss": 2.0},
            {"kind": "dense", "egf1": 1.0, "test_loss": 3.0}]  # fmt: skip
    table = kendall_table(runs, ["egf1"], ["test_loss"])
    few, const = table.cell("egf1", "sparse", "test_loss"), table.cell("egf1", "dense", "test_loss")
    assert math.isnan(few.tau) and few.n == 2 and "< 3" in few.note
    assert math.isnan(const.tau) and const.n == 3 and "constant" in const.note
    with pytest.raises(ValueError, match="no measure"):
        table.best("sparse", "test_loss")
    assert "n/a" in table.to_markdown()


def test_rows_and_markdown_layout() -> None:
    table = kendall_table(_random_runs(30, seed=1))
    assert table.columns() == ["sparse_loss", "sparse_acc", "dense_loss", "dense_acc"]
    rows = table.to_rows()
    assert [r["measure"] for r in rows] == ["gf1", "gf2", "egf1", "egf2"]
    assert rows[2]["sparse_acc"] == table.cell("egf1", "sparse", "test_accuracy").tau
    assert table.to_rows(absolute=True)[2]["sparse_acc"] == abs(rows[2]["sparse_acc"])
    lines = table.to_markdown().splitlines()
    assert lines[0] == "| Measure | Sparse: loss | Sparse: acc | Dense: loss | Dense: acc |"
    assert lines[1] == "|---|---|---|---|---|"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| ‖g‖₁", "| ‖g‖₂", "| EGF₁", "| EGF₂"]
    tau = table.cell("egf2", "dense", "test_loss").tau
    assert lines[5].split(" | ")[3] == f"{abs(tau):.3f}"
    signed = table.to_markdown(absolute=False).splitlines()
    assert signed[5].split(" | ")[3] == f"{tau:+.3f}" and tau < 0
    records = table.to_records()
    assert len(records) == 16 and set(records[0]) >= {"measure", "kind", "target", "tau", "n"}


def test_bad_runs_and_cells() -> None:
    with pytest.raises(ValueError, match="no 'kind'"):
        kendall_table([{"egf1": 1.0}])
    with pytest.raises(ValueError, match="non-numeric"):
        kendall_table([{"kind": "sparse", "egf1": "high", "test_loss": 1.0}], ["egf1"])
    table = kendall_table([], ["egf1"])
    assert isinstance(table, CorrelationTable) and table.cell("egf1", "dense", "test_loss").n == 0
    with pytest.raises(KeyError, match="egf1"):
        table.cell("egf9", "dense", "test_loss")
    with pytest.raises(AttributeError):
        table.measures = ("x",)  # frozen


def test_kendall_by_width_matches_scipy_within_each_width() -> None:
    runs = _random_runs(60, seed=2)
    rng = random.Random(3)
    for i, r in enumerate(runs):
        r["dense_width"] = (8, 16, 32)[i % 3]
        # Capacity drives both egf2 and the loss across widths; within one they are unrelated.
        r["egf2"] = rng.uniform(0, 1) + r["dense_width"]
        r["test_loss"] = rng.uniform(0, 1) - r["dense_width"]
    runs.append({**runs[0], "dense_width": None})  # no width: in no group
    groups = kendall_by_group(runs, "dense_width")
    assert list(groups) == [8, 16, 32]
    for w, table in groups.items():
        for m, k, t in itertools.product(table.measures, table.kinds, table.targets):
            mine = [r for r in runs if r["dense_width"] == w and r["kind"] == k]
            ref = stats.kendalltau([r[m] for r in mine], [r[t] for r in mine])
            cell = table.cell(m, k, t)
            assert cell.tau == pytest.approx(ref.statistic, abs=1e-12)
            assert cell.p_value == pytest.approx(ref.pvalue, abs=1e-12)
            assert cell.n == len(mine) == 10
    # Pooled over widths, capacity makes egf2 and loss look strongly (negatively) related,
    # much more than within any width.
    pooled = kendall_table(runs[:-1]).cell("egf2", "sparse", "test_loss").tau
    within = [abs(g.cell("egf2", "sparse", "test_loss").tau) for g in groups.values()]
    assert pooled < -0.5 and max(within) < 0.5


def test_kendall_by_group_other_keys_and_errors() -> None:
    runs = [{"kind": "sparse", "egf1": float(i), "test_loss": float(i), "variant": v}
            for i, v in enumerate(["NR", "BN"] * 3)]
    groups = kendall_by_group(runs, "variant", measures=["egf1"], targets=["test_loss"])
    assert list(groups) == ["BN", "NR"]  # ascending
    assert groups["NR"].cell("egf1", "sparse", "test_loss").tau == pytest.approx(1.0)
    assert kendall_by_group([], "dense_width") == {}
    with pytest.raises(ValueError, match="cannot be ordered"):
        kendall_by_group([{"kind": "sparse", "k": 1}, {"kind": "sparse", "k": "a"}], "k")
