"""Selection by validation (`select:` in a study spec): refusals, the rule against hand-chosen
runs, the p-value table against scipy over the hand-chosen pairs, the export, the CLI and one
small study run end to end."""

from __future__ import annotations

import csv
import json
import math
import re
import typing
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from sparseflow.analysis import pvalue_table
from sparseflow.analysis.stats import rank_rounded
from sparseflow.errors import ConfigError
from sparseflow.store import PlannedRun, StudyStore
from sparseflow.store.selection import SELECT_METRICS, SelectRule, rule_from_spec, select
from sparseflow.studies import expand, load_spec
from sparseflow.studies.power_check import cell_pairs
from sparseflow.studies.spec import SelectSpec, StudySpec

from tests.test_cli import _assert_one_line_error, _run
from tests.test_store_basic import outputs
from tests.test_studies_plan import spec_dict

LR = "optim.lr"


def _load(tmp_path: Path, **over) -> StudySpec:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(**over)))
    return load_spec(path)


# Spec validation -------------------------------------------------------------------------------
_AXES = {"optim.name": ["adam", "sgd"], LR: [0.01, 0.1]}


@pytest.mark.parametrize("over,needle", [
    ({"select": {"axis": "optim.lrr"}, "axes": _AXES},
     "select.axis: 'optim.lrr' is not an axis of the spec (did you mean 'optim.lr'?)"),
    ({"select": {"axis": "variant"}, "axes": _AXES}, "'variant' is not an axis of the spec"),
    ({"select": {"axis": "sparsity.masker"},
      "axes": {"sparsity.masker": ["random", "snip"], LR: [0.01, 0.1]}},
     "select.axis: sparsity.masker defines the sparse method"),
    ({"select": {"axis": LR}, "axes": {LR: [0.1]}},
     "select.axis: optim.lr has one value [0.1], nothing to choose from"),
    ({"select": {"axis": LR, "metric": "test_accuracy"}, "axes": _AXES},
     "invalid select.metric = 'test_accuracy': Input should be 'val_accuracy' or 'val_loss'"),
    ({"select": {"axis": LR, "metrc": "val_loss"}, "axes": _AXES},
     "unknown config key 'select.metrc'; did you mean 'select.metric'?"),
    ({"select": {"axis": LR}, "axes": _AXES,
      "base": {**spec_dict()["base"], "data": {"name": "mnist1d", "val_fraction": 0.0}}},
     "select: data.val_fraction is 0 in base"),
    ({"select": {"axis": LR}, "axes": {**_AXES, "data.val_fraction": [0.1, 0.0]}},
     "select: data.val_fraction is 0 in axes.data.val_fraction"),
    ({"select": {"axis": LR}, "axes": _AXES, "variants": ["NR", "NOVAL"],
      "variant_defs": {"NOVAL": {"data.val_fraction": 0.0}}},
     "select: data.val_fraction is 0 in variant NOVAL"),
    ({"select": {"axis": LR}, "axes": _AXES,
      "linked": {"optim.name": {"sgd": {"data.val_fraction": 0.0}}}},
     "select: data.val_fraction is 0 in linked.optim.name.sgd"),
])
def test_select_refusals_name_the_problem(tmp_path: Path, over: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        _load(tmp_path, **over)


def test_a_refusal_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(axes={LR: [0.1]}, select={"axis": LR})))
    code, _, err = _run(["study", "plan", str(path)], capsys)
    _assert_one_line_error(code, err, "select.axis: optim.lr has one value [0.1]")
    assert "mnist1d" not in err  # the spec is not quoted


def test_link_may_follow_the_select_axis_but_not_set_it(tmp_path: Path) -> None:
    spec = _load(tmp_path, axes=_AXES, select={"axis": LR},
                 linked={LR: {0.1: {"optim.momentum": 0.5}}})
    assert spec.select == SelectSpec(axis=LR)
    with pytest.raises(ConfigError, match="sets optim.lr, which is an axis"):
        _load(tmp_path, axes=_AXES, select={"axis": LR},
              linked={"optim.name": {"sgd": {LR: 0.05}}})


