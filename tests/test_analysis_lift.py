"""The BatchNorm-lift interaction (`sparseflow.analysis.lift`, `study lift`), against lifts
computed by hand from the runs and scipy.stats.wilcoxon on their paired differences."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sparseflow.analysis.lift import lift_table, treated_pairs
from sparseflow.analysis.stats import correct

from tests.test_cli import _assert_one_line_error, _run
from tests.test_cli_study import _export


def _rows(seed: int = 0, widths: int = 8) -> tuple[list[dict], dict]:
    """Runs of two optimizers × NR/BN × sparse/dense × widths × 1 seed (each a unit), and the
    (sparse lifts, dense lifts) of each optimizer computed by hand."""
    rng = np.random.default_rng(seed)
    rows, lifts = [], {}
    for opt in ("adam", "sgd"):
        s, d = [], []
        for w in range(widths):
            acc = {(v, k): float(rng.uniform(0.5, 0.9)) for v in ("NR", "BN")
                   for k in ("sparse", "dense")}
            for (v, k), a in acc.items():
                rows.append({"kind": k, "status": "finished", "optim.name": opt, "variant": v,
                             "dense_width": 10 + w, "seed": 0, "model.hidden_layers": 2,
                             "test_accuracy": a, "test_loss": 1.0 - a})
            s.append(acc[("BN", "sparse")] - acc[("NR", "sparse")])
            d.append(acc[("BN", "dense")] - acc[("NR", "dense")])
        lifts[opt] = (np.array(s), np.array(d))
    return rows, lifts


AXES = ["optim.name", "model.hidden_layers"]


def test_lifts_and_their_test_equal_the_hand_computation_and_scipy() -> None:
    rows, lifts = _rows()
    cells = lift_table(rows, rows="optim.name", pairs=[("NR", "BN")], axes=AXES)
    assert [(c.row, c.base, c.treated) for c in cells] == [("adam", "NR", "BN"),
                                                            ("sgd", "NR", "BN")]
    for c in cells:
        s, d = lifts[c.row]
        assert c.sparse_lift == pytest.approx(s.mean()) and c.dense_lift == pytest.approx(d.mean())
        assert c.result.n == 8 and c.result.diff == pytest.approx((s - d).mean())
        ref = stats.wilcoxon(np.round(s - d, 12), alternative="greater").pvalue
        assert c.result.p_value == pytest.approx(ref) and c.p_adjusted == c.result.p_value
        assert c.result.diff_ci_low <= c.result.diff <= c.result.diff_ci_high


def test_a_loss_lift_is_larger_when_it_is_lower() -> None:
    rows, lifts = _rows(seed=1)
    cells = lift_table(rows, rows="optim.name", pairs=[("NR", "BN")], axes=AXES,
                       metric="test_loss")
    for c in cells:
        s, d = lifts[c.row]  # accuracy lifts; the loss lifts are their negatives
        assert c.sparse_lift == pytest.approx(-s.mean())
        ref = stats.wilcoxon(np.round(-s + d, 12), alternative="less").pvalue
        assert c.result.p_value == pytest.approx(ref)
        assert c.result.diff == pytest.approx((-s + d).mean())  # in the loss's units


def test_a_unit_missing_a_run_is_left_out_and_correction_applies_over_cells() -> None:
    rows, lifts = _rows(seed=2)
    gone = next(r for r in rows if r["optim.name"] == "adam" and r["dense_width"] == 10
                and r["variant"] == "BN" and r["kind"] == "dense")
    rows = [r for r in rows if r is not gone]
    rows[0] = {**rows[0], "status": "failed"} if rows[0]["optim.name"] == "adam" else rows[0]
    cells = lift_table(rows, rows="optim.name", pairs=[("NR", "BN")], axes=AXES,
                       correction="holm")
    adam, sgd = cells
    assert adam.result.n == 7 and sgd.result.n == 8  # width 10 of adam has lost two runs
    s, d = lifts["adam"]
    assert adam.sparse_lift == pytest.approx(s[1:].mean())
    assert [c.p_adjusted for c in cells] == pytest.approx(
        correct([c.result.p_value for c in cells], "holm"))


def test_units_match_on_the_other_axes() -> None:
    rows, _ = _rows(seed=3)
    # the same runs at another depth: twice the units, never a BN run of one depth against
    # an NR run of the other
    deeper = [{**r, "model.hidden_layers": 4, "test_accuracy": r["test_accuracy"] + 0.01}
              for r in rows]
    cells = lift_table(rows + deeper, rows="optim.name", pairs=[("NR", "BN")], axes=AXES)
    assert {c.result.n for c in cells} == {16}
    one = lift_table(rows, rows="optim.name", pairs=[("NR", "BN")], axes=AXES)
    for c, c1 in zip(cells, one, strict=True):
        assert c.sparse_lift == pytest.approx(c1.sparse_lift)  # the offset cancels in a lift


def test_a_dense_twin_shared_across_mask_methods_serves_every_method() -> None:
    rows, lifts = _rows(seed=4)
    adam = [r for r in rows if r["optim.name"] == "adam"]  # one optimizer, lifts by hand
    dense = [{**r, "sparsity.masker": None} for r in adam if r["kind"] == "dense"]
    sparse = [{**r, "sparsity.masker": m, "test_accuracy": r["test_accuracy"] + off}
              for m, off in (("random", 0.0), ("snip", 0.02)) for r in adam
              if r["kind"] == "sparse"]
    cells = lift_table(dense + sparse, rows="sparsity.masker", pairs=[("NR", "BN")],
                       axes=["sparsity.masker", "optim.name"])
    s, d = lifts["adam"]
    assert [c.row for c in cells] == ["random", "snip"]
    for c in cells:  # the offset is in both of a method's runs: it cancels in the lift
        assert c.result.n == 8
        assert c.sparse_lift == pytest.approx(s.mean()) and c.dense_lift == pytest.approx(d.mean())


def test_treated_pairs_are_every_x_with_its_bn_variant() -> None:
    values = ["NR", "DA", "L2", "BN", "DA_BN", "L2_BN", "SC"]
    assert treated_pairs(values) == [("NR", "BN"), ("DA", "DA_BN"), ("L2", "L2_BN")]
    assert treated_pairs(["NR", "L2"]) == []
    with pytest.raises(ValueError, match="cannot be the treated axis"):
        lift_table([], rows="variant", pairs=[], axes=AXES)


def test_study_lift_prints_the_export_s_lifts(cli_study, tmp_path: Path, capsys) -> None:
    _, directory, _ = cli_study
    exported = _export(directory, tmp_path, capsys)
    code, out, err = _run(["study", "lift", str(directory), "--format", "csv"], capsys)
    assert code == 0, err
    got = {r["optim.name"]: r for r in csv.DictReader(out.splitlines())}
    assert set(got) == {"adam", "sgd"}
    for opt, cell in got.items():
        acc = {(r["variant"], r["kind"], r["dense_width"], r["seed"]): float(r["test_accuracy"])
               for r in exported if r["optim.name"] == opt}
        units = {(w, s) for (_, _, w, s) in acc}
        s = [acc[("BN", "sparse", *u)] - acc[("NR", "sparse", *u)] for u in sorted(units)]
        d = [acc[("BN", "dense", *u)] - acc[("NR", "dense", *u)] for u in sorted(units)]
        assert (cell["base"], cell["treated"], cell["n"]) == ("NR", "BN", "6")
        assert float(cell["sparse_lift"]) == pytest.approx(np.mean(s))
        assert float(cell["dense_lift"]) == pytest.approx(np.mean(d))
        ref = stats.wilcoxon(np.round(np.subtract(s, d), 12), alternative="greater").pvalue
        assert float(cell["p_value"]) == pytest.approx(ref)
    code, md, _ = _run(["study", "lift", str(directory), "--format", "markdown"], capsys)
    assert code == 0 and md.startswith("| optim.name | NR→BN |") and "n=6" in md


@pytest.mark.parametrize("argv,needle", [
    (["--pair", "NR:XX"], "'XX' is not a value of variant in this study; values: NR, BN"),
    (["--pair", "NR"], "give BASE:TREATED"),
    (["--axis", "model.width"], "--axis 'model.width' is not a swept axis"),
    (["--rows", "variant"], "--rows must be a swept axis other than 'variant'"),
    (["--test", "mannwhitney"], "a lift is paired by unit"),
])
def test_study_lift_bad_input(cli_study, argv: list[str], needle: str, capsys) -> None:
    _, directory, _ = cli_study
    code, _, err = _run(["study", "lift", str(directory), *argv], capsys)
    _assert_one_line_error(code, err, needle)