def test_the_metric_literal_is_the_rules_metrics() -> None:
    literal = typing.get_args(SelectSpec.model_fields["metric"].annotation)
    assert set(literal) == set(SELECT_METRICS) and SelectSpec(axis=LR).metric == "val_accuracy"
    with pytest.raises(ValueError, match="unknown selection metric"):
        SelectRule(LR, "test_accuracy")


def test_select_changes_no_run_and_no_fingerprint() -> None:
    plain = expand(StudySpec.model_validate(spec_dict(axes=_AXES)))
    chosen = expand(StudySpec.model_validate(spec_dict(axes=_AXES, select={"axis": LR})))
    assert [r.run_key for r in chosen.runs] == [r.run_key for r in plain.runs]
    assert chosen.fingerprint == plain.fingerprint
    assert chosen.counts() == {**plain.counts(), "selected_pairs": plain.counts()["pairs"] // 2}
    # The power check counts one pair per group: half of each cell's pairs.
    assert [c.n for c in cell_pairs(chosen)] == [c.n // 2 for c in cell_pairs(plain)] == [4] * 4


def test_rule_from_the_stored_spec() -> None:
    spec = StudySpec.model_validate(spec_dict(axes=_AXES, select={"axis": LR,
                                                                  "metric": "val_loss"}))
    rule = rule_from_spec(spec.model_dump(mode="json"))
    assert rule == SelectRule(LR, "val_loss", (0.01, 0.1)) and not rule.higher_is_better
    assert rule_from_spec(StudySpec.model_validate(spec_dict()).model_dump(mode="json")) is None


# The rule on hand-made rows --------------------------------------------------------------------
def _row(kind: str, seed: int, lr: float, val: float | None, *, test: float = 0.5,
         width: int = 8, status: str = "finished", diverged: bool = False,
         opt: str = "adam", **extra) -> dict:
    return {"kind": kind, "dense_width": width, "seed": seed, "optim.name": opt, LR: lr,
            "variant": "NR", "status": status, "val_accuracy": val, "val_loss": extra.pop(
                "val_loss", None), "test_accuracy": test, "diverged": diverged, **extra}


RULE = SelectRule(LR, "val_accuracy", (0.01, 0.1))


def _chosen(rows: list[dict], rule: SelectRule = RULE) -> dict[tuple, float | None]:
    """(kind, seed) → the chosen lr (None: incomplete)."""
    found = select(rows, rule, ["optim.name", LR, "variant"])
    out = {}
    for g in found.groups:
        key = (g.kind, g.key["seed"])
        out[key] = None if g.chosen is None else rows[g.chosen][LR]
    return out


def test_choices_by_hand_ties_nan_divergence_and_direction() -> None:
    rows = [
        _row("sparse", 0, 0.01, 0.50), _row("sparse", 0, 0.1, 0.70),      # 0.1 is better
        _row("dense", 0, 0.01, 0.60), _row("dense", 0, 0.1, 0.40),        # dense: 0.01
        _row("sparse", 1, 0.01, 0.55), _row("sparse", 1, 0.1, 0.55),      # a tie: 0.01
        _row("dense", 1, 0.01, math.nan), _row("dense", 1, 0.1, 0.05),    # NaN is worst
        _row("sparse", 2, 0.01, None), _row("sparse", 2, 0.1, None),      # both missing: tie
        _row("dense", 2, 0.01, 0.10), _row("dense", 2, 0.1, 0.90, diverged=True),  # diverged
    ]
    assert _chosen(rows) == {("sparse", 0): 0.1, ("dense", 0): 0.01, ("sparse", 1): 0.01,
                             ("dense", 1): 0.1, ("sparse", 2): 0.01, ("dense", 2): 0.01}
    # The tie order is the axis's: listed the other way round, the tie goes to 0.1.
    flipped = replace(RULE, values=(0.1, 0.01))
    assert _chosen(rows, flipped)[("sparse", 1)] == 0.1
    # val_loss: lower is better, a non-finite loss is worst.
    losses = [_row("sparse", 0, 0.01, None, val_loss=0.3), _row("sparse", 0, 0.1, None,
                                                                val_loss=0.2),
              _row("dense", 0, 0.01, None, val_loss=math.inf),
              _row("dense", 0, 0.1, None, val_loss=5.0)]
    assert _chosen(losses, replace(RULE, metric="val_loss")) == {("sparse", 0): 0.1,
                                                                 ("dense", 0): 0.1}


def test_incomplete_groups_choose_nothing() -> None:
    rows = [_row("sparse", 0, 0.01, 0.9), _row("sparse", 0, 0.1, 0.1, status="running"),
            _row("dense", 0, 0.01, 0.9), _row("dense", 0, 0.1, 0.1, status="failed"),
            _row("sparse", 1, 0.01, 0.9)]  # the 0.1 run is not in the rows at all
    found = select(rows, RULE, ["optim.name", "variant"])
    assert _chosen(rows) == {("sparse", 0): None, ("dense", 0): None, ("sparse", 1): None}
    assert found.selected() == frozenset()
    assert [g.missing for g in found.incomplete()] == [(0.1,), (0.1,), (0.1,)]
    # Without the axis's values the rule cannot know a run is absent: that group is complete.
    assert select(rows, SelectRule(LR), ["optim.name", "variant"]).groups[2].chosen == 4


def test_groups_keep_every_other_axis_apart() -> None:
    rows = [_row("sparse", 0, 0.01, 0.9, opt="adam"), _row("sparse", 0, 0.1, 0.1, opt="adam"),
            _row("sparse", 0, 0.01, 0.1, opt="sgd"), _row("sparse", 0, 0.1, 0.9, opt="sgd")]
    found = select(rows, RULE, ["optim.name", "variant"])
    assert len(found.groups) == 2 and found.selected() == {0, 3}


# The p-value table against scipy ---------------------------------------------------------------
def _design() -> tuple[list[dict], list[tuple[float, float]]]:
    """Rows of 2 optimizers × 2 lrs × 2 widths × 4 seeds, sparse and dense, with validation
    accuracies that make the choice by construction: sparse takes lr 0.1 at even seeds, 0.01
    at odd ones; dense always 0.01. Returns the rows and, per adam pair, the hand-chosen
    (sparse, dense) test accuracies."""
    rows, pairs = [], []
    for opt in ("adam", "sgd"):
        for width in (8, 16):
            for seed in range(4):
                s_lr = 0.1 if seed % 2 == 0 else 0.01
                chosen = {}
                for kind in ("sparse", "dense"):
                    best = s_lr if kind == "sparse" else 0.01
                    for lr in (0.01, 0.1):
                        test = round(0.3 + 0.05 * seed + 0.01 * width / 8 + (lr == 0.1) * 0.2
                                     + (kind == "sparse") * 0.013 * (seed - 1), 6)
                        rows.append(_row(kind, seed, lr, 0.8 if lr == best else 0.6,
                                         test=test, width=width, opt=opt))
                        if lr == best:
                            chosen[kind] = test
                if opt == "adam":
                    pairs.append((chosen["sparse"], chosen["dense"]))
    return rows, pairs


def test_pvalue_table_with_selection_equals_scipy_on_the_hand_chosen_pairs() -> None:
    rows, pairs = _design()
    table = pvalue_table(rows, rows="optim.name", cols="variant", select=RULE)
    cell = table.cell("adam", "NR")
    d = rank_rounded([s - dn for s, dn in pairs])
    assert cell.result.n == len(pairs) == 8
    assert cell.result.p_value == pytest.approx(
        stats.wilcoxon(d, alternative="greater").pvalue)
    assert cell.result.mean_sparse == pytest.approx(sum(s for s, _ in pairs) / 8)
    # Without the selection the cell would pool both rates: twice the pairs, another p.
    plain = pvalue_table(rows, rows="optim.name", cols="variant").cell("adam", "NR")
    assert plain.result.n == 16
    assert cell.choices is not None
    assert cell.choices.sparse == ((0.01, 4), (0.1, 4)) and cell.choices.dense == ((0.01, 8),)
    assert LR not in table.axes
    record = table.to_records()[0]
    assert json.loads(record["chosen_sparse"]) == {"0.01": 4, "0.1": 4}
    assert json.loads(record["chosen_dense"]) == {"0.01": 8}
    assert record["select_axis"] == LR and record["incomplete_sparse"] == 0


def test_an_unfinished_run_leaves_its_pair_untested_and_says_so() -> None:
    rows, _ = _design()
    i = next(i for i, r in enumerate(rows) if r["optim.name"] == "adam" and r["kind"] == "dense"
             and r["seed"] == 0 and r["dense_width"] == 8 and r[LR] == 0.1)
    rows[i] = {**rows[i], "status": "running"}
    table = pvalue_table(rows, rows="optim.name", cols="variant", select=RULE)
    cell = table.cell("adam", "NR")
    assert cell.result.n == 7 and cell.choices.incomplete_dense == 1
    assert "ignored 1 sparse and 0 dense run(s) without a partner" in cell.result.note
    assert table.select_incomplete == (0, 1)
    lines = table.selection_lines()
    assert lines[0].startswith("Selection: optim.lr is chosen by validation")
    assert "In all, 1 dense group(s) incomplete" in lines[1]
    assert lines[2] == ("optim.name=adam / variant=NR: sparse optim.lr 0.01 ×4, 0.1 ×4; dense "
                        "0.01 ×7; incomplete, not tested: 1 dense group(s)")
    assert "optim.name=adam" in table.to_markdown() and "sparse optim.lr" in table.to_markdown()


def test_the_select_axis_cannot_lay_out_a_table() -> None:
    rows, _ = _design()
    with pytest.raises(ValueError, match="optim.lr is tuned away"):
        pvalue_table(rows, rows=LR, cols="variant", select=RULE)


def test_sparse_only_axes_share_the_chosen_dense_twin() -> None:
    rows = []
    for masker, better in (("random", 0.01), ("snip", 0.1)):
        for seed in range(2):
            for lr in (0.01, 0.1):
                rows.append({**_row("sparse", seed, lr, 0.9 if lr == better else 0.1),
                             "sparsity.masker": masker})
    rows += [_row("dense", s, lr, 0.9 if lr == 0.1 else 0.1) for s in range(2)
             for lr in (0.01, 0.1)]
    table = pvalue_table(rows, rows="sparsity.masker", cols="variant", select=RULE, min_n=2)
    for masker, lr in (("random", 0.01), ("snip", 0.1)):
        c = table.cell(masker, "NR")
        assert c.result.n == 2 and c.choices.sparse == ((lr, 2),)
        assert c.choices.dense == ((0.1, 2),)  # one dense choice, shared by both rows


# The export -------------------------------------------------------------------------------------
def _store(tmp_path: Path) -> Path:
    """A store with a select rule: seed 0 complete (sparse chooses 0.1, dense 0.01), seed 1's
    dense group incomplete (its 0.1 run is still running)."""
    spec = StudySpec.model_validate(spec_dict(axes={LR: [0.01, 0.1]}, variants=["NR"],
                                              select={"axis": LR}))
    runs = []
    for seed in (0, 1):
        for kind in ("sparse", "dense"):
            for lr in (0.01, 0.1):
                cid = f"{kind[0]}{str(lr).replace('.', '')}"
                runs.append(PlannedRun(f"{cid}-s{seed}", cid, seed, kind,
                                       40 if kind == "sparse" else None, 8,
                                       {LR: lr, "variant": "NR"}, {}))
    val = {"s001": 0.2, "s01": 0.8, "d001": 0.7, "d01": 0.3}
    with StudyStore(tmp_path / "study") as s:
        s.init_study("t", spec.model_dump(mode="json"), "fp")
        s.add_planned(runs)
        for run in runs:
            if run.run_key == "d01-s1":
                s.mark_running(run.run_key)
                continue
            summary, metrics, flow = outputs()
            summary.update(val_accuracy=val[run.config_id], run_id=run.config_id,
                           seed=run.seed)
            s.record_finished(run.run_key, summary, metrics, flow)
    return tmp_path / "study"


def test_export_marks_the_chosen_runs_and_pairs_only_them(tmp_path: Path) -> None:
    directory = _store(tmp_path)
    with StudyStore(directory, readonly=True) as store:
        rows = {r["run_key"]: r for r in store.results()}
        columns = list(store.results()[0])
        store.export(directory / "r.csv", "csv")
        store.export(directory / "r.parquet", "parquet")
        series = {t: {r["run_key"]: r["pair_id"] for r in store.table(t)[0]}
                  for t in ("metrics", "gradflow")}
    assert columns[columns.index("status") + 1] == "selected"
    for pair_ids in series.values():  # the long tables pair as the runs table does
        assert pair_ids["s01-s0"] == "d001-s0" and pair_ids["s001-s0"] is None
    # Seed 0: sparse 0.1 (val 0.8 > 0.2), dense 0.01 (0.7 > 0.3); seed 1: sparse 0.1, and no
    # dense choice while its 0.1 run is unfinished.
    assert {k for k, r in rows.items() if r["selected"]} == {"s01-s0", "d001-s0", "s01-s1"}
    assert rows["d001-s1"]["selected"] is False and rows["d01-s1"]["selected"] is False
    # The pair: sparse at 0.1 with dense at 0.01 (each side's own rate); nothing else pairs.
    assert rows["s01-s0"]["pair_id"] == rows["d001-s0"]["pair_id"] == "d001-s0"
    assert [k for k, r in rows.items() if r["pair_id"]] == ["s01-s0", "d001-s0"]
    a = pd.read_csv(directory / "r.csv")
    b = pd.read_parquet(directory / "r.parquet")
    assert a["selected"].dtype == b["selected"].dtype == bool
    assert list(a["selected"]) == [rows[k]["selected"] for k in a["run_key"]]


def test_export_without_a_rule_has_no_selected_column(tmp_path: Path) -> None:
    with StudyStore(tmp_path / "s") as s:
        s.init_study("t", StudySpec.model_validate(spec_dict()).model_dump(mode="json"), "fp")
        s.add_planned([PlannedRun("a-s0", "a", 0, "sparse", 40, 8, {"variant": "NR"}, {})])
        assert "selected" not in s.results()[0] and s.select_rule() is None


# The CLI and one small study end to end ----------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 lrs × NR × dense width 8 × 5 seeds on mnist1d, 1 epoch: 20 runs, 5 selected pairs
    (one variant: the table's columns are the dense width, not the tuned-away lr)."""
    root = tmp_path_factory.mktemp("select-study")
    spec = root / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(
        axes={LR: [0.01, 0.5]}, variants=["NR"], seeds=5, select={"axis": LR},
        scsdc={"sparse_width": 40, "dense_widths": [8]},
        base={**spec_dict()["base"], "train": {"epochs": 1, "batch_size": 64},
              "gradflow": {"points": 2}})))
    code = 0
    try:
        from sparseflow.cli import main

        main(["study", "run", str(spec), "--dir", str(root / "study"), "--jobs", "1"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0
    return root / "study"


def _export(directory: Path, capsys) -> list[dict[str, str]]:
    code, _, err = _run(["study", "export", str(directory), "--out", str(directory / "r.csv")],
                        capsys)
    assert code == 0, err
    return list(csv.DictReader((directory / "r.csv").read_text().splitlines()))


def _by_hand(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], str]:
    """(kind, dense width, seed) → the lr with the higher val_accuracy (the first on a tie)."""
    out: dict[tuple[str, str, str], tuple[str, float]] = {}
    for r in rows:
        key = (r["kind"], r["dense_width"], r["seed"])
        val = float(r["val_accuracy"])
        if key not in out or val > out[key][1]:
            out[key] = (r[LR], val)
    return {k: v[0] for k, v in out.items()}


def test_study_end_to_end_selects_exports_and_tests(study: Path, capsys) -> None:
    rows = _export(study, capsys)
    assert len(rows) == 20
    rows.sort(key=lambda r: float(r[LR]))  # the axis order: a tie keeps the earlier rate
    chosen = _by_hand(rows)
    selected = {(r["kind"], r["dense_width"], r["seed"]): r[LR] for r in rows
                if r["selected"] == "True"}
    assert selected == chosen and len(selected) == 10
    # The p-value from the export: each chosen sparse run against its chosen dense twin.
    by_key = {r["run_key"]: r for r in rows}
    d = [float(r["test_accuracy"]) - float(by_key[r["pair_id"]]["test_accuracy"])
         for r in rows if r["kind"] == "sparse" and r["selected"] == "True"]
    assert len(d) == 5 and all(r["pair_id"] == "" for r in rows if r["selected"] == "False")
    code, out, _ = _run(["study", "tests", str(study), "--format", "csv"], capsys)
    assert code == 0
    (cell,) = list(csv.DictReader(out.splitlines()))
    assert (cell["variant"], cell["dense_width"], int(cell["n"])) == ("NR", "8", 5)
    assert float(cell["p_value"]) == pytest.approx(
        stats.wilcoxon(rank_rounded(d), alternative="greater").pvalue)
    counts = {k: {} for k in ("sparse", "dense")}
    for (kind, _, _), lr in chosen.items():
        counts[kind][lr] = counts[kind].get(lr, 0) + 1
    assert {k: int(v) for k, v in json.loads(cell["chosen_sparse"]).items()} == counts["sparse"]
    assert json.loads(cell["chosen_dense"]) == counts["dense"]
    assert cell["select_axis"] == LR and cell["select_metric"] == "val_accuracy"
    # The console names the rule and the choices.
    code, out, _ = _run(["study", "tests", str(study)], capsys)
    flat = " ".join(out.split())
    assert code == 0 and "Selection: optim.lr is chosen by validation" in flat
    shown = ", ".join(f"{lr} ×{n}" for lr, n in sorted(counts["sparse"].items(),
                                                        key=lambda x: float(x[0])))
    assert f"sparse optim.lr {shown};" in flat
    assert "Only runs chosen by validation are compared" in flat
    code, _, err = _run(["study", "tests", str(study), "--rows", LR], capsys)
    _assert_one_line_error(code, err, "optim.lr is tuned away")


def test_correlate_and_report_say_which_runs_they_use(study: Path, capsys) -> None:
    code, out, _ = _run(["study", "correlate", str(study)], capsys)
    assert code == 0 and "10 sparse and 10 dense finished runs (every optim.lr" in out
    code, _, err = _run(["study", "report", str(study), "--out", str(study / "r.html")], capsys)
    assert code == 0, err
    page = (study / "r.html").read_text()
    assert "Which optim.lr was chosen? Selection by val_accuracy" in page
    assert "10 of 20 finished runs chosen and compared" in page
    assert "Drawn: only the runs chosen by validation" in page
    assert "τ is computed over every finished run, each optim.lr included" in page
    code, _, err = _run(["study", "report", str(study), "--cell", f"{LR}=0.5"], capsys)
    _assert_one_line_error(code, err, "optim.lr is tuned away")
